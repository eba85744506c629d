import pytest
import torch
from hypothesis import HealthCheck, settings

from _ref import forced_isa, kernel_sets

# Property tests are reproducible: fixed example sequence, no example database, no deadline
# (the scalar reference is slow and timing is not what they test).
settings.register_profile(
    "dsconv", derandomize=True, database=None, deadline=None, max_examples=25,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile("dsconv")


@pytest.fixture(params=kernel_sets())
def isa(request):
    """Runs the test with kernel set `isa` forced, then restores the previous one."""
    with forced_isa(request.param):
        yield request.param


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
