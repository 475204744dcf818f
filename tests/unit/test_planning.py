"""`quant-dag plan`: sample counts, token means from earlier records, throughput scaled from measurements, and the
seed study's GPU-hours and memory printed before anything is downloaded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from quant_dag.catalog.load import load_catalog
from quant_dag.catalog.schema import Benchmark
from quant_dag.gpu import Gpu, lease
from quant_dag.home import REPO, ProjectHome
from quant_dag.planning import (
    MEASURED,
    QUANTIZE_OVERHEAD_S,
    TUNING_MEASURED,
    format_check,
    measured_gpu_seconds,
    plan_study,
    sample_count,
    throughput,
    tuning_seconds_per_layer,
    typical_start,
)
from quant_dag.profiles import load_profile


@pytest.mark.parametrize(
    ("dataset", "limit", "expected"),
    [
        ({"hub": "TIGER-Lab/MMLU-Pro", "split": "test"}, 1000, 1000),
        ({"hub": "TIGER-Lab/MMLU-Pro", "split": "test"}, None, 12032),
        ({"hub": "Idavidrein/gpqa", "config": "gpqa_diamond", "split": "train"}, None, 198),
        ({"hub": "opencompass/AIME2025", "config": "AIME2025-I+AIME2025-II"}, None, 30),
        ({"generate": {"count": 40, "seed": 0}}, 8, 8),
        ({"hub": "livecodebench/code_generation_lite", "config": "release_v6"}, None, None),
    ],
)
def test_sample_counts_without_a_download(dataset, limit, expected, tmp_path):
    task = {"MMLU-Pro": "mmlu_pro", "gpqa": "gpqa", "AIME2025": "aime", "code_gen": "livecodebench"}
    name = next((t for k, t in task.items() if k in dataset.get("hub", "")), "arithmetic")
    bench = Benchmark(name="s", task=name, dataset=dataset, limit=limit)
    assert sample_count(bench, tmp_path)[0] == expected


def test_a_local_dataset_is_counted(tmp_path):
    (tmp_path / "q.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(7)))
    bench = Benchmark(name="s", task="math500", dataset={"path": "q.jsonl"})
    assert sample_count(bench, tmp_path) == (7, "rows of q.jsonl")


def test_throughput_scales_with_active_parameters_and_concurrency():
    h200 = next(m for m in MEASURED if m.device == "H200" and m.weights == "16-bit")
    same, _ = throughput("H200", "16-bit", h200.active_params_b, h200.concurrency)
    assert same == pytest.approx(h200.output_tok_s)  # the measured point itself
    moe, why = throughput("H200", "16-bit", 3.0, 128)  # 35B-A3B reads 3B parameters per token
    assert moe == pytest.approx(h200.output_tok_s * h200.active_params_b / 3.0) and "6.96B/3B" in why
    half, why = throughput("H200", "16-bit", h200.active_params_b, 64)
    assert half == pytest.approx(h200.output_tok_s / 2) and "concurrency 64/128" in why
    nvfp4, _ = throughput("H200", "NVFP4", h200.active_params_b, 128)  # Marlin FP4: borrows the W4A16 row
    assert nvfp4 == pytest.approx(next(m.output_tok_s for m in MEASURED if (m.device, m.weights) == ("H200", "W4A16")))
    assert throughput("B200", "16-bit", 9.0, 128)[0] is None


def test_the_seed_study_is_planned_before_any_download(tmp_path):
    cat = load_catalog(REPO / "assets")
    plan = plan_study(cat, ProjectHome(tmp_path), load_profile("gpu-node"), "qwen3.5", "H200")
    nine = next(v for v in plan.variants if (v.model, v.variant) == ("qwen3.5-9b", "base"))
    assert nine.weights_bytes == 9e9 * 2 and nine.kv_bytes == 8 * 2**30  # Qwen3.5-9B's shipped config: 32 KiB/token
    aime = next(s for s in plan.suites if (s.model, s.variant, s.suite) == ("qwen3.5-9b", "base", "aime25"))
    assert aime.requests == 30 * 8 * 2 and aime.mean_output_tokens == 30720  # no records yet: max_tokens
    assert "upper bound" in aime.tokens_source
    # 128 sequences of ~31.7k tokens do not fit the KV cache left on one H200 beside 16.8 GiB of weights
    assert "KV cache holds" in aime.throughput_source
    by_suite = plan.by_suite()
    assert by_suite["aime25"] > 0 and plan.total_gpu_hours() > sum(by_suite.values())  # + the server starts


@pytest.mark.parametrize("device", ["H100", "H200"])
def test_the_two_gpu_study_gives_the_27b_shape_two_gpus_and_each_9b_variant_one(device, tmp_path):
    """gpu-pair (assets/gpu-pair.yaml, resources/gpu-pair.yaml): the 27B shape's bf16 weights and the KV cache of
    38 sequences of 32k tokens do not fit one GPU's usable memory on either card, and fit two."""
    cat = load_catalog(REPO / "assets")
    plan = plan_study(cat, ProjectHome(tmp_path), load_profile("gpu-pair"), "gpu-pair", device)
    tp = {(v.model, v.variant): (v.parallel.tensor_parallel, v.parallel.data_parallel) for v in plan.variants}
    assert tp.pop(("qwen3.5-27b-shape", "base")) == (2, 1)
    assert set(tp.values()) == {(1, 1)} and len(tp) == 3  # the 9B shape: base and two variants, one GPU each
    big = next(v for v in plan.variants if v.model == "qwen3.5-27b-shape")
    assert big.kv_bytes == 38 * 32768 * 16 * 2 * 4 * 256 * 2  # 16 full-attention layers, 4 KV heads of 256


