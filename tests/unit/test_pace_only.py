"""Shape stand-ins (random weights in a real model's shape): catalog source, planning before the build, and the
endpoint and benchmark checks that treat their answers as noise rather than failures."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import dagster as dg

from quant_dag.catalog.load import load_catalog
from quant_dag.catalog.schema import SHAPE_LAYERS
from quant_dag.checkpoint.locate import checkpoint_id, describe_source, resolved_source
from quant_dag.checkpoint.random_shape import QWEN35_27B_TEXT, VOCAB_SIZE, shape_config
from quant_dag.defs.served import _benchmark_checks, _results, endpoint_failures
from quant_dag.evaluate.types import BenchmarkSummary, Builds
from quant_dag.home import DATA
from quant_dag.serve.endpoint import EndpointRecord
from quant_dag.serve.placement import known_config

CATALOG = """
models:
  - name: shape
    source: {random: qwen3.5-9b, layers: 8}
  - name: built-elsewhere
    source: {path: /nonexistent}
    random_weights: true
  - name: trained
    source: {demo: tiny-qwen3.5}
"""
DEGENERATE = {"question": "What is 3 + 5?", "thinking": False, "degenerate": "one token repeated: 'ç'"}
KEY = dg.AssetKey(["endpoint", "shape", "base"])


def catalog(tmp_path: Path):
    (tmp_path / "c.yaml").write_text(textwrap.dedent(CATALOG))
    return load_catalog(tmp_path)


def test_a_random_source_is_pace_only_and_planned_from_the_shapes_config(tmp_path):
    cat = catalog(tmp_path)
    assert [m for m in cat.models if cat.models[m].pace_only] == ["shape", "built-elsewhere"]
    src = resolved_source(cat, cat.models["shape"].source)
    assert describe_source(src) == "random weights in the qwen3.5-9b shape, first 8 layers"
    assert checkpoint_id(cat, "shape", "base").startswith("random:qwen3.5-9b:layers=8:v")
    # before the build, the planner reads the stand-in's config: the real 9B's, cut to 8 layers, a 2k vocabulary
    config = known_config(cat, "shape")
    real = json.loads((DATA / "qwen3.5" / "Qwen3.5-9B-config.json").read_text())
    text, real_text = config["text_config"], real["text_config"]
    assert (text["num_hidden_layers"], text["layer_types"]) == (8, real_text["layer_types"][:8])
    assert text["layer_types"].count("full_attention") == 2  # every fourth layer, as in the real model
    assert text["vocab_size"] == VOCAB_SIZE
    same = {k for k in real_text if k not in ("num_hidden_layers", "layer_types", "vocab_size")}
    assert {k: text[k] for k in same} == {k: real_text[k] for k in same}
    assert config["vision_config"] == real["vision_config"]
    assert shape_config("qwen3.5-9b")["text_config"]["num_hidden_layers"] == 32


def test_the_27b_shape_is_the_9b_config_with_the_27b_sizes():
    nine, big = shape_config("qwen3.5-9b"), shape_config("qwen3.5-27b")
    text = big["text_config"]
    assert (text["hidden_size"], text["num_hidden_layers"], text["linear_num_value_heads"]) == (5120, 64, 48)
    assert text["layer_types"] == (["linear_attention"] * 3 + ["full_attention"]) * 16
    assert big["vision_config"]["out_hidden_size"] == 5120  # the vision tower projects into the wider model
    sized = set(QWEN35_27B_TEXT) | {"vocab_size"}
    assert {k: v for k, v in text.items() if k not in sized} == {
        k: v for k, v in nine["text_config"].items() if k not in sized
    }
    assert {**big["vision_config"], "out_hidden_size": 4096} == nine["vision_config"]
    assert shape_config("qwen3.5-9b")["text_config"]["hidden_size"] == 4096  # the shipped file is left as it was


def test_the_27b_shape_builds_as_a_27b_model_with_a_2k_vocabulary():
    """transformers takes the config (on the meta device: no memory): Qwen3.5-27B's parameters, less what the 2k
    vocabulary saves on the embeddings and lm_head (248,320 - 2,048 rows of 5,120, twice), with catalog's params_b."""
    import torch

    from quant_dag.checkpoint.random_shape import _model
    from quant_dag.checkpoint.tiny_qwen35 import train_tokenizer

    with torch.device("meta"):
        model = _model("qwen3.5-27b", shape_config("qwen3.5-27b"), train_tokenizer(VOCAB_SIZE))
    params = sum(p.numel() for p in model.parameters())
    real = params + 2 * (248320 - VOCAB_SIZE) * 5120
    assert 26.5e9 < real < 28e9  # "27B"
    cat = load_catalog(Path(__file__).parents[2] / "assets")
    assert cat.models["qwen3.5-27b-shape"].params_b == round(params / 1e9, 1)


def test_noise_from_random_weights_does_not_keep_benchmarks_away_but_drift_from_the_base_does():
    trained = EndpointRecord(servable=True, reason="", answers=[DEGENERATE])
    stand_in = EndpointRecord(servable=True, reason="", answers=[DEGENERATE], random_weights=True)
    assert endpoint_failures(trained) and "one token repeated" in endpoint_failures(trained)[0]
    assert endpoint_failures(stand_in) == []
    drifted = EndpointRecord(servable=True, reason="", answers=[DEGENERATE], random_weights=True, kl_vs_base=2.0)
    assert [p.split(" ")[0] for p in endpoint_failures(drifted)] == ["KL"]

    checks = {r.check_name: r for r in _results(KEY, stand_in, is_variant=False)}
    answers = checks["answers_not_degenerate"]
    assert answers.passed and answers.severity == dg.AssetCheckSeverity.WARN
    assert answers.description == "random weights (pace only): 1 smoke answers, not judged (1 degenerate, as noise is)"
    assert not {r.check_name: r for r in _results(KEY, trained, is_variant=False)}["answers_not_degenerate"].passed


def test_a_pace_only_benchmark_is_not_held_to_an_earlier_builds_scores():
    summary = BenchmarkSummary(
        evaluated=True,
        planned=4,
        builds=Builds(previous="0.25.0", regressions=["thinking: accuracy 50.0% -> 0.0% vs vLLM 0.25.0"]),
    )
    key = dg.AssetKey(["benchmark", "shape", "base", "arithmetic"])
    plain = {r.check_name: r for r in _benchmark_checks(key, summary)}
    pace = {r.check_name: r for r in _benchmark_checks(key, summary, pace_only=True)}
    assert not plain["no_regression_vs_previous_build"].passed
    assert pace["no_regression_vs_previous_build"].passed
    assert "scores not compared" in pace["no_regression_vs_previous_build"].description
    assert pace["benchmark_complete"].passed == plain["benchmark_complete"].passed


def test_the_dense_qwen3_8b_shape_is_cut_the_same_way():
    config = shape_config("qwen3-8b", 4)
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (4, 4096, VOCAB_SIZE)
    # the catalog checks `layers` against its own table of the shapes: it agrees with their configs
    for shape, layers in SHAPE_LAYERS.items():
        config = shape_config(shape)
        assert (config.get("text_config") or config)["num_hidden_layers"] == layers
