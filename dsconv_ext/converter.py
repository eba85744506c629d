"""dsconv_ext.convert(model): the model with its depthwise-separable patterns computed by the
fused modules of dsconv_ext.nn, same outputs.

Patterns: a depthwise conv -> (BatchNorm) -> (ReLU / ReLU6 / Hardswish) whose result goes only
to a pointwise conv -> (BatchNorm) -> (activation) becomes one SeparableConv2d; any other
depthwise or pointwise nn.Conv2d becomes a DepthwiseConv2d / PointwiseConv2d with the
BatchNorm and activation that follow it. A squeeze-excite (adaptive_avg_pool2d(x, 1) or
x.mean((2, 3), keepdim=True) -> 1x1 conv -> (activation) -> 1x1 conv -> Hardsigmoid / Sigmoid
-> multiplied with x, as in torchvision's SqueezeExcitation) becomes one SqueezeExcite; one
whose activation the ops do not apply (e.g. SiLU) keeps its steps, with its convolutions
converted one by one. Everything else is left as it is.

How:
1. torch.fx traces the model through its submodules, so patterns that cross module
   boundaries, functional calls (F.relu6, F.hardswish, F.batch_norm, x.clamp(0, 6)) and
   BatchNorm subclasses with their own forward (e.g. BatchNorm + activation) are seen.
2. The matches are applied as module edits (the first conv's slot gets the fused module, the
   other steps' slots FusedAway, an nn.Identity) when every step of every match is a module
   called exactly once: the model keeps its class and structure. Otherwise the traced graph
   is rewritten and the result is a torch.fx.GraphModule.
3. A model (or submodule) that cannot be traced is converted one level down: the consecutive
   children of a plain nn.Sequential are matched as a chain, any other nn.Conv2d child is
   replaced on its own, and every other child is converted the same way, recursively.
"""
import copy
import inspect
import operator
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils import parametrize

from . import nn as dse_nn
from ._chain import ChainMember
from ._recognize import activation_name, conv_kind, gate_name, is_plain
from .fold import BatchNormParams, batch_norm_params, fold_into

_BatchNorm = nn.modules.batchnorm._BatchNorm
_OUR_MODULES = (dse_nn.DepthwiseConv2d, dse_nn.PointwiseConv2d, dse_nn.SeparableConv2d,
                dse_nn.InvertedResidual, dse_nn.SqueezeExcite)


# ---------------------------------------------------------------- report

# Step labels counted as fused activations (the squeeze-excite gates included).
_FUSED_ACTIVATIONS = ("relu", "relu6", "hardswish", "hardsigmoid", "sigmoid")

@dataclass
class Replacement:
    path: str      # where the fused module is: the module it replaced whole, else the first
    #                conv's place
    kind: str      # 'inverted_residual', 'squeeze_excite', 'separable', 'depthwise',
    #                'pointwise', 'dense', 'conv', 'linear', 'dropout' or 'global_avg_pool'
    pattern: str   # what it replaced, e.g. 'depthwise+bn+relu6 -> pointwise+bn'
    replaced: List[str]  # the modules / calls it replaced, in order


@dataclass
class Skip:
    path: str      # module path, or the traced node's name for a functional call
    reason: str


@dataclass
class ConvertReport:
    """What convert() did. `str(report)` is a readable summary."""
    replaced: List[Replacement] = field(default_factory=list)
    skipped: List[Skip] = field(default_factory=list)
    untraced: List[Skip] = field(default_factory=list)  # modules converted child by child
    graph_module: bool = False  # the returned model is a torch.fx.GraphModule
    fused_sequentials: List[str] = field(default_factory=list)  # paths made FusedSequential

    @property
    def counts(self) -> Dict[str, int]:
        """Fused modules by kind, BatchNorms folded, activations fused, convolutions skipped."""
        kinds = Counter(r.kind for r in self.replaced)
        steps = [s for r in self.replaced for s in r.pattern.replace(" -> ", "+").split("+")]
        return {"inverted_residual": kinds["inverted_residual"],
                # by their pool step: a block's squeeze-excite is inside its inverted residual
                "squeeze_excite": sum(s == "pool" for s in steps),
                "separable": kinds["separable"],
                "depthwise": kinds["depthwise"], "pointwise": kinds["pointwise"],
                "dense": kinds["dense"],  # dense first layers (dsconv_ext.conv2d)
                "conv": kinds["conv"],  # other convolutions, kept with their BatchNorm folded in
                "linear": kinds["linear"],
                "dropout": kinds["dropout"],  # nn.Dropout -> dsconv_ext.nn.Dropout
                "global_avg_pool": kinds["global_avg_pool"],  # nn.AdaptiveAvgPool2d(1)
                "residual_adds_fused": sum(s == "add" for s in steps),
                "batchnorm_folded": sum(s == "bn" for s in steps),
                "activations_fused": sum(s in _FUSED_ACTIVATIONS for s in steps),
                "fused_sequential": len(self.fused_sequentials),
                "skipped": len(self.skipped)}

    @property
    def patterns(self) -> Dict[str, int]:
        """How many times each pattern was fused."""
        return dict(Counter(r.pattern for r in self.replaced).most_common())

    def __str__(self) -> str:
        c = self.counts
        others = c["linear"] + c["dropout"] + c["global_avg_pool"]
        lines = [f"dsconv_ext.convert: {len(self.replaced) - others} fused modules "
                 f"({c['inverted_residual']} inverted residual, {c['squeeze_excite']} squeeze-excite, "
                 f"{c['separable']} separable, "
                 f"{c['depthwise']} depthwise, {c['pointwise']} pointwise, {c['dense']} dense, "
                 f"{c['conv']} other convolution with its BatchNorm folded), "
                 f"{c['linear']} linear, {c['dropout']} dropout, "
                 f"{c['global_avg_pool']} global average pool, "
                 f"{c['batchnorm_folded']} BatchNorms folded, {c['activations_fused']} activations "
                 f"and {c['residual_adds_fused']} residual adds fused, "
                 f"{c['fused_sequential']} Sequential run as one call (FusedSequential); "
                 f"returned as {'a torch.fx.GraphModule' if self.graph_module else 'the model'}"]
        lines += [f"  {n:4d} x {p}" for p, n in self.patterns.items()]
        if self.skipped:
            lines.append(f"skipped ({len(self.skipped)}):")
            by_reason = Counter(s.reason for s in self.skipped)
            for reason, n in by_reason.most_common():
                paths = [s.path for s in self.skipped if s.reason == reason]
                shown = ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")
                lines.append(f"  {n:4d} x {reason} [{shown}]")
        for u in self.untraced:
            lines.append(f"not traceable, converted child by child: {u.path or '<model>'}: {u.reason}")
        return "\n".join(lines)