def test_earlier_records_and_measured_throughput_win(tmp_path):
    root = tmp_path / "catalog"
    root.mkdir()
    catalog = {
        "models": [{"name": "m", "source": {"path": str(tmp_path / "ckpt")}, "params_b": 8}],
        "benchmarks": [{"name": "a", "task": "arithmetic", "dataset": {"generate": {"count": 50, "seed": 0}}}],
        "studies": [{"name": "s", "models": ["m"], "benchmarks": ["a"]}],
    }
    (root / "c.yaml").write_text(yaml.safe_dump(catalog))
    cat = load_catalog(root)
    home = ProjectHome(tmp_path / "home")
    bench = home.artifacts(["benchmark", "m", "base", "a"])
    bench.mkdir(parents=True)
    pl.DataFrame({"completion_tokens": [100, 300, None]}).write_parquet(bench / "records.parquet")
    (bench / "summary.json").write_text(json.dumps({"output_tokens_per_s": 50.0}))
    plan = plan_study(cat, home, load_profile("gpu-node"), "s", "H200")
    (suite,) = plan.suites
    assert suite.mean_output_tokens == 200 and "earlier records of this variant" in suite.tokens_source
    assert suite.output_tok_s == 50.0 and suite.seconds == pytest.approx(50 * 200 / 50.0)


