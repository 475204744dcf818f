"""Statistics for per-sample benchmark records: pass@k, confidence intervals, paired comparisons, aggregation.

Pure Python (math, random, statistics): the inputs are at most tens of thousands of numbers."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k),
    computed as 1 - prod_{i=n-c+1..n} (1 - k/i) so that large n does not overflow."""
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"need n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion successes/n. n == 0 gives (0.0, 1.0): no information."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def mean_interval(values: Sequence[float], z: float = 1.96) -> tuple[float, float, float]:
    """(mean, lo, hi): normal approximation, mean +- z * s / sqrt(n) with s the sample standard deviation
    (n - 1 denominator). One value gives (v, v, v): there is no spread to estimate, so the interval is
    degenerate rather than invented; callers that need an honest interval for tiny n should not use this."""
    if not values:
        raise ValueError("mean_interval of no values")
    m = math.fsum(values) / len(values)
    if len(values) == 1:
        return m, m, m
    se = statistics.stdev(values) / math.sqrt(len(values))
    return m, m - z * se, m + z * se


@dataclass(frozen=True)
class AccuracyInterval:
    accuracy: float  # mean over samples of each sample's mean score over its repeats
    lo: float
    hi: float
    n_samples: int
    n_records: int
    method: str  # "wilson" (one 0/1 score per sample) or "normal" (per-sample means, clustered by sample)


def accuracy_interval(per_sample_scores: Sequence[Sequence[float]], z: float = 1.96) -> AccuracyInterval:
    """Accuracy over samples that may have several repeats: each sample's mean over its repeats, then the mean
    over samples. Repeats of one sample are correlated, so the interval treats the sample as the unit: Wilson
    when every sample has exactly one 0/1 score, else the normal interval on the per-sample means (clipped to
    [0, 1]). When every sample's mean is exactly 0 or 1 (e.g. nothing ever solved), the normal interval would have
    zero width; Wilson on the per-sample outcomes is used instead, so "0 of 3 problems" still shows its doubt."""
    if not per_sample_scores:
        raise ValueError("accuracy_interval of no samples")
    if any(len(s) == 0 for s in per_sample_scores):
        raise ValueError("every sample needs at least one score")
    means = [math.fsum(s) / len(s) for s in per_sample_scores]
    n_records = sum(len(s) for s in per_sample_scores)
    if all(len(s) == 1 and s[0] in (0.0, 1.0) for s in per_sample_scores):
        successes = sum(s[0] for s in per_sample_scores)
        lo, hi = wilson_interval(successes, len(per_sample_scores), z)
        return AccuracyInterval(successes / len(means), lo, hi, len(means), n_records, "wilson")
    if all(m in (0.0, 1.0) for m in means):
        lo, hi = wilson_interval(sum(means), len(means), z)
        return AccuracyInterval(math.fsum(means) / len(means), lo, hi, len(means), n_records, "wilson")
    m, lo, hi = mean_interval(means, z)
    return AccuracyInterval(m, max(0.0, lo), min(1.0, hi), len(means), n_records, "normal")


def _binary(xs: Sequence[int], name: str) -> list[int]:
    out = [int(x) for x in xs]
    if any(x not in (0, 1) for x in out):
        raise ValueError(f"{name} must hold 0/1 values")
    return out


def mcnemar(base: Sequence[int], other: Sequence[int]) -> dict:
    """Exact McNemar test on paired 0/1 results of the same samples (same order).

    b = base right and other wrong, c = base wrong and other right; under H0 (equal accuracy) b ~ Bin(b+c, 1/2).
    p = min(1, 2 * P(X <= min(b, c))), exact with integer arithmetic (math.comb); no discordant pairs gives p=1."""
    if len(base) != len(other):
        raise ValueError(f"paired results differ in length: {len(base)} vs {len(other)}")
    x, y = _binary(base, "base"), _binary(other, "other")
    b = sum(1 for u, v in zip(x, y) if u == 1 and v == 0)
    c = sum(1 for u, v in zip(x, y) if u == 0 and v == 1)
    d = b + c
    if d == 0:
        p = 1.0
    else:
        tail = sum(math.comb(d, i) for i in range(min(b, c) + 1))
        p = min(1.0, 2 * tail / 2**d)  # int / int: exact big-int ratio, correctly rounded to float
    n = len(x)
    return {
        "n": n,
        "b": b,
        "c": c,
        "discordant": d,
        "base_accuracy": sum(x) / n if n else None,
        "other_accuracy": sum(y) / n if n else None,
        "p_value": p,
    }