# ---------------------------------------------------------------- tracing

def _skip_input_check(_input):
    return None


class _Tracer(fx.Tracer):
    """Keeps convolutions, plain BatchNorms and dsconv_ext modules as single calls; traces
    through everything else that is not a torch.nn module."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (nn.Conv2d,) + _OUR_MODULES):
            return True
        if isinstance(m, _BatchNorm) and type(m).forward is _BatchNorm.forward:
            return True
        return super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        # A BatchNorm subclass with its own forward is traced through; when it calls
        # BatchNorm.forward, the input-rank check there (a Python `if` on a traced value)
        # would stop the trace, so it is switched off for this module while tracing.
        if isinstance(m, _BatchNorm) and type(m).forward is not _BatchNorm.forward:
            m._check_input_dim = _skip_input_check
            try:
                return super().call_module(m, forward, args, kwargs)
            finally:
                del m._check_input_dim
        return super().call_module(m, forward, args, kwargs)


def _trace(module: nn.Module) -> fx.GraphModule:
    tracer = _Tracer()
    graph = tracer.trace(module)
    return fx.GraphModule(tracer.root, graph, type(module).__name__)


def _chain_graph(module: nn.Module, names: List[str], chained: bool) -> fx.GraphModule:
    """A graph that calls the children `names` of `module` in order, each on the previous
    one's output (`chained`, what a plain nn.Sequential does), or each on its own input."""
    graph = fx.Graph()
    if chained:
        value = graph.placeholder("x")
        for name in names:
            value = graph.call_module(name, (value,))
        graph.output(value)
    else:
        graph.output(tuple(graph.call_module(name, (graph.placeholder(f"x{i}"),))
                           for i, name in enumerate(names)))
    return fx.GraphModule(module, graph)


# ---------------------------------------------------------------- recognizing steps

@dataclass
class _Step:
    node: fx.Node
    role: str                           # 'conv', 'bn', 'act', 'add' (a residual) or 'pass' (an nn.Identity)
    label: str                          # in pattern strings: 'depthwise', 'bn', 'relu6', ...
    path: Optional[str] = None          # the module's path, None for a functional call
    conv: Optional[nn.Conv2d] = None
    bn: Optional[BatchNormParams] = None
    activation: Optional[str] = None


_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_}
_CLAMP_FUNCTIONS = {torch.clamp, torch.clip, torch.clamp_}
_BN_SIGNATURE = inspect.signature(F.batch_norm)


def _bound(args, kwargs, lo_name, hi_name, default=(None, None)):
    """(min, max) of a clamp / hardtanh call given its arguments after the input."""
    lo = args[0] if len(args) > 0 else kwargs.get(lo_name, default[0])
    hi = args[1] if len(args) > 1 else kwargs.get(hi_name, default[1])
    return lo, hi


def _clamp_activation(lo, hi) -> Optional[str]:
    def num(v, x):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v == x
    if num(lo, 0) and num(hi, 6):
        return "relu6"
    if num(lo, 0) and hi is None:
        return "relu"
    return None


def _functional_activation(node: fx.Node) -> Optional[str]:
    args, kwargs = node.args[1:], node.kwargs
    if node.op == "call_function":
        t = node.target
        if t in _RELU_FUNCTIONS:
            return "relu"
        if t is F.relu6:
            return "relu6"
        if t is F.hardswish:
            return "hardswish"
        if t is F.hardtanh:
            return _clamp_activation(*_bound(args, kwargs, "min_val", "max_val", (-1.0, 1.0)))
        if t in _CLAMP_FUNCTIONS:
            return _clamp_activation(*_bound(args, kwargs, "min", "max"))
    if node.op == "call_method":
        if node.target in ("relu", "relu_"):
            return "relu"
        if node.target in ("clamp", "clamp_", "clip", "clip_"):
            return _clamp_activation(*_bound(args, kwargs, "min", "max"))
    return None


