"""PNG plots (matplotlib, optional): per-layer speedup bars and whole-network latency per
runtime. Returns the files written, or a one-line note when matplotlib is missing."""
from .report import PEER_NAMES

RUNTIMES = (("aten_nchw", "ATen NCHW"), ("aten_cl", "ATen CL"), ("dse_nchw", "dsconv NCHW"),
            ("dse_cl", "dsconv CL"), ("dse_cl_inplace", "dsconv CL, pack_weights=False"),
            ("ort", "ONNX Runtime"), ("litert", "LiteRT (XNNPACK)"))


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        return None


def layer_speedups(plt, run, path):
    from matplotlib import ticker

    """One panel per op: for each layer, dsconv's speedup over each peer (log scale)."""
    ops = [op for op in run["ops"] if any(r["op"] == op for r in run["rows"])]
    fig, axes = plt.subplots(len(ops), 1, figsize=(16, 3.2 * len(ops)), squeeze=False)
    for ax, op in zip(axes[:, 0], ops):
        rows = [r for r in run["rows"] if r["op"] == op]
        keys = [k for k in ("best_aten", "ort", "litert") if any(k in r["speedup"] for r in rows)]
        width = 0.8 / len(keys)
        for i, k in enumerate(keys):
            xs = [j + (i - (len(keys) - 1) / 2) * width for j in range(len(rows))]
            ax.bar(xs, [r["speedup"].get(k, float("nan")) for r in rows], width,
                   label=f"vs {PEER_NAMES[k]}")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(0.25, 0.5, 1.0, 2.0, 4.0)))
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%gx"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([f"{r['net']}:{r['id']}" for r in rows], rotation=90, fontsize=7)
        ax.set_ylabel("speedup (x)")
        ax.set_title(f"{op}: dsconv_ext speedup per layer ({run['threads']} thread(s), "
                     f"batch {run['batch']}; > 1 = dsconv faster)", fontsize=10)
        ax.legend(fontsize=8, ncol=len(keys))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def net_latency(plt, rows, path):
    """One panel per thread count: grouped bars, one group per (network, batch), one bar per
    runtime."""
    threads = sorted({r["threads"] for r in rows})
    present = [(k, name) for k, name in RUNTIMES if any(k in r["times_us"] for r in rows)]
    per_panel = max(sum(r["threads"] == t for r in rows) for t in threads)
    fig, axes = plt.subplots(1, len(threads), squeeze=False,
                             figsize=(max(6, 2.2 * per_panel) * len(threads), 4.5))
    width = 0.8 / len(present)
    for ax, t in zip(axes[0], threads):
        sel = [r for r in rows if r["threads"] == t]
        for i, (k, name) in enumerate(present):
            xs = [j + (i - (len(present) - 1) / 2) * width for j in range(len(sel))]
            ax.bar(xs, [r["times_us"][k]["median_us"] / 1e3 if k in r["times_us"]
                        else float("nan") for r in sel], width, label=name)
        ax.set_xticks(range(len(sel)))
        ax.set_xticklabels([f"{r['label']}\nbatch {r['batch']}" for r in sel], fontsize=8)
        ax.set_ylabel("median latency (ms, lower is better)")
        ax.set_title(f"Whole networks at 224x224, fp32, {t} thread(s)", fontsize=10)
        ax.set_ylim(top=ax.get_ylim()[1] * 1.3)  # room for the legend above the bars
        ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_plots(out_dir, layer_runs, net_rows):
    plt = _pyplot()
    if plt is None:
        return [], "plots skipped: matplotlib is not installed (pip install '.[bench]')"
    files = []
    for run in layer_runs:
        path = out_dir / f"layers_{run['threads']}t_b{run['batch']}.png"
        layer_speedups(plt, run, path)
        files.append(path)
    if net_rows:
        path = out_dir / "networks.png"
        net_latency(plt, net_rows, path)
        files.append(path)
    return files, None
