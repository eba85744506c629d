"""python -m bench.memory: peak memory of one inference (batch 1 by default, 224x224,
inference_mode) of each network, ATen eager (BatchNorm folded) against the model after
dsconv_ext.convert, both layouts, and channels_last converted with pack_weights=False (no
packed copies of the 1x1 weights). The ratios count the packed copies in.

Counted: the tensors the forward holds (torch.profiler with profile_memory: each op's own
allocations minus frees, and the frees between ops, in time order; the peak of their
running sum is the most tensor memory the forward held at once beyond the model, at op
granularity: a buffer an op allocates and frees inside itself is not seen). The model is run once before
(warm-up: dsconv_ext's packed weights are cached then, and are reported apart). Not
counted: dsconv_ext's per-thread tile scratch (std::vector, at most 2 x 256 KiB per thread,
kept between calls) and oneDNN's internal scratch (ATen)."""
import argparse
import json
import subprocess
import sys

NETS = ("v1", "v2", "v3l")
VARIANTS = ("aten_nchw", "aten_cl", "dse_nchw", "dse_cl", "dse_cl_inplace")


def held_bytes(fn):
    """(the most bytes of tensors fn's allocations held at once, the bytes still held when it
    returns)."""
    import torch
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        y = fn()
    del y
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage),
                    key=lambda e: e.time_range.start)
    held = peak = 0
    for e in events:
        held += e.self_cpu_memory_usage
        peak = max(peak, held)
    return peak, held


def measure(net, variant, batch):
    """(peak forward KiB, KiB of packed weights cached by the warm-up) in this process."""
    import torch

    from .env import import_dsconv
    from .nets import make_net
    dse = import_dsconv()
    torch.set_num_threads(1)
    variants, _, _, _ = make_net(dse, net, batch)
    fn = variants[variant]
    with torch.inference_mode():
        _, warm_end = held_bytes(fn)  # the first call also packs and caches weights
        peak, end = held_bytes(fn)    # what both still hold at the end: the output (and cache)
    return peak // 1024, max(0, warm_end - end) // 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--one", nargs=2, metavar=("NET", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.batch)))
        return 0
    print(f"peak tensor memory of one inference beyond the model, batch {args.batch}, MiB "
          "(a fresh process per variant; + packed weights the first call cached)")
    print("| net | " + " | ".join(VARIANTS) + " | dse_cl / aten_cl | dse_cl_inplace / aten_cl |")
    print("|---|" + "---:|" * (len(VARIANTS) + 2))
    for net in args.nets.split(","):
        kib = {}
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, "-m", "bench.memory", "--batch", str(args.batch),
                                  "--one", net, variant], capture_output=True, text=True,
                                 check=True)
            kib[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        def ratio(v):  # packed copies included
            return sum(kib[v]) / kib["aten_cl"][0] if kib["aten_cl"][0] else float("nan")

        def cell(v):
            peak, packed = kib[v]
            return f"{peak / 1024:.1f}" + (f" + {packed / 1024:.1f}" if packed else "")
        print(f"| {net} | " + " | ".join(cell(v) for v in VARIANTS)
              + f" | {ratio('dse_cl'):.2f} | {ratio('dse_cl_inplace'):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