class _GraphView:
    """Recognizes steps in a traced graph and follows values from one step to the next."""

    def __init__(self, gm: fx.GraphModule, module_only: bool, uses_of_module: Counter,
                 root: nn.Module):
        self.gm = gm
        self.root = root  # the module traced (gm holds only the leaf modules it calls)
        self.module_only = module_only  # only module calls can be matched (untraced chains)
        self.modules = dict(gm.named_modules())
        nodes = list(gm.graph.nodes)
        self.calls = Counter(n.target for n in nodes if n.op == "call_module")
        self.attr_reads = [n.target for n in nodes if n.op == "get_attr"]
        self.uses_of_module = uses_of_module  # id(module) -> number of places in the model

    def _module(self, node: fx.Node) -> Optional[nn.Module]:
        return self.modules.get(node.target) if node.op == "call_module" else None

    def attributes_read(self, path: str) -> bool:
        return any(t.startswith(path + ".") for t in self.attr_reads)

    def editable(self, path: Optional[str]) -> bool:
        """The module at `path` can be swapped in place: called once, in one place of the
        model, and none of its attributes read directly."""
        if path is None:
            return False
        module = self.modules[path]
        return (self.calls[path] == 1 and self.uses_of_module[id(module)] == 1
                and not self.attributes_read(path))

    def _user(self, node: fx.Node) -> Optional[fx.Node]:
        """The one node that takes node's value, as its data input and nowhere else."""
        if len(node.users) != 1:
            return None
        user = next(iter(node.users))
        if not user.args or user.args[0] is not node:
            return None
        if node in user.args[1:] or node in user.kwargs.values():
            return None
        if self.module_only and not (user.op == "call_module" and self.editable(user.target)):
            return None
        return user

    def follow(self, node: fx.Node, passed: List[_Step]) -> Optional[fx.Node]:
        """The next step after node: its one user, past nn.Identity calls (appended to
        `passed`, so a match that goes on can take them out too)."""
        user = self._user(node)
        while user is not None and is_plain(self._module(user), nn.Identity):
            passed.append(_Step(user, "pass", "identity", path=user.target))
            user = self._user(user)
        return user

    def conv_step(self, node: fx.Node) -> Tuple[Optional[_Step], Optional[str]]:
        """(step, None) for a convertible nn.Conv2d call; (None, why not) for another conv
        call; (None, None) for anything else."""
        if node.op == "call_function" and node.target is F.conv2d:
            return None, "functional F.conv2d call (only nn.Conv2d modules are converted)"
        module = self._module(node)
        if not isinstance(module, nn.Conv2d):
            return None, None
        kind, why = conv_kind(module)
        if kind is None:
            return None, why
        if not node.args or node.kwargs:
            return None, "called with keyword arguments"
        if self.calls[node.target] != 1:
            return None, f"called {self.calls[node.target]} times (shared weights)"
        if self.uses_of_module[id(module)] != 1:
            return None, "the same module sits in several places of the model"
        if self.attributes_read(node.target):
            return None, "its parameters are also read directly in forward"
        return _Step(node, "conv", kind, path=node.target, conv=module), None

    def bn_step(self, node: fx.Node, channels: int) -> Tuple[Optional[_Step], Optional[str]]:
        """(step, None) for a foldable BatchNorm; (None, why not) for another BatchNorm;
        (None, None) for anything else."""
        module = self._module(node)
        if isinstance(module, _BatchNorm):
            try:
                params = batch_norm_params(module)
            except (TypeError, RuntimeError, ValueError) as e:
                return None, f"not folded: {e}"
            step = _Step(node, "bn", "bn", path=node.target, bn=params)
        elif node.op == "call_function" and node.target is F.batch_norm:
            params, why = self._functional_bn(node)
            if params is None:
                return None, f"F.batch_norm not folded: {why}"
            step = _Step(node, "bn", "bn", bn=params)
        else:
            return None, None
        if step.bn.running_mean.numel() != channels:
            return None, "not folded: channel count differs from the convolution's"
        return step, None

    def _functional_bn(self, node: fx.Node):
        try:
            bound = _BN_SIGNATURE.bind(*node.args, **node.kwargs)
        except TypeError as e:
            return None, str(e)
        bound.apply_defaults()
        a = bound.arguments
        if a["training"] is not False:
            return None, f"training={a['training']!r}"
        if not isinstance(a["eps"], (int, float)):
            return None, "eps is not a constant"
        tensors = {}
        for name in ("running_mean", "running_var", "weight", "bias"):
            arg = a[name]
            if arg is None and name in ("weight", "bias"):
                tensors[name] = None
            elif isinstance(arg, fx.Node) and arg.op == "get_attr":
                tensors[name] = self._attr(arg.target)
            else:
                return None, f"{name} is not a module parameter or buffer"
            if name.startswith("running") and not isinstance(tensors[name], torch.Tensor):
                return None, f"{name} is not a tensor"
        return BatchNormParams(tensors["running_mean"], tensors["running_var"],
                               tensors["weight"], tensors["bias"], float(a["eps"])), None

    def _attr(self, target: str):
        value = self.gm
        for part in target.split("."):
            value = getattr(value, part)
        return value

    def act_step(self, node: fx.Node) -> Optional[_Step]:
        module = self._module(node)
        if module is not None:
            name = activation_name(module)
            return _Step(node, "act", name, path=node.target, activation=name) if name else None
        name = _functional_activation(node)
        return _Step(node, "act", name, activation=name) if name else None


# ---------------------------------------------------------------- matching

@dataclass
class _Stage:
    conv: _Step
    bn: Optional[_Step] = None
    act: Optional[_Step] = None
    steps: List[_Step] = field(default_factory=list)  # in data-flow order, nn.Identity included

    @property
    def label(self) -> str:
        return "+".join(s.label for s in (self.conv, self.bn, self.act) if s is not None)


