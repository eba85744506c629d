"""dsconv_ext.complexity: the classic figures, the MAC ratio 1/C_out + 1/K^2, the published
parameter and MAC counts of the package's MobileNets, and the CLI."""
import subprocess
import sys

import pytest

import dsconv_ext as dse
from dsconv_ext import complexity as cx
from dsconv_ext import models

pytestmark = pytest.mark.usefixtures("one_thread")


def test_classic_figures():
    costs = cx.compare(cx.LayerSpec(3, 4, 3))
    assert costs["standard"] == cx.Cost(108, 108)            # 1x1 output: MACs = params
    assert costs["depthwise_separable"] == cx.Cost(39, 39)   # 3*3*3 + 3*4
    assert costs["spatially_separable"] == cx.Cost(84, 84)   # 3*3*4 + 3*4*4


@pytest.mark.parametrize("c_in, c_out, k, size, stride", [
    (3, 4, 3, 1, 1), (32, 64, 3, 112, 1), (64, 128, 3, 112, 2), (96, 24, 5, 14, 1),
    (16, 16, (3, 1), 9, 1), (960, 320, 7, 7, 1)])
def test_mac_ratio(c_in, c_out, k, size, stride):
    spec = cx.LayerSpec(c_in, c_out, k, size, stride)
    costs = cx.compare(spec)
    ratio = cx.mac_ratio(c_out, k)
    for what in ("params", "macs"):
        got = getattr(costs["depthwise_separable"], what) / getattr(costs["standard"], what)
        assert got == pytest.approx(ratio, rel=1e-12)


def test_layer_spec_geometry():
    spec = cx.LayerSpec(8, 16, 3, in_size=(15, 20), stride=2)
    assert spec.out_size == (8, 10)
    # kx1 conv 8->16 on a 8x20 grid (vertical stride only), then 1xk conv 16->16 on 8x10.
    assert cx.spatially_separable(spec) == cx.Cost(3 * 8 * 16 + 3 * 16 * 16,
                                                  3 * 8 * 16 * 8 * 20 + 3 * 16 * 16 * 8 * 10)
    assert cx.depthwise_separable(spec, depth_multiplier=2) == \
        cx.Cost(16 * 9 + 16 * 16, (16 * 9 + 16 * 16) * 80)
    with pytest.raises(ValueError, match="does not fit"):
        cx.LayerSpec(4, 4, 7, in_size=2, padding=0).out_size
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        cx.LayerSpec(0, 4)


# Parameters (exact) and MACs at 224x224 (published: V1 569M, V2 300M, V3-Large 217M,
# V3-Small 57M).
PUBLISHED = {"mobilenet_v1": (4_231_976, 569e6, 13), "mobilenet_v2": (3_504_872, 300e6, 17),
             "mobilenet_v3_large": (5_483_032, 217e6, 15),
             "mobilenet_v3_small": (2_542_856, 57e6, 11)}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_package_models_published_counts(name):
    params, macs, blocks = PUBLISHED[name]
    model = models.MODELS[name]()
    mc = cx.model_cost(model)
    assert mc.params == params == sum(p.numel() for p in model.parameters())
    assert mc.macs == pytest.approx(macs, rel=0.01)
    assert len(mc.blocks) == blocks  # every depthwise conv paired with its pointwise conv
    assert model.training  # measured in eval mode, mode restored
    standard, separable = mc.as_if("standard"), mc.as_if("depthwise_separable")
    assert separable == cx.Cost(mc.params, mc.macs) and standard.macs > 2 * separable.macs


@pytest.mark.parametrize("make", [models.mobilenet_v2, models.mobilenet_v3_large])
def test_converted_model_same_macs(make):
    model = make(10, 0.5).eval()
    before = cx.model_cost(model, (3, 64, 64))
    after = cx.model_cost(dse.convert(model), (3, 64, 64))
    assert after.macs == before.macs
    assert [b.spec for b in after.blocks] == [b.spec for b in before.blocks]
    assert {layer.kind for layer in after.layers} >= \
        ({"separable", "pointwise"} if make is models.mobilenet_v2 else {"pointwise"})
    if make is models.mobilenet_v3_large:  # in data-flow order inside a block with an SE
        block = [layer.name for layer in after.layers if layer.name.startswith("features.12.")]
        assert block == [f"features.12.{s}"
                         for s in ("expand", "depthwise", "se.fc1", "se.fc2", "project")]


def test_cli_in_process(capsys):
    assert cx.main(["--layer", "3", "4", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 -> 4 channels" in out and " 108 " in out and " 39 " in out
    assert cx.main(["--model", "mobilenet_v1", "--size", "64", "--all-layers"]) == 0
    out = capsys.readouterr().out
    assert "mobilenet_v1 (width 1), input 3x64x64" in out
    assert "13 depthwise-separable blocks" in out and "features.13.0.0" in out


def test_cli_module(tmp_path):
    # Outside the source tree, so the installed package runs; a RuntimeWarning from runpy
    # (module imported twice) fails the run.
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m",
                             "dsconv_ext.complexity", "--layer", "3", "4", "3"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "depthwise separable" in result.stdout
