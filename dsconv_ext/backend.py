"""Which kernel set runs, and which kernels the last call used."""
from . import _C


def cpu_capability() -> str:
    """The kernel set in use: 'avx512', 'avx2', 'neon' or 'scalar'."""
    return _C.cpu_capability()


def supported_cpu_capabilities() -> list:
    """Every kernel set this CPU can run, lowest first."""
    return _C.supported_cpu_capabilities().split(",")


def set_cpu_capability(name: str, _source: str = "name") -> None:
    """Use kernel set `name` (any supported one, lower than the best included) from now on,
    in every thread. Unknown names raise ValueError, unsupported ones RuntimeError."""
    try:
        _C.set_cpu_capability(name)
    except ValueError as e:
        raise ValueError(f"{_source}={name!r}: {e}") from None
    except RuntimeError as e:
        raise RuntimeError(f"{_source}={name!r}: {e}") from None


def last_kernels() -> list:
    """Names of the kernels the last dsconv op called on this thread ran (e.g. a fused
    separable call lists its depthwise and its pointwise kernel)."""
    names = _C.last_kernels()
    return names.split("+") if names else []
