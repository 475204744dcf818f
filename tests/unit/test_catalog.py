"""The catalog: the shipped one validates; every kind of invalid field gets an error naming file, entry and field."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from quant_dag.catalog.load import CatalogError, load_catalog
from quant_dag.cli.main import main
from quant_dag.home import REPO

ASSETS = REPO / "assets"

GOOD = """
models:
  - name: m
    source: {demo: tiny-qwen3.5}
recipes:
  - name: w4-fast
    scheme: W4A16
    preset: rtn
    group_size: 32
third_party:
  - name: tp
    model: m
    provider: someone
    scheme: W4A16
    source: {path: /nonexistent}
benchmarks:
  - name: b
    task: arithmetic
    dataset: {generate: {count: 5}}
studies:
  - name: s
    models: [m]
    recipes: [w4-fast]
    third_party: [tp]
    benchmarks: [b]
"""


def write(tmp_path: Path, text: str, name: str = "recipes.yaml") -> Path:
    root = tmp_path / "assets"
    root.mkdir(exist_ok=True)
    (root / name).write_text(textwrap.dedent(text))
    return root


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(CatalogError) as info:
        load_catalog(write(tmp_path, text))
    return info.value.problems


def test_shipped_catalog_validates():
    cat = load_catalog(ASSETS)
    assert {"demo", "qwen3.5"} <= set(cat.studies)
    assert {"qwen3.5-9b", "qwen3.5-27b", "qwen3.5-35b-a3b"} <= set(cat.models)
    demo = cat.studies["demo"]
    assert len(demo.pairs()) >= 4 and {r for _, r in demo.pairs()} >= {
        "w4a16-rtn-g32",
        "w4a16-light-g32",
        "w8a16-rtn-g64",
    }
    assert any("linear_attn" in cat.recipes[r].ignore_layers for m, r in demo.pairs() if m == "tiny-qwen3.5")
    seed = cat.studies["qwen3.5"]
    providers = {cat.third_party[t].provider for t in seed.third_party}
    assert {"Qwen", "Intel", "NVIDIA"} <= providers
    assert {cat.recipes[r].scheme for _, r in seed.pairs()} == {"W4A16", "NVFP4"}
    assert {cat.benchmarks[b].task for b in seed.benchmarks} == {"mmlu_pro", "gpqa", "aime", "livecodebench"}
    assert all(cat.benchmarks[b].generation.max_tokens <= 32768 for b in seed.benchmarks)
    assert set(demo.benchmarks) == {"arithmetic", "basic-mc", "humaneval"}


def test_good_minimal_catalog(tmp_path):
    cat = load_catalog(write(tmp_path, GOOD))
    assert cat.quantized_pairs() == [("m", "w4-fast")]


def recipe(**fields: object) -> str:
    body = {"name": "w4-fast", "scheme": "W4A16", **fields}
    lines = "\n".join(f"    {k}: {v}" for k, v in body.items() if v is not None)
    return GOOD.replace(
        "  - name: w4-fast\n    scheme: W4A16\n    preset: rtn\n    group_size: 32", "  - " + lines.strip()
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            recipe(scheme="W5A16"),
            "assets/recipes.yaml: recipe 'w4-fast': scheme 'W5A16' is not one of W2A16, W3A16, W4A16",
        ),
        (
            recipe(format="gguf"),
            "assets/recipes.yaml: recipe 'w4-fast': format 'gguf' is not one of auto_round, auto_gptq",
        ),
        (
            recipe(preset="fast"),
            "assets/recipes.yaml: recipe 'w4-fast': preset 'fast' is not one of rtn, opt_rtn, light",
        ),
        (
            recipe(scheme="NVFP4", format="auto_gptq"),
            "assets/recipes.yaml: recipe 'w4-fast': format 'auto_gptq' cannot carry scheme 'NVFP4' (use one of auto_round, llm_compressor)",
        ),
        (recipe(iters=-1), "assets/recipes.yaml: recipe 'w4-fast': iters: Input should be greater than or equal to 0"),
        (
            recipe(group_size=100),
            "assets/recipes.yaml: recipe 'w4-fast': group_size: 100 is not -1, 0 or a power of two >= 8",
        ),
        (recipe(itres=200), "assets/recipes.yaml: recipe 'w4-fast': unknown field 'itres'"),
        (recipe(scheme=None), "assets/recipes.yaml: recipe 'w4-fast': field 'scheme' is required"),
        (
            recipe(ignore_layers="['linear_attn,visual']"),
            "recipe 'w4-fast': ignore_layers: 'linear_attn,visual' is not a module-name fragment",
        ),
        (recipe(calibration="data/missing.jsonl"), "recipe 'w4-fast': calibration file"),
        (recipe(name="'W4 Fast'"), "recipe 'W4 Fast': name 'W4 Fast' must be lower-case letters, digits"),
        (
            GOOD.replace("{demo: tiny-qwen3.5}", "{hub: Qwen/Qwen3.5-9B}"),
            "model 'm': field 'source.hub.revision' is required",
        ),
        (
            GOOD.replace("{demo: tiny-qwen3.5}", "{url: x}"),
            "model 'm': source: a source needs one of: hub (with revision), path, demo",
        ),
        (GOOD.replace("{demo: tiny-qwen3.5}", "{demo: llama-7b}"), "model 'm': source.demo.demo: Input should be"),
        (
            GOOD.replace("{demo: tiny-qwen3.5}", "{random: qwen3.5-122b}"),
            "model 'm': source.random.random: Input should be 'qwen3-8b', 'qwen3.5-9b' or 'qwen3.5-27b'",
        ),
        (
            GOOD.replace("{demo: tiny-qwen3.5}", "{random: qwen3.5-9b, layers: 40}"),
            "model 'm': source.random: qwen3.5-9b has 32 layers: cannot keep 40",
        ),
        (
            GOOD.replace("{demo: tiny-qwen3.5}", "{random: qwen3.5-9b, layers: 0}"),
            "model 'm': source.random.layers: Input should be greater than or equal to 1",
        ),
        (
            GOOD.replace("recipes: [w4-fast]", "recipes: [w4-slow]"),
            "study 's': recipes: 'w4-slow' is not a recipe of the catalog",
        ),
        (GOOD.replace("models: [m]", "models: [m, n]"), "study 's': models: 'n' is not a model of the catalog"),
        (
            GOOD.replace("third_party: [tp]", "third_party: [tq]"),
            "study 's': third_party: 'tq' is not a third-party variant",
        ),
        (
            GOOD.replace("    model: m\n", "    model: q\n"),
            "third-party variant 'tp': model 'q' is not a model of the catalog",
        ),
        (
            GOOD.replace("recipes: [w4-fast]", "recipes: {n: [w4-fast]}"),
            "study 's': recipes: 'n' is not one of the study's models",
        ),
        (GOOD + "recipes2: []\n", "assets/recipes.yaml: unknown section 'recipes2'"),
        (
            GOOD.replace("studies:", "studies:\n  - name: s\n    models: [m]"),
            "study 's': name is already used in assets/recipes.yaml",
        ),
        ("models: [\n  - name: x", "assets/recipes.yaml: not valid YAML (line 2"),
        (GOOD.replace("task: arithmetic", "task: mmlu"), "benchmark 'b': task 'mmlu' is not one of mmlu_pro, gpqa"),
        (
            GOOD.replace("benchmarks: [b]", "benchmarks: [c]"),
            "study 's': benchmarks: 'c' is not a benchmark of the catalog",
        ),
        (
            GOOD.replace("{generate: {count: 5}}", "{generate: {count: 5}, hub: a/b}"),
            "benchmark 'b': dataset: dataset takes one of hub, path, generate",
        ),
        (GOOD.replace("{generate: {count: 5}}", "{path: data/none.jsonl}"), "benchmark 'b': dataset.path"),
        (
            GOOD.replace("task: arithmetic", "task: arithmetic\n    repeats: 0"),
            "benchmark 'b': repeats: Input should be greater than or equal to 1",
        ),
        (
            GOOD.replace("task: arithmetic", "task: arithmetic\n    thinking: [on, on]"),
            "benchmark 'b': thinking: thinking lists a mode twice",
        ),
        (
            GOOD.replace("task: arithmetic", "task: arithmetic\n    generation: {temprature: 0.6}"),
            "benchmark 'b': unknown field 'generation.temprature'",
        ),
    ],
)
def test_invalid_field_is_named(tmp_path, text, expected):
    problems = problems_of(tmp_path, text)
    assert any(expected in p for p in problems), problems


def test_an_invalid_entry_is_not_reported_again_where_it_is_used(tmp_path):
    problems = problems_of(tmp_path, recipe(scheme="W5A16"))
    assert len(problems) == 1, problems


def test_cli_catalog_check_exit_status(tmp_path, capsys):
    root = write(tmp_path, recipe(scheme="W5A16"))
    assert main(["catalog", "check", "--catalog", str(root)]) == 1
    err = capsys.readouterr().err
    assert "assets/recipes.yaml: recipe 'w4-fast': scheme 'W5A16' is not one of" in err
    assert main(["catalog", "check", "--catalog", str(ASSETS)]) == 0
    captured = capsys.readouterr()
    assert "ok: " in captured.out
    assert (
        "revision 'main' is not a pinned commit sha" in captured.err
    )  # validates, but says what hurts reproducibility


def test_dagster_load_error_names_the_field(tmp_path):
    """The same message when Dagster loads the code location."""
    bad = tmp_path / "cat"
    shutil.copytree(ASSETS, bad)
    text = (bad / "demo.yaml").read_text().replace("scheme: W8A16", "scheme: W9A16")
    (bad / "demo.yaml").write_text(text)
    env = {**os.environ, "QUANT_DAG_CATALOG": str(bad), "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "quant_dag.definitions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "cat/demo.yaml: recipe 'w8a16-rtn-g64': scheme 'W9A16' is not one of" in proc.stdout + proc.stderr
