"""The demo study end to end: `quant-dag demo` through the real `dagster job execute` into a persistent instance.

The light recipe is cut further than the shipped demo (fewer iterations and samples) to keep CI short;
the graph, the code paths and every other recipe are the shipped ones.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from quant_dag.catalog.load import load_catalog
from quant_dag.home import REPO

QUANTIZED = [
    ("smollm2-135m", "w4a16-rtn-g32"),
    ("smollm2-135m", "w4a16-light-g32"),
    ("smollm2-135m", "w8a16-rtn-g64"),
    ("tiny-qwen3.5", "w4a16-rtn-g32"),
    ("tiny-qwen3.5", "w4a16-rtn-g32-keep-linear-attn"),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    catalog = root / "assets"
    shutil.copytree(REPO / "assets", catalog)
    text = (catalog / "demo.yaml").read_text()
    light = "    preset: light\n    nsamples: 8\n    seqlen: 128\n    batch_size: 4\n"
    assert light in text, "the demo's light recipe changed: update this test's cut-down"
    (catalog / "demo.yaml").write_text(text.replace(light, "    preset: light\n    iters: 2\n    nsamples: 4\n    seqlen: 64\n    batch_size: 2\n"))
    home = root / "home"
    cli = Path(sys.executable).parent / "quant-dag"
    proc = subprocess.run(
        [str(cli), "demo", "--catalog", str(catalog), "--home", str(home)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    yield proc, home, load_catalog(catalog), instance
    instance.dispose()


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