def test_quantization_time_from_the_tuning_measurement_or_the_last_build(tmp_path):
    cat = load_catalog(REPO / "assets")
    home = ProjectHome(tmp_path)
    plan = plan_study(cat, home, load_profile("gpu-node"), "qwen3.5", "H200")
    built = {(v.model, v.variant): v for v in plan.variants}
    assert built[("qwen3.5-9b", "base")].quantize_s is None  # bases and releases are not built here
    assert built[("qwen3.5-27b", "official-fp8-27b")].quantize_s is None
    best = built[("qwen3.5-9b", "int4-best")]  # best: 1000 iterations of 8 x 2048 tokens, 20x light's 50
    layer_b = (9 - 248320 * 4096 * 2 / 1e9) / 32  # untied embeddings and lm_head left out of the decoder layers
    expected = QUANTIZE_OVERHEAD_S + 32 * tuning_seconds_per_layer("H100", layer_b, 1000, 8 * 2048)[0]
    assert best.quantize_s == pytest.approx(expected) and "measured on H100" in best.quantize_source
    assert plan.quantize_gpu_hours() > 0 and plan.total_gpu_hours() > plan.quantize_gpu_hours()
    # a variant built before: the worker's own record of the time wins
    out = home.quantized_dir("qwen3.5-9b", "int4-best")
    out.mkdir(parents=True)
    (out / "quant_dag_quantize.json").write_text(json.dumps({"quantize_seconds": 1234.5}))
    again = plan_study(cat, home, load_profile("gpu-node"), "qwen3.5", "H200")
    v = next(v for v in again.variants if (v.model, v.variant) == ("qwen3.5-9b", "int4-best"))
    assert v.quantize_s == 1234.5 and "last build" in v.quantize_source
    prior = plan_study(cat, home, load_profile("gpu-node"), "qwen3.5", "H200", history=False)
    v = next(v for v in prior.variants if (v.model, v.variant) == ("qwen3.5-9b", "int4-best"))
    assert v.quantize_s == pytest.approx(expected)  # the plan as it was before any build


def test_the_plan_is_checked_against_the_gpu_time_the_steps_held(tmp_path):
    root, ckpt = tmp_path / "catalog", tmp_path / "ckpt"
    root.mkdir()
    ckpt.mkdir()
    (ckpt / "config.json").write_text(
        json.dumps(
            {
                "num_hidden_layers": 4,
                "hidden_size": 64,
                "vocab_size": 100,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
            }
        )
    )
    catalog = {
        "models": [{"name": "m", "source": {"path": str(ckpt)}, "params_b": 0.5}],
        "recipes": [{"name": "r", "scheme": "W4A16", "preset": "light"}],
        "benchmarks": [{"name": "a", "task": "arithmetic", "dataset": {"generate": {"count": 50, "seed": 0}}}],
        "studies": [{"name": "s", "models": ["m"], "recipes": ["r"], "benchmarks": ["a"]}],
    }
    (root / "c.yaml").write_text(yaml.safe_dump(catalog))
    cat = load_catalog(root)
    home = ProjectHome(tmp_path / "home")
    locks, one = home.root / "locks", [Gpu(0, "H200", 143771)]
    for label, hold_s in [
        ("endpoint/m/base", 0.05),  # an earlier run's lease of the same step: replaced by the last
        ("endpoint/m/base", 0.2),
        ("quantized/m/r", 0.1),
        ("endpoint/other/base", 0.1),  # not this study's
    ]:
        with lease(1, locks, gpus=one, label=label):
            time.sleep(hold_s)
    held = measured_gpu_seconds(cat, home, "s")
    assert set(held) == {"endpoint/m/base", "quantized/m/r"}
    assert 0.2 <= held["endpoint/m/base"] < 0.2 + 5  # the last lease, not the sum
    prior = plan_study(cat, home, load_profile("gpu-node"), "s", "H200", history=False)
    text = format_check(prior, held)
    assert "total of 2 step(s)" in text and "(1 step(s) without both numbers)" in text  # endpoint/m/r never ran
    base = next(v for v in prior.variants if v.variant == "base")
    built = next(v for v in prior.variants if v.variant == "r")
    suites = sum(s.seconds or 0 for s in prior.suites if s.variant == "base")
    ratio = float(text.split("planned/held ")[1].split()[0])
    planned = base.start_s + suites + (built.quantize_s or 0)
    assert built.quantize_s and ratio == pytest.approx(planned / sum(held.values()), rel=0.01)


def plan_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "quant_dag.cli", "plan", "qwen3.5", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)


def test_plan_command_prints_memory_and_gpu_hours():
    proc = plan_cli("--home", "/nonexistent-home")
    assert proc.returncode == 0, proc.stderr
    assert "qwen3.5-27b/official-fp8-27b" in proc.stdout and "Total:" in proc.stdout
    assert "aime25:" in proc.stdout and "livecodebench: unknown" in proc.stdout
    bad = plan_cli("--device", "TPU")
    assert bad.returncode == 2 and "known: CPU, H100, H200" in bad.stderr


