"""Derived numbers (speedups, GFLOP/s, % of peak, summaries) and their output: terminal
tables (rich when importable, else plain text), results.md and results.json."""
import json
import math
import sys
from dataclasses import asdict

from .nets import IN_PLACE
from .ops import ATEN_VARIANTS, DSE_VARIANTS
from .timing import paired_ratio

LAYER_COLUMNS = ("id", "net", "layer", "dse NCHW µs", "dse CL µs", "GFLOP/s", "% peak",
                 "vs ATen NCHW", "vs ATen CL", "vs ORT", "vs LiteRT", "spread")
NET_COLUMNS = ("net", "thr", "batch", "ATen NCHW", "ATen CL", "dsconv NCHW", "dsconv CL",
               "dsconv CL, pack_weights=False", "ORT", "LiteRT", "dsconv vs best other",
               "LiteRT / dsconv CL per round", "peer max err", "spread")
LEFT = {"id", "net", "layer"}
PEER_COLUMNS = {"ort": "vs ORT", "litert": "vs LiteRT"}
NOISY = 0.5  # (p90 - p10) / median above this: the run is flagged


def make_layer_row(layer, op, batch, threads, stats, kernels, errors, peak_gflops):
    """One measured (layer, op). Speedups: ATen NCHW / dsconv NCHW and ATen CL / dsconv CL
    (same layout in and out), peer / dsconv's faster layout (the peers have their own
    layouts); GFLOP/s and % of the measured FMA peak of dsconv's faster layout."""
    flop = layer.flop(op, batch)
    med = {name: s.median_us for name, s in stats.items()}
    best_dse = min(med[v] for v in DSE_VARIANTS)
    speedup = {"aten_nchw": med["aten_nchw"] / med["dse_nchw"],
               "aten_cl": med["aten_cl"] / med["dse_cl"],
               "best_aten": min(med[v] for v in ATEN_VARIANTS) / best_dse}
    speedup.update({p: med[p] / best_dse for p in med if p not in DSE_VARIANTS + ATEN_VARIANTS})
    gflops = flop / best_dse / 1e3  # FLOP / µs / 1e3 = GFLOP/s
    return {"id": layer.id, "net": layer.net, "kind": layer.kind, "shape": layer.label,
            "c_in": layer.c_in, "hw": layer.hw, "kernel": layer.kernel, "stride": layer.stride,
            "c_out": layer.c_out, "out_hw": layer.out_hw, "act": layer.act,
            "pw_act": layer.pw_act, "op": op, "batch": batch, "threads": threads, "flop": flop,
            "times_us": {name: asdict(s) for name, s in stats.items()},
            "kernels": {v: "+".join(k) for v, k in kernels.items()},
            "max_rel_error": errors, "speedup": speedup, "dse_best_gflops": gflops,
            "pct_peak": 100 * gflops / peak_gflops if peak_gflops else None,
            "spread": spread(stats)}


def spread(stats):
    return max((s.p90_us - s.p10_us) / s.median_us for s in stats.values())


def geomean(values):
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def summarize(rows, ops):
    """Per op: geometric-mean speedup of dsconv over each peer, and the worst layer vs the
    best ATen layout."""
    out = {}
    for op in ops:
        sel = [r for r in rows if r["op"] == op]
        if not sel:
            continue
        keys = sorted({k for r in sel for k in r["speedup"]})
        worst = min(sel, key=lambda r: r["speedup"]["best_aten"])
        out[op] = {"layers": len(sel), "min_vs_best_aten": worst["speedup"]["best_aten"],
                   "min_id": worst["id"],
                   "geomean": {k: geomean(r["speedup"][k] for r in sel if k in r["speedup"])
                               for k in keys}}
    return out


PEER_NAMES = {"aten_nchw": "ATen NCHW", "aten_cl": "ATen CL", "best_aten": "best ATen",
              "ort": "ORT", "litert": "LiteRT"}


def summary_line(op, s, threads, batch):
    parts = ", ".join(f"{PEER_NAMES.get(k, k)} {fmt_x(v)}" for k, v in s["geomean"].items())
    return (f"{op:>3} ({threads} thr, batch {batch}, {s['layers']} layers): dsconv speedup "
            f"geomean vs {parts}; worst vs best ATen {fmt_x(s['min_vs_best_aten'])} "
            f"(id {s['min_id']})")


def noise_note(rows, key="id"):
    """A warning when timings are noisy (a busy machine), else None."""
    noisy = sorted({str(r[key]) for r in rows if r["spread"] > NOISY})
    if not noisy:
        return None
    return (f"note: NOISY: spread (p90-p10)/median > {100 * NOISY:.0f}% on {key} "
            f"{','.join(noisy)}: the machine was busy or the clock unsteady; rerun before "
            "trusting those rows")


def kernels_used(rows):
    """{op: distinct kernel chains the dsconv variants ran, in first-seen order}."""
    out = {}
    for r in rows:
        seen = out.setdefault(r["op"], [])
        for chain in r["kernels"].values():
            if chain not in seen:
                seen.append(chain)
    return out