@dataclass
class _Match:
    stages: List[_Stage]
    residual: Optional[_Step] = None  # the add of the block's input, fused too
    block_path: Optional[str] = None  # the module whose forward is exactly this match

    @property
    def steps(self) -> List[_Step]:
        steps = [s for stage in self.stages for s in stage.steps]
        return steps + [self.residual] if self.residual is not None else steps

    @property
    def labels(self) -> List[str]:
        return [stage.conv.label for stage in self.stages]

    @property
    def kind(self) -> str:
        if self.labels[0] == "pointwise" and len(self.stages) > 1 or self.residual is not None:
            return "inverted_residual"
        return "separable" if len(self.stages) == 2 else self.labels[0]

    @property
    def slot(self) -> str:  # where the fused module goes in a rewritten graph
        return self.steps[0].node.target

    @property
    def pattern(self) -> str:
        return " -> ".join([stage.label for stage in self.stages] +
                           (["add"] if self.residual is not None else []))

    def build(self) -> nn.Module:
        if self.labels == ["conv"]:  # an nn.Conv2d with the BatchNorm folded in
            stage = self.stages[0]
            conv = copy.deepcopy(stage.conv.conv)
            weight, bias = fold_into(conv.weight, conv.bias, stage.bn.bn)
            conv.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
            conv.bias = nn.Parameter(bias, requires_grad=conv.weight.requires_grad)
            return conv
        modules = []
        classes = {"depthwise": dse_nn.DepthwiseConv2d, "pointwise": dse_nn.PointwiseConv2d,
                   "dense": dse_nn.DenseConv2d}
        for stage in self.stages:
            cls = classes[stage.conv.label]
            modules.append(cls.from_modules(stage.conv.conv, stage.bn.bn if stage.bn else None,
                                            stage.act.activation if stage.act else None))
        if self.kind == "inverted_residual":
            expand = modules.pop(0) if self.labels[0] == "pointwise" else None
            project = modules[1] if len(modules) > 1 else None
            return dse_nn.InvertedResidual.from_parts(expand, modules[0], project,
                                                      residual=self.residual is not None)
        return modules[0] if len(modules) == 1 else dse_nn.SeparableConv2d.from_parts(*modules)


def _stage(view: _GraphView, conv: _Step, skipped: List[Skip]) -> _Stage:
    """conv and the BatchNorm and activation that follow it, where they do."""
    stage = _Stage(conv, steps=[conv])
    passed: List[_Step] = []
    nxt = view.follow(conv.node, passed)
    if nxt is not None:
        bn, why = view.bn_step(nxt, conv.conv.out_channels)
        if why:
            skipped.append(Skip(nxt.target if nxt.op == "call_module" else nxt.name, why))
            return stage
        if bn is not None:
            stage.bn = bn
            stage.steps += passed + [bn]
            passed = []
            nxt = view.follow(bn.node, passed)
    if nxt is not None:
        act = view.act_step(nxt)
        if act is not None:
            stage.act = act
            stage.steps += passed + [act]
    return stage


def _next_conv(view: _GraphView, stage: _Stage, label: str) -> Optional[_Stage]:
    """The `label` convolution stage that takes `stage`'s output and nothing else does."""
    passed: List[_Step] = []
    nxt = view.follow(stage.steps[-1].node, passed)
    if nxt is None:
        return None
    conv, _ = view.conv_step(nxt)  # a refused conv is reported when the loop gets to it
    if conv is None or conv.label != label:
        return None
    nxt_stage = _stage(view, conv, [])
    nxt_stage.steps[:0] = passed
    return nxt_stage


def _find_matches(view: _GraphView, skipped: List[Skip]) -> List[_Match]:
    """Chains from each unclaimed convolution, in graph order: depthwise -> pointwise
    (separable), pointwise -> depthwise (-> pointwise) (inverted residual), or one stage;
    a block whose last stage's output is added to its input also takes the add. Squeeze-
    excites are found first; their convolutions are theirs."""
    matches = _find_squeeze_excites(view)
    claimed = {s.node for m in matches for s in m.steps}
    for node in view.gm.graph.nodes:
        if node in claimed:
            continue
        conv, why = view.conv_step(node)
        if conv is None:
            if why:
                skipped.append(Skip(node.target if node.op == "call_module" else node.name, why))
                folded = _bn_fold_only(view, node)
                if folded is not None:
                    claimed.update(s.node for s in folded.steps)
                    matches.append(folded)
            continue
        stages = [_stage(view, conv, skipped)]
        follow = {"depthwise": ["pointwise"], "pointwise": ["depthwise", "pointwise"], "dense": []}
        for label in follow[conv.label]:
            nxt = _next_conv(view, stages[-1], label)
            if nxt is None:
                break
            stages.append(nxt)
        if [s.conv.label for s in stages] == ["pointwise", "pointwise"]:  # not a block
            stages = stages[:1]
        match = _Match(stages)
        if [s.conv.label for s in stages] in (["depthwise", "pointwise"],
                                              ["pointwise", "depthwise", "pointwise"]):
            _take_residual(view, match)
        claimed.update(s.node for s in match.steps)
        matches.append(match)
    matches = _merge_squeeze_excite_blocks(view, matches)
    for m in matches:  # a module computing exactly a match is replaced whole (fewer calls)
        if m.block_path is None:
            m.block_path = _block_module(view, m.steps[-1].node, {s.node for s in m.steps})
    return matches


def _bn_fold_only(view: _GraphView, node: fx.Node) -> Optional[_Match]:
    """A convolution the ops do not compute (e.g. a network's first, standard one) still
    gets the BatchNorm after it folded in: the match replaces it by a folded nn.Conv2d and
    the BatchNorm by nn.Identity (its activation stays a module of its own)."""
    module = view._module(node)
    if not is_plain(module, nn.Conv2d) or parametrize.is_parametrized(module) \
            or not view.editable(node.target):
        return None
    stage = _stage(view, _Step(node, "conv", "conv", path=node.target, conv=module), [])
    if stage.bn is None:
        return None
    stage.act = None
    stage.steps = stage.steps[:stage.steps.index(stage.bn) + 1]
    return _Match([stage])


