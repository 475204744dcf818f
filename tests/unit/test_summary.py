"""The study summary engine against a hand-built project home (expected values worked out in the comments).

Model m: base, q4, q8 (a copy of the base), q2 (the `code` suite never materialized), q3 (not servable: every
suite evaluated=false). Model n: base and q4 on `arith` only. Suites: arith (thinking + non-thinking), mc, code
(3 repeats, for pass@k)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import polars as pl
import pytest

from quant_dag.evaluate.paired import compare_paired
from quant_dag.evaluate.stats import aggregate
from quant_dag.summary import charts
from quant_dag.summary.report import main_table_md, write_report
from quant_dag.summary.tables import (
    NEVER,
    PACE_ONLY,
    Missing,
    accuracy_wide,
    cutoff_wide,
    load_study,
    load_variant_facts,
    long_table,
    memory_table,
    paired_vs_base,
    reasoning_wide,
    recovery_wide,
)

SUITES = ["arith", "mc", "code"]
NOT_SERVABLE = "not servable here: test device has no kernel for q3"
PAIRS = [("m", "base"), ("m", "q4"), ("m", "q8"), ("m", "q2"), ("m", "q3"), ("n", "base"), ("n", "q4")]


# ---------------------------------------------------------------------------------------------------- fixture


def _rec(
    model: str,
    variant: str,
    suite: str,
    mode: str,
    sid: str,
    rep: int,
    score: float | None,
    *,
    finish: str = "stop",
    reasoning: int = 0,
    completion: int = 10,
    error: str | None = None,
) -> dict:
    return {
        "key": f"{model}/{variant}/{suite}/{mode}/{sid}/{rep}",
        "model": model,
        "variant": variant,
        "benchmark": suite,
        "task": suite,
        "mode": mode,
        "sample_id": sid,
        "repeat": rep,
        "seed": rep,
        "params": "{}",
        "content": "answer",
        "finish_reason": finish,
        "completion_tokens": completion,
        "reasoning_tokens": reasoning,
        "score": None if error else score,
        "error": error,
        "checkpoint_id": f"ckpt:{model}:{variant}",
        "vllm_version": "0.0-test",
        "dataset_revision": f"{suite}-rev1",
        "run_id": "run-1",
    }


def _outcomes(model: str, variant: str) -> dict[str, list[dict]]:
    """Per-suite records of one variant. q8 is the base exactly (identical outcomes); q2 is q4 on arith, base on mc."""
    if variant in ("q8", "q2"):
        src = {"q8": {"arith": "base", "mc": "base", "code": "base"}, "q2": {"arith": "q4", "mc": "base"}}[variant]
        return {
            s: [r | {"variant": variant, "key": r["key"] + variant} for r in _outcomes(model, v)[s]]
            for s, v in src.items()
        }
    q4 = variant == "q4"
    arith = []
    for i in range(10):
        # thinking: base right on a0..a7 (0.8); q4 right on a0..a5 (0.6), a6 and a7 cut off at max_tokens
        right = i < (6 if q4 else 8)
        arith.append(
            _rec(
                model,
                variant,
                "arith",
                "thinking",
                f"a{i}",
                0,
                float(right),
                finish="length" if q4 and i in (6, 7) else "stop",
                reasoning=150 if q4 else 100,
                completion=170 if q4 else 120,
            )
        )
        # non-thinking: both right on a0..a4 (0.5)
        arith.append(_rec(model, variant, "arith", "non-thinking", f"a{i}", 0, float(i < 5), completion=20))
    # mc: base right on c8, c9 only (0.2); q4 right everywhere (1.0): b = 0, c = 8
    mc = [_rec(model, variant, "mc", "default", f"c{i}", 0, float(q4 or i >= 8)) for i in range(10)]
    # code, 3 repeats: base p0 [1,0,0] p1 [1,1,1] p2 [0,0,0] p3 [0,1,0];
    # q4 p0 [1,1,1] p1 [1, error] p2 [0,0,0] p3 [0,0,0] p4 [1,1,1] (p4 only in q4)
    grid = (
        {"p0": [1, 1, 1], "p1": [1, None], "p2": [0, 0, 0], "p3": [0, 0, 0], "p4": [1, 1, 1]}
        if q4
        else {"p0": [1, 0, 0], "p1": [1, 1, 1], "p2": [0, 0, 0], "p3": [0, 1, 0]}
    )
    code = [
        _rec(model, variant, "code", "default", sid, rep, s, error="timeout" if s is None else None)
        for sid, scores in grid.items()
        for rep, s in enumerate(scores)
    ]
    return {"arith": arith, "mc": mc, "code": code}


def _write_suite(home: Path, model: str, variant: str, suite: str, records: list[dict]) -> None:
    folder = home / "artifacts" / "benchmark" / model / variant / suite
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(records, infer_schema_length=None).write_parquet(folder / "records.parquet")
    modes = list(dict.fromkeys(r["mode"] for r in records))
    aggs = [{"mode": m, **aggregate([r for r in records if r["mode"] == m])} for m in modes]
    summary = {
        "benchmark": suite,
        "task": suite,
        "model": model,
        "variant": variant,
        "dataset_revision": f"{suite}-rev1",
        "checkpoint_id": f"ckpt:{model}:{variant}",
        "vllm_version": "0.0-test",
        "run_id": "run-1",
        "evaluated": True,
        "modes": modes,
        "mode_notes": [],
        "planned": len(records),
        "sent": len(records),
        "reused": 0,
        "errors": sum(a["errors"] for a in aggs),
        "aggregates": aggs,
        "wall_s": 1.0,
        "concurrency": 4,
        "records": str(folder / "records.parquet"),
        "aggregates_file": "",
        "journal": "",
    }
    (folder / "summary.json").write_text(json.dumps(summary))  # pass_at_k's int keys become "1", "2", ...


def _write_not_evaluated(home: Path, model: str, variant: str, suite: str, reason: str) -> None:
    folder = home / "artifacts" / "benchmark" / model / variant / suite
    folder.mkdir(parents=True, exist_ok=True)
    summary = {
        "benchmark": suite,
        "task": suite,
        "model": model,
        "variant": variant,
        "evaluated": False,
        "reason": reason,
        "modes": [],
        "aggregates": [],
        "planned": 0,
        "dataset_revision": f"{suite}-rev1",
        "checkpoint_id": f"ckpt:{model}:{variant}",
        "vllm_version": "",
        "run_id": "run-1",
    }
    (folder / "summary.json").write_text(json.dumps(summary))


def _write_layout(path: Path, rows: list[tuple[str, int, int, int]]) -> None:
    """rows: (family, bytes, linear, linear_16bit)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "family": [r[0] for r in rows],
            "bytes": [r[1] for r in rows],
            "params": [r[1] // 2 for r in rows],
            "linear": [r[2] for r in rows],
            "linear_16bit": [r[3] for r in rows],
        }
    ).write_parquet(path)