def test_the_plan_uses_the_numbers_of_the_gpu_it_runs_on(monkeypatch):
    """On the device's H100 the plan said "on H200": a host's own GPU picks its measured row; another GPU, or none,
    keeps the H200's."""
    from quant_dag.cli.plan_study import this_gpu

    known = sorted({m.device for m in MEASURED})
    monkeypatch.setenv("QUANT_DAG_GPUS", '[{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559}]')
    assert this_gpu(known) == "H100"
    monkeypatch.setenv("QUANT_DAG_GPUS", '[{"index": 0, "name": "NVIDIA B200", "memory_total_mib": 183000}]')
    assert this_gpu(known) is None
    monkeypatch.setenv("QUANT_DAG_GPUS", "[]")
    assert this_gpu(known) is None
    h100, why = throughput("H100", "W4A16", 6.96, 128)  # no W4A16 row on the H100: its 16-bit row, not the H200's
    assert h100 == pytest.approx(next(m.output_tok_s for m in MEASURED if m.device == "H100")) and "H100" in why


def test_known_configs_are_the_real_ones():
    data = Path(__file__).parents[1] / "data" / "qwen3.5"
    for name in ("Qwen3.5-9B-config.json", "Qwen3.5-35B-A3B-config.json"):
        shipped = REPO / "quant_dag" / "data" / "qwen3.5" / name
        assert shipped.read_text() == (data / name).read_text()


def test_server_starts_are_planned_by_gpu_and_architecture():
    # the H100's Qwen3.5-MoE starts (342 s, 256 s) were longer than its dense ones (234 s, 200 s)
    assert typical_start("H100", moe=True)[0] > typical_start("H100", moe=False)[0]
    assert typical_start("H200", moe=True) == (200.0, "typical start of a dense model on H200")  # no MoE row there
    assert "assumed" in typical_start("B200", moe=False)[1]
    # eager servers (no torch.compile, no CUDA graphs) share one Triton cache: the first builds the Gated DeltaNet
    # kernels (H100: MoE 283 s, dense 210 s), later ones find them (dense 45 s, MoE 49-100 s)
    cold, why = typical_start("H100", moe=True, eager=True)
    assert cold < typical_start("H100", moe=True)[0] and "cold Triton cache" in why
    warm, why = typical_start("H100", moe=True, eager=True, warm=True)
    assert warm < cold / 2 and "warm" in why
    assert typical_start("H100", moe=False, eager=True, warm=True)[0] < typical_start("H100", moe=False, eager=True)[0]
    # the H200 has no eager rows: the compiled start bounds it, warm or not; a compiled server is never warm
    start, why = typical_start("H200", moe=False, eager=True, warm=True)
    assert start == typical_start("H200", moe=False)[0] and "upper bound" in why
    assert typical_start("H100", moe=True, warm=True) == typical_start("H100", moe=True)


