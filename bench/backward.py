"""python -m bench.backward: the depthwise backward ops against ATen's
(aten.convolution_backward) on the MobileNet V2 depthwise layers, both layouts, and one
MobileNet V2 training step (forward + backward) against ATen. One thread, CPU time of the
calling thread (time.thread_time), best of 3, so other processes on the machine disturb it
less; on a shared machine the numbers are still indicative. Results are checked against
ATen before timing."""
import argparse
import time

import torch

from .env import import_dsconv

dse = import_dsconv()

# (size, channels, stride) of the MobileNet V2 3x3 depthwise layers (padding 1).
LAYERS = [(112, 32, 1), (112, 96, 2), (56, 144, 1), (28, 192, 1), (28, 192, 2), (14, 576, 1),
          (14, 576, 2), (7, 960, 1)]


def cpu_us(fn, budget=0.25):
    """Best of 3 rounds of the mean CPU time per call (µs), each round about `budget` s."""
    fn()
    t0 = time.thread_time()
    fn()
    reps = max(3, min(200, int(budget / max(time.thread_time() - t0, 1e-6))))
    best = float("inf")
    for _ in range(3):
        t0 = time.thread_time()
        for _ in range(reps):
            fn()
        best = min(best, (time.thread_time() - t0) / reps)
    return best * 1e6


def layer_table(batch):
    print(f"depthwise backward, batch {batch}, 1 thread, µs; speedup = ATen / dsconv_ext")
    print("| layer | layout | input grad dse | ATen | speedup | weight grad dse | ATen | speedup |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for size, c, s in LAYERS:
        for layout in ("nchw", "channels_last"):
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            x = torch.randn(batch, c, size, size).contiguous(memory_format=fmt)
            w = torch.randn(c, 1, 3, 3)
            out = (size - 1) // s + 1
            gy = torch.randn(batch, c, out, out).contiguous(memory_format=fmt)
            geo = ([s, s], [1, 1, 1, 1], [1, 1])

            def ours_input():
                return torch.ops.dsconv.depthwise_backward_input(gy, w, list(x.shape), *geo)

            def ours_weight():
                return torch.ops.dsconv.depthwise_backward_weight(gy, x, list(w.shape), *geo)

            def aten(mask):
                return lambda: torch.ops.aten.convolution_backward(
                    gy, x, w, None, [s, s], [1, 1], [1, 1], False, [0, 0], c, mask)

            aten_input, aten_weight = aten([True, False, False]), aten([False, True, False])
            torch.testing.assert_close(ours_input(), aten_input()[0], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(ours_weight(), aten_weight()[1], rtol=1e-4,
                                       atol=1e-5 * batch * out * out)
            with torch.no_grad():  # as inside a backward pass
                t = [cpu_us(f) for f in (ours_input, aten_input, ours_weight, aten_weight)]
            print(f"| {size}²x{c} s{s} | {layout} | {t[0]:.0f} | {t[1]:.0f} | {t[1] / t[0]:.2f}x "
                  f"| {t[2]:.0f} | {t[3]:.0f} | {t[3] / t[2]:.2f}x |")


def training_step(batch, size):
    """ATen: the model in eval mode (BatchNorm frozen, the same function as the folded
    model); dsconv_ext: its dse.convert'ed copy. Loss: mean of squared logits."""
    torch.manual_seed(0)
    model = dse.models.mobilenet_v2().eval()
    fast = dse.convert(model)
    for p in list(model.parameters()) + list(fast.parameters()):
        p.requires_grad_(True)

    def step(m, x):
        for p in m.parameters():
            p.grad = None
        m(x).square().mean().backward()

    print(f"MobileNet V2 training step, batch {batch}, {size}x{size}, 1 thread, ms")
    print("| input layout | ATen | dsconv_ext | speedup |")
    print("|---|---:|---:|---:|")
    for layout in ("channels_last", "nchw"):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
        t_aten = cpu_us(lambda: step(model, x), budget=0)  # 3 rounds of 3 steps
        t_ours = cpu_us(lambda: step(fast, x), budget=0)
        print(f"| {layout} | {t_aten / 1e3:.1f} | {t_ours / 1e3:.1f} | {t_aten / t_ours:.2f}x |")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=1, help="layer table batch (default 1)")
    parser.add_argument("--train-batch", type=int, default=4, help="training step batch (4)")
    parser.add_argument("--no-train", action="store_true", help="only the layer table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    layer_table(args.batch)
    if not args.no_train:
        training_step(args.train_batch, 224)


if __name__ == "__main__":
    main()
