"""The plumbing of dsconv_ext.nn.FusedSequential: the op calls of its children as one
_C.OpChain (csrc/ops/op_chain.cpp), and when that list must be rebuilt.

A module that can be chained (a ChainMember) lists the op calls its forward makes
(`_chain_calls`: by default one, `_op_name` with `_op_args(INPUT)`, the arguments its forward
passes), with INPUT for the module's input and PREV for the result of its previous call.
A chain holds the parameter tensors themselves (in-place updates, `.data` assignment and
`load_state_dict` reach it), so what it cannot see is a module changing its attributes,
parameters, submodules or hooks, or `.to()` swapping tensors: ChainMember counts such
changes, and a chain built before the last one is rebuilt."""
from typing import List, Optional, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import _C

INPUT = object()  # the module's input
PREV = object()  # the result of the module's previous op call

_generation = 0


def changed() -> None:
    global _generation
    _generation += 1


def generation() -> int:
    return _generation


class ChainMember:
    """Mixin of the chainable modules: their op calls, and a count of every change a built
    chain would not see (the nn.Module methods in _COUNTED count one after they run)."""

    def _chain_calls(self):
        """[(op name, arguments)] of forward's op calls, or None where they cannot be listed."""
        return [(self._op_name, self._op_args(INPUT))]


# Attributes and parameters set or deleted (parametrize sets __class__), parameters, buffers
# and submodules registered, tensors converted (.to(), .half(), swaps), hooks registered.
_COUNTED = ("__setattr__", "__delattr__", "register_parameter", "register_buffer", "add_module",
            "_apply", "register_forward_pre_hook", "register_forward_hook",
            "register_full_backward_pre_hook", "register_full_backward_hook",
            "register_backward_hook")


def _counting(name):
    def method(self, *args, **kwargs):
        out = getattr(super(ChainMember, self), name)(*args, **kwargs)
        changed()
        return out
    method.__name__ = name
    return method


for _name in _COUNTED:
    setattr(ChainMember, _name, _counting(_name))


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks)


def global_hooks() -> bool:
    """Whether a global module hook is registered (torch.nn.modules.module.register_module_*):
    they run around every module call, so the children must be called."""
    m = nn.modules.module
    return bool(m._global_forward_hooks or m._global_forward_pre_hooks
                or m._global_backward_hooks or m._global_backward_pre_hooks
                or m._global_forward_hooks_always_called)


def build(modules: Sequence[nn.Module]) -> Optional["_C.OpChain"]:
    """The children's op calls as one OpChain, or None where a child must be called: it is not
    chainable (or not in its present form), is parametrized, or it (or a submodule whose
    forward its own calls, such as a block's squeeze-excite) has hooks."""
    calls: List[tuple] = []
    current = 0  # the result index of the module's input: 0, the chain's input
    for module in modules:
        if not isinstance(module, ChainMember) or any(
                _has_hooks(m) or parametrize.is_parametrized(m) for m in module.modules()):
            return None
        module_calls = module._chain_calls()
        if module_calls is None:
            return None
        for name, args in module_calls:
            refs, values = {}, []
            for i, a in enumerate(args):
                if a is INPUT or a is PREV:
                    refs[i] = current if a is INPUT else len(calls)
                    values.append(None)
                else:
                    values.append(a)
            calls.append((name, tuple(values), refs))
        current = len(calls)
    return _C.OpChain(calls) if calls else None


def uses_ops(x: torch.Tensor) -> bool:
    """Whether a call on x may go straight to the ops: eager, no __torch_function__ override
    or mode, no global module hooks."""
    return (not torch.compiler.is_compiling() and not torch._C._has_torch_function((x,))
            and not global_hooks())
