"""`quant-dag lineage`: one benchmark's upstream chain read back from the demo's real instance (the `demo`
fixture in conftest.py), with the run, code versions, recipe hash and vLLM build of every step."""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import pytest

from quant_dag.cli.asset_lineage import TargetError, format_lineage, lineage
from quant_dag.definitions import build_definitions
from quant_dag.home import REPO
from tests.support.demo_run import demo_run_id, meta

MODEL, RECIPE, SUITE = "smollm2-135m", "w4a16-light-g32", "arithmetic"
# light, not rtn: another e2e test rematerializes a w4a16-rtn-g32 benchmark in the same instance
TARGET = f"benchmark/{MODEL}/{RECIPE}/{SUITE}"
CHAIN = [
    f"checkpoint/{MODEL}",
    f"quantized/{MODEL}/{RECIPE}",
    f"endpoint/{MODEL}/base",
    f"endpoint/{MODEL}/{RECIPE}",
    TARGET,
]


def cli(home, catalog, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "quant_dag.cli.lineage", *args, "--catalog", str(catalog), "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def demo_defs(demo) -> dg.Definitions:
    _, home, cat, _ = demo
    return build_definitions(catalog=cat.root, home=home)


def test_benchmark_lineage_lists_the_chain_with_run_recipe_and_vllm(demo, demo_defs):
    _, _, cat, instance = demo
    rows = lineage(instance, demo_defs, TARGET)
    by_key = {r["key"]: r for r in rows}
    order = [r["key"] for r in rows]
    assert set(CHAIN) <= set(order) and order[-1] == TARGET and by_key[TARGET]["target"]
    # topological: checkpoint -> quantized -> endpoint (variant) -> benchmark, and the base endpoint feeds the variant's
    pos = {k: order.index(k) for k in CHAIN}
    assert pos[CHAIN[0]] < pos[CHAIN[1]] < pos[CHAIN[3]] < pos[TARGET] and pos[CHAIN[2]] < pos[CHAIN[3]]
    assert set(by_key[CHAIN[3]]["parents"]) >= {CHAIN[1], CHAIN[2]}
    for row in rows:  # closed under parents: every upstream asset is listed, and listed before its child
        assert all(p in by_key and order.index(p) < order.index(row["key"]) for p in row["parents"]), row["key"]
    # every materialized step of the chain comes from the demo command's run, with the code that is current
    run_id = demo_run_id(instance)
    for key in CHAIN:
        row = by_key[key]
        assert row["materialized"] and row["run_id"] == run_id, (key, row["run_id"])
        assert row["code_version"] == row["current_code_version"] and row["stale"] is False, key
        assert row["timestamp"] and row["data_version"]
    recipe_hash = cat.recipe_hash(RECIPE)
    quantized = by_key[CHAIN[1]]["metadata"]
    assert (
        quantized["recipe_hash"] == recipe_hash
        and quantized["autoround_version"]
        and quantized["size_ratio_vs_base"] < 0.5
    )
    bench = by_key[TARGET]["metadata"]
    assert bench["checkpoint_id"] == f"recipe:{recipe_hash}" and bench["dataset_revision"]
    assert 0 <= bench["accuracy/default"] <= 1 and bench["requests_sent"] + bench["requests_reused"] > 0
    vllm = meta(instance, CHAIN[3])["vllm_version"]
    assert by_key[CHAIN[3]]["metadata"]["vllm_version"] == vllm == bench["vllm_version"]
    assert 0 < by_key[CHAIN[3]]["metadata"]["kl_vs_base"] < 0.5 and by_key[CHAIN[3]]["metadata"]["servable"] is True
    assert by_key[CHAIN[0]]["metadata"]["weights_bytes"] > 0
    checks = {(r["key"], c["name"]): c["status"] for r in rows for c in r["checks"]}
    assert checks[(CHAIN[1], "config_agrees_with_tensors")] == checks[(CHAIN[1], "size_matches_scheme")] == "SUCCEEDED"
    assert (
        checks[(CHAIN[3], "fidelity_vs_base")] == "SUCCEEDED" and checks[(TARGET, "benchmark_complete")] == "SUCCEEDED"
    )
    text = format_lineage(rows)
    assert all(k in text for k in CHAIN) and f"{TARGET}  <== target" in text and recipe_hash in text and run_id in text


def test_short_form_resolves_to_the_same_benchmark(demo, demo_defs):
    _, _, _, instance = demo
    assert lineage(instance, demo_defs, f"demo/{RECIPE}/{SUITE}") == lineage(instance, demo_defs, TARGET)
    # both demo models have a w4a16-rtn-g32 variant: the short form names the candidates instead of guessing
    with pytest.raises(TargetError) as err:
        lineage(instance, demo_defs, f"demo/w4a16-rtn-g32/{SUITE}")
    assert f"benchmark/{MODEL}/w4a16-rtn-g32/{SUITE}" in str(
        err.value
    ) and f"benchmark/tiny-qwen3.5/w4a16-rtn-g32/{SUITE}" in str(err.value)
    with pytest.raises(TargetError, match=f"close matches: demo/{RECIPE}/{SUITE}"):  # a typo: the nearest short forms
        lineage(instance, demo_defs, f"demo/w4a16-lite-g32/{SUITE}")


def test_never_materialized_assets_are_listed_as_such(demo, demo_defs):
    _, _, _, instance = demo
    rows = lineage(instance, demo_defs, "benchmark/qwen3.5-9b/base/aime25")  # the seed study: never run here
    own = [r for r in rows if not r["observable_source"]]
    assert [r["key"] for r in own] == [
        "checkpoint/qwen3.5-9b",
        "endpoint/qwen3.5-9b/base",
        "benchmark/qwen3.5-9b/base/aime25",
    ]
    assert all(not r["materialized"] and r["run_id"] is None and r["metadata"] == {} for r in own)
    assert format_lineage(rows).count("NOT MATERIALIZED") == 3


def test_cli_json_and_unknown_target(demo):
    _, home, cat, instance = demo
    proc = cli(home, cat.root, f"demo/{RECIPE}/{SUITE}", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)
    assert rows[-1]["key"] == TARGET and rows[-1]["run_id"] == demo_run_id(instance)
    text = cli(home, cat.root, TARGET)
    assert text.returncode == 0 and f"{TARGET}  <== target" in text.stdout
    bad = cli(home, cat.root, f"benchmark/{MODEL}/w4a16-lite-g32/{SUITE}")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "no asset" in bad.stderr and "close matches" in bad.stderr and TARGET in bad.stderr
