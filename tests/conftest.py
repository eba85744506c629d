import os

import pytest
import torch
from hypothesis import HealthCheck, settings

import dsconv_ext as dse

# Property tests are reproducible: fixed example sequence, no example database, no deadline
# (the scalar reference is slow and timing is not what they test).
settings.register_profile(
    "dsconv", derandomize=True, database=None, deadline=None, max_examples=25,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile("dsconv")


def kernel_sets():
    """Every kernel set this CPU runs, or only the one DSCONV_ISA forces."""
    forced = os.environ.get("DSCONV_ISA")
    return [forced] if forced else dse.supported_cpu_capabilities()


@pytest.fixture(params=kernel_sets())
def isa(request):
    """Runs the test with kernel set `isa` forced, then restores the previous one."""
    previous = dse.cpu_capability()
    dse.set_cpu_capability(request.param)
    assert dse.cpu_capability() == request.param
    try:
        yield request.param
    finally:
        dse.set_cpu_capability(previous)


@pytest.fixture
def gen():
    """A fixed-seed generator for the test's random tensors."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="module")
def one_thread():
    """Runs a module's tests with one intra-op thread: whole models on small inputs, where a
    second thread only adds synchronization (threading itself is tested in test_threads.py)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
