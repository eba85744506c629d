"""The machine's FMA peak and cache / memory read bandwidth, measured once per bench run by
bench/machine.c (built with the system C compiler into ~/.cache, loaded with ctypes). The
peak is for the vector width of the kernel set dsconv_ext runs, so "% of peak" says how close
a kernel gets to what its own instructions allow. Without a C compiler the numbers are
estimated with torch (a large matmul, a large sum) and labelled so."""
import ctypes
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ISA_CODES = {"scalar": 0, "avx2": 1, "avx512": 2, "neon": 3}
DEFAULT_CACHES = {"L1": 32 << 10, "L2": 1 << 20, "L3": 16 << 20}


def _build():
    src = HERE / "machine.c"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None, "no C compiler"
    tag = hashlib.sha256(src.read_bytes() + cc.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dsconv_ext_bench"
    lib = cache / f"machine-{tag}.so"
    if not lib.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        proc = subprocess.run([cc, "-O2", "-ffp-contract=fast", "-fopenmp", "-shared", "-fPIC", str(src), "-o",
                               str(tmp)], capture_output=True, text=True)
        if proc.returncode != 0:
            return None, f"{cc} failed: {proc.stderr.strip().splitlines()[-1:]}"
        tmp.replace(lib)
    so = ctypes.CDLL(str(lib))
    so.fma_gflops.restype = so.read_gbps.restype = ctypes.c_double
    so.fma_gflops.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long]
    so.read_gbps.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_int]
    return so, None


def cache_sizes():
    """{level: bytes} of the data caches of cpu0 (sysfs), defaults where it says nothing."""
    sizes = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for d in sorted(base.glob("index*")) if base.exists() else []:
        try:
            if (d / "type").read_text().strip() == "Instruction":
                continue
            text = (d / "size").read_text().strip().upper()
            mult = {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1)
            sizes[f"L{(d / 'level').read_text().strip()}"] = int(text.rstrip("KM")) * mult
        except (OSError, ValueError):
            continue
    return {**DEFAULT_CACHES, **sizes}


def _fmt_bytes(n):
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def _best(fn, tries=3):
    return max(fn() for _ in range(tries))


def measure(isa, threads_list):
    """{'source', 'fma_gflops': {threads: GFLOP/s}, 'read_gbps': {level: {threads: GB/s}}}."""
    so, why = _build()
    if so is None:
        return _estimate_with_torch(threads_list, why)
    code = ISA_CODES.get(isa, 0)
    # about 0.1 s per FMA try: calibrate the iteration count on one thread
    iters = 1 << 20
    t0 = time.perf_counter()
    so.fma_gflops(code, 1, iters)
    iters = max(1 << 16, int(iters * 0.1 / max(time.perf_counter() - t0, 1e-4)))
    peak = {t: _best(lambda: so.fma_gflops(code, t, iters)) for t in threads_list}
    levels = {f"{lvl} ({_fmt_bytes(size // 2)})": size // 2
              for lvl, size in sorted(cache_sizes().items())}
    levels["DRAM (256 MiB)"] = 256 << 20
    bw = {}
    for name, size in levels.items():
        passes = max(2, int((512 << 20) // size))
        bw[name] = {t: _best(lambda: so.read_gbps(code, t, size, passes), 2 if size > 4 << 20
                             else 3) for t in threads_list}
    return {"source": f"bench/machine.c: {isa} FMA chains and per-thread read sums, over thread CPU time",
            "fma_gflops": peak, "read_gbps": bw}


def _estimate_with_torch(threads_list, why):
    import torch
    peak, dram = {}, {}
    a = torch.randn(1024, 1024)
    big = torch.randn(64 << 20)
    for t in threads_list:
        torch.set_num_threads(t)
        t0 = time.perf_counter()
        for _ in range(5):
            torch.mm(a, a)
        peak[t] = 5 * 2 * 1024 ** 3 / (time.perf_counter() - t0) / 1e9
        t0 = time.perf_counter()
        for _ in range(3):
            big.sum()
        dram[t] = 3 * big.numel() * 4 / (time.perf_counter() - t0) / 1e9
    return {"source": f"estimated with torch ({why}): matmul GFLOP/s, sum GB/s",
            "fma_gflops": peak, "read_gbps": {"DRAM (256 MiB)": dram}}


def describe(m):
    """Lines for the report header."""
    threads = list(m["fma_gflops"])
    lines = [f"machine peak ({m['source']}):",
             "  FMA peak: " + ", ".join(f"{m['fma_gflops'][t]:.0f} GFLOP/s ({t} thr)"
                                       for t in threads)]
    for level, by_t in m["read_gbps"].items():
        lines.append(f"  read {level}: " + ", ".join(f"{by_t[t]:.0f} GB/s ({t} thr)"
                                                      for t in threads))
    return lines
