"""A PyTorch inference model lowered to a short list of plain ops (numpy weights, NCHW
shapes), which the ONNX and TFLite graph builders (peers/) translate one op at a time.

Supported: nn.Conv2d (any groups, padding given as numbers), BatchNorm2d after a conv (folded),
ReLU / ReLU6 / Hardswish / Hardsigmoid (modules or F.*), global average pooling
(AdaptiveAvgPool2d(1), F.adaptive_avg_pool2d(x, 1), x.mean((2, 3), keepdim)), flatten of a
[N, C, 1, 1] tensor, nn.Linear, Dropout / Identity, and tensor + and * (residuals,
squeeze-excite scaling). ReLU and ReLU6 right after a conv, linear or add are fused into it
(`act`), as both runtimes do. Anything else raises NotImplementedError naming the node.
"""
import operator
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

FUSABLE = ("relu", "relu6")
ACTIVATION_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish",
                      nn.Hardsigmoid: "hardsigmoid"}
ACTIVATION_FUNCTIONS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6",
                        F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid"}


@dataclass
class Op:
    """kind: conv | linear | act | add | mul | mean | flatten. `inputs` and `output` name
    values; `shape` is the output's (NCHW for 4-D values)."""
    kind: str
    inputs: List[str]
    output: str
    shape: Tuple[int, ...]
    weight: Optional[np.ndarray] = None   # conv [O, I/g, kh, kw]; linear [O, I]
    bias: Optional[np.ndarray] = None
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    act: Optional[str] = None             # fused (conv, linear, add) or the op's own (act)
    attrs: Dict = field(default_factory=dict)


@dataclass
class Graph:
    input: str
    input_shape: Tuple[int, ...]
    output: str
    output_shape: Tuple[int, ...]
    ops: List[Op]
    shapes: Dict[str, Tuple[int, ...]]    # every value's shape