def _write_endpoint(home: Path, model: str, variant: str, **fields: object) -> None:
    folder = home / "artifacts" / "endpoint" / model / variant
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "endpoint.json").write_text(json.dumps({"startup": {}, "vllm_version": "0.0-test", **fields}))


BASE_LAYOUT = [
    ("embeddings", 2000, 0, 0),
    ("self_attn", 4000, 8, 8),
    ("linear_attn", 4000, 6, 6),
    ("mlp", 10000, 12, 12),
]
# q4: self_attn quantized, linear_attn kept 16-bit (linear == linear_16bit), mlp partly (4 of 12): 10000 bytes
Q4_LAYOUT = [("embeddings", 2000, 0, 0), ("self_attn", 1000, 8, 0), ("linear_attn", 4000, 6, 6), ("mlp", 3000, 12, 4)]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("summary") / "home"
    art = home / "artifacts"
    for variant in ("base", "q4", "q8", "q2"):
        for suite, recs in _outcomes("m", variant).items():
            _write_suite(home, "m", variant, suite, recs)
    for suite in SUITES:
        _write_not_evaluated(home, "m", "q3", suite, NOT_SERVABLE)
    for variant in ("base", "q4"):
        _write_suite(home, "n", variant, "arith", _outcomes("n", variant)["arith"])
    _write_layout(art / "checkpoint" / "m" / "layout_families.parquet", BASE_LAYOUT)
    _write_layout(art / "quantized" / "m" / "q4" / "layout_families.parquet", Q4_LAYOUT)
    q8_layout = [
        ("embeddings", 2000, 0, 0),
        ("self_attn", 2000, 8, 0),
        ("linear_attn", 2000, 6, 0),
        ("mlp", 5000, 12, 0),
    ]
    _write_layout(art / "quantized" / "m" / "q8" / "layout_families.parquet", q8_layout)
    _write_layout(art / "quantized" / "m" / "q3" / "layout_families.parquet", Q4_LAYOUT[:2])  # q2: no layout at all
    double = [(f, b * 2, lin, l16) for f, b, lin, l16 in BASE_LAYOUT]  # model n: twice the size
    _write_layout(art / "checkpoint" / "n" / "layout_families.parquet", double)
    _write_layout(
        art / "quantized" / "n" / "q4" / "layout_families.parquet",
        [(f, b * 2, lin, l16) for f, b, lin, l16 in Q4_LAYOUT],
    )
    _write_endpoint(home, "m", "base", servable=True, reason="serves", perplexity=10.0)
    _write_endpoint(
        home,
        "m",
        "q4",
        servable=True,
        reason="serves",
        perplexity=12.0,
        kl_vs_base=0.05,
        ppl_ratio_vs_base=1.2,
        startup={"weights_gib": 0.5},
    )
    _write_endpoint(home, "m", "q3", servable=False, reason="no kernel for q3", perplexity=None)
    return home


