"""Parent side of quantization: write the spec, run the AutoRound worker, and report what it cost."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from quant_dag.checkpoint.layout import Layout, read_layout
from quant_dag.checkpoint.store import dir_bytes
from quant_dag.procs import python_module, run_child, write_json_atomic
from quant_dag.quantize.worker import INFO_FILE


@dataclass
class QuantizeResult:
    path: Path
    wall_s: float
    peak_rss_bytes: int
    autoround_version: str
    size_bytes: int
    layout: Layout


def check_group_size(base: Layout, group_size: int, ignore_layers: list[str]) -> list[str]:
    """Linear layers whose input width the group size does not divide (AutoRound would pad or skip them)."""
    if group_size <= 0:
        return []
    return [
        f"{lin.name}: in_features {lin.in_features} is not divisible by group_size {group_size}"
        for lin in base.linears
        if lin.in_features
        and lin.in_features % group_size
        and lin.family not in ("lm_head", "vision", "router")
        and not any(frag in lin.name for frag in ignore_layers)
    ]


class PreflightError(RuntimeError):
    pass


def preflight(*, probe_fla: bool, env: dict[str, str] | None = None, on_log: Callable[[str], None] = print) -> dict:
    """The environment report of quant_dag.quantize.preflight, run where the worker will run."""
    args = ["--probe-fla"] if probe_fla else []
    result = run_child(python_module("quant_dag.quantize.preflight", *args), on_log=on_log, env=env, what="preflight")
    report = result.last("preflight")
    if report is None or "error" in report:
        raise PreflightError(f"preflight gave no report: {report}")
    return report


@dataclass
class DevicePlan:
    """How the worker runs on this device, and why (each adjustment is a note for the run's log)."""

    use_fla: bool
    recipe: dict
    notes: list[str]


def plan_device(device: str, report: dict, recipe: dict, base_bytes: int, model_type: str) -> DevicePlan:
    """Refuse what cannot run; adjust what would crash or run out of memory."""
    recipe = dict(recipe)
    notes = [f"flash-linear-attention: {'on' if report['use_fla'] else 'off'} ({report['fla_reason']})"]
    if device != "cpu" and not report["cuda"]:
        raise PreflightError(
            f"device {device!r} requested but torch {report['versions']['torch']} sees no CUDA device; "
            "use the local-cpu profile or fix the CUDA install"
        )
    if recipe["torch_compile"] and model_type.startswith("qwen3_5"):
        recipe["torch_compile"] = False
        notes.append("torch.compile off: it crashed AutoRound on Qwen3.5's full-attention layers")
    if report["cuda"] and not recipe["low_gpu_mem_usage"]:
        free = min(g["memory_free_mib"] for g in report["gpus"]) * 2**20
        if free < base_bytes:
            recipe["low_gpu_mem_usage"] = True
            notes.append(f"low_gpu_mem_usage on: {free / 2**30:.1f} GiB free < {base_bytes / 2**30:.1f} GiB of weights")
    return DevicePlan(report["use_fla"], recipe, notes)


def quantize(
    *,
    base: Path,
    output: Path,
    recipe: dict,
    calibration: str,
    device: str,
    workdir: Path,
    on_log: Callable[[str], None] = print,
    on_event: Callable[[dict], None] = lambda e: None,
    env: dict[str, str] | None = None,
    use_fla: bool = False,
) -> QuantizeResult:
    """Quantize `base` with a resolved recipe into `output` (atomically) in a child process."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / "quantize_spec.json"
    spec = {
        "base": str(base),
        "output": str(output),
        "recipe": recipe,
        "calibration": calibration,
        "device": device,
        "use_fla": use_fla,
    }
    write_json_atomic(spec_path, spec)
    result = run_child(
        python_module("quant_dag.quantize.worker", str(spec_path)),
        on_log=on_log,
        on_event=on_event,
        env=env,
        what=f"AutoRound {recipe['scheme']} ({recipe['format']}) on {base.name}",
    )
    done = result.last("done") or {}
    info = json.loads((output / INFO_FILE).read_text())
    return QuantizeResult(
        path=output,
        wall_s=round(result.wall_s, 2),
        peak_rss_bytes=result.peak_rss_bytes,
        autoround_version=str(done.get("autoround_version", info.get("autoround_version"))),
        size_bytes=dir_bytes(output),
        layout=read_layout(output),
    )