_ADD_FUNCTIONS = {operator.add, torch.add}


def _block_module(view: _GraphView, anchor: fx.Node, nodes: set) -> Optional[str]:
    """The path of the outermost module whose forward computes exactly `nodes` (`anchor`,
    one of them, inside it), where that module sits in one place of the model with none of
    its attributes read directly (so replacing that module replaces exactly `nodes`); else
    None."""
    found = None
    for path, _ in reversed(list((anchor.meta.get("nn_module_stack") or {}).values())):
        inside = {n for n in view.gm.graph.nodes
                  if any(p == path for p, _ in (n.meta.get("nn_module_stack") or {}).values())}
        if not path or not inside <= nodes:
            break
        if inside != nodes:
            continue
        try:
            module = view.root.get_submodule(path)
        except AttributeError:
            break
        if view.uses_of_module[id(module)] != 1 or view.attributes_read(path):
            break
        found = path
    return found


def _residual_add(last: fx.Node, block_input) -> Optional[fx.Node]:
    """The add of `last` and `block_input` that is `last`'s only use, or None."""
    if len(last.users) != 1:
        return None
    add = next(iter(last.users))
    is_add = (add.op == "call_function" and add.target in _ADD_FUNCTIONS) or \
        (add.op == "call_method" and add.target == "add")
    if not is_add or add.kwargs or len(add.args) != 2 or set(add.args) != {last, block_input}:
        return None
    return add


def _take_residual(view: _GraphView, match: _Match) -> None:
    """match takes the residual add that follows it where that add sums the block's input and
    its output, and the module whose forward computes the add computes exactly the match
    and the add (so that module is what the fused block replaces)."""
    add = _residual_add(match.stages[-1].steps[-1].node, match.stages[0].conv.node.args[0])
    if add is None:
        return
    path = _block_module(view, add, {s.node for s in match.steps} | {add})
    if path is not None:
        match.residual = _Step(add, "add", "add")
        match.block_path = path


@dataclass
class _SeBlockMatch:
    """A block with a squeeze-excite (MobileNetV3's): the inverted residual up to the SE
    (`head`), the SE, the pointwise projection and, where there is one, the add of the
    block's input, all in one module whose forward computes exactly these: one
    InvertedResidual holding the SqueezeExcite, whose projection adds the residual as it
    stores."""
    head: _Match
    se: "_SeMatch"
    project: _Match
    add: Optional[_Step]
    block_path: str

    kind = "inverted_residual"

    @property
    def steps(self) -> List[_Step]:
        tail = [self.add] if self.add is not None else []
        return self.head.steps + self.se.steps + self.project.steps + tail

    @property
    def pattern(self) -> str:
        return " -> ".join([self.head.pattern, self.se.pattern, self.project.pattern] +
                           (["add"] if self.add is not None else []))

    @property
    def slot(self) -> str:
        return self.head.slot

    def build(self) -> nn.Module:
        head = self.head.build()
        if isinstance(head, dse_nn.DepthwiseConv2d):  # no expand stage
            expand, depthwise = None, head
        else:
            expand, depthwise = head.expand, head.depthwise
        return dse_nn.InvertedResidual.from_parts(expand, depthwise, self.project.build(),
                                                  residual=self.add is not None,
                                                  se=self.se.build())


def _merge_squeeze_excite_blocks(view: _GraphView, matches: list) -> list:
    """Each squeeze-excite whose input is an inverted residual's (or a depthwise conv's)
    output and nothing else's, whose output only a pointwise conv takes (that conv's output
    then added to the block's input, or not), becomes one _SeBlockMatch with those, where
    one module computes exactly them."""
    by_last = {m.steps[-1].node: m for m in matches if isinstance(m, _Match)}
    by_first = {m.steps[0].node: m for m in matches if isinstance(m, _Match)}
    merged = {}
    for se in [m for m in matches if isinstance(m, _SeMatch)]:
        pool, mul = se.steps[0].node, se.steps[-1].node
        head = by_last.get(pool.args[0])
        if head is None or head.residual is not None or head.labels not in (
                ["pointwise", "depthwise"], ["depthwise"]) or len(pool.args[0].users) != 2:
            continue
        project = by_first.get(next(iter(mul.users))) if len(mul.users) == 1 else None
        if project is None or project.labels != ["pointwise"] or project.residual is not None:
            continue
        add = _residual_add(project.steps[-1].node, head.steps[0].node.args[0])
        block = _SeBlockMatch(head, se, project, _Step(add, "add", "add") if add else None, "")
        path = _block_module(view, block.steps[-1].node, {s.node for s in block.steps})
        if path is not None:
            block.block_path = path
            merged.update({id(head): block, id(se): None, id(project): None})
    out = []
    for m in matches:
        if id(m) not in merged:
            out.append(m)
        elif merged[id(m)] is not None:
            out.append(merged[id(m)])
    return out


# ---------------------------------------------------------------- squeeze-excite

