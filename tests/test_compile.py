"""torch.compile(fullgraph=True) of a small model built from the three ops: same outputs,
memory format and gradients as eager."""
import pytest
import torch

import dsconv_ext as dse

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")


class Block(torch.nn.Module):
    """depthwise (multiplier 2, 'same') -> pointwise -> separable (stride 2)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)

        def p(*shape):
            return torch.nn.Parameter(torch.randn(*shape, generator=g))

        self.w_dw, self.b_dw = p(6, 1, 3, 3), p(6)
        self.w_pw, self.b_pw = p(5, 6, 1, 1), p(5)
        self.w_sdw, self.w_spw, self.b_spw = p(10, 1, 3, 3), p(4, 10, 1, 1), p(4)

    def forward(self, x):
        y = dse.depthwise(x, self.w_dw, self.b_dw, padding="same", activation="relu6")
        y = dse.pointwise(y, self.w_pw, self.b_pw, activation="hardswish")
        return dse.separable(y, self.w_sdw, self.w_spw, None, self.b_spw, stride=2, padding=1,
                             dw_activation="relu")


@pytest.fixture
def model():
    torch._dynamo.reset()
    yield Block()
    torch._dynamo.reset()


def inputs():
    x = torch.randn(2, 3, 9, 11, generator=torch.Generator().manual_seed(1))
    return x.contiguous(memory_format=torch.channels_last)


def test_forward(model):
    compiled = torch.compile(model, fullgraph=True)
    x = inputs()
    with torch.no_grad():
        expected, got = model(x), compiled(x)
    torch.testing.assert_close(got, expected)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_forward_backward(model):
    compiled = torch.compile(model, fullgraph=True)
    x_eager, x_compiled = inputs().requires_grad_(), inputs().requires_grad_()
    expected = model(x_eager)
    expected.square().sum().backward()
    grads_eager = [p.grad.clone() for p in model.parameters()] + [x_eager.grad]
    model.zero_grad()
    got = compiled(x_compiled)
    got.square().sum().backward()
    grads_compiled = [p.grad for p in model.parameters()] + [x_compiled.grad]
    torch.testing.assert_close(got, expected)
    assert got.is_contiguous(memory_format=torch.channels_last)
    # Inductor computes the bias gradients' sums in its own order: allow float32 reduction
    # rounding (relative ~1e-6 per term over a few hundred terms).
    for a, b in zip(grads_compiled, grads_eager):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-4)
