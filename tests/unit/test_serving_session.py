"""The serving session plans without Dagster and without a GPU: options from profile, model and device, and
`tensor_parallel_size: auto` from the checkpoint's KV cache against a simulated GPU inventory."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from quant_dag.catalog.schema import ModelServe
from quant_dag.profiles import load_profile
from quant_dag.serve.session import ServingSession
from tests.support.ckpt import base_tensors, write_checkpoint

REAL_9B = Path(__file__).parents[1] / "data" / "qwen3.5" / "Qwen3.5-9B-config.json"


@pytest.fixture
def qwen35_9b_config(tmp_path: Path) -> Path:
    """Small weights under the real Qwen3.5-9B config.json: the KV cache is sized from the real config."""
    ckpt = write_checkpoint(tmp_path / "ckpt", base_tensors(), None)
    shutil.copy(REAL_9B, ckpt / "config.json")
    return ckpt


def session(ckpt: Path, tmp_path: Path, profile_name: str, model_serve: ModelServe, **serve) -> ServingSession:
    profile = load_profile(profile_name)
    profile = profile.model_copy(update={"serve": profile.serve.model_copy(update=serve)})
    logs: list[str] = []
    s = ServingSession(
        ckpt,
        tmp_path / "endpoint",
        profile,
        model_serve,
        python=sys.executable,
        cache_dir=tmp_path / "cache",
        locks_dir=tmp_path / "locks",
        log=logs.append,
    )
    s.logs = logs  # type: ignore[attr-defined]
    return s


def test_options_join_profile_model_and_device_flags(qwen35_9b_config, tmp_path):
    model = ModelServe(reasoning_parser="deepseek_r1", extra_args=("--limit-mm-per-prompt", "{}"))
    s = session(qwen35_9b_config, tmp_path, "gpu-node", model)
    assert s.device == "cuda" and s.servability.servable
    assert s.options.reasoning_parser == "deepseek_r1"  # the model's parser wins over the profile's qwen3
    # the model's flags after the profile's; the GPU's Gated DeltaNet prefill flag for linear attention last
    assert s.options.extra_args[-4:] == ["--limit-mm-per-prompt", "{}", "--gdn-prefill-backend", "triton"]
    assert s.options.max_model_len == 32768 and s.options.env["VLLM_CACHE_ROOT"] == str(tmp_path / "cache" / "vllm")
    assert any(line.startswith("servable on cuda: True") for line in s.logs)  # type: ignore[attr-defined]


def test_a_backend_chosen_by_the_model_is_kept(qwen35_9b_config, tmp_path):
    s = session(qwen35_9b_config, tmp_path, "gpu-node", ModelServe(extra_args=("--gdn-prefill-backend", "flashinfer")))
    assert s.options.extra_args.count("--gdn-prefill-backend") == 1 and s.options.extra_args[-1] == "flashinfer"


def test_cpu_sessions_add_no_device_flags_and_keep_tensor_parallel_one(qwen35_9b_config, tmp_path):
    s = session(qwen35_9b_config, tmp_path, "local-cpu", ModelServe())
    s.use_plan(s.plan_on_host())
    assert s.device == "cpu" and "--gdn-prefill-backend" not in s.options.extra_args
    assert s.options.tensor_parallel_size == 1


@pytest.mark.parametrize(("gpu_mib", "expected"), [(80_000, 1), (8_000, 2)])
def test_auto_tensor_parallel_sizes_the_kv_cache_of_the_real_config(
    qwen35_9b_config, tmp_path, monkeypatch, gpu_mib, expected
):
    # Qwen3.5-9B: 8 full-attention layers x 4 KV heads x head_dim 256 x 2 (K, V) x 2 bytes = 32 KiB per token;
    # 8 sequences of 32,768 tokens: 8 GiB, more than one 8,000 MiB GPU holds at 90%, much less than an 80 GB one.
    gpus = [{"index": i, "name": "H100", "memory_total_mib": gpu_mib} for i in range(4)]
    monkeypatch.setenv("QUANT_DAG_GPUS", json.dumps(gpus))
    s = session(qwen35_9b_config, tmp_path, "gpu-node", ModelServe(), tensor_parallel_size="auto", auto_tp_sequences=8)
    s.use_plan(s.plan_on_host())
    assert s.options.tensor_parallel_size == expected and s.options.data_parallel_size == 1
    assert any(line.startswith(f"parallel plan: TP {expected} x DP 1") for line in s.logs)  # type: ignore[attr-defined]
    assert s.new_record().flags.count("--tensor-parallel-size") == (expected > 1)


def test_a_fixed_plan_needs_no_inventory_and_auto_says_why_it_does(qwen35_9b_config, tmp_path, monkeypatch):
    from quant_dag.gpu import NoGpuAvailable

    monkeypatch.setenv("QUANT_DAG_GPUS", "[]")
    s = session(qwen35_9b_config, tmp_path, "gpu-node", ModelServe(), tensor_parallel_size=2)
    plan = s.plan_on_host()
    assert (plan.tensor_parallel, plan.data_parallel, plan.why) == (2, 1, "set in the profile")
    s = session(qwen35_9b_config, tmp_path, "gpu-node", ModelServe(), tensor_parallel_size="auto")
    with pytest.raises(NoGpuAvailable, match="nvidia-smi lists none"):
        s.plan_on_host()


def test_max_model_len_is_capped_at_the_model_context(qwen35_9b_config, tmp_path):
    """Seen on the H100: vLLM refused the gpu-node profile's 32,768 for the tiny Qwen3.5 (8,192 positions), and both
    of gpu-smoke's base servers stopped at start."""
    config = json.loads((qwen35_9b_config / "config.json").read_text())
    config["text_config"]["max_position_embeddings"] = 8192
    (qwen35_9b_config / "config.json").write_text(json.dumps(config))
    s = session(qwen35_9b_config, tmp_path, "gpu-node", ModelServe())
    assert s.options.max_model_len == 8192
    assert "--max-model-len" in (argv := s.options.flags()) and argv[argv.index("--max-model-len") + 1] == "8192"
    assert any("max_model_len 32768 -> 8192" in line for line in s.logs)  # type: ignore[attr-defined]
    # a profile shorter than the model is kept as it is
    assert (
        session(qwen35_9b_config, tmp_path, "gpu-node", ModelServe(), max_model_len=4096).options.max_model_len == 4096
    )


def test_served_length_reads_the_text_model_or_the_top_level():
    from quant_dag.serve.plan import context_length, served_length

    assert context_length({"text_config": {"max_position_embeddings": 8192}, "max_position_embeddings": 99}) == 8192
    assert context_length({"max_position_embeddings": 2048}) == 2048
    assert context_length({}) is None and served_length({}, 32768) == 32768 and served_length(None, 512) == 512
    assert served_length({"max_position_embeddings": 2048}, 32768) == 2048


def test_a_suite_whose_max_tokens_fill_the_served_context_is_stopped_before_serving():
    """With --max-model-len capped at a model's context, a suite at the seed's 30,720-token cap cannot be answered
    by a model of 8,192 positions: the step says which suite and field before a server starts."""
    from quant_dag.evaluate.engine import SuitePlan
    from quant_dag.evaluate.suite import context_problem

    plan = SuitePlan("aime25", "aime", [], "r", {}, {"max_tokens": 30720})
    why = context_problem(plan, 8192)
    assert why and why.startswith("benchmark aime25: generation.max_tokens 30720") and "8192 tokens served" in why
    assert context_problem(plan, 32768) is None
    assert context_problem(SuitePlan("x", "aime", [], "r", {}, {"max_tokens": None}), 8192) is None
