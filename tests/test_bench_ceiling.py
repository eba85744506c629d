"""bench/ceiling.py's bookkeeping (not its timings): it finds exactly a network's 1x1 GEMMs,
runs each of them, and reports its ratios from the variants it timed."""
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import dsconv_ext as dse
from dsconv_ext import complexity

# Appended, not prepended: the installed dsconv_ext must win over the source folder.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from bench import ceiling  # noqa: E402


def test_pointwise_shapes_lists_ungrouped_1x1_convs_over_output_pixels():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1),           # 3x3: not a 1x1 GEMM
                          nn.Conv2d(8, 16, 1),                      # 10x10 pixels
                          nn.Conv2d(16, 16, 3, groups=16),          # depthwise: 8x8 out
                          nn.Conv2d(16, 12, 1, stride=2),           # 4x4 output pixels
                          nn.Conv2d(12, 24, 1, groups=2))           # grouped: not one GEMM
    x = torch.randn(2, 3, 10, 10)
    assert ceiling.pointwise_shapes(model, x) == [(2 * 100, 8, 16), (2 * 16, 16, 12)]


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large"])
def test_pointwise_shapes_match_the_models_pointwise_macs(name):
    model = dse.models.MODELS[name]().eval()
    shapes = ceiling.pointwise_shapes(model, torch.randn(1, 3, 224, 224))
    macs = sum(layer.cost.macs for layer in complexity.model_cost(model).layers
               if layer.kind == "pointwise")
    assert shapes and sum(p * ci * co for p, ci, co in shapes) == macs


def test_gemm_only_runs_every_gemm(monkeypatch):
    shapes = [(49, 8, 16), (7, 16, 5)]
    seen = {"mm": [], "pw": []}
    real_mm, real_pw = torch.mm, dse.pointwise
    monkeypatch.setattr(torch, "mm",
                        lambda a, b: seen["mm"].append((a.shape, b.shape)) or real_mm(a, b))
    monkeypatch.setattr(dse, "pointwise",
                        lambda x, w: seen["pw"].append((x.shape, w.shape)) or real_pw(x, w))
    mkl, dsconv = ceiling.gemm_only(dse, shapes)
    mkl()
    dsconv()
    assert seen["mm"] == [((49, 8), (8, 16)), ((7, 16), (16, 5))]
    assert seen["pw"] == [((1, 8, 1, 49), (16, 8, 1, 1)), ((1, 16, 1, 7), (5, 16, 1, 1))]


def test_measure_net_reports_from_the_variants_it_timed():
    budget = {"min_time": 0.0, "max_reps": 2, "warmup_time": 0.0, "min_reps": 2, "rounds": 2}
    threads = torch.get_num_threads()
    r = ceiling.measure_net(dse, "v2", threads=1, budget=budget)
    assert torch.get_num_threads() == threads
    assert set(r["ms"]) == {"aten_cl", "dse_cl", "mkl_1x1", "dse_1x1"}
    assert all(v > 0 for v in r["ms"].values())
    shapes = ceiling.pointwise_shapes(dse.models.mobilenet_v2().eval(),
                                      torch.randn(1, 3, 224, 224))
    assert r["gflop"] == pytest.approx(sum(2 * p * ci * co for p, ci, co in shapes) / 1e9)
    assert r["outside_1x1_ms"] == pytest.approx(r["ms"]["dse_cl"] - r["ms"]["dse_1x1"])
    assert all(r[k] > 0 for k in ("speedup", "ceiling", "dse_1x1_vs_mkl"))


def test_thread_counts_and_bad_threads_argument():
    import os
    from bench.env import thread_counts
    assert thread_counts(" 2, 1,2 ") == [1, 2]
    assert thread_counts("all") == [os.cpu_count() or 1]
    for bad in ("x", "0", "1,-2"):
        with pytest.raises(SystemExit):
            ceiling.main(["--threads", bad])
