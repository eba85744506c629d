"""The bench's layer tables (bench/shapes/*.csv) list exactly the depthwise and pointwise
layers of the package's MobileNet V1, V2 and V3-Large at 224x224, with their counts, kernel
sizes, strides and activations (EfficientNet-B0 has no model here; its table follows the
paper)."""
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

import dsconv_ext as dse

# Appended, not prepended: the installed dsconv_ext must win over the source folder.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from bench.shapes import load_layers  # noqa: E402

NETS = {"v1": "mobilenet_v1", "v2": "mobilenet_v2", "v3l": "mobilenet_v3_large"}
ACT_NAMES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish"}


def model_layers(name):
    """Counter of ('dw', C, H, k, s, act) and ('pw', C_in, H, C_out, act) over the model's
    conv -> BN -> (act) sequences, H being the conv's input size."""
    with torch.device("meta"):  # shapes only: nothing is computed
        model = dse.models.MODELS[name]().eval()
    found = Counter()
    hooks = []
    for seq in model.modules():
        if not (isinstance(seq, nn.Sequential) and isinstance(seq[0], nn.Conv2d)):
            continue
        conv = seq[0]
        act = ACT_NAMES.get(type(seq[2]), "?") if len(seq) > 2 else "none"

        def hook(mod, inputs, _out, act=act):
            h = inputs[0].shape[-1]
            if mod.groups == mod.in_channels == mod.out_channels and mod.groups > 1:
                found[("dw", mod.in_channels, h, mod.kernel_size[0], mod.stride[0], act)] += 1
            elif mod.kernel_size == (1, 1) and mod.groups == 1:
                found[("pw", mod.in_channels, h, mod.out_channels, act)] += 1
        hooks.append(conv.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224, device="meta"))
    return found


def table_layers(net):
    found = Counter()
    for layer in load_layers():
        if layer.net != net:
            continue
        if layer.kind == "block":
            found[("dw", layer.c_in, layer.hw, layer.kernel, layer.stride, layer.act)] += layer.count
            found[("pw", layer.c_in, layer.out_hw, layer.c_out, layer.pw_act)] += layer.count
        else:
            found[("pw", layer.c_in, layer.hw, layer.c_out, layer.act)] += layer.count
    return found


@pytest.mark.parametrize("net", NETS)
def test_table_matches_model(net):
    assert table_layers(net) == model_layers(NETS[net])


def test_ids_unique_and_every_net_present():
    layers = load_layers()
    assert len({layer.id for layer in layers}) == len(layers)
    assert {layer.net for layer in layers} == {"v1", "v2", "v3l", "effb0"}