def test_a_variant_the_gpu_refuses_is_planned_without_a_server(tmp_path):
    """AutoRound's FP8_STATIC of an MoE, which vLLM 0.26 refused on an H100: the endpoint step records it without
    starting a server, so the plan gives it no start and no benchmark time."""
    root, ckpt = tmp_path / "catalog", tmp_path / "ckpt"
    root.mkdir()
    ckpt.mkdir()
    moe = {
        "model_type": "qwen3_5_moe",
        "num_hidden_layers": 4,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }
    (ckpt / "config.json").write_text(json.dumps(moe))
    catalog = {
        "models": [{"name": "m", "source": {"path": str(ckpt)}, "params_b": 0.5}],
        "recipes": [
            {"name": "fp8", "scheme": "FP8_STATIC", "format": "llm_compressor", "preset": "rtn"},
            {"name": "w4", "scheme": "W4A16", "preset": "rtn"},
        ],
        "benchmarks": [{"name": "a", "task": "arithmetic", "dataset": {"generate": {"count": 50, "seed": 0}}}],
        "studies": [{"name": "s", "models": ["m"], "recipes": ["fp8", "w4"], "benchmarks": ["a"]}],
    }
    (root / "c.yaml").write_text(yaml.safe_dump(catalog))
    cat, home = load_catalog(root), ProjectHome(tmp_path / "home")
    real = json.loads(
        (Path(__file__).parents[1] / "data/gpu-checkpoints/tiny-qwen3.5-moe__fp8-static.config.json").read_text()
    )
    for variant, config in (("fp8", real), ("w4", {**moe, "quantization_config": {"quant_method": "auto-round"}})):
        home.quantized_dir("m", variant).mkdir(parents=True)
        (home.quantized_dir("m", variant) / "config.json").write_text(json.dumps(config))
    plan = plan_study(cat, home, load_profile("gpu-node"), "s", "H100", history=False)
    by = {v.variant: v for v in plan.variants}
    assert by["fp8"].start_s == 0 and "FP8 MoE experts" in by["fp8"].start_source
    assert by["w4"].start_s == typical_start("H100", moe=True)[0]
    fp8_suite = next(s for s in plan.suites if s.variant == "fp8")
    assert fp8_suite.requests == 0 and fp8_suite.seconds == 0.0
    assert next(s for s in plan.suites if s.variant == "w4").requests == 50  # served: all 50 samples

    # eager (gpu-node-eager), the refused variant starts no server, so the first one served is the cold start and
    # every later one finds the Triton cache warm, whichever order the variants come in
    eager = plan_study(cat, home, load_profile("gpu-node-eager"), "s", "H100", history=False)
    starts = [(v.variant, v.start_s) for v in eager.variants]
    served = [start for variant, start in starts if variant != "fp8"]
    assert served[0] == typical_start("H100", moe=True, eager=True)[0]
    assert served[1:] == [typical_start("H100", moe=True, eager=True, warm=True)[0]] * (len(served) - 1)


def test_tuning_time_has_a_part_per_layer_per_iteration_and_per_token(monkeypatch):
    """On the H100 the 9B shape's light W4A16 at 2,048 tokens per iteration took 3.86 s per layer where the
    16,384-token row scaled linearly said 1.55 s (a fixed part per iteration), and the default preset's 200
    iterations took 8.84 s, not 4 x 3.86 (a part per layer): the plan fits the three parts to the three runs."""
    from quant_dag import planning

    for m in TUNING_MEASURED:  # each measurement is reproduced
        assert tuning_seconds_per_layer("H100", m.layer_params_b, m.iters, m.batch_tokens)[0] == pytest.approx(
            m.seconds_per_layer
        )
    light, default = (next(m for m in TUNING_MEASURED if m.iters == i and m.batch_tokens == 2048) for i in (50, 200))
    per_iter = (default.seconds_per_layer - light.seconds_per_layer) / (default.iters - light.iters)
    per_layer = light.seconds_per_layer - light.iters * per_iter
    assert tuning_seconds_per_layer("H100", light.layer_params_b, 0, 2048)[0] == pytest.approx(per_layer)
    half, _ = tuning_seconds_per_layer("H100", light.layer_params_b / 2, 1000, 2048)  # scaled by the layer's size
    assert half == pytest.approx((per_layer + 1000 * per_iter) / 2)
    hi, lo = TUNING_MEASURED[:2]
    monkeypatch.setattr(planning, "TUNING_MEASURED", (hi, lo))  # both at 50 iterations: no part per layer
    assert tuning_seconds_per_layer("H100", hi.layer_params_b, 100, 0)[0] == pytest.approx(
        2 * (3.86 - (12.4 - 3.86) / (16384 - 2048) * 2048)
    )
    monkeypatch.setattr(planning, "TUNING_MEASURED", (hi,))  # one measurement: proportional to iterations and tokens
    assert tuning_seconds_per_layer("H100", hi.layer_params_b, 50, 2048)[0] == pytest.approx(12.4 / 8)
    assert tuning_seconds_per_layer("H100", hi.layer_params_b, 100, 2048)[0] == pytest.approx(12.4 / 4)
