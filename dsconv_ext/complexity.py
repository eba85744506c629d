"""Parameters and multiply-accumulates (MACs) of convolutions, for one layer or a whole model:
standard KxK, spatially separable (Kx1 then 1xK) and depthwise-separable (KxK depthwise then
1x1 pointwise).

For C_in -> C_out channels, a kh x kw kernel and an H' x W' output (biases left out, as in
the classic comparisons):

    standard             params C_in*C_out*kh*kw             MACs params*H'*W'
    spatially separable  params kh*C_in*C_out + kw*C_out^2   (kh x 1 conv C_in -> C_out with
                         the vertical stride, then 1 x kw conv C_out -> C_out with the horizontal)
    depthwise-separable  params C_in*kh*kw + C_in*C_out      MACs params*H'*W'

so depthwise-separable / standard = 1/C_out + 1/(kh*kw), for MACs as for parameters
(3 -> 4 channels, 3x3: 108 vs 39 parameters). Depthwise-separable is what dsconv_ext runs; in
it a spatially separable depthwise filter is two depthwise calls (Kx1, then 1xK).

    python -m dsconv_ext.complexity                          # MobileNet V1 at 224x224
    python -m dsconv_ext.complexity --model mobilenet_v2 --size 160
    python -m dsconv_ext.complexity --layer 3 4 3            # one layer: C_in C_out K
"""
import argparse
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from . import nn as dse_nn

IntPair = Union[int, Tuple[int, int]]


def _pair(v: IntPair) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.macs + other.macs)


