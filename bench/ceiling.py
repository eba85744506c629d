"""python -m bench.ceiling: how far a whole-network speedup over ATen can go on this machine.

Per network and thread count, in interleaved rounds (bench/timing.py): ATen eager on
channels_last with BatchNorm folded (the fastest ATen configuration here), the model after
dsconv_ext.convert, and the network's 1x1 convolutions alone, back to back, each with its own
input and weight (in cache after the first round), as MKL matrix products (torch.mm on
[pixels x C_in] . [C_in x C_out]) and as dsconv_ext.pointwise calls on channels_last inputs.
A network cannot run faster than its 1x1 GEMMs at the best rate this machine gives, so ATen's
time over the faster of the two "1x1 only" times bounds any implementation's speedup over
ATen that does not compute those GEMMs faster than MKL. Ratios are medians of per-round
ratios (two measurements seconds apart)."""
import argparse
import sys

import torch

from .env import import_dsconv, thread_counts
from .nets import NETS, make_net
from .timing import measure, paired_ratio

BUDGET = {"min_time": 0.5, "max_reps": 100, "warmup_time": 0.1, "min_reps": 20, "rounds": 20}


def pointwise_shapes(model, x):
    """(output pixels, C_in, C_out) of every ungrouped 1x1 nn.Conv2d a forward of `model` on
    `x` runs, in call order (a GEMM over the output's pixels: a strided 1x1 conv reads only
    those)."""
    shapes = []

    def hook(m, _inputs, out):
        if m.kernel_size == (1, 1) and m.groups == 1:
            shapes.append((out.shape[0] * out.shape[2] * out.shape[3], m.in_channels,
                           m.out_channels))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


def gemm_only(dse, shapes):
    """Two callables that run `shapes`' GEMMs back to back: MKL's torch.mm and
    dsconv_ext.pointwise (the pixels as one row of a channels_last image)."""
    g = torch.Generator().manual_seed(0)
    mm = [(torch.randn(p, ci, generator=g), torch.randn(ci, co, generator=g))
          for p, ci, co in shapes]
    pw = [(torch.randn(1, ci, 1, p, generator=g).contiguous(memory_format=torch.channels_last),
           torch.randn(co, ci, 1, 1, generator=g)) for p, ci, co in shapes]

    def mkl():
        for a, b in mm:
            torch.mm(a, b)

    def dsconv():
        for x, w in pw:
            dse.pointwise(x, w)
    return mkl, dsconv


def measure_net(dse, net, threads, batch=1, budget=BUDGET):
    """{name: ms} of the four variants and the per-round ratios, for one network, timed on
    `threads` threads (the caller's thread count is restored)."""
    variants, folded, x, _ = make_net(dse, net, batch)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    shapes = pointwise_shapes(folded, x_cl)
    mkl, dsconv = gemm_only(dse, shapes)
    fns = {"aten_cl": variants["aten_cl"], "dse_cl": variants["dse_cl"],
           "mkl_1x1": mkl, "dse_1x1": dsconv}
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            stats = {k: vars(s) for k, s in measure(fns, **budget).items()}
    finally:
        torch.set_num_threads(caller_threads)
    ms = {k: s["median_us"] / 1e3 for k, s in stats.items()}
    floor = "mkl_1x1" if ms["mkl_1x1"] <= ms["dse_1x1"] else "dse_1x1"
    return {"ms": ms, "gflop": sum(2 * p * ci * co for p, ci, co in shapes) / 1e9,
            "speedup": paired_ratio(stats["aten_cl"], stats["dse_cl"]),
            "ceiling": paired_ratio(stats["aten_cl"], stats[floor]),
            "dse_1x1_vs_mkl": paired_ratio(stats["mkl_1x1"], stats["dse_1x1"]),
            "outside_1x1_ms": ms["dse_cl"] - ms["dse_1x1"]}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--threads", default="1", help="thread counts, 'all' = every CPU")
    args = parser.parse_args(argv)
    try:
        threads = thread_counts(args.threads)
    except ValueError:
        parser.error("--threads takes comma-separated integers or 'all'")
    if min(threads, default=0) < 1:
        parser.error("--threads must be >= 1")
    dse = import_dsconv()
    print("| net | thr | 1x1 GFLOP | ATen CL ms | dsconv CL ms | 1x1 only, MKL ms "
          "| 1x1 only, dsconv ms | dsconv 1x1 vs MKL | dsconv outside 1x1 ms "
          "| dsconv vs ATen CL | ceiling vs ATen CL |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for net in args.nets.split(","):
        for thr in threads:
            r = measure_net(dse, net, thr)
            ms = r["ms"]
            print(f"| {net} | {thr} | {r['gflop']:.2f} | {ms['aten_cl']:.2f} | {ms['dse_cl']:.2f} "
                  f"| {ms['mkl_1x1']:.2f} | {ms['dse_1x1']:.2f} | {r['dse_1x1_vs_mkl']:.2f}x "
                  f"| {r['outside_1x1_ms']:.2f} | {r['speedup']:.2f}x | {r['ceiling']:.2f}x |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