@pytest.fixture(scope="module")
def data(home: Path):
    return load_study(home, PAIRS, SUITES, "unit")


@pytest.fixture(scope="module")
def long(data) -> pl.DataFrame:
    return long_table(data)


def _metric(long: pl.DataFrame, variant: str, suite: str, mode: str | None, metric: str, model: str = "m") -> dict:
    sel = long.filter(
        (pl.col("model") == model)
        & (pl.col("variant") == variant)
        & (pl.col("benchmark") == suite)
        & (pl.col("metric") == metric)
    )
    sel = sel.filter(pl.col("mode").is_null() if mode is None else pl.col("mode") == mode)
    assert sel.height == 1, sel
    return sel.row(0, named=True)


# ---------------------------------------------------------------------------------------------------- facts, loading


def test_variant_facts(home: Path) -> None:
    q4 = load_variant_facts(home, "m", "q4")
    assert q4.weights_bytes == 10000
    assert q4.families_16bit == ["linear_attn"]  # linear == linear_16bit == 6
    assert q4.partly_16bit == ["mlp"]  # 4 of 12
    assert (q4.servable, q4.perplexity, q4.kl_vs_base, q4.served_weights_gib) == (True, 12.0, 0.05, 0.5)
    base = load_variant_facts(home, "m", "base")
    assert base.weights_bytes == 20000 and base.families_16bit == ["self_attn", "linear_attn", "mlp"]
    q3 = load_variant_facts(home, "m", "q3")
    assert q3.servable is False and "no kernel for q3" in q3.servability
    ghost = load_variant_facts(home, "m", "q2")  # no layout, no endpoint: Nones, not an exception
    assert (ghost.weights_bytes, ghost.families_16bit, ghost.servable, ghost.perplexity) == (None, [], None, None)


