"""Parent side of quantization: write the spec, run the AutoRound worker, and report what it cost."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from quant_dag.checkpoint.layout import Layout, read_layout
from quant_dag.checkpoint.store import dir_bytes
from quant_dag.procs import python_module, run_child, write_json_atomic


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
) -> QuantizeResult:
    """Quantize `base` with a resolved recipe into `output` (atomically) in a child process."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / "quantize_spec.json"
    spec = {"base": str(base), "output": str(output), "recipe": recipe, "calibration": calibration, "device": device}
    write_json_atomic(spec_path, spec)
    result = run_child(
        python_module("quant_dag.quantize.worker", str(spec_path)),
        on_log=on_log,
        on_event=on_event,
        env=env,
        what=f"AutoRound {recipe['scheme']} ({recipe['format']}) on {base.name}",
    )
    done = result.last("done") or {}
    info = json.loads((output / "quant_dag_quantize.json").read_text())
    return QuantizeResult(
        path=output,
        wall_s=round(result.wall_s, 2),
        peak_rss_bytes=result.peak_rss_bytes,
        autoround_version=str(done.get("autoround_version", info.get("autoround_version"))),
        size_bytes=dir_bytes(output),
        layout=read_layout(output),
    )
