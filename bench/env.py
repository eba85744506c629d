"""The environment under test: the dsconv_ext to import, and what the machine is."""
import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path


def thread_counts(text):
    """The sorted distinct thread counts of a comma-separated list ('all' = every CPU).
    ValueError for an entry that is not an integer."""
    cpus = os.cpu_count() or 1
    return sorted({cpus if t == "all" else int(t) for t in (v.strip() for v in text.split(","))
                   if t})


def import_dsconv():
    """Import dsconv_ext, preferring the installed one over an unbuilt source tree.

    `python -m bench` from the repository root puts the root first on sys.path, where
    dsconv_ext/ is the source without its compiled _C module (unless built in place); that
    copy cannot load, so the root is dropped from sys.path and the installed package is used.
    """
    spec = importlib.util.find_spec("dsconv_ext")
    if spec is not None and spec.origin:
        pkg = Path(spec.origin).parent
        if not any(pkg.glob("_C.*")):
            root = pkg.parent.resolve()
            sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != root]
    import dsconv_ext
    return dsconv_ext


def machine_name():
    """CPU model name: lscpu, else /proc/cpuinfo, else platform."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5,
                             env={**os.environ, "LC_ALL": "C"}).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(dse, torch):
    """The facts every report starts with."""
    return {
        "torch": torch.__version__,
        "dsconv_ext": getattr(dse, "__version__", "?"),
        "dsconv_ext_path": str(Path(dse.__file__).parent),
        "cpu_capability": dse.cpu_capability(),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
        "machine": machine_name(),
        "arch": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