def test_missing_data_is_explicit(data, long: pl.DataFrame) -> None:
    assert Missing("m", "q2", "code", NEVER) in data.missing
    assert {Missing("m", "q3", s, NOT_SERVABLE) for s in SUITES} <= set(data.missing)
    assert {Missing("n", v, s, NEVER) for v in ("base", "q4") for s in ("mc", "code")} <= set(data.missing)
    assert len(data.missing) == 1 + 3 + 4
    row = _metric(long, "q2", "code", None, "status")
    assert row["value"] is None and row["note"] == NEVER and row["asset"] == "benchmark/m/q2/code"
    row = _metric(long, "q3", "arith", None, "status")
    assert row["note"] == NOT_SERVABLE
    # the records of every evaluated suite are loaded, the not-evaluated ones contribute none
    assert data.records.filter(pl.col("variant") == "q3").is_empty()
    assert data.records.filter((pl.col("variant") == "q4") & (pl.col("suite") == "code")).height == 3 + 2 + 3 + 3 + 3


# ---------------------------------------------------------------------------------------------------- long table


def test_recovery_and_ratios(long: pl.DataFrame) -> None:
    acc = _metric(long, "q4", "arith", "thinking", "accuracy")
    assert acc["value"] == pytest.approx(0.6) and acc["n"] == 10 and acc["ci_low"] < 0.6 < acc["ci_high"]
    assert _metric(long, "base", "arith", "thinking", "accuracy")["value"] == pytest.approx(0.8)
    # 0.60 / 0.80 = 75.0 %
    assert _metric(long, "q4", "arith", "thinking", "recovery_pct")["value"] == pytest.approx(75.0)
    assert _metric(long, "q4", "arith", "non-thinking", "recovery_pct")["value"] == pytest.approx(100.0)
    assert _metric(long, "q4", "mc", "default", "recovery_pct")["value"] == pytest.approx(500.0)  # 1.0 / 0.2
    # thinks longer: 150 reasoning tokens vs 100
    assert _metric(long, "q4", "arith", "thinking", "reasoning_tokens_ratio")["value"] == pytest.approx(1.5)
    r = _metric(long, "q4", "arith", "non-thinking", "reasoning_tokens_ratio")
    assert r["value"] is None and r["note"] == "base mean reasoning tokens is 0"
    assert _metric(long, "q4", "arith", "thinking", "cutoff_rate")["value"] == pytest.approx(0.2)  # a6, a7
    row = _metric(long, "q4", "arith", "thinking", "accuracy")
    assert (row["vllm_version"], row["dataset_revision"], row["run_id"], row["checkpoint_id"], row["study"]) == (
        "0.0-test",
        "arith-rev1",
        "run-1",
        "ckpt:m:q4",
        "unit",
    )


def test_pass_at_k_in_long_table(long: pl.DataFrame) -> None:
    # base code: p0 c=1, p1 c=3, p2 c=0, p3 c=1 of n=3
    # pass@1 = mean(c/n) = (1/3 + 1 + 0 + 1/3) / 4 = 5/12
    # pass@2 = mean(1 - C(n-c,2)/C(3,2)) = (2/3 + 1 + 0 + 2/3) / 4 = 7/12
    # pass@3 = share of problems solved at least once = 3/4
    for k, expected in ((1, 5 / 12), (2, 7 / 12), (3, 3 / 4)):
        assert _metric(long, "base", "code", "default", f"pass@{k}")["value"] == pytest.approx(expected)
    assert _metric(long, "base", "arith", "thinking", "pass@1")["value"] == pytest.approx(0.8)
    assert long.filter((pl.col("benchmark") == "arith") & (pl.col("metric") == "pass@2")).is_empty()


