"""Results across vLLM builds: the journal keeps every build's answers, so a suite's metrics can be tracked
build by build, and a drop against the previous build is a regression with a named difference.

Two records are comparable across builds when everything but the build matches: the checkpoint, the mode,
the sample and its prompt, the repeat, the parameters and the dataset revision (a "slot").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

SLOT = ("checkpoint_id", "mode", "sample_id", "repeat", "params_hash", "prompt_hash", "dataset_revision")
MIN_COVERAGE = 0.9  # an earlier build counts as "previous" only if it answered most of today's slots


def _slot(r: dict) -> tuple:
    return tuple(r.get(c) for c in SLOT)


def build_history(journal: dict[str, dict], current: list[dict], version: str) -> pl.DataFrame:
    """One row per (vLLM build, mode) that answered this suite's current slots: accuracy, cutoff, coverage."""
    slots = {_slot(r) for r in current}
    per_mode = {m: sum(1 for r in current if r["mode"] == m) for m in {r["mode"] for r in current}}
    rows: dict[tuple[str, str], list[dict]] = {}
    for r in journal.values():
        if _slot(r) in slots and not r.get("error"):
            rows.setdefault((r["vllm_version"], r["mode"]), []).append(r)
    out = []
    for (build, mode), recs in rows.items():
        scores = [float(r.get("score") or 0.0) for r in recs]
        out.append(
            {
                "vllm_version": build,
                "mode": mode,
                "records": len(recs),
                "coverage": len(recs) / per_mode[mode] if per_mode.get(mode) else 0.0,
                "accuracy": math.fsum(scores) / len(scores),
                "cutoff_rate": sum(1 for r in recs if r.get("finish_reason") == "length") / len(recs),
                "last_answer_at": max(float(r.get("finished_at") or 0.0) for r in recs),
                "current": build == version,
            }
        )
    schema = {
        "vllm_version": pl.String,
        "mode": pl.String,
        "records": pl.Int64,
        "coverage": pl.Float64,
        "accuracy": pl.Float64,
        "cutoff_rate": pl.Float64,
        "last_answer_at": pl.Float64,
        "current": pl.Boolean,
    }
    return pl.DataFrame(out, schema=schema).sort(["last_answer_at", "mode"])


@dataclass(frozen=True)
class BuildComparison:
    previous: str | None  # the build compared against (None: no earlier build answered these slots)
    regressions: list[str]  # one line per mode that dropped significantly
    lines: list[str]  # every mode's comparison, for the check's description


def compare_with_previous_build(journal: dict[str, dict], current: list[dict], version: str) -> BuildComparison:
    """Paired comparison (same samples, repeats averaged) of this build with the latest earlier build."""
    from quant_dag.evaluate.paired import compare_paired

    history = build_history(journal, current, version)
    earlier = history.filter(~pl.col("current") & (pl.col("coverage") >= MIN_COVERAGE))
    if earlier.is_empty():
        return BuildComparison(None, [], [])
    previous = earlier.sort("last_answer_at")["vllm_version"][-1]
    slots = {_slot(r) for r in current}
    old = [r for r in journal.values() if r["vllm_version"] == previous and _slot(r) in slots and not r.get("error")]
    regressions, lines = [], []
    cols = ["sample_id", "repeat", "score", "error"]
    for mode in sorted({r["mode"] for r in current}):
        now = pl.DataFrame(
            [{c: r.get(c) for c in cols} for r in current if r["mode"] == mode],
            schema={"sample_id": pl.String, "repeat": pl.Int64, "score": pl.Float64, "error": pl.String},
        )
        before = pl.DataFrame([{c: r.get(c) for c in cols} for r in old if r["mode"] == mode], schema=now.schema)
        if before.is_empty():
            continue
        cmp = compare_paired(before, now)
        line = f"{mode}: vLLM {version} vs {previous}: {cmp.verdict} on {cmp.n_paired} paired samples"
        lines.append(line)
        if cmp.significant and (cmp.diff or 0) < 0:
            regressions.append(line)
    return BuildComparison(previous, regressions, lines)
