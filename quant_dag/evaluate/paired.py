"""Paired comparison of a variant with its base on the same benchmark samples.

The sample is the unit: repeats of one sample are averaged first (they are correlated draws of the same
question), then the per-sample means are paired on sample_id. Only samples present on both sides are paired;
the rest are counted, not silently dropped."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import polars as pl

from quant_dag.evaluate.stats import mcnemar, paired_bootstrap


@dataclass(frozen=True)
class PairedComparison:
    n_paired: int  # samples present in both
    n_unpaired_base: int  # samples only the base has
    n_unpaired_other: int  # samples only the variant has
    base_accuracy: float | None  # mean over the paired samples of the per-sample mean score
    other_accuracy: float | None
    diff: float | None  # other - base
    ci_low: float | None
    ci_high: float | None
    significant: bool  # the bootstrap CI excludes 0
    mcnemar_n: int  # pairs with a repeat-0 outcome on both sides
    mcnemar_b: int | None  # base right, variant wrong
    mcnemar_c: int | None  # base wrong, variant right
    mcnemar_p: float | None
    verdict: str

    def as_dict(self) -> dict:
        return asdict(self)


def _scored(records: pl.DataFrame) -> pl.DataFrame:
    """sample_id, repeat, s: an errored record (error set or score null) counts as 0, as in the aggregates:
    dropping it would flatter a variant whose server fails on hard prompts."""
    return records.select(
        pl.col("sample_id").cast(pl.String),
        pl.col("repeat").cast(pl.Int64).fill_null(0),
        pl.when(pl.col("error").is_not_null() | pl.col("score").is_null())
        .then(0.0)
        .otherwise(pl.col("score").cast(pl.Float64))
        .alias("s"),
    )


def per_sample_means(records: pl.DataFrame) -> dict[str, float]:
    """sample_id -> mean score over that sample's repeats."""
    if records.is_empty():
        return {}
    df = _scored(records).group_by("sample_id").agg(pl.col("s").mean())
    return dict(zip(df["sample_id"].to_list(), df["s"].to_list()))


def first_repeat_outcomes(records: pl.DataFrame) -> dict[str, int]:
    """sample_id -> 0/1 outcome (score >= 1) of the sample's first repeat (repeat 0 in practice): McNemar needs
    one binary outcome per sample and side."""
    if records.is_empty():
        return {}
    df = _scored(records).sort("sample_id", "repeat").group_by("sample_id", maintain_order=True).first()
    return {sid: int(s >= 1.0) for sid, s in zip(df["sample_id"].to_list(), df["s"].to_list())}


def verdict_text(
    diff: float | None, lo: float | None, hi: float | None, significant: bool, confidence: float = 0.95
) -> str:
    """'worse (-12.5 pts, 95% CI -20.1..-4.9)', 'better (...)' or 'no significant difference (...)'."""
    if diff is None or lo is None or hi is None:
        return "no samples in common"
    detail = f"{diff * 100:+.1f} pts, {confidence:.0%} CI {lo * 100:+.1f}..{hi * 100:+.1f}"
    if not significant:
        return f"no significant difference ({detail})"
    return f"{'worse' if diff < 0 else 'better'} ({detail})"


def compare_paired(
    base: pl.DataFrame, other: pl.DataFrame, iters: int = 2000, seed: int = 0, confidence: float = 0.95
) -> PairedComparison:
    """Variant (other) vs base on one (benchmark, mode). Each frame holds the records of one side with columns
    sample_id, repeat, score, error. Bootstrap over paired per-sample means (seeded: the same inputs give the same
    interval); exact McNemar on the first repeat's binary outcome."""
    bm, om = per_sample_means(base), per_sample_means(other)
    common = sorted(set(bm) & set(om))  # sorted: the bootstrap's draws must not depend on dict order
    n_ub, n_uo = len(set(bm) - set(om)), len(set(om) - set(bm))
    if not common:
        return PairedComparison(
            0,
            n_ub,
            n_uo,
            None,
            None,
            None,
            None,
            None,
            False,
            0,
            None,
            None,
            None,
            verdict_text(None, None, None, False),
        )
    xs, ys = [bm[s] for s in common], [om[s] for s in common]
    diff, lo, hi = paired_bootstrap(xs, ys, iters=iters, seed=seed, confidence=confidence)
    significant = lo > 0 or hi < 0
    b0, o0 = first_repeat_outcomes(base), first_repeat_outcomes(other)
    both = [s for s in common if s in b0 and s in o0]
    mc = mcnemar([b0[s] for s in both], [o0[s] for s in both]) if both else None
    return PairedComparison(
        n_paired=len(common),
        n_unpaired_base=n_ub,
        n_unpaired_other=n_uo,
        base_accuracy=math.fsum(xs) / len(xs),
        other_accuracy=math.fsum(ys) / len(ys),
        diff=diff,
        ci_low=lo,
        ci_high=hi,
        significant=significant,
        mcnemar_n=len(both),
        mcnemar_b=mc["b"] if mc else None,
        mcnemar_c=mc["c"] if mc else None,
        mcnemar_p=mc["p_value"] if mc else None,
        verdict=verdict_text(diff, lo, hi, significant, confidence),
    )