def test_wide_views(data, long: pl.DataFrame) -> None:
    acc = accuracy_wide(data, long=long)
    assert acc.columns[:5] == ["model", "variant", "arith/thinking", "arith/thinking ci_low", "arith/thinking ci_high"]
    expected = ["arith/thinking", "arith/non-thinking", "mc/default", "code/default"]
    assert [c for c in acc.columns if "ci_" not in c][2:] == expected
    q4 = acc.filter((pl.col("model") == "m") & (pl.col("variant") == "q4")).row(0, named=True)
    assert q4["arith/thinking"] == pytest.approx(0.6)
    text = accuracy_wide(data, formatted=True, long=long)
    cell = text.filter((pl.col("model") == "m") & (pl.col("variant") == "q4"))["arith/thinking"][0]
    assert cell.startswith("60.0 [")
    q2 = text.filter((pl.col("model") == "m") & (pl.col("variant") == "q2")).row(0, named=True)
    q3 = text.filter((pl.col("model") == "m") & (pl.col("variant") == "q3")).row(0, named=True)
    assert q2["code/default"] == "never run" and q3["mc/default"] == "not evaluated"
    rec = recovery_wide(data, formatted=True, long=long)
    assert rec.filter(pl.col("variant") == "q4", pl.col("model") == "m")["arith/thinking"][0] == "75.0%"
    cut = cutoff_wide(data, long=long)
    assert cut.filter(pl.col("variant") == "q4", pl.col("model") == "m")["arith/thinking"][0] == pytest.approx(0.2)
    rw = reasoning_wide(data, long=long)
    q4_rw = rw.filter(pl.col("variant") == "q4", pl.col("model") == "m")
    assert q4_rw["arith/thinking reasoning_ratio"][0] == pytest.approx(1.5)


def test_memory_table(data, long: pl.DataFrame) -> None:
    mem = {(r["model"], r["variant"]): r for r in memory_table(data, long=long).iter_rows(named=True)}
    q4 = mem[("m", "q4")]
    assert q4["weights_bytes"] == 10000 and q4["size_ratio_vs_base"] == pytest.approx(0.5)
    assert q4["families_16bit"] == "linear_attn" and q4["partly_16bit"] == "mlp"
    assert q4["weights_gib"] == pytest.approx(10000 / 2**30)
    assert mem[("m", "base")]["size_ratio_vs_base"] == pytest.approx(1.0)
    assert mem[("m", "q2")]["weights_bytes"] is None and mem[("m", "q2")]["size_ratio_vs_base"] is None
    assert mem[("m", "q3")]["servable"] is False and mem[("m", "q3")]["mean_accuracy"] is None
    # mean over the cells every evaluated variant of m has (q2 lacks code): arith/thinking, arith/non-thinking, mc
    # base (0.8 + 0.5 + 0.2) / 3 = 0.5; q4 (0.6 + 0.5 + 1.0) / 3 = 0.7 -> 140 % of the base
    assert q4["mean_accuracy_cells"] == 3
    assert mem[("m", "base")]["mean_accuracy"] == pytest.approx(0.5)
    assert q4["mean_accuracy"] == pytest.approx(0.7) and q4["mean_recovery_pct"] == pytest.approx(140.0)
    md = main_table_md(data)
    assert "| m | q4 |" in md and "0.50×" in md and "140.0%" in md and "linear_attn, partly mlp" in md


# ---------------------------------------------------------------------------------------------------- paired statistics


def test_mcnemar_b0_c8_and_bootstrap_excludes_zero(data) -> None:
    paired = paired_vs_base(data)
    q4 = paired.filter((pl.col("model") == "m") & (pl.col("variant") == "q4"))
    row = q4.filter(pl.col("benchmark") == "mc").row(0, named=True)
    # base right on c8, c9; q4 right on all: b = 0, c = 8, p = 2 * C(8,0) / 2^8 = 2/256
    assert (row["mcnemar_b"], row["mcnemar_c"]) == (0, 8)
    assert row["mcnemar_p"] == 2 / 256 == 0.0078125
    assert row["diff"] == pytest.approx(0.8) and row["n_paired"] == 10
    assert row["ci_low"] > 0 and row["significant"] is True and row["verdict"].startswith("better (+80.0 pts")
    row = q4.filter((pl.col("benchmark") == "arith") & (pl.col("mode") == "thinking")).row(0, named=True)
    assert (row["mcnemar_b"], row["mcnemar_c"], row["mcnemar_p"]) == (2, 0, 0.5)  # p = 2 * 1/4
    assert row["diff"] == pytest.approx(-0.2)


