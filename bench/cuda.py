"""python -m bench.cuda: dsconv_ext's CUDA kernels vs ATen (cuDNN) on the layer tables of
bench/shapes: depthwise forward (dw), depthwise weight gradient (dw_gw), pointwise (pw) and the
separable op (sep, vs ATen's two convolutions), NCHW and channels_last, float32 and float16,
batch 1 and 32 by default. Every variant is checked against ATen before it is timed; times are
the median of CUDA-event-timed repetitions (µs per call). Needs a GPU and a CUDA build."""
import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from . import env
from .shapes import load_layers

OPS = ("dw", "dw_gw", "pw", "sep")
TOLERANCE = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float16: dict(rtol=1e-2, atol=1e-2)}


def variants(dse, layer, op, batch, dtype, fmt):
    """(ours, aten) callables for one layer, op, dtype and memory format."""
    g = torch.Generator().manual_seed(layer.id)
    c, s, k, pad = layer.c_in, layer.stride, layer.kernel, layer.pad
    hw = layer.out_hw if op == "pw" else layer.hw
    dev = dict(device="cuda", dtype=dtype)
    x = torch.randn(batch, c, hw, hw, generator=g).to(**dev).contiguous(memory_format=fmt)
    w_dw = (torch.randn(c, 1, k, k, generator=g) / k).to(**dev)
    w_pw = (torch.randn(layer.c_out, c, 1, 1, generator=g) / math.sqrt(c)).to(**dev)
    if op == "dw":
        return (lambda: dse.depthwise(x, w_dw, stride=s, padding=pad),
                lambda: F.conv2d(x, w_dw, None, s, pad, 1, c))
    if op == "pw":
        return lambda: dse.pointwise(x, w_pw), lambda: F.conv2d(x, w_pw)
    if op == "sep":
        return (lambda: dse.separable(x, w_dw, w_pw, stride=s, padding=pad),
                lambda: F.conv2d(F.conv2d(x, w_dw, None, s, pad, 1, c), w_pw))
    out_hw = layer.out_hw
    gy = torch.randn(batch, c, out_hw, out_hw, generator=g).to(**dev).contiguous(memory_format=fmt)
    return (lambda: torch.ops.dsconv.depthwise_backward_weight(gy, x, [c, 1, k, k], [s, s],
                                                               [pad] * 4, [1, 1]),
            lambda: torch.ops.aten.convolution_backward(
                gy, x, w_dw, None, [s, s], [pad, pad], [1, 1], False, [0, 0], c,
                [False, True, False])[1])


def check(got, want, dtype, where):
    """Within the dtype's tolerance, atol scaled by the result's largest value (the weight
    gradient sums a whole batch of pixels)."""
    tol = TOLERANCE[dtype]
    scale = max(1.0, want.abs().max().item())
    torch.testing.assert_close(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale,
                               msg=lambda m: f"{where}: {m}")


def time_us(fn, reps):
    for _ in range(10):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.cuda", description=__doc__)
    p.add_argument("--batch", default="1,32")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--dtypes", default="float32,float16")
    p.add_argument("--layers", help="layer ids, e.g. 0,3 (default: all)")
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--out", default="bench/results/cuda.json")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench.cuda: no CUDA device")
    dse = env.import_dsconv()
    torch.backends.cudnn.benchmark = True
    # float32 ATen as exact float32, as ours: TF32 would round its inputs to 10 mantissa bits.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    layers = load_layers()
    if args.layers:
        keep = {int(v) for v in args.layers.split(",")}
        layers = [layer for layer in layers if layer.id in keep]
    rows, mismatches = [], []
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, TF32 off; "
          "µs per call (median)")
    print("| layer | op | dtype | batch | layout | dsconv | ATen | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        for batch in (int(b) for b in args.batch.split(",")):
            for layer in layers:
                for op in args.ops.split(","):
                    if op.split("_")[0] not in layer.ops:  # expand layers: pointwise only
                        continue
                    for layout, fmt in (("nchw", torch.contiguous_format),
                                        ("cl", torch.channels_last)):
                        ours, aten = variants(dse, layer, op, batch, dtype, fmt)
                        where = (f"{layer.id} {layer.label} | {op} | {dtype_name} | {batch} | "
                                 f"{layout}")
                        try:
                            check(ours(), aten(), dtype, where)
                        except AssertionError as e:  # reported, never timed
                            mismatches.append(str(e))
                            print(f"| {where} | wrong result | | |", flush=True)
                            continue
                        t_ours, t_aten = time_us(ours, args.reps), time_us(aten, args.reps)
                        rows.append(dict(layer=layer.id, label=layer.label, op=op, dtype=dtype_name,
                                         batch=batch, layout=layout, dsconv_us=t_ours,
                                         aten_us=t_aten))
                        print(f"| {where} | {t_ours:.1f} | {t_aten:.1f} | {t_aten / t_ours:.2f}x |",
                              flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": torch.cuda.get_device_name(),
                                          "torch": torch.__version__, "rows": rows}, indent=1))
    if mismatches:
        sys.exit("bench.cuda: results differ from ATen's:\n" + "\n".join(mismatches))


if __name__ == "__main__":
    main()
