"""python -m bench: time dsconv_ext against ATen on every layer shape, for each op, layout
and thread count; check every variant first; print tables and write results.{json,md}."""
import argparse
import sys
import time
from pathlib import Path

import torch

from . import env, report
from .ops import OPS, MismatchError, check, make_case
from .shapes import DEFAULT_TABLE, load_layers
from .timing import measure

# Per variant and layer: run ~min_time seconds or max_reps reps, whichever comes first.
BUDGETS = {"quick": {"min_time": 0.1, "max_reps": 200, "warmup_time": 0.02, "min_reps": 3},
           "full": {"min_time": 0.5, "max_reps": 2000, "warmup_time": 0.1, "min_reps": 3}}


def int_list(text):
    return [int(v) for v in text.split(",") if v.strip()]


def op_list(text):
    ops = [v.strip() for v in text.split(",") if v.strip()]
    bad = [op for op in ops if op not in OPS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown op(s) {bad}; choose from {','.join(OPS)}")
    return ops


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="short time budget per variant (full run: ~0.5 s per variant and layer)")
    p.add_argument("--threads", type=int_list, default=[1],
                   help="torch.set_num_threads value(s), e.g. 1,2 (default 1)")
    p.add_argument("--layers", type=int_list, help="layer ids, e.g. 0,3,7 (default: all)")
    p.add_argument("--ops", type=op_list, default=list(OPS), help="dw,pw,sep (default: all)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--min-time", type=float, help="seconds per variant per layer")
    p.add_argument("--reps", type=int, help="most reps per variant per layer (at least 3 run)")
    p.add_argument("--shapes", type=Path, default=DEFAULT_TABLE, help="layer table (CSV)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                   help="where results.json and results.md go (default bench/results)")
    args = p.parse_args(argv)
    if args.batch < 1 or any(t < 1 for t in args.threads):
        p.error("--batch and --threads must be >= 1")
    return args


def select_layers(args):
    layers = load_layers(args.shapes)
    if args.layers is None:
        return layers
    known = {layer.id for layer in layers}
    unknown = sorted(set(args.layers) - known)
    if unknown:
        sys.exit(f"unknown layer id(s) {unknown}; {args.shapes.name} has {sorted(known)}")
    return [layer for layer in layers if layer.id in args.layers]


def bench_threads(dse, layers, ops, threads, batch, budget):
    """Check and time every (layer, op) at one thread count; returns the result rows."""
    torch.set_num_threads(threads)
    rows = []
    for i, layer in enumerate(layers, 1):
        t0 = time.perf_counter()
        layer_ops = [op for op in ops if op in layer.ops]
        for op in layer_ops:
            # Weights are made outside inference mode, as a model's parameters are (so
            # packed-weight caching applies as it would in a real model).
            case = make_case(dse, layer, op, batch)
            with torch.inference_mode():
                kernels = check(dse, case)
                stats = measure(case.variants, **budget)
            rows.append(report.make_row(layer, op, batch, stats, kernels))
        print(f"  [{threads} thr] {i}/{len(layers)} layer {layer.id} ({layer.label}) "
              f"{','.join(layer_ops) or '-'}: {time.perf_counter() - t0:.1f} s",
              file=sys.stderr, flush=True)
    return rows


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    dse = env.import_dsconv()
    layers = select_layers(args)
    budget = dict(BUDGETS["quick" if args.quick else "full"])
    if args.min_time is not None:
        budget["min_time"] = args.min_time
    if args.reps is not None:
        budget["max_reps"] = max(args.reps, budget["min_reps"])
    meta = {**env.describe(dse, torch), "batch": args.batch, "budget": budget,
            "args": {k: str(v) for k, v in vars(args).items()}}

    runs = []
    for threads in args.threads:
        try:
            rows = bench_threads(dse, layers, args.ops, threads, args.batch, budget)
        except MismatchError as e:
            bar = "!" * 78
            print(f"\n{bar}\nMISMATCH: dsconv_ext disagrees with ATen; nothing was timed "
                  f"for this case and no results are written.\n{e}\n{bar}", file=sys.stderr)
            return 1
        run = {"threads": threads, "ops": args.ops, "rows": rows,
               "header": report.header_lines(meta, threads, rows, budget),
               "summary": report.summarize(rows, args.ops)}
        runs.append(run)
        print()
        print("\n".join(run["header"]))
        for op in args.ops:
            cells = report.table_cells(rows, op)
            if cells:
                print()
                report.print_table(report.table_title(op, threads, args.batch), cells)
        print()
        for op, s in run["summary"].items():
            print(report.summary_line(op, s, threads))
        note = report.noise_note(rows)
        if note:
            print(note)

    meta["wall_s"] = time.perf_counter() - start
    report.write_results(args.out, meta, runs)
    print(f"\nwall time {meta['wall_s']:.1f} s; results in {args.out}/results.{{md,json}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