def test_identical_outcomes_no_difference(data) -> None:
    paired = paired_vs_base(data)
    rows = paired.filter((pl.col("model") == "m") & (pl.col("variant") == "q8"))
    assert rows.height == 4  # arith x 2 modes, mc, code
    for r in rows.iter_rows(named=True):
        assert r["mcnemar_p"] == 1.0 and r["diff"] == 0.0 and (r["ci_low"], r["ci_high"]) == (0.0, 0.0)
        assert r["significant"] is False and r["verdict"].startswith("no significant difference")


def test_repeats_are_averaged_per_sample_before_pairing(data) -> None:
    paired = paired_vs_base(data)
    sel = (pl.col("model") == "m") & (pl.col("variant") == "q4") & (pl.col("benchmark") == "code")
    row = paired.filter(sel).row(0, named=True)
    # per-sample means, the errored repeat counted as 0: base [1/3, 1, 0, 1/3], q4 [1, 1/2, 0, 0] (p4 unpaired)
    # diffs [2/3, -1/2, 0, -1/3] -> mean -1/24. Pooling records instead would give 4/10 - 5/12 = -1/60.
    assert row["diff"] == pytest.approx(-1 / 24)
    assert row["base_accuracy"] == pytest.approx(5 / 12) and row["variant_accuracy"] == pytest.approx(3 / 8)
    assert (row["n_paired"], row["n_unpaired_base"], row["n_unpaired_variant"]) == (4, 0, 1)
    assert row["ci_low"] <= row["diff"] <= row["ci_high"] and row["significant"] is False
    assert (row["mcnemar_b"], row["mcnemar_c"], row["mcnemar_p"]) == (0, 0, 1.0)  # repeat 0: [1,1,0,0] both


def test_paired_rows_explain_gaps(data) -> None:
    paired = paired_vs_base(data)
    assert paired.filter(pl.col("variant") == "q3").is_empty()  # not evaluated: listed under missing data
    assert paired.filter((pl.col("variant") == "q2") & (pl.col("benchmark") == "code")).is_empty()


def test_compare_paired_is_seeded() -> None:
    def frame(scores: dict[str, list[float]]) -> pl.DataFrame:
        rows = [
            {"sample_id": s, "repeat": i, "score": v, "error": None}
            for s, vs in scores.items()
            for i, v in enumerate(vs)
        ]
        schema = {"sample_id": pl.String, "repeat": pl.Int64, "score": pl.Float64, "error": pl.String}
        return pl.DataFrame(rows, schema=schema)

    b = frame({f"s{i}": [float(i % 2)] for i in range(30)})
    o = frame({f"s{i}": [float(i % 3 == 0)] for i in range(30)})
    assert compare_paired(b, o, iters=500, seed=3) == compare_paired(b, o, iters=500, seed=3)
    empty = compare_paired(b, frame({"x": [1.0]}))
    assert empty.n_paired == 0 and empty.n_unpaired_base == 30 and empty.verdict == "no samples in common"


# ---------------------------------------------------------------------------------------------------- charts, report


def test_pareto_front() -> None:
    pts = [
        ("a", 1.0, 0.5),
        ("b", 2.0, 0.7),
        ("c", 2.0, 0.6),
        ("d", 3.0, 0.7),
        ("e", 4.0, 0.9),
        ("f", 0.5, 0.2),
        ("g", 4.0, 0.9),
    ]
    # c: b has the same memory and more accuracy; d: b is smaller and as accurate; e and g tie: both stay
    assert charts.pareto_front(pts) == ["f", "a", "b", "e", "g"]
    assert charts.pareto_front([]) == []
    assert charts.pareto_front([("x", 1.0, 0.1)]) == ["x"]


def _png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])


