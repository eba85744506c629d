"""Derived numbers (speedups, GFLOP/s, summaries) and their output: terminal table (rich
when importable, else plain text), results.md and results.json."""
import json
import math
import sys
from dataclasses import asdict

from .ops import ATEN_VARIANTS, DSE_VARIANTS

COLUMNS = ("id", "net", "C,H,s,Co", "dse NCHW", "dse CL", "ATen NCHW", "ATen CL",
           "NCHW vs best ATen", "CL vs best ATen", "dse GFLOP/s", "spread")
LEFT = {"id", "net", "C,H,s,Co"}


def make_row(layer, op, batch, stats, kernels):
    """One measured (layer, op): medians, p10/p90, speedups of each dsconv layout over ATen's
    faster layout, and GFLOP/s (2*MACs / median time)."""
    flop = layer.flop(op, batch)
    med = {name: s.median_us for name, s in stats.items()}
    best_aten = min(med[v] for v in ATEN_VARIANTS)
    best_dse = min(med[v] for v in DSE_VARIANTS)
    speedup = {v: best_aten / med[v] for v in DSE_VARIANTS}
    speedup["best"] = best_aten / best_dse
    gflops = {v: flop / med[v] / 1e3 for v in med}  # FLOP / µs / 1e3 = GFLOP/s
    spread = max((s.p90_us - s.p10_us) / s.median_us for s in stats.values())
    return {"id": layer.id, "net": layer.net, "kind": layer.kind, "shape": layer.label,
            "c_in": layer.c_in, "hw": layer.hw, "stride": layer.stride, "c_out": layer.c_out,
            "out_hw": layer.out_hw, "op": op, "batch": batch, "flop": flop,
            "times_us": {name: asdict(s) for name, s in stats.items()},
            "kernels": {v: "+".join(k) for v, k in kernels.items()},
            "best_aten_us": best_aten, "speedup_vs_best_aten": speedup,
            "gflops": gflops, "dse_best_gflops": flop / best_dse / 1e3, "spread": spread}


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summarize(rows, ops):
    """Per op: geometric-mean and minimum speedup of dsconv (its faster layout) over best ATen."""
    out = {}
    for op in ops:
        sel = [r for r in rows if r["op"] == op]
        if not sel:
            continue
        worst = min(sel, key=lambda r: r["speedup_vs_best_aten"]["best"])
        out[op] = {"layers": len(sel),
                   "geomean": geomean([r["speedup_vs_best_aten"]["best"] for r in sel]),
                   "min": worst["speedup_vs_best_aten"]["best"], "min_id": worst["id"],
                   **{f"geomean_{v}": geomean([r["speedup_vs_best_aten"][v] for r in sel])
                      for v in DSE_VARIANTS}}
    return out


def summary_line(op, s, threads):
    return (f"{op:>3}  ({threads} thr, {s['layers']} layers): dsconv vs best ATen  "
            f"geomean {fmt_x(s['geomean'])}  min {fmt_x(s['min'])} (id {s['min_id']})  "
            f"[NCHW {fmt_x(s['geomean_dse_nchw'])}, CL {fmt_x(s['geomean_dse_cl'])}]")


def noise_note(rows, limit=0.5):
    """A warning when timings are noisy (a busy machine), else None."""
    noisy = sorted({r["id"] for r in rows if r["spread"] > limit})
    if not noisy:
        return None
    return (f"note: spread > {100 * limit:.0f}% on layer(s) {','.join(map(str, noisy))}: "
            "the machine was busy or the clock unsteady; rerun before trusting those rows")


def kernels_used(rows):
    """{op: distinct kernel chains the dsconv variants ran, in first-seen order}."""
    out = {}
    for r in rows:
        seen = out.setdefault(r["op"], [])
        for chain in r["kernels"].values():
            if chain not in seen:
                seen.append(chain)
    return out


def header_lines(meta, threads, rows, budget):
    kernels = "; ".join(f"{op}: {', '.join(k) or '-'}" for op, k in kernels_used(rows).items())
    return [
        f"torch {meta['torch']} | dsconv_ext {meta['dsconv_ext']} ({meta['dsconv_ext_path']}) "
        f"| cpu_capability: {meta['cpu_capability']}",
        f"machine: {meta['machine']} ({meta['cpus']} CPUs, {meta['arch']}) | threads: {threads}"
        f" | batch: {meta['batch']} | fp32 | inference_mode",
        f"kernels: {kernels}",
        f"timing: median of interleaved reps, ~{budget['min_time']:g} s per variant per layer, "
        f"{budget['min_reps']}..{budget['max_reps']} reps; spread = worst (p90-p10)/median",
    ]


def fmt_us(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_x(v):
    return f"{v:.2f}x" if v >= 0.095 else f"{v:.3f}x"


def table_cells(rows, op):
    cells = []
    for r in rows:
        if r["op"] != op:
            continue
        t = r["times_us"]
        sp = r["speedup_vs_best_aten"]
        cells.append([str(r["id"]), r["net"], r["shape"],
                      *(fmt_us(t[v]["median_us"]) for v in DSE_VARIANTS + ATEN_VARIANTS),
                      fmt_x(sp["dse_nchw"]), fmt_x(sp["dse_cl"]),
                      f"{r['dse_best_gflops']:.1f}", f"{100 * r['spread']:.0f}%"])
    return cells


def table_title(op, threads, batch):
    return (f"{op} - {threads} thread(s), batch {batch}: median µs; speedup = best ATen / dsconv; "
            f"GFLOP/s of dsconv's faster layout")


def render_plain(title, cells):
    widths = [max(len(c) for c in col) for col in zip(COLUMNS, *cells)]
    def line(row):
        return "  ".join(c.ljust(w) if h in LEFT else c.rjust(w)
                         for h, c, w in zip(COLUMNS, row, widths))
    return "\n".join([title, line(COLUMNS), line(["-" * w for w in widths]),
                      *(line(r) for r in cells)])


def render_markdown(title, cells):
    def line(row):
        return "| " + " | ".join(row) + " |"
    align = ["---" if h in LEFT else "---:" for h in COLUMNS]
    return "\n".join([f"### {title}", "", line(COLUMNS), line(align), *(line(r) for r in cells)])


def print_table(title, cells):
    """rich on a terminal when it is installed; plain text otherwise (logs, CI, pipes)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        Console = None
    if Console is None or not sys.stdout.isatty():
        print(render_plain(title, cells))
        return
    table = Table(title=title, title_justify="left")
    for h in COLUMNS:
        table.add_column(h, justify="left" if h in LEFT else "right")
    for row in cells:
        table.add_row(*row)
    Console().print(table)


def write_results(out_dir, meta, runs):
    """results.json (everything) and results.md (header, tables, summaries) in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    md = ["# dsconv_ext CPU latency vs ATen", ""]
    for run in runs:
        md += [f"## {run['threads']} thread(s)", ""]
        md += [f"- {line}" for line in run["header"]] + [""]
        for op in run["ops"]:
            cells = table_cells(run["rows"], op)
            if cells:
                md += [render_markdown(table_title(op, run["threads"], meta["batch"]), cells), ""]
        note = noise_note(run["rows"])
        md += ["```", *(summary_line(op, s, run["threads"]) for op, s in run["summary"].items()),
               *([note] if note else []), "```", ""]
    md.append(f"wall time: {meta['wall_s']:.1f} s")
    (out_dir / "results.md").write_text("\n".join(md) + "\n")