@dataclass
class _SeMatch:
    """pool -> fc1 (-> act) -> fc2 -> gate -> * x: one SqueezeExcite."""
    steps: List[_Step]   # in data-flow order, nn.Identity calls included
    fc1: _Step
    fc2: _Step
    activation: Optional[str]
    gate: str
    block_path: Optional[str] = None

    kind = "squeeze_excite"

    @property
    def pattern(self) -> str:
        return " -> ".join(s.label for s in self.steps if s.role != "pass")

    @property
    def slot(self) -> str:
        return self.fc1.path

    def build(self) -> nn.Module:
        return dse_nn.SqueezeExcite.from_modules(self.fc1.conv, self.fc2.conv, self.activation,
                                                 self.gate)


_MUL_FUNCTIONS = {operator.mul, torch.mul}
_SIGMOID_FUNCTIONS = {torch.sigmoid, F.sigmoid}


def _is_int_pair(v, values) -> bool:
    return isinstance(v, (tuple, list)) and sorted(v) == sorted(values)


def _is_global_pool(view: _GraphView, node: fx.Node) -> bool:
    """adaptive_avg_pool2d(x, 1) as a module or a call, or x.mean((2, 3), keepdim=True)."""
    module = view._module(node)
    if module is not None:
        return is_plain(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1), [1, 1])
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        return len(node.args) + len(node.kwargs) == 2 and size in (1, (1, 1), [1, 1])
    is_mean = (node.op == "call_function" and node.target is torch.mean) or \
        (node.op == "call_method" and node.target == "mean")
    if not is_mean or set(node.kwargs) - {"dim", "keepdim"}:
        return False
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    return len(node.args) <= 3 and keepdim is True and \
        (_is_int_pair(dim, (2, 3)) or _is_int_pair(dim, (-2, -1)))


def _gate_step(view: _GraphView, node: fx.Node) -> Optional[_Step]:
    module = view._module(node)
    if module is not None:
        name = gate_name(module)
    elif node.op == "call_function" and node.target is F.hardsigmoid and len(node.args) == 1 \
            and set(node.kwargs) <= {"inplace"}:
        name = "hardsigmoid"
    elif (node.op == "call_function" and node.target in _SIGMOID_FUNCTIONS
          or node.op == "call_method" and node.target in ("sigmoid", "sigmoid_")) \
            and len(node.args) == 1 and not node.kwargs:
        name = "sigmoid"
    else:
        name = None
    return _Step(node, "act", name, path=node.target if module is not None else None) \
        if name else None


def _squeeze_excite(view: _GraphView, pool: fx.Node) -> Optional[_SeMatch]:
    """The squeeze-excite that starts at `pool`, or None."""
    if not _is_global_pool(view, pool) or not pool.args:
        return None
    x = pool.args[0]
    path = view._module(pool) is not None and pool.target or None
    steps = [_Step(pool, "pool", "pool", path=path)]
    nxt = view.follow(pool, steps)
    fc1 = view.conv_step(nxt)[0] if nxt is not None else None
    if fc1 is None or fc1.label != "pointwise":
        return None
    steps.append(fc1)
    nxt = view.follow(fc1.node, steps)
    act = view.act_step(nxt) if nxt is not None else None
    if act is not None:
        steps.append(act)
        nxt = view.follow(act.node, steps)
    fc2 = view.conv_step(nxt)[0] if nxt is not None else None
    if fc2 is None or fc2.label != "pointwise" or fc2.conv.in_channels != fc1.conv.out_channels \
            or fc2.conv.out_channels != fc1.conv.in_channels:
        return None
    steps.append(fc2)
    nxt = view.follow(fc2.node, steps)
    gate = _gate_step(view, nxt) if nxt is not None else None
    if gate is None or len(gate.node.users) != 1:
        return None
    steps.append(gate)
    mul = next(iter(gate.node.users))
    is_mul = (mul.op == "call_function" and mul.target in _MUL_FUNCTIONS) or \
        (mul.op == "call_method" and mul.target == "mul")
    if not is_mul or mul.kwargs or len(mul.args) != 2 or set(mul.args) != {gate.node, x}:
        return None
    steps.append(_Step(mul, "mul", "mul"))
    match = _SeMatch(steps, fc1, fc2, act.activation if act else None, gate.label)
    match.block_path = _block_module(view, mul, {s.node for s in steps})
    return match


def _find_squeeze_excites(view: _GraphView) -> List[_SeMatch]:
    if view.module_only:  # an untraced chain of modules has no multiplication
        return []
    return [m for m in (_squeeze_excite(view, n) for n in view.gm.graph.nodes) if m is not None]


# ---------------------------------------------------------------- applying

def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent_path), name, module)


class FusedAway(nn.Identity):
    """What convert() leaves in the slot of a step it fused into the module before it (a
    BatchNorm, an activation, a second conv) where no module computing exactly the match
    was replaced whole: returns its input. Its __call__ skips nn.Module's hook machinery,
    which costs more than the step itself (with 50-65 plain nn.Identity slots, as converted
    MobileNets kept before blocks were replaced whole, a batch-1 forward took about 1%
    longer; V2, V3-Large on Zen 3). Hooks registered on it do not run."""

    def __call__(self, input, *args, **kwargs):
        return input


def _apply_to_modules(root: nn.Module, matches: List[_Match]) -> None:
    for match in matches:
        if match.block_path is not None:  # the whole block module is the match
            _set_submodule(root, match.block_path, match.build())
            continue
        steps = match.steps
        _set_submodule(root, steps[0].path, match.build())
        for step in steps[1:]:
            _set_submodule(root, step.path, FusedAway())