@pytest.fixture(scope="module")
def report(data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("report") / "summary-unit"
    write_report(data, out, iters=500)
    return write_report(data, out, iters=500)  # a second write replaces the first


def test_charts_render(report: dict[str, Path]) -> None:
    for name in ("accuracy_bars.png", "cutoff_bars.png", "accuracy_vs_memory.png", "pass_at_k.png"):
        w, h = _png_size(report[name])
        assert w > 400 and h > 300, (name, w, h)


def test_charts_with_nothing_to_draw(home: Path, tmp_path: Path) -> None:
    no_repeats = load_study(home, [("m", "base"), ("m", "q4")], ["arith"], "unit")
    assert charts.pass_at_k(no_repeats, tmp_path) is None
    assert charts.accuracy_bars(no_repeats, tmp_path) is not None
    ghost = load_study(home, [("ghost", "base"), ("ghost", "q4")], SUITES, "ghost")
    assert len(ghost.missing) == 6 and ghost.records.is_empty()
    assert all(
        fn(ghost, tmp_path) is None
        for fn in (charts.accuracy_bars, charts.cutoff_bars, charts.accuracy_vs_memory, charts.pass_at_k)
    )
    files = write_report(ghost, tmp_path / "ghost-report")
    assert "never materialized" in files["summary.md"].read_text()
    assert not any(name.endswith(".png") for name in files)


def test_report_folder(report: dict[str, Path]) -> None:
    out = report["summary.md"].parent
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp or old copies left
    stems = ("long", "accuracy", "recovery", "cutoff", "reasoning", "memory", "paired_vs_base", "missing", "provenance")
    for stem in stems:
        assert report[f"{stem}.parquet"].is_file() and report[f"{stem}.csv"].is_file()
        assert pl.read_parquet(report[f"{stem}.parquet"]).height == pl.read_csv(report[f"{stem}.csv"]).height
    html = report["report.html"].read_text()
    pngs = [n for n in report if n.endswith(".png")]
    assert len(pngs) == 4 and html.count("src='data:image/png;base64,") == len(pngs)
    assert "<table>" in html and "75.0%" in html
    md = report["summary.md"].read_text()
    headings = (
        "Accuracy (95% CI)",
        "Recovery vs base",
        "Paired comparison vs base",
        "Cut-off rate",
        "Reasoning and output length",
        "Memory and precision layout",
        "Missing data",
        "Provenance",
    )
    for heading in headings:
        assert f"## {heading}" in md
    assert "| m | q4 | 60.0 [" in md and "75.0%" in md and NOT_SERVABLE in md and "never materialized" in md
    assert "vLLM versions: 0.0-test" in md and "run-1" in md and "arith-rev1" in md
    assert "0/8, p=0.00781" in md  # McNemar b/c and p of q4 on mc


def test_a_pace_only_model_reports_tokens_but_no_accuracy(home: Path) -> None:
    """Model n as a shape stand-in (random weights): its scores are noise, so no accuracy, pass@k, recovery or
    paired test, each saying why; its tokens, cutoffs and the other model's numbers are as before."""
    pace = load_study(home, PAIRS, SUITES, "unit", pace_only=["n"])
    plain = load_study(home, PAIRS, SUITES, "unit")
    long, before = long_table(pace), long_table(plain)
    for metric in ("accuracy", "accuracy_completed", "recovery_pct"):
        row = _metric(long, "q4", "arith", "thinking", metric, model="n")
        assert row["value"] is None and row["note"] == PACE_ONLY
        assert _metric(before, "q4", "arith", "thinking", metric, model="n")["value"] is not None
    assert long.filter((pl.col("model") == "n") & pl.col("metric").str.starts_with("pass@")).is_empty()
    for metric in ("mean_completion_tokens", "cutoff_rate"):
        assert _metric(long, "q4", "arith", "thinking", metric, model="n") == _metric(
            before, "q4", "arith", "thinking", metric, model="n"
        )
    assert long.filter(pl.col("model") == "m").equals(before.filter(pl.col("model") == "m"))
    assert pace.records.filter(pl.col("model") == "n").is_empty()
    paired = paired_vs_base(pace)
    assert paired.filter(pl.col("model") == "n")["verdict"].to_list() == [PACE_ONLY]
    acc = accuracy_wide(pace, formatted=True)
    row = acc.filter((pl.col("model") == "n") & (pl.col("variant") == "q4")).row(0, named=True)
    assert row["arith/thinking"] == f"n/a ({PACE_ONLY})"
    assert main_table_md(pace)  # the report renders with a pace-only model