def _np(t):
    return t.detach().to(torch.float32).contiguous().numpy().copy()


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class _Lowering:
    def __init__(self, gm):
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.nodes = {n.name: n for n in gm.graph.nodes}
        self.ops: List[Op] = []
        self.alias: Dict[str, str] = {}  # value -> the value it is (identity ops)
        self.shapes: Dict[str, Tuple[int, ...]] = {}

    def name(self, arg):
        if not isinstance(arg, fx.Node):
            raise NotImplementedError(f"constant operand {arg!r} is not supported")
        return self.alias.get(arg.name, arg.name)

    def producer(self, value):
        for op in reversed(self.ops):
            if op.output == value:
                return op
        return None

    def emit(self, node, kind, inputs, **kw):
        shape = tuple(node.meta["tensor_meta"].shape)
        self.shapes[node.name] = shape
        self.ops.append(Op(kind, inputs, node.name, shape, **kw))

    def same(self, node, arg):
        self.alias[node.name] = self.name(arg)

    def only_user(self, value, node):
        """Whether `node` is the one consumer of `value`, through identity ops only."""
        users = list(self.nodes[value].users)
        while len(users) == 1 and users[0] is not node and users[0].name in self.alias:
            users = list(users[0].users)
        return users == [node]

    def activation(self, node, kind, arg):
        src = self.name(arg)
        prev = self.producer(src)
        fusable = (kind in FUSABLE and prev is not None and prev.act is None
                   and prev.kind in ("conv", "linear", "add") and self.only_user(src, node))
        if fusable:
            prev.act = kind
            self.same(node, arg)
        else:
            self.emit(node, "act", [src], act=kind)

    def batch_norm(self, node, bn, arg):
        # imported here: `python -m bench` imports dsconv_ext only after bench.env has
        # taken the unbuilt source folder off sys.path
        from dsconv_ext.fold import batch_norm_params, fold_into
        src = self.name(arg)
        prev = self.producer(src)
        if (prev is None or prev.kind != "conv" or prev.act is not None
                or not self.only_user(src, node)):
            raise NotImplementedError(f"{node.name}: BatchNorm that does not follow a conv")
        w, b = fold_into(torch.from_numpy(prev.weight),
                         None if prev.bias is None else torch.from_numpy(prev.bias),
                         batch_norm_params(bn))
        prev.weight, prev.bias = _np(w), _np(b)
        self.same(node, arg)

    def call_module(self, node):
        m = self.modules[node.target]
        x = node.args[0]
        if isinstance(m, nn.Conv2d):
            if isinstance(m.padding, str) or m.padding_mode != "zeros":
                raise NotImplementedError(f"{node.target}: padding {m.padding!r} / "
                                          f"{m.padding_mode!r}; give padding as numbers")
            self.emit(node, "conv", [self.name(x)], weight=_np(m.weight),
                      bias=None if m.bias is None else _np(m.bias), stride=_pair(m.stride),
                      padding=_pair(m.padding), dilation=_pair(m.dilation), groups=m.groups)
        elif isinstance(m, nn.BatchNorm2d):
            self.batch_norm(node, m, x)
        elif type(m) in ACTIVATION_MODULES:
            self.activation(node, ACTIVATION_MODULES[type(m)], x)
        elif isinstance(m, nn.AdaptiveAvgPool2d) and _pair(m.output_size) == (1, 1):
            self.emit(node, "mean", [self.name(x)])
        elif isinstance(m, nn.Linear):
            self.emit(node, "linear", [self.name(x)], weight=_np(m.weight),
                      bias=None if m.bias is None else _np(m.bias))
        elif isinstance(m, (nn.Dropout, nn.Identity, nn.Flatten)):
            if isinstance(m, nn.Flatten):
                self.flatten(node, x)
            else:
                self.same(node, x)
        else:
            raise NotImplementedError(f"{node.target}: {type(m).__name__} is not supported")

    def flatten(self, node, x):
        shape = tuple(x.meta["tensor_meta"].shape)
        if len(shape) != 4 or shape[2:] != (1, 1):
            raise NotImplementedError(f"{node.name}: flatten of {shape}: only [N, C, 1, 1]")
        self.emit(node, "flatten", [self.name(x)])

    def call_function(self, node):
        fn, args = node.target, node.args
        if fn in ACTIVATION_FUNCTIONS:
            self.activation(node, ACTIVATION_FUNCTIONS[fn], args[0])
        elif fn in (operator.add, torch.add, operator.mul, torch.mul):
            kind = "add" if fn in (operator.add, torch.add) else "mul"
            self.emit(node, kind, [self.name(args[0]), self.name(args[1])])
        elif fn is F.adaptive_avg_pool2d and _pair(args[1]) == (1, 1):
            self.emit(node, "mean", [self.name(args[0])])
        elif fn is torch.flatten:
            self.flatten(node, args[0])
        else:
            raise NotImplementedError(f"{node.name}: function {fn} is not supported")

    def call_method(self, node):
        if node.target == "flatten":
            self.flatten(node, node.args[0])
        elif node.target == "mean" and node.meta["tensor_meta"].shape[2:] == (1, 1):
            self.emit(node, "mean", [self.name(node.args[0])])
        else:
            raise NotImplementedError(f"{node.name}: method .{node.target}() is not supported")


def lower(model: nn.Module, example: torch.Tensor) -> Graph:
    """The eval-mode `model` on inputs shaped like `example` (NCHW) as a Graph."""
    if model.training:
        raise RuntimeError("lower() needs an eval-mode model")
    gm = fx.symbolic_trace(model)
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    low = _Lowering(gm)
    graph_input = graph_output = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if graph_input is not None:
                raise NotImplementedError("models with more than one input are not supported")
            graph_input = node.name
            low.shapes[node.name] = tuple(example.shape)
        elif node.op == "output":
            graph_output = low.name(node.args[0])
        elif node.op in ("call_module", "call_function", "call_method"):
            getattr(low, node.op)(node)
        else:
            raise NotImplementedError(f"{node.name}: {node.op} nodes are not supported")
    return Graph(graph_input, tuple(example.shape), graph_output, low.shapes[graph_output],
                 low.ops, low.shapes)
