"""Whole networks (the package's MobileNet V1, V2, V3-Large at 224x224): the variants timed
on each, all from one model with calibrated BatchNorm statistics.

aten_nchw / aten_cl: eager PyTorch with every BatchNorm folded into its conv (NCHW input, and
                     channels_last model and input)
dse_nchw / dse_cl:   the model after dsconv_ext.convert (which folds the BatchNorms too)
dse_cl_inplace:      channels_last, converted with pack_weights=False (1x1 weights read in
                     place: no packed copies; the low-memory configuration)
peers:               the folded model lowered (bench/graph.py) and built for each runtime
"""
import copy

import torch
from torch import nn

NETS = {"v1": "mobilenet_v1", "v2": "mobilenet_v2", "v3l": "mobilenet_v3_large"}
LABELS = {"v1": "MobileNet V1", "v2": "MobileNet V2", "v3l": "MobileNet V3-Large"}
RESOLUTION = 224
IN_PLACE = "dse_cl_inplace"  # the variant converted with pack_weights=False


def calibrated(dse, key, seed=0):
    """The model in eval mode with BatchNorm statistics from a forward pass on random images,
    so activations stay O(1) through the depth (random init alone makes them vanish) and the
    folded BatchNorms are not identities."""
    torch.manual_seed(seed)
    model = dse.models.MODELS[NETS[key]]()
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.momentum = None  # running stats = the average over the calibration batch
    with torch.no_grad():
        model.train()(torch.randn(2, 3, RESOLUTION, RESOLUTION))
    return model.eval()


def fold_all_bn(dse, model):
    """A copy with every Conv2d -> BatchNorm2d pair inside an nn.Sequential folded
    (dse.fold_bn) and the BatchNorm replaced by nn.Identity (how the package's models, and
    most hand-written ones, place them)."""
    model = copy.deepcopy(model)
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = dse.fold_bn(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    left = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if left:
        raise RuntimeError(f"BatchNorms not after a conv in a Sequential: {left}")
    return model


def dse_kernels(dse, model, inputs):
    """The distinct dsconv_ext kernel chains forwards of `model` on `inputs` run (hooks on
    its fused modules read dse.last_kernels() after each)."""
    seen = []

    def hook(*_):
        chain = "+".join(dse.last_kernels())
        if chain not in seen:
            seen.append(chain)

    ours = (dse.nn.DepthwiseConv2d, dse.nn.PointwiseConv2d, dse.nn.SeparableConv2d,
            dse.nn.InvertedResidual)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, ours)]
    try:
        for x in inputs:
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def make_net(dse, key, batch):
    """(variants {name: fn}, reference model, NCHW input, converted model)."""
    model = calibrated(dse, key)
    folded = fold_all_bn(dse, model)
    folded_cl = copy.deepcopy(folded).to(memory_format=torch.channels_last)
    converted = dse.convert(model)
    in_place = dse.convert(model, pack_weights=False)
    x = torch.randn(batch, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(1))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    variants = {"dse_nchw": lambda: converted(x), "dse_cl": lambda: converted(x_cl),
                IN_PLACE: lambda: in_place(x_cl),
                "aten_nchw": lambda: folded(x), "aten_cl": lambda: folded_cl(x_cl)}
    return variants, folded, x, converted
