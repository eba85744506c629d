"""Builds dsconv_ext._C against the torch installed in the target environment.

Under pip's default build isolation the isolated environment has no torch (and must not
download one: the extension would then be built for a different torch than the one it
runs under), so when `import torch` fails here we add the target environment's
site-packages to sys.path and import its torch.
"""
import os
import platform
import shutil
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def import_target_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        paths = sysconfig.get_paths()
        for key in ("purelib", "platlib"):
            if paths[key] not in sys.path:
                sys.path.append(paths[key])
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.exit("dsconv_ext needs PyTorch installed first: pip install torch==2.13.0 "
                     "(or your platform's torch), then pip install .")
    import torch
    return torch


torch = import_target_torch()  # before setuptools: a bare environment gets this message
from setuptools import setup  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def sources(folder, suffix):
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob("*" + suffix))


# Each architecture's kernel folder under csrc/cpu is compiled only on that architecture.
ARCH_FOLDERS = {"x86_64": "x86", "amd64": "x86", "aarch64": "arm", "arm64": "arm"}


def cpu_sources():
    own = ARCH_FOLDERS.get(platform.machine().lower())
    foreign = {f"csrc/cpu/{f}/" for f in set(ARCH_FOLDERS.values()) - {own}}
    return [p for p in sources("csrc/cpu", ".cpp") if not p.startswith(tuple(foreign))]


CUDA_GLUE = str(Path("csrc/ops/cuda_ops.cpp"))


def want_cuda():
    # CUDA kernels are built only when this torch has CUDA and nvcc is on hand.
    if os.environ.get("DSCONV_NO_CUDA") == "1" or torch.version.cuda is None:
        return False
    from torch.utils.cpp_extension import CUDA_HOME
    return CUDA_HOME is not None or shutil.which("nvcc") is not None


def extension():
    cxx = ["-O3", "-fopenmp"]
    link = ["-fopenmp"]
    if os.environ.get("DSCONV_SANITIZE") == "1":
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1"]
        # -fno-wrapv overrides Python's -fwrapv: with it signed overflow is defined, so UBSan
        # would not check it, and g++ 12 took 6x as long on the AVX-512 kernels (575 s vs 100 s).
        cxx, link = cxx[1:] + san + ["-fno-wrapv"], link + san
    cuda = want_cuda()
    # csrc/ops/cuda_ops.cpp registers the CUDA kernels of csrc/cuda: only in CUDA builds.
    cpp = [s for s in sources("csrc/ops", ".cpp") if cuda or s != CUDA_GLUE] + cpu_sources()
    cu = sources("csrc/cuda", ".cu") if cuda else []
    if cu:
        return CUDAExtension("dsconv_ext._C", cpp + cu,
                             extra_compile_args={"cxx": cxx + ["-DDSCONV_WITH_CUDA"], "nvcc": ["-O3"]},
                             extra_link_args=link)
    return CppExtension("dsconv_ext._C", cpp, extra_compile_args={"cxx": cxx}, extra_link_args=link)


def write_build_info():
    # Read at import: the extension only loads under the torch it was built for.
    (ROOT / "dsconv_ext" / "_build_info.py").write_text(
        "# Written by setup.py at build time.\n"
        f"TORCH_VERSION = {torch.__version__!r}\n")


write_build_info()
setup(ext_modules=[extension()], cmdclass={"build_ext": BuildExtension})