def _apply_to_graph(gm: fx.GraphModule, matches: List[_Match]) -> fx.GraphModule:
    graph = gm.graph
    freed = set()
    for match in matches:
        steps = match.steps
        first, last = steps[0].node, steps[-1].node
        gm.add_submodule(match.slot, match.build())  # takes the first conv's place
        # Called where the first step was: its input may be changed in place later on.
        with graph.inserting_before(first):
            fused = graph.call_module(match.slot, (first.args[0],))
        last.replace_all_uses_with(fused)
        inputs = set()
        for step in reversed(steps):
            inputs.update(step.node.all_input_nodes)
            graph.erase_node(step.node)
        for node in inputs:  # parameters / buffers only the erased calls read (F.batch_norm's)
            if node.op == "get_attr" and not node.users:
                freed.add(node.target)
                graph.erase_node(node)
    graph.lint()
    still_read = {n.target for n in graph.nodes if n.op == "get_attr"}
    for target in freed - still_read:
        owner_path, _, name = target.rpartition(".")
        owner = gm.get_submodule(owner_path)
        # Only from the root and the bare containers GraphModule made; a real module keeps
        # its parameters (it may still be called).
        if owner is gm or type(owner) is nn.Module:
            delattr(owner, name)
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


# ---------------------------------------------------------------- driver

def _with_prefix(prefix: str, matches: List[_Match], skipped: List[Skip], report: ConvertReport):
    def full(name):
        return prefix + name
    for m in matches:
        where = m.block_path if m.block_path is not None else m.steps[0].path or m.steps[0].node.name
        report.replaced.append(Replacement(
            full(where), m.kind, m.pattern,
            [full(s.path) if s.path else s.node.name for s in m.steps]))
    report.skipped.extend(Skip(full(s.path), s.reason) for s in skipped)


def _convert(module: nn.Module, prefix: str, uses: Counter, report: ConvertReport) -> nn.Module:
    """module converted (the same object edited, or a GraphModule); `prefix` is its path."""
    if isinstance(module, _OUR_MODULES) or not list(module.children()):
        return module  # nothing inside to convert (a lone conv is handled by its parent)
    if isinstance(module, (nn.ModuleList, nn.ModuleDict)):  # containers, never called
        return _convert_children(module, prefix, uses, report)
    try:
        gm = _trace(module)
    except Exception as e:  # noqa: BLE001  (any failure to trace means: go one level down)
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        report.untraced.append(Skip(prefix.rstrip("."), f"{type(e).__name__}: {message}"))
        return _convert_children(module, prefix, uses, report)
    skipped: List[Skip] = []
    view = _GraphView(gm, module_only=False, uses_of_module=uses, root=module)
    matches = _find_matches(view, skipped)
    if all(m.block_path is not None or all(view.editable(s.path) for s in m.steps)
           for m in matches):
        _with_prefix(prefix, matches, skipped, report)
        _apply_to_modules(module, matches)
        return module
    for m in matches:  # the rewritten graph calls each fused module from its first step's slot
        m.block_path = None
    _with_prefix(prefix, matches, skipped, report)
    if prefix == "":
        report.graph_module = True
    return _apply_to_graph(gm, matches)


def _convert_children(module: nn.Module, prefix: str, uses: Counter,
                      report: ConvertReport) -> nn.Module:
    names = [name for name, _ in module.named_children()]
    if is_plain(module, nn.Sequential):
        chain, chained = names, True
    else:
        chain = [n for n in names if isinstance(getattr(module, n), nn.Conv2d)]
        chained = False
    handled = set()
    if chain:
        view = _GraphView(_chain_graph(module, chain, chained), module_only=True,
                          uses_of_module=uses, root=module)
        skipped: List[Skip] = []
        matches = _find_matches(view, skipped)
        _with_prefix(prefix, matches, skipped, report)
        _apply_to_modules(module, matches)
        handled = {s.path for m in matches for s in m.steps}
    for name in names:
        if name in handled:
            continue
        child = getattr(module, name)
        new = _convert(child, f"{prefix}{name}.", uses, report)
        if new is not child:
            setattr(module, name, new)
    return module


def _convert_linears(model: nn.Module, report: ConvertReport) -> nn.Module:
    """Every nn.Linear module (the class itself, not a subclass) becomes a dsconv_ext.nn.Linear
    holding the same parameters; a module used in several places is replaced by one. In an
    nn.Sequential, an activation module right after a Linear used once is fused into it
    (its slot gets a FusedAway), as convert fuses those after convolutions."""
    if type(model) is nn.Linear:
        report.replaced.append(Replacement("", "linear", "linear", [""]))
        return dse_nn.Linear.from_linear(model)
    uses = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    new: Dict[int, nn.Module] = {}
    for parent_path, parent in list(model.named_modules()):
        names = list(parent._modules)
        for i, name in enumerate(names):  # parent._modules, as named_children skips repeats
            child = parent._modules[name]
            if type(child) is not nn.Linear:
                continue
            path = f"{parent_path}.{name}" if parent_path else name
            nxt = parent._modules[names[i + 1]] if i + 1 < len(names) else None
            act = activation_name(nxt) if nxt is not None else None
            if (act is not None and is_plain(parent, nn.Sequential) and uses[id(child)] == 1
                    and uses[id(nxt)] == 1):
                act_path = f"{parent_path}.{names[i + 1]}" if parent_path else names[i + 1]
                setattr(parent, name, dse_nn.Linear.from_linear(child, act))
                setattr(parent, names[i + 1], FusedAway())
                report.replaced.append(Replacement(path, "linear", f"linear+{act}",
                                                   [path, act_path]))
                continue
            if id(child) not in new:
                new[id(child)] = dse_nn.Linear.from_linear(child)
                report.replaced.append(Replacement(path, "linear", "linear", [path]))
            setattr(parent, name, new[id(child)])
    return model


