"""Kernel-set control: set_cpu_capability, the DSCONV_ISA variable at import, and the
torch-version check at import (the last two in fresh interpreters)."""
import platform

import pytest
import torch

import dsconv_ext as dse
from _child import python

KNOWN = ("scalar", "avx2", "avx512", "neon")
X86 = platform.machine().lower() in ("x86_64", "amd64")


def test_supported_capabilities():
    supported = dse.supported_cpu_capabilities()
    assert supported[0] == "scalar" and set(supported) <= set(KNOWN)
    assert len(set(supported)) == len(supported)
    if X86:
        assert "neon" not in supported


def test_set_capability_switches_and_restores(isa):
    assert dse.cpu_capability() == isa
    dse.set_cpu_capability("scalar")
    assert dse.cpu_capability() == "scalar"
    dse.depthwise(torch.randn(1, 2, 4, 4), torch.randn(2, 1, 3, 3))
    assert all(n.endswith("_scalar") for n in dse.last_kernels())
    dse.set_cpu_capability(isa)
    assert dse.cpu_capability() == isa


def test_set_capability_unknown_is_value_error():
    before = dse.cpu_capability()
    with pytest.raises(ValueError, match="sse9"):
        dse.set_cpu_capability("sse9")
    assert dse.cpu_capability() == before


@pytest.mark.parametrize("name", [n for n in KNOWN if n not in dse.supported_cpu_capabilities()])
def test_set_capability_unsupported_is_runtime_error(name):
    before = dse.cpu_capability()
    with pytest.raises(RuntimeError, match=f"'{name}'.*not supported"):
        dse.set_cpu_capability(name)
    assert dse.cpu_capability() == before


def test_env_unknown_isa():
    r = python("import dsconv_ext", isa="bogus")
    assert r.returncode != 0
    assert "ValueError" in r.stderr and "DSCONV_ISA" in r.stderr and "bogus" in r.stderr


def test_env_isa_of_another_architecture():
    foreign = "neon" if X86 else "avx2"
    r = python("import dsconv_ext", isa=foreign)
    assert r.returncode != 0
    assert "RuntimeError" in r.stderr and "DSCONV_ISA" in r.stderr
    assert f"'{foreign}'" in r.stderr and "not supported" in r.stderr


def test_env_scalar_forces_scalar_kernels():
    r = python("import torch, dsconv_ext as d\n"
               "print(d.cpu_capability())\n"
               "d.separable(torch.randn(1, 3, 5, 5), torch.randn(3, 1, 3, 3), torch.randn(2, 3, 1, 1))\n"
               "print('+'.join(d.last_kernels()))", isa="scalar")
    assert r.returncode == 0, r.stderr
    capability, kernels = r.stdout.split()
    assert capability == "scalar"
    assert kernels and all(k.endswith("_scalar") for k in kernels.split("+"))


def test_env_unset_uses_best():
    r = python("import dsconv_ext as d; print(d.cpu_capability(), d.supported_cpu_capabilities()[-1])")
    assert r.returncode == 0, r.stderr
    active, best = r.stdout.split()
    assert active == best


def test_import_under_other_torch_version():
    r = python("import torch; torch.__version__ = '0.0.1'; import dsconv_ext")
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError")
    assert "0.0.1" in last and torch.__version__ in last