@dataclass(frozen=True)
class LayerSpec:
    """A convolution C_in -> C_out with a kernel_size kernel on an in_size input. padding
    None means (k - 1) // 2 per dimension (the output keeps the input's size at stride 1)."""
    in_channels: int
    out_channels: int
    kernel_size: IntPair = 3
    in_size: IntPair = 1
    stride: IntPair = 1
    padding: Optional[IntPair] = None

    def __post_init__(self):
        for name in ("in_channels", "out_channels"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"LayerSpec: {name} must be a positive int, got {v!r}")
        if any(s <= 0 for s in _pair(self.stride)) or any(k <= 0 for k in _pair(self.kernel_size)):
            raise ValueError(f"LayerSpec: kernel_size and stride must be positive, got "
                             f"{self.kernel_size!r} and {self.stride!r}")

    @property
    def kernel(self) -> Tuple[int, int]:
        return _pair(self.kernel_size)

    @property
    def pad(self) -> Tuple[int, int]:
        if self.padding is None:
            return tuple((k - 1) // 2 for k in self.kernel)
        return _pair(self.padding)

    @property
    def out_size(self) -> Tuple[int, int]:
        out = tuple((n + 2 * p - k) // s + 1 for n, p, k, s in
                    zip(_pair(self.in_size), self.pad, self.kernel, _pair(self.stride)))
        if min(out) <= 0:
            raise ValueError(f"LayerSpec: a {self.kernel} kernel does not fit a "
                             f"{_pair(self.in_size)} input with padding {self.pad}")
        return out


def standard(spec: LayerSpec) -> Cost:
    kh, kw = spec.kernel
    ho, wo = spec.out_size
    params = spec.in_channels * spec.out_channels * kh * kw
    return Cost(params, params * ho * wo)


def spatially_separable(spec: LayerSpec) -> Cost:
    """kh x 1 convolution C_in -> C_out (vertical stride and padding), then 1 x kw convolution
    C_out -> C_out (horizontal stride and padding)."""
    kh, kw = spec.kernel
    ho, wo = spec.out_size
    w_in = _pair(spec.in_size)[1]
    first = kh * spec.in_channels * spec.out_channels
    second = kw * spec.out_channels * spec.out_channels
    return Cost(first + second, first * ho * w_in + second * ho * wo)


def depthwise_separable(spec: LayerSpec, depth_multiplier: int = 1) -> Cost:
    """kh x kw depthwise convolution C_in -> C_in * depth_multiplier, then 1x1 pointwise
    convolution -> C_out."""
    kh, kw = spec.kernel
    ho, wo = spec.out_size
    mid = spec.in_channels * depth_multiplier
    params = mid * kh * kw + mid * spec.out_channels
    return Cost(params, params * ho * wo)


KINDS = {"standard": standard, "spatially_separable": spatially_separable,
         "depthwise_separable": depthwise_separable}


def compare(spec: LayerSpec) -> Dict[str, Cost]:
    """The cost of `spec` as a standard, spatially separable and depthwise-separable
    convolution."""
    return {name: cost(spec) for name, cost in KINDS.items()}


def mac_ratio(out_channels: int, kernel_size: IntPair) -> float:
    """Depthwise-separable / standard MACs (and parameters): 1/C_out + 1/(kh*kw)."""
    kh, kw = _pair(kernel_size)
    return 1 / out_channels + 1 / (kh * kw)


# ---------------------------------------------------------------- whole models

@dataclass
class LayerCost:
    name: str
    kind: str                 # standard, depthwise, pointwise, grouped, separable, linear
    in_shape: Tuple[int, ...]   # per image, without the batch dimension
    out_shape: Tuple[int, ...]
    cost: Cost
    module: nn.Module = field(repr=False)


@dataclass
class Block:
    """A depthwise conv followed by a pointwise conv on its output (or one SeparableConv2d):
    its spec and depth multiplier, and what the model spends on it."""
    names: Tuple[str, ...]
    spec: LayerSpec
    depth_multiplier: int
    cost: Cost

    def compare(self) -> Dict[str, Cost]:
        costs = compare(self.spec)
        costs["depthwise_separable"] = depthwise_separable(self.spec, self.depth_multiplier)
        return costs


@dataclass
class ModelCost:
    name: str
    input_size: Tuple[int, ...]
    layers: List[LayerCost]
    blocks: List[Block]
    params: int   # every parameter of the model
    macs: int     # of its convolution and linear layers, per image

    def as_if(self, kind: str) -> Cost:
        """The model's cost with every depthwise-separable block computed as `kind`."""
        params, macs = self.params, self.macs
        for b in self.blocks:
            alt = b.compare()[kind]
            params += alt.params - b.cost.params
            macs += alt.macs - b.cost.macs
        return Cost(params, macs)

    def table(self, all_layers: bool = False) -> str:
        return _format_model(self, all_layers)


def _conv_kind(m: nn.Conv2d) -> str:
    if m.groups == 1:
        return "pointwise" if m.kernel_size == (1, 1) else "standard"
    return "depthwise" if m.groups == m.in_channels else "grouped"


def _layer_cost(m: nn.Module, out: torch.Tensor) -> Tuple[str, Cost]:
    params = sum(p.numel() for p in m.parameters())
    per_image = out[0].numel() if out.dim() > 0 and out.shape[0] > 0 else 0
    if isinstance(m, dse_nn.SeparableConv2d):
        kh, kw = m.kernel_size
        dw_out = per_image // m.out_channels * m.depthwise.out_channels
        return "separable", Cost(params, dw_out * kh * kw + per_image * m.pointwise.in_channels)
    if isinstance(m, dse_nn.DepthwiseConv2d):
        return "depthwise", Cost(params, per_image * m.kernel_size[0] * m.kernel_size[1])
    if isinstance(m, dse_nn.PointwiseConv2d):
        return "pointwise", Cost(params, per_image * m.in_channels)
    if isinstance(m, (nn.Conv2d, dse_nn.DenseConv2d)):
        kh, kw = m.kernel_size
        return _conv_kind(m), Cost(params, per_image * m.in_channels // m.groups * kh * kw)
    return "linear", Cost(params, per_image * m.in_features)  # nn.Linear


def _padding_of(m: nn.Module) -> Tuple[int, int]:
    p = m.padding
    if isinstance(p, str):  # 'valid', or 'same' at stride 1
        if p == "valid":
            return (0, 0)
        return tuple((d * (k - 1)) // 2 for k, d in zip(m.kernel_size, m.dilation))
    return tuple(p)


def _find_blocks(layers: List[LayerCost]) -> List[Block]:
    blocks = []
    for i, layer in enumerate(layers):
        m = layer.module
        if layer.kind == "separable":
            blocks.append(Block((layer.name,), LayerSpec(
                m.in_channels, m.out_channels, m.kernel_size, tuple(layer.in_shape[1:]), m.stride,
                _padding_of(m.depthwise)), m.depthwise.out_channels // m.in_channels, layer.cost))
            continue
        if layer.kind != "depthwise":
            continue
        # Its pointwise partner: the next layer that takes a tensor of the depthwise output's
        # shape (skipping e.g. squeeze-excite convs on pooled tensors), before the next depthwise.
        for later in layers[i + 1:]:
            if later.kind == "depthwise" or later.kind == "separable":
                break
            if later.kind == "pointwise" and later.in_shape == layer.out_shape:
                spec = LayerSpec(layer.in_shape[0], later.out_shape[0], m.kernel_size,
                                 tuple(layer.in_shape[1:]), m.stride, _padding_of(m))
                blocks.append(Block((layer.name, later.name), spec,
                                    layer.out_shape[0] // layer.in_shape[0],
                                    layer.cost + later.cost))
                break
    return blocks


def model_cost(model: nn.Module, input_size: Sequence[int] = (3, 224, 224),
               name: Optional[str] = None) -> ModelCost:
    """Parameters and per-image MACs of every convolution and linear layer of `model`
    (dsconv_ext modules included), measured by running it once on zeros of shape
    (1, *input_size), and its depthwise-separable blocks. `name` (default: the class name)
    titles the table."""
    layers: List[LayerCost] = []
    names = {m: n for n, m in model.named_modules()}
    counted = (nn.Conv2d, nn.Linear, dse_nn.DenseConv2d, dse_nn.DepthwiseConv2d,
               dse_nn.PointwiseConv2d, dse_nn.SeparableConv2d, dse_nn.InvertedResidual,
               dse_nn.SqueezeExcite)

    starts = {}  # InvertedResidual -> len(layers) when its forward began

    def pre_hook(m, inputs):
        starts[m] = len(layers)

    def hook(m, inputs, out):
        if isinstance(m, dse_nn.InvertedResidual):  # one call: its stages, as if run apart
            x = inputs[0]
            for stage_name in ("expand", "depthwise", "project"):
                stage = getattr(m, stage_name)
                if stage is None:
                    continue
                oh, ow = (x.shape[2:] if stage_name == "expand" else out.shape[2:])
                y = out.new_empty((x.shape[0], stage.out_channels, oh, ow))
                kind, cost = _layer_cost(stage, y)
                layer = LayerCost(f"{names[m]}.{stage_name}", kind, tuple(x.shape[1:]),
                                  tuple(y.shape[1:]), cost, stage)
                if stage_name == "project":  # after the squeeze-excite a block may hold
                    layers.append(layer)
                else:
                    layers.insert(starts[m], layer)
                    starts[m] += 1
                x = y
            return
        if isinstance(m, dse_nn.SqueezeExcite):  # its two 1x1 convolutions on the 1x1 map
            x = inputs[0].new_empty((inputs[0].shape[0], m.channels, 1, 1))
            for stage_name in ("fc1", "fc2"):
                stage = getattr(m, stage_name)
                y = x.new_empty((x.shape[0], stage.out_channels, 1, 1))
                kind, cost = _layer_cost(stage, y)
                layers.append(LayerCost(f"{names[m]}.{stage_name}", kind, tuple(x.shape[1:]),
                                        tuple(y.shape[1:]), cost, stage))
                x = y
            return
        kind, cost = _layer_cost(m, out)
        layers.append(LayerCost(names[m], kind, tuple(inputs[0].shape[1:]), tuple(out.shape[1:]),
                                cost, m))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, counted)]
    handles += [m.register_forward_pre_hook(pre_hook) for m in model.modules()
                if isinstance(m, dse_nn.InvertedResidual)]
    was_training = model.training
    try:
        model.eval()
        p = next(iter(model.parameters()), None)
        x = torch.zeros(1, *input_size, dtype=p.dtype if p is not None else torch.float32,
                        device=p.device if p is not None else "cpu")
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return ModelCost(name or type(model).__name__, tuple(input_size), layers, _find_blocks(layers),
                     sum(p.numel() for p in model.parameters()),
                     sum(layer.cost.macs for layer in layers))


# ---------------------------------------------------------------- tables

def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:g}"


def _rows_to_text(header: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    def fmt(row):  # first column left-aligned, the others right-aligned
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def format_layer(spec: LayerSpec) -> str:
    """The comparison table for one layer."""
    costs = compare(spec)
    base = costs["standard"]
    rows = [[name.replace("_", " "), f"{c.params:,}", f"{c.macs:,}", f"{c.macs / base.macs:.4f}"]
            for name, c in costs.items()]
    kh, kw = spec.kernel
    ho, wo = spec.out_size
    title = (f"{spec.in_channels} -> {spec.out_channels} channels, {kh}x{kw} kernel, stride "
             f"{_pair(spec.stride)}, output {ho}x{wo}; 1/C_out + 1/K^2 = "
             f"{mac_ratio(spec.out_channels, spec.kernel):.4f}")
    return title + "\n" + _rows_to_text(["kind", "params", "MACs", "MACs / standard"], rows)


def _format_model(mc: ModelCost, all_layers: bool) -> str:
    out = [f"{mc.name}, input {'x'.join(map(str, mc.input_size))}, per image: "
           f"{_si(mc.params)} parameters, {_si(mc.macs)} MACs (convolution and linear layers)"]
    if all_layers:
        rows = [[layer.name, layer.kind, "x".join(map(str, layer.in_shape)),
                 "x".join(map(str, layer.out_shape)), _si(layer.cost.params), _si(layer.cost.macs)]
                for layer in mc.layers]
        out += ["", _rows_to_text(["layer", "kind", "input", "output", "params", "MACs"], rows)]
    rows = []
    for b in mc.blocks:
        c = b.compare()
        s = b.spec
        rows.append([b.names[0], f"{s.in_channels}->{s.out_channels}", "x".join(map(str, s.kernel)),
                     str(_pair(s.stride)[0]), "x".join(map(str, s.out_size)),
                     _si(c["standard"].macs), _si(c["spatially_separable"].macs),
                     _si(c["depthwise_separable"].macs),
                     f"{c['depthwise_separable'].macs / c['standard'].macs:.4f}",
                     f"{mac_ratio(s.out_channels, s.kernel):.4f}"])
    out += ["", f"{len(mc.blocks)} depthwise-separable blocks (depthwise conv + pointwise conv), "
                "MACs as standard, spatially separable (k x 1 + 1 x k) and depthwise-separable:",
            _rows_to_text(["block (depthwise layer)", "C_in->C_out", "k", "s", "out",
                           "standard", "kx1+1xk", "dw-separable", "dw-sep/std",
                           "1/C_out+1/k^2"], rows)]
    out += ["", "whole model with every block computed as:"]
    rows = []
    base = mc.as_if("standard")
    for kind in ("standard", "spatially_separable", "depthwise_separable"):
        c = mc.as_if(kind)
        rows.append([kind.replace("_", " "), _si(c.params), _si(c.macs),
                     f"{c.macs / base.macs:.3f}"])
    out.append(_rows_to_text(["blocks as", "params", "MACs", "MACs / standard"], rows))
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .models import MODELS

    parser = argparse.ArgumentParser(
        prog="python -m dsconv_ext.complexity",
        description="Parameters and MACs: standard vs spatially separable vs "
                    "depthwise-separable convolution, for a model or one layer.")
    parser.add_argument("--model", default="mobilenet_v1", choices=sorted(MODELS),
                        help="model of dsconv_ext.models (default mobilenet_v1)")
    parser.add_argument("--size", type=int, default=None,
                        help="input height and width (224 for a model, 1 for --layer)")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier (1.0)")
    parser.add_argument("--all-layers", action="store_true", help="also list every layer")
    parser.add_argument("--layer", nargs=3, type=int, metavar=("C_IN", "C_OUT", "K"),
                        help="compare one layer instead of a model")
    parser.add_argument("--stride", type=int, default=1, help="stride of --layer (1)")
    args = parser.parse_args(argv)
    if args.layer:
        c_in, c_out, k = args.layer
        try:
            print(format_layer(LayerSpec(c_in, c_out, k, args.size or 1, args.stride)))
        except ValueError as e:
            parser.error(str(e))
        return 0
    model = MODELS[args.model](width_mult=args.width)
    size = args.size or 224
    print(model_cost(model, (3, size, size), name=f"{args.model} (width {args.width:g})")
          .table(all_layers=args.all_layers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
