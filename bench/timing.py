"""Interleaved timing of several zero-argument callables.

Each variant is warmed up, its cost estimated, and given a repetition count so that it runs
for about `min_time` seconds (between `min_reps` and `max_reps` reps). The reps are then
spread over up to `rounds` rounds; in each round every variant runs its share back to back
(A A B B C C, A A B B C C, ...), so slow drift of the machine (clock, neighbours, thermals)
hits every variant alike. The first call of a variant in a round is not timed: the runtime
that ran before it may still have threads spinning (OpenMP, ONNX Runtime and XNNPACK pools
all wait actively for a while after a parallel region), and that cost belongs to the other
runtime, not to this one. Each variant's median per round is kept too: the ratio of two
variants measured in the same round (seconds apart), taken over the rounds, is steadier than
the ratio of their overall medians on a machine whose speed drifts between rounds.
"""
import gc
import statistics
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Stats:
    median_us: float
    p10_us: float
    p90_us: float
    reps: int
    round_medians_us: tuple = ()  # per round; None for a round the variant did not run in

    @classmethod
    def of(cls, samples_us, rounds_us=()):
        return cls(statistics.median(samples_us), percentile(samples_us, 10),
                   percentile(samples_us, 90), len(samples_us),
                   tuple(statistics.median(r) if r else None for r in rounds_us))


def paired_ratio(a, b):
    """Median, over the rounds both ran in, of a's round median / b's (None if there is none):
    each ratio compares two measurements seconds apart."""
    pairs = [x / y for x, y in zip(a["round_medians_us"], b["round_medians_us"])
             if x is not None and y is not None]
    return statistics.median(pairs) if pairs else None


def percentile(values, q):
    """Linearly interpolated q-th percentile (0..100)."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def time_call_us(fn):
    t0 = time.perf_counter_ns()
    out = fn()  # noqa: F841  (kept alive so freeing it is not timed)
    t1 = time.perf_counter_ns()
    return (t1 - t0) / 1e3


def measure(fns, *, min_time, max_reps, warmup_time, min_reps=3, rounds=10):
    """{name: Stats} for {name: fn}. The caller sets threads and inference mode."""
    reps = {}
    for name, fn in fns.items():
        warm = [time_call_us(fn)]
        deadline = time.perf_counter() + warmup_time
        while time.perf_counter() < deadline:
            warm.append(time_call_us(fn))
        estimate_s = statistics.median(warm) / 1e6
        reps[name] = max(min_reps, min(max_reps, round(min_time / estimate_s)))

    rounds = min(rounds, max(reps.values()))
    samples = {name: [[] for _ in range(rounds)] for name in fns}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            for name, fn in fns.items():
                n = reps[name]
                share = (r + 1) * n // rounds - r * n // rounds  # n reps over the rounds
                if share:
                    fn()  # the switch-in call, not timed
                    samples[name][r] = [time_call_us(fn) for _ in range(share)]
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: Stats.of([t for r in s for t in r], s) for name, s in samples.items()}
