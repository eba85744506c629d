"""Hypothesis strategies for op cases (dicts of tests/_cases.py axes): the property tests
draw small cases, the fuzz tests (test_fuzz.py) wider ones through `Bounds`."""
from dataclasses import dataclass

from hypothesis import strategies as st

from _cases import DTYPES
from _ref import ACTIVATIONS, LAYOUTS, pair2


@dataclass(frozen=True)
class Bounds:
    """Largest values drawn: channels (in and out), kernel side, stride/dilation/multiplier/
    batch, padding, and how far H and W may exceed the least size the kernel needs (up to
    `large_hw` in an eighth of the cases: several row tiles and threads per image)."""
    channels: int = 20
    kernel: int = 5
    step: int = 3
    padding: int = 3
    extra_hw: int = 8
    large_hw: int = 0


SMALL = Bounds()


def side(draw, least, bounds):
    extra = bounds.extra_hw
    if bounds.large_hw and draw(st.integers(0, 7)) == 0:
        extra = bounds.large_hw
    return draw(st.integers(least, least + extra))


@st.composite
def cases(draw, op, bounds=SMALL):
    small = st.integers(1, bounds.step)
    int_or_pair = st.one_of(small, st.tuples(small, small))
    case = dict(batch=draw(small), channels=draw(st.integers(1, bounds.channels)),
                layout=draw(st.sampled_from(LAYOUTS)),
                weights=draw(st.sampled_from(("contiguous", "strided"))),
                dtype=draw(st.sampled_from(DTYPES)))
    if op in ("pointwise", "separable"):
        case["out_channels"] = draw(st.integers(1, bounds.channels))
    if op == "pointwise":
        case["hw"] = (side(draw, 1, bounds), side(draw, 1, bounds))
    else:
        kernel = (draw(st.integers(1, bounds.kernel)), draw(st.integers(1, bounds.kernel)))
        stride, dilation = draw(int_or_pair), draw(int_or_pair)
        pad = st.integers(0, bounds.padding)
        choices = [st.just("valid"), pad, st.tuples(pad, pad)]
        if pair2(stride) == (1, 1):
            choices.append(st.just("same"))
        padding = draw(st.one_of(*choices))
        pads = (0, 0) if isinstance(padding, str) else pair2(padding)
        least = [max(1, d * (k - 1) + 1 - 2 * p) for k, d, p in zip(kernel, pair2(dilation), pads)]
        hw = tuple(side(draw, lo, bounds) for lo in least)
        case.update(kernel=kernel, stride=stride, padding=padding, dilation=dilation, hw=hw,
                    multiplier=draw(small))
    if op == "separable":
        case.update(dw_activation=draw(st.sampled_from(ACTIVATIONS)),
                    pw_activation=draw(st.sampled_from(ACTIVATIONS)),
                    dw_bias=draw(st.booleans()), pw_bias=draw(st.booleans()))
    else:
        case.update(activation=draw(st.sampled_from(ACTIVATIONS)), bias=draw(st.booleans()))
    return case


seeds = st.integers(0, 2**31 - 1)