def paired_bootstrap(
    base: Sequence[float], other: Sequence[float], iters: int = 10000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(mean difference other - base, lo, hi): percentile bootstrap over samples, resampling the pairs so the
    pairing is kept. Scores may be 0/1 or per-sample means over repeats. Deterministic for a given seed.
    Cost is iters * n draws in pure Python: about 8 s for 12,000 samples x 10,000 iters (MMLU-Pro)."""
    if len(base) != len(other):
        raise ValueError(f"paired results differ in length: {len(base)} vs {len(other)}")
    if not base:
        raise ValueError("paired_bootstrap of no samples")
    if iters < 1:
        raise ValueError("iters must be >= 1")
    diffs = [float(o) - float(b) for b, o in zip(base, other)]
    n = len(diffs)
    mean_diff = math.fsum(diffs) / n
    rng = random.Random(seed)
    boots = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(iters))
    alpha = (1.0 - confidence) / 2
    return mean_diff, _quantile(boots, alpha), _quantile(boots, 1.0 - alpha)


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted values."""
    pos = q * (len(sorted_values) - 1)
    i = math.floor(pos)
    j = min(i + 1, len(sorted_values) - 1)
    return sorted_values[i] + (sorted_values[j] - sorted_values[i]) * (pos - i)


def _mean(xs: list[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def _median(xs: list[float]) -> float | None:
    return float(statistics.median(xs)) if xs else None


def aggregate(records: list[dict], k_max: int | None = None) -> dict:
    """Summary of the per-sample records of one (variant, benchmark, mode).

    Each record has sample_id, repeat, score (float, None when errored), finish_reason, completion_tokens,
    reasoning_tokens, error (str or None). Choices made here:
    - an errored record (error set, or score None) counts as a wrong answer (score 0) for accuracy and pass@k:
      dropping it would flatter a variant whose server fails on hard prompts; errors are reported apart;
    - accuracy / ci: accuracy_interval over samples (repeats averaged within a sample first);
    - cutoff_rate: finish_reason == "length" among records without error;
    - no_answer_rate: records without error where the scorer found no answer (extracted None: no letter, no
      number, no code), among those that say (older records have no `extracted`);
    - accuracy_completed: plain mean score over records without error whose finish_reason is not "length";
    - token means / medians: over records without error that report the count;
    - pass_at_k[k] for k = 1..n (n = most repeats of any sample, at most k_max): mean over the samples with at
      least k repeats of pass_at_k(n_i, c_i, k), correct meaning score >= 1.0.
    Values with nothing to average over are None."""
    if not records:
        raise ValueError("aggregate of no records")
    by_sample: dict[str, list[dict]] = {}
    for r in records:
        by_sample.setdefault(str(r["sample_id"]), []).append(r)

    def score_of(r: dict) -> float:
        return 0.0 if r.get("error") is not None or r.get("score") is None else float(r["score"])

    per_sample = [[score_of(r) for r in sorted(rs, key=lambda r: r.get("repeat") or 0)] for rs in by_sample.values()]
    acc = accuracy_interval(per_sample)

    ok = [r for r in records if r.get("error") is None]
    cutoff = sum(1 for r in ok if r.get("finish_reason") == "length")
    completed = [score_of(r) for r in ok if r.get("finish_reason") != "length"]
    judged = [r for r in ok if "extracted" in r]

    def tokens(key: str) -> list[float]:
        return [float(r[key]) for r in ok if r.get(key) is not None]

    n_max = max(len(s) for s in per_sample)
    top = n_max if k_max is None else min(n_max, k_max)
    pass_k: dict[int, float] = {}
    for k in range(1, top + 1):
        vals = [pass_at_k(len(s), sum(1 for x in s if x >= 1.0), k) for s in per_sample if len(s) >= k]
        pass_k[k] = math.fsum(vals) / len(vals)

    completion, reasoning = tokens("completion_tokens"), tokens("reasoning_tokens")
    return {
        "n_samples": len(per_sample),
        "n_records": len(records),
        "accuracy": acc.accuracy,
        "ci_low": acc.lo,
        "ci_high": acc.hi,
        "ci_method": acc.method,
        "cutoff_rate": cutoff / len(ok) if ok else None,
        "no_answer_rate": sum(1 for r in judged if r["extracted"] is None) / len(judged) if judged else None,
        "accuracy_completed": _mean(completed),
        "mean_completion_tokens": _mean(completion),
        "median_completion_tokens": _median(completion),
        "mean_reasoning_tokens": _mean(reasoning),
        "median_reasoning_tokens": _median(reasoning),
        "errors": len(records) - len(ok),
        "pass_at_k": pass_k,
    }
