"""bench/timing.py's bookkeeping (not timings): every variant gets a median per round, and the
per-round ratio pairs rounds, skipping those a variant did not run in."""
import sys
from pathlib import Path

# Appended, not prepended: the installed dsconv_ext must win over the source folder.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from bench.timing import measure, paired_ratio  # noqa: E402


def test_measure_keeps_a_median_per_round():
    calls = {"a": 0, "b": 0}

    def count(name):
        def fn():
            calls[name] += 1
        return fn

    stats = measure({"a": count("a"), "b": count("b")}, min_time=0.0, max_reps=6,
                    warmup_time=0.0, min_reps=6, rounds=3)
    for s in stats.values():
        assert s.reps == 6 and len(s.round_medians_us) == 3
        assert all(m is not None and m >= 0 for m in s.round_medians_us)
    # each round: one untimed switch-in call and two timed ones, after the warm-up call
    assert calls == {"a": 1 + 3 * 3, "b": 1 + 3 * 3}


def test_paired_ratio_pairs_rounds():
    a = {"round_medians_us": (2.0, 9.0, None, 4.0)}
    b = {"round_medians_us": (1.0, 3.0, 5.0, 4.0)}
    assert paired_ratio(a, b) == 2.0  # median of 2, 3 and 1; the third round is skipped
    assert paired_ratio({"round_medians_us": (None,)}, {"round_medians_us": (1.0,)}) is None
