"""dsconv_ext: fast depthwise-separable convolution for PyTorch.

    import dsconv_ext as dse
    y = dse.separable(x, w_dw, w_pw, stride=1, padding=1, pw_activation="relu6")
"""
import os

import torch

try:
    from ._build_info import TORCH_VERSION as _BUILT_FOR_TORCH
except ImportError as e:  # imported from a source tree that was never built
    raise ImportError("dsconv_ext is not built: install it with `pip install .` from the "
                      "repository root") from e

if _BUILT_FOR_TORCH != torch.__version__:
    raise ImportError(
        f"dsconv_ext was built for torch {_BUILT_FOR_TORCH} but torch {torch.__version__} is "
        "running; rebuild it against this torch with `pip install --force-reinstall --no-deps .` "
        "from the dsconv_ext source tree")

from . import _C  # noqa: E402  (loads the op library: torch.ops.dsconv.*)
from . import _fake, _autograd  # noqa: E402,F401  (register fake kernels and autograd)
from .backend import (  # noqa: E402
    cpu_capability, last_kernels, set_cpu_capability, supported_cpu_capabilities)
from .functional import (  # noqa: E402
    ACTIVATIONS, GATES, conv2d, depthwise, global_avg_pool, inverted_residual, linear,
    pointwise, separable, squeeze_excite)
from . import nn, models  # noqa: E402
from .fold import fold_bn  # noqa: E402
from .converter import ConvertReport, convert  # noqa: E402

__version__ = "0.1.0"

# DSCONV_ISA lowers the kernel set for the whole process (tests use it to force each path).
if os.environ.get("DSCONV_ISA"):
    set_cpu_capability(os.environ["DSCONV_ISA"], _source="DSCONV_ISA")

__all__ = ["depthwise", "pointwise", "separable", "inverted_residual", "squeeze_excite",
           "conv2d", "linear", "global_avg_pool", "GATES", "cpu_capability", "set_cpu_capability",
           "supported_cpu_capabilities", "last_kernels", "ACTIVATIONS", "nn", "fold_bn",
           "convert", "ConvertReport", "models", "complexity"]


def __getattr__(name):
    # dsconv_ext.complexity is imported on first use: importing it here would make
    # `python -m dsconv_ext.complexity` run a module that is already imported (runpy warns).
    if name == "complexity":
        import importlib
        return importlib.import_module(".complexity", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
