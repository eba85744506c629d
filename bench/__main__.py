"""python -m bench: CPU latency of dsconv_ext against ATen, ONNX Runtime and LiteRT, per layer
(MobileNet V1/V2/V3-Large and EfficientNet-B0 shapes; dw, pw, fused sep; NCHW and
channels_last) and on whole networks (MobileNet V1, V2, V3-Large at 224x224). Every variant is
checked against ATen before it is timed. Prints tables; writes results.{json,md} and PNG plots
to --out."""
import argparse
import sys
import time
from pathlib import Path

import torch

from . import env, machine, nets, plots, report
from .graph import lower
from .ops import OPS, MismatchError, check, check_peers, max_error, make_case
from .peers import PEER_NAMES, PEERS
from .progress import Progress
from .shapes import DEFAULT_TABLES, load_layers
from .timing import measure

# Per variant and case: run ~min_time seconds or max_reps reps, whichever comes first.
BUDGETS = {"quick": {"min_time": 0.02, "max_reps": 100, "warmup_time": 0.01, "min_reps": 5},
           "full": {"min_time": 0.2, "max_reps": 1000, "warmup_time": 0.05, "min_reps": 5}}
# Networks: many short rounds, so each round's ratio of two variants compares measurements
# seconds apart (report: "per round"); min_reps gives every variant a rep in each round.
NET_BUDGETS = {"quick": {"min_time": 0.25, "max_reps": 60, "warmup_time": 0.05, "min_reps": 15,
                         "rounds": 15},
               "full": {"min_time": 2.0, "max_reps": 500, "warmup_time": 0.3, "min_reps": 20,
                        "rounds": 20}}
NET_TOL = 1e-3  # whole networks: max error relative to max |logit|