def fmt_us(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_ms(us):
    return f"{us / 1e3:.2f}" if us < 1e4 else f"{us / 1e3:.1f}"


def fmt_x(v):
    return "-" if v is None else f"{v:.2f}x" if v >= 0.095 else f"{v:.3f}x"


def layer_cells(rows, op):
    cells = []
    for r in rows:
        if r["op"] != op:
            continue
        t, sp = r["times_us"], r["speedup"]
        pct = "-" if r["pct_peak"] is None else f"{r['pct_peak']:.0f}%"
        cells.append([str(r["id"]), r["net"], r["shape"],
                      *(fmt_us(t[v]["median_us"]) for v in DSE_VARIANTS),
                      f"{r['dse_best_gflops']:.1f}", pct,
                      fmt_x(sp["aten_nchw"]), fmt_x(sp["aten_cl"]),
                      *(fmt_x(sp.get(p)) for p in PEER_COLUMNS),
                      f"{100 * r['spread']:.0f}%"])
    return cells


def layer_title(op, threads, batch):
    return (f"{op}, {threads} thread(s), batch {batch}: dsconv median µs; GFLOP/s and % of FMA "
            f"peak of its faster layout; speedup = peer µs / dsconv µs (ATen: same layout; "
            f"ORT, LiteRT: vs dsconv's faster layout)")


def net_cells(rows):
    cells = []
    for r in rows:
        t = r["times_us"]
        others = {k: v["median_us"] for k, v in t.items()
                  if k not in DSE_VARIANTS and k != IN_PLACE}
        best_dse = min(t[v]["median_us"] for v in DSE_VARIANTS)
        peer_err = [e for k, e in r["max_rel_error"].items() if k in PEER_COLUMNS]
        cells.append([r["label"], str(r["threads"]), str(r["batch"]),
                      *(fmt_ms(t[v]["median_us"]) if v in t else "-"
                        for v in ("aten_nchw", "aten_cl", "dse_nchw", "dse_cl", IN_PLACE,
                                  "ort", "litert")),
                      fmt_x(min(others.values()) / best_dse),
                      fmt_x(paired_ratio(t["litert"], t["dse_cl"]))
                      if "litert" in t and "dse_cl" in t else "-",
                      f"{max(peer_err):.1e}" if peer_err else "-",
                      f"{100 * r['spread']:.0f}%"])
    return cells


NET_TITLE = ("Whole networks, 224x224, median ms (ATen: BatchNorm folded; dsconv: dse.convert; "
             "ORT / LiteRT: graphs built from the same weights); per round: the median over the "
             "interleaved rounds of LiteRT's time / dsconv CL's in the same round; peer max err "
             "relative to max |output|")


def render_plain(title, columns, cells):
    widths = [max(len(c) for c in col) for col in zip(columns, *cells)]

    def line(row):
        return "  ".join(c.ljust(w) if h in LEFT else c.rjust(w)
                         for h, c, w in zip(columns, row, widths))
    return "\n".join([title, line(columns), line(["-" * w for w in widths]),
                      *(line(r) for r in cells)])


def render_markdown(title, columns, cells):
    def line(row):
        return "| " + " | ".join(row) + " |"
    align = ["---" if h in LEFT else "---:" for h in columns]
    return "\n".join([f"### {title}", "", line(columns), line(align), *(line(r) for r in cells)])


def print_table(title, columns, cells):
    """rich on a terminal when it is installed; plain text otherwise (logs, CI, pipes)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        Console = None
    if Console is None or not sys.stdout.isatty():
        print(render_plain(title, columns, cells))
        return
    table = Table(title=title, title_justify="left")
    for h in columns:
        table.add_column(h, justify="left" if h in LEFT else "right")
    for row in cells:
        table.add_row(*row)
    Console().print(table)


def write_results(out_dir, meta, layer_runs, net_rows):
    """results.json (everything) and results.md (header, tables, summaries) in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(
        {"meta": meta, "layer_runs": layer_runs, "nets": net_rows}, indent=1, default=str))
    md = ["# dsconv_ext CPU latency vs ATen, ONNX Runtime and LiteRT", ""]
    md += [f"- {line.strip()}" for line in meta["header"]] + [""]
    if net_rows:
        md += [render_markdown(NET_TITLE, NET_COLUMNS, net_cells(net_rows)), ""]
        note = noise_note(net_rows, "label")
        md += [f"{note}", ""] if note else []
    for run in layer_runs:
        md += [f"## Layers, {run['threads']} thread(s), batch {run['batch']}", ""]
        md += [f"- kernels: {k}" for k in run["kernels"]] + [""]
        for op in run["ops"]:
            cells = layer_cells(run["rows"], op)
            if cells:
                md += [render_markdown(layer_title(op, run["threads"], run["batch"]),
                                       LAYER_COLUMNS, cells), ""]
        note = noise_note(run["rows"])
        md += ["```", *(summary_line(op, s, run["threads"], run["batch"])
                        for op, s in run["summary"].items()),
               *([note] if note else []), "```", ""]
    md.append(f"wall time: {meta['wall_s']:.1f} s")
    (out_dir / "results.md").write_text("\n".join(md) + "\n")
