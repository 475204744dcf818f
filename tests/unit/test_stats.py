"""Statistics against hand-computed values (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest

from quant_dag.evaluate.stats import (
    accuracy_interval,
    aggregate,
    mcnemar,
    mean_interval,
    paired_bootstrap,
    pass_at_k,
    wilson_interval,
)


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (10, 3, 1, 0.3),  # pass@1 = c/n
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5) = 0.91666...
        (10, 0, 5, 0.0),  # nothing correct
        (10, 8, 3, 1.0),  # n-c = 2 < k = 3: every 3-subset has a correct one
        (5, 5, 5, 1.0),
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    ],
)
def test_pass_at_k(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_combinations_for_large_n() -> None:
    # the product form agrees with the exact binomial form where the latter is still exact
    for n, c, k in [(200, 17, 10), (100, 50, 25), (64, 1, 63)]:
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("n, c, k", [(5, 2, 6), (5, 6, 1), (0, 0, 1), (5, 2, 0)])
def test_pass_at_k_rejects(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_wilson() -> None:
    # 8/10, z = 1.96: z^2 = 3.8416, denom = 1 + 0.38416 = 1.38416,
    # centre = (0.8 + 0.19208) / 1.38416 = 0.716796, half = 1.96 * sqrt(0.016 + 0.009604) / 1.38416 = 0.226582
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    # 0/10: centre = half = 0.19208 / 1.38416 = 0.138770 -> (0, 0.277540)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.27754, abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_mean_interval() -> None:
    # values 0, 0.5, 1: mean 0.5, sd = sqrt((0.25 + 0 + 0.25) / 2) = 0.5, se = 0.5 / sqrt(3) = 0.288675
    m, lo, hi = mean_interval([0.0, 0.5, 1.0])
    assert m == 0.5
    assert lo == pytest.approx(0.5 - 1.96 * 0.288675, abs=1e-6) and hi == pytest.approx(0.5 + 1.96 * 0.288675, abs=1e-6)
    assert mean_interval([0.7]) == (0.7, 0.7, 0.7)  # one value: degenerate by design
    with pytest.raises(ValueError):
        mean_interval([])


def test_accuracy_interval_wilson_and_normal() -> None:
    single = accuracy_interval([[1.0]] * 8 + [[0.0]] * 2)
    assert single.method == "wilson" and single.accuracy == 0.8
    assert (round(single.lo, 4), round(single.hi, 4)) == (0.4902, 0.9433)
    assert (single.n_samples, single.n_records) == (10, 10)
    # repeats: per-sample means 1, 0.5, 0, 0.5 -> accuracy 0.5; sd = sqrt(0.5 / 3) = 0.408248,
    # se = 0.204124, half = 1.96 * se = 0.400083
    rep = accuracy_interval([[1, 1], [0, 1], [0, 0], [1, 0]])
    assert rep.method == "normal" and rep.accuracy == 0.5 and (rep.n_samples, rep.n_records) == (4, 8)
    assert rep.lo == pytest.approx(0.099917, abs=1e-6) and rep.hi == pytest.approx(0.900083, abs=1e-6)
    # the normal interval is clipped to [0, 1]: means 1, 0.5, 0 -> 0.5 +- 0.565803
    clipped = accuracy_interval([[1, 1], [0, 1], [0, 0]])
    assert (clipped.lo, clipped.hi) == (0.0, 1.0)
    # nothing ever solved over 3 problems x 2 repeats: not a zero-width [0, 0] but Wilson 0/3 = [0, 0.5615]
    none = accuracy_interval([[0, 0], [0, 0], [0, 0]])
    assert none.method == "wilson" and none.lo == 0.0 and round(none.hi, 4) == 0.5615


def test_mcnemar_exact() -> None:
    # 10 pairs: 2 both right, 1 base-only (b), 7 other-only (c). d = 8, min(b, c) = 1:
    # P(X <= 1) = (C(8,0) + C(8,1)) / 2^8 = 9/256; two-sided p = 18/256 = 0.0703125
    base = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    other = [1, 1, 0, 1, 1, 1, 1, 1, 1, 1]
    r = mcnemar(base, other)
    assert (r["b"], r["c"], r["discordant"], r["n"]) == (1, 7, 8, 10)
    assert r["p_value"] == pytest.approx(18 / 256, abs=1e-15)
    # b = 0, c = 5: p = 2 * 1/32 = 0.0625
    assert mcnemar([0] * 5, [1] * 5)["p_value"] == pytest.approx(0.0625)
    # b = c = 3: 2 * (1 + 6 + 15 + 20) / 64 > 1 -> capped at 1
    assert mcnemar([1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1])["p_value"] == 1.0
    # no discordant pairs
    assert mcnemar([1, 0], [1, 0])["p_value"] == 1.0
    # large d stays finite (big-int ratio): b = 0, c = 2000 -> 2 / 2^2000 underflows to 0
    assert mcnemar([0] * 2000, [1] * 2000)["p_value"] == 0.0
    with pytest.raises(ValueError):
        mcnemar([1, 0], [1])
    with pytest.raises(ValueError):
        mcnemar([2], [1])


def test_paired_bootstrap() -> None:
    # 200 samples: both right on 100, other-only right on 30, base-only right on 10, both wrong on 60.
    # true mean difference (other - base) = (30 - 10) / 200 = 0.1
    base = [1] * 100 + [0] * 30 + [1] * 10 + [0] * 60
    other = [1] * 100 + [1] * 30 + [0] * 10 + [0] * 60
    diff, lo, hi = paired_bootstrap(base, other, iters=2000, seed=0)
    assert diff == pytest.approx(0.1)
    assert lo < 0.1 < hi
    assert lo > 0.0  # 20 net wins out of 40 discordant pairs is clearly better
    # se of the mean difference ~ sqrt(0.2 - 0.01) / sqrt(200) = 0.0308: a 95% interval is ~0.12 wide
    assert 0.08 < hi - lo < 0.16
    assert paired_bootstrap(base, other, iters=2000, seed=0) == (diff, lo, hi)  # deterministic
    assert paired_bootstrap([1, 0, 1], [1, 0, 1], iters=100) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired_bootstrap([1], [1, 0])


def rec(
    sample_id: str,
    repeat: int,
    score: float | None,
    finish: str | None,
    ct: int | None,
    rt: int | None,
    error: str | None = None,
) -> dict:
    return dict(
        sample_id=sample_id,
        repeat=repeat,
        score=score,
        finish_reason=finish,
        completion_tokens=ct,
        reasoning_tokens=rt,
        error=error,
    )


RECORDS = [
    rec("s1", 0, 1.0, "stop", 100, 60),
    rec("s1", 1, 1.0, "stop", 200, 150),
    rec("s2", 0, 0.0, "length", 1000, 900),
    rec("s2", 1, 1.0, "stop", 300, 200),
    rec("s3", 0, None, None, None, None, error="timeout"),
    rec("s3", 1, 0.0, "stop", 400, None),
    rec("s4", 0, 1.0, "stop", 50, 0),
    rec("s4", 1, 0.0, "stop", 150, 100),
]


def test_aggregate_by_hand() -> None:
    a = aggregate(RECORDS)
    # 4 samples x 2 repeats = 8 records; one errored (s3 repeat 0)
    assert (a["n_samples"], a["n_records"], a["errors"]) == (4, 8, 1)
    # per-sample scores, the error counted as 0: s1 [1,1] s2 [0,1] s3 [0,0] s4 [1,0]
    # means 1, 0.5, 0, 0.5 -> accuracy 0.5; normal interval 0.5 +- 1.96 * 0.204124 = (0.099917, 0.900083)
    assert a["accuracy"] == 0.5 and a["ci_method"] == "normal"
    assert a["ci_low"] == pytest.approx(0.099917, abs=1e-6) and a["ci_high"] == pytest.approx(0.900083, abs=1e-6)
    # 7 records without error, 1 of them "length" (s2 repeat 0) -> 1/7
    assert a["cutoff_rate"] == pytest.approx(1 / 7)
    # without error and not cut off: s1 1, s1 1, s2 1, s3 0, s4 1, s4 0 -> 4/6
    assert a["accuracy_completed"] == pytest.approx(4 / 6)
    # completion tokens of the 7 ok records: 100 200 1000 300 400 50 150 -> sum 2200, mean 314.2857;
    # sorted 50 100 150 200 300 400 1000 -> median 200
    assert a["mean_completion_tokens"] == pytest.approx(2200 / 7) and a["median_completion_tokens"] == 200
    # reasoning tokens reported: 60 150 900 200 0 100 (s3 repeat 1 has none) -> mean 1410/6 = 235;
    # sorted 0 60 100 150 200 900 -> median (100 + 150) / 2 = 125
    assert a["mean_reasoning_tokens"] == 235 and a["median_reasoning_tokens"] == 125
    # correct counts c = 2, 1, 0, 1 of n = 2.
    # pass@1 = mean(c/n) = (1 + 0.5 + 0 + 0.5) / 4 = 0.5
    # pass@2: s1 1, s2 (n-c = 1 < 2) 1, s3 0, s4 1 -> 3/4
    assert a["pass_at_k"] == {1: pytest.approx(0.5), 2: pytest.approx(0.75)}
    assert aggregate(RECORDS, k_max=1)["pass_at_k"] == {1: pytest.approx(0.5)}
    assert a["no_answer_rate"] is None  # these records predate `extracted`
    judged = [{**r, "extracted": None if i in (1, 5) else "x"} for i, r in enumerate(RECORDS)]
    # 7 records without error; records 1 and 5 found no answer (record 4, errored, is not counted)
    assert aggregate(judged)["no_answer_rate"] == pytest.approx(2 / 7)


def test_aggregate_uneven_repeats_and_single_repeat() -> None:
    # sA has 1 repeat (right), sB has 3 (one right): accuracy = mean(1, 1/3) = 2/3
    recs = [
        rec("sA", 0, 1.0, "stop", 10, 5),
        rec("sB", 0, 0.0, "stop", 10, 5),
        rec("sB", 1, 1.0, "stop", 10, 5),
        rec("sB", 2, 0.0, "stop", 10, 5),
    ]
    a = aggregate(recs)
    assert a["accuracy"] == pytest.approx(2 / 3) and a["ci_method"] == "normal"
    # pass@1 = mean(1/1, 1/3) = 2/3; pass@2 only sB: 1 - C(2,2)/C(3,2) = 2/3; pass@3 only sB: n-c = 2 < 3 -> 1
    assert a["pass_at_k"] == {1: pytest.approx(2 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(1.0)}
    # one 0/1 repeat per sample: Wilson, 8/10 -> (0.4902, 0.9433)
    single = [rec(f"q{i}", 0, 1.0 if i < 8 else 0.0, "stop", 1, None) for i in range(10)]
    b = aggregate(single)
    assert b["ci_method"] == "wilson" and (round(b["ci_low"], 4), round(b["ci_high"], 4)) == (0.4902, 0.9433)
    assert b["mean_reasoning_tokens"] is None and b["median_reasoning_tokens"] is None
    assert b["pass_at_k"] == {1: pytest.approx(0.8)}


def test_aggregate_all_errors_and_empty() -> None:
    a = aggregate([rec("s", 0, None, None, None, None, error="boom")])
    assert (a["accuracy"], a["errors"], a["cutoff_rate"], a["accuracy_completed"]) == (0.0, 1, None, None)
    with pytest.raises(ValueError):
        aggregate([])