def _replace_leaf_modules(model: nn.Module, report: ConvertReport, kind: str, wanted,
                          make) -> nn.Module:
    """Every module `wanted` accepts becomes make(module), reported as `kind`; one used in
    several places is replaced by one (it stays shared)."""
    if wanted(model):
        report.replaced.append(Replacement("", kind, kind, [""]))
        return make(model)
    new: Dict[int, nn.Module] = {}
    for parent_path, parent in list(model.named_modules()):
        for name, child in list(parent._modules.items()):
            if child is None or not wanted(child):
                continue
            if id(child) not in new:
                path = f"{parent_path}.{name}" if parent_path else name
                new[id(child)] = make(child)
                report.replaced.append(Replacement(path, kind, kind, [path]))
            setattr(parent, name, new[id(child)])
    return model


# Modules (the classes themselves, not subclasses) swapped for ones that compute the same
# with less overhead, after the fusions: (report kind, which, the replacement).
# nn.Dropout -> dsconv_ext.nn.Dropout: no F.dropout call in eval mode. nn.AdaptiveAvgPool2d(1)
# (a classifier head's; a squeeze-excite's pool is fused by then) -> GlobalAvgPool2d: one op.
_LEAF_REPLACEMENTS = [
    ("dropout", lambda m: type(m) is nn.Dropout, dse_nn.Dropout.from_dropout),
    ("global_avg_pool",
     lambda m: type(m) is nn.AdaptiveAvgPool2d and m.output_size in (1, (1, 1), [1, 1]),
     lambda m: dse_nn.GlobalAvgPool2d().train(m.training)),
]


def convert(model: nn.Module, inplace: bool = False, report: bool = False,
            pack_weights: bool = True) -> Union[nn.Module, Tuple[nn.Module, ConvertReport]]:
    """`model` with its depthwise / pointwise convolutions (and the BatchNorms and ReLU /
    ReLU6 / Hardswish activations that follow them) replaced by the fused modules of
    dsconv_ext.nn, its nn.Linear modules by dsconv_ext.nn.Linear (the same parameters;
    batch-1 calls on all threads), its nn.Dropout modules by dsconv_ext.nn.Dropout (no
    dispatcher call in eval mode) and the nn.AdaptiveAvgPool2d(1) modules the fusions leave
    by dsconv_ext.nn.GlobalAvgPool2d (one op); same outputs within float32 rounding. The model must be in
    eval mode (BatchNorms are folded into the weights).

    Returns the converted model, or `(model, ConvertReport)` with `report=True`. The model
    keeps its class when every replaced step is a module called once; where a pattern
    involves functional calls (F.relu6, F.batch_norm, ...) or shared modules, the result is
    a torch.fx.GraphModule (same parameter names for what was not replaced).

    inplace=False works on a deep copy; inplace=True edits `model`'s modules (when the
    result is a GraphModule, `model` itself is left as it was but shares its parameters).

    pack_weights=False stores the 1x1 weights of the pointwise, separable and
    inverted-residual modules input-major (PointwiseConv2d.weight_in_place_), where the CPU
    kernels read them in place: no packed copies are cached, so one inference needs no more
    memory than ATen's, at some speed (README, "Memory"). The default caches a packed copy of
    each 1x1 weight at its first call."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert expects an nn.Module, got {type(model).__name__}")
    if model.training:
        raise RuntimeError("convert needs the model in eval mode (call model.eval() first): it "
                           "folds BatchNorm running statistics into the weights")
    if not inplace:
        model = copy.deepcopy(model)
    result = ConvertReport()
    uses = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    if isinstance(model, nn.Conv2d):  # the model is one convolution
        kind, why = conv_kind(model)
        if kind is None:
            result.skipped.append(Skip("", why))
            converted = model
        else:
            cls = {"depthwise": dse_nn.DepthwiseConv2d, "pointwise": dse_nn.PointwiseConv2d,
                   "dense": dse_nn.DenseConv2d}[kind]
            converted = cls.from_modules(model)
            result.replaced.append(Replacement("", kind, kind, [""]))
    else:
        converted = _convert(model, "", uses, result)
    converted = _convert_linears(converted, result)
    for kind, wanted, make in _LEAF_REPLACEMENTS:
        converted = _replace_leaf_modules(converted, result, kind, wanted, make)
    if not pack_weights:
        _weights_in_place(converted)
    _fuse_sequentials(converted, result)
    return (converted, result) if report else converted


def _fuse_sequentials(model: nn.Module, report: ConvertReport) -> None:
    """Every nn.Sequential of two or more dsconv modules becomes a FusedSequential (its class
    swapped: the same children and state_dict), whose forward runs their ops from C++."""
    for path, m in model.named_modules():
        if (type(m) is nn.Sequential and len(m) >= 2
                and all(isinstance(c, ChainMember) for c in m.children())):
            m.__class__ = dse_nn.FusedSequential
            report.fused_sequentials.append(path)


def _weights_in_place(model: nn.Module) -> None:
    """Every PointwiseConv2d's weight input-major, but squeeze-excite FCs': at a few images
    their op runs matrix-vector kernels on ATen's layout (no packed copy either)."""
    fcs = {id(m) for se in model.modules() if isinstance(se, dse_nn.SqueezeExcite)
           for m in (se.fc1, se.fc2)}
    for m in model.modules():
        if isinstance(m, dse_nn.PointwiseConv2d) and id(m) not in fcs:
            m.weight_in_place_()


__all__ = ["convert", "ConvertReport", "Replacement", "Skip"]