def csv_list(text):
    return [v.strip() for v in text.split(",") if v.strip()]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="short budget, batch 1 only (the README command: a few minutes)")
    p.add_argument("--threads", default="1,all",
                   help="thread counts, 'all' = every CPU (default 1,all)")
    p.add_argument("--batch", help="batch sizes (default 1,8; --quick: 1)")
    p.add_argument("--layers", default="all",
                   help="layer ids and/or nets (v1,v2,v3l,effb0), 'all' or 'none'")
    p.add_argument("--nets", default="all", help=f"{','.join(nets.NETS)}, 'all' or 'none'")
    p.add_argument("--ops", default=",".join(OPS), help="dw,pw,sep (default: all)")
    p.add_argument("--peers", default="all",
                   help=f"{','.join(PEER_NAMES)}, 'all' or 'none' (ATen always runs)")
    p.add_argument("--min-time", type=float, help="seconds per variant per layer")
    p.add_argument("--reps", type=int, help="most reps per variant per layer")
    p.add_argument("--shapes", type=Path, nargs="+", default=list(DEFAULT_TABLES),
                   help="layer tables (CSV)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                   help="where results.json, results.md and the plots go (default bench/results)")
    args = p.parse_args(argv)
    try:
        args.threads = env.thread_counts(args.threads)
        args.batch = [int(b) for b in csv_list(args.batch or ("1" if args.quick else "1,8"))]
    except ValueError:
        p.error("--threads and --batch take comma-separated integers ('all' for threads)")
    if min(args.batch + args.threads) < 1:
        p.error("--batch and --threads must be >= 1")
    args.ops = csv_list(args.ops)
    if set(args.ops) - set(OPS):
        p.error(f"--ops: choose from {','.join(OPS)}")
    args.nets = [] if args.nets == "none" else list(nets.NETS) if args.nets == "all" \
        else csv_list(args.nets)
    if set(args.nets) - set(nets.NETS):
        p.error(f"--nets: choose from {','.join(nets.NETS)}")
    args.peers = [] if args.peers == "none" else list(PEER_NAMES) if args.peers == "all" \
        else csv_list(args.peers)
    if set(args.peers) - set(PEER_NAMES):
        p.error(f"--peers: choose from {','.join(PEER_NAMES)}")
    return args


def select_layers(args):
    layers = load_layers(args.shapes)
    if args.layers == "none":
        return []
    if args.layers == "all":
        return layers
    wanted = csv_list(args.layers)
    chosen = [layer for layer in layers if str(layer.id) in wanted or layer.net in wanted]
    known = {str(layer.id) for layer in layers} | {layer.net for layer in layers}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        sys.exit(f"unknown layer id(s)/net(s) {unknown}; the tables have ids "
                 f"{layers[0].id}..{layers[-1].id} and nets {sorted({l.net for l in layers})}")
    return chosen


def available_peers(names):
    """The peer classes that can run; prints a one-line note for each one that cannot."""
    ready = []
    for peer in PEERS:
        if peer.name not in names:
            continue
        why = peer.available()
        if why:
            print(f"note: {why}", file=sys.stderr)
        else:
            ready.append(peer)
    return ready


def build_peers(peers, module, x, threads, notes):
    """{peer name: runner with its input set} for `module` on `x`; a peer that cannot build
    the graph is noted and left out."""
    runners = {}
    try:
        graph = lower(module, x)
    except NotImplementedError as e:
        notes.append(f"peers skipped: {e}")
        return runners
    for peer in peers:
        try:
            runner = peer(graph, threads)
            runner.set_input(x.numpy())
            runners[peer.name] = runner
        except Exception as e:
            notes.append(f"{peer.name} could not build the graph: {type(e).__name__}: {e}")
    return runners


def bench_layers(dse, layers, ops, peers, threads, batch, budget, peak, progress, notes):
    rows = []
    for layer in layers:
        for op in (op for op in ops if op in layer.ops):
            # Weights are made outside inference mode, as a model's parameters are (so
            # packed-weight caching applies as it would in a real model).
            case = make_case(dse, layer, op, batch)
            runners = build_peers(peers, case.module, case.x, threads, notes)
            with torch.inference_mode():
                kernels, errors, rejected = check(dse, case, runners)
                for name, why in rejected.items():
                    notes.append(f"layer {layer.id} {op}: {name} not timed: {why}")
                    runners.pop(name)
                fns = {**case.variants, **{n: r.run for n, r in runners.items()}}
                stats = measure(fns, **budget)
            rows.append(report.make_layer_row(layer, op, batch, threads, stats, kernels,
                                              errors, peak))
            progress.advance(f"{threads} thr b{batch} layer {layer.id} {op}")
    return rows


def bench_nets(dse, keys, peers, threads, batch, budget, progress, notes):
    rows = []
    for key in keys:
        variants, folded, x, converted = nets.make_net(dse, key, batch)
        runners = build_peers(peers, folded, x, threads, notes)
        with torch.inference_mode():
            expected = folded(x)
            errors = {}
            for name, fn in variants.items():
                errors[name] = max_error(fn(), expected)
                if errors[name] > NET_TOL:
                    raise MismatchError(f"{nets.LABELS[key]}: {name} differs from ATen by "
                                        f"{errors[name]:.2e} (relative to max |output|)")
            rejected = {}
            errors.update(check_peers(runners, expected, rejected, NET_TOL))
            for name, why in rejected.items():
                notes.append(f"{nets.LABELS[key]}: {name} not timed: {why}")
                runners.pop(name)
            kernels = nets.dse_kernels(
                dse, converted, [x, x.contiguous(memory_format=torch.channels_last)])
            stats = measure({**variants, **{n: r.run for n, r in runners.items()}}, **budget)
        rows.append({"net": key, "label": nets.LABELS[key], "threads": threads, "batch": batch,
                     "times_us": {n: vars(s) for n, s in stats.items()},
                     "max_rel_error": errors, "kernels": kernels,
                     "peers_ran": {n: r.what_ran() for n, r in runners.items()},
                     "spread": report.spread(stats)})
        progress.advance(f"{threads} thr b{batch} {nets.LABELS[key]}")
    return rows


def header_lines(dse, meta, peers, peak):
    aten = (f"ATen: torch {meta['torch']}, cpu capability {meta['aten_capability']}, "
            f"oneDNN (mkldnn) {'on' if meta['mkldnn'] else 'off'}")
    return [f"machine: {meta['machine']} ({meta['cpus']} CPUs, {meta['arch']}), "
            f"python {meta['python']}",
            f"dsconv_ext {meta['dsconv_ext']} ({meta['dsconv_ext_path']}), kernel set "
            f"{meta['cpu_capability']}",
            aten,
            *(p.version() for p in peers),
            "threads: torch.set_num_threads (ATen and dsconv_ext), SessionOptions."
            "intra_op_num_threads (ORT, spinning off), Interpreter(num_threads) (LiteRT)",
            "timing: fp32, inference_mode; warm-up, then interleaved rounds "
            "(A A B B C C, A A B B C C, ...; the first call of each variant in a round untimed),"
            " median and p10/p90; spread = worst (p90-p10)/median",
            "one rep: a PyTorch call on the prepared input (output allocated); ORT "
            "session.run; LiteRT invoke() (input copied in once, before timing)",
            *machine.describe(peak)]


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    dse = env.import_dsconv()
    layers = select_layers(args)
    peers = available_peers(args.peers)
    mode = "quick" if args.quick else "full"
    budget, net_budget = dict(BUDGETS[mode]), dict(NET_BUDGETS[mode])
    if args.min_time is not None:
        budget["min_time"] = args.min_time
    if args.reps is not None:
        budget["max_reps"] = max(args.reps, budget["min_reps"])
    print("measuring the machine's FMA peak and read bandwidth ...", file=sys.stderr)
    peak = machine.measure(dse.cpu_capability(), args.threads)
    meta = {**env.describe(dse, torch), "budget": budget, "net_budget": net_budget,
            "peak": peak, "peers": [p.name for p in peers],
            "args": {k: str(v) for k, v in vars(args).items()}}
    meta["header"] = header_lines(dse, meta, peers, peak)
    print("\n".join(meta["header"]))

    cases = sum(len([op for op in args.ops if op in layer.ops]) for layer in layers)
    total = (cases + len(args.nets)) * len(args.threads) * len(args.batch)
    layer_runs, net_rows, notes = [], [], []
    try:
        with Progress(total) as progress:
            for threads in args.threads:
                torch.set_num_threads(threads)
                for batch in args.batch:
                    rows = bench_layers(dse, layers, args.ops, peers, threads, batch, budget,
                                        peak["fma_gflops"][threads], progress, notes)
                    if rows:
                        layer_runs.append({"threads": threads, "batch": batch, "ops": args.ops,
                                           "rows": rows, "summary": report.summarize(rows, args.ops),
                                           "kernels": [f"{op}: {', '.join(k)}" for op, k in
                                                       report.kernels_used(rows).items()]})
                    net_rows += bench_nets(dse, args.nets, peers, threads, batch, net_budget,
                                           progress, notes)
    except MismatchError as e:
        bar = "!" * 78
        print(f"\n{bar}\nMISMATCH: a variant disagrees with ATen; nothing more is timed and no "
              f"results are written.\n{e}\n{bar}", file=sys.stderr)
        return 1

    for run in layer_runs:
        print(f"\nkernels ({run['threads']} thr, batch {run['batch']}): "
              + "; ".join(run["kernels"]))
        for op in args.ops:
            cells = report.layer_cells(run["rows"], op)
            if cells:
                print()
                report.print_table(report.layer_title(op, run["threads"], run["batch"]),
                                   report.LAYER_COLUMNS, cells)
        print()
        for op, s in run["summary"].items():
            print(report.summary_line(op, s, run["threads"], run["batch"]))
        note = report.noise_note(run["rows"])
        if note:
            print(note)
    if net_rows:
        print()
        report.print_table(report.NET_TITLE, report.NET_COLUMNS, report.net_cells(net_rows))
        for r in net_rows[:len(args.nets)]:
            print(f"{r['label']}: dsconv kernels {', '.join(r['kernels'])}; "
                  + "; ".join(f"{n}: {what}" for n, what in r["peers_ran"].items()))
        note = report.noise_note(net_rows, "label")
        if note:
            print(note)
    for note in dict.fromkeys(notes):
        print(f"note: {note}")

    meta["notes"] = list(dict.fromkeys(notes))
    meta["wall_s"] = time.perf_counter() - start
    report.write_results(args.out, meta, layer_runs, net_rows)
    files, why = plots.write_plots(args.out, layer_runs, net_rows)
    if why:
        print(f"note: {why}")
    print(f"\nwall time {meta['wall_s']:.0f} s; results in {args.out}/results.{{md,json}}"
          + (f"; plots: {', '.join(f.name for f in files)}" if files else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
