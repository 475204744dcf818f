"""Build small synthetic checkpoints (real safetensors files, real config.json) in the layouts quantizers write."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "I32": torch.int32,
          "U8": torch.uint8, "F8_E4M3": torch.float8_e4m3fn}  # fmt: skip

# A Qwen3.5-like decoder: layer 0 linear attention, layer 1 full attention, MoE-free MLP, a vision tower.
HIDDEN, INTER = 128, 256
LINEARS = {
    "model.layers.0.linear_attn.in_proj_qkv": (HIDDEN, 384),
    "model.layers.0.linear_attn.in_proj_z": (HIDDEN, 128),
    "model.layers.0.linear_attn.out_proj": (128, HIDDEN),
    "model.layers.1.self_attn.q_proj": (HIDDEN, 128),
    "model.layers.1.self_attn.o_proj": (128, HIDDEN),
    "model.layers.0.mlp.up_proj": (HIDDEN, INTER),
    "model.layers.0.mlp.down_proj": (INTER, HIDDEN),
    "model.layers.1.mlp.up_proj": (HIDDEN, INTER),
    "model.layers.1.mlp.down_proj": (INTER, HIDDEN),
    "model.visual.blocks.0.attn.qkv": (64, 192),
    "lm_head": (HIDDEN, 512),
}
OTHER = {
    "model.embed_tokens.weight": ("BF16", (512, HIDDEN)),
    "model.norm.weight": ("BF16", (HIDDEN,)),
    "model.layers.0.input_layernorm.weight": ("BF16", (HIDDEN,)),
    "model.layers.0.linear_attn.conv1d.weight": ("BF16", (640, 1, 4)),
    "model.layers.0.linear_attn.A_log": ("F32", (2,)),
}


def write_checkpoint(
    path: Path, tensors: dict[str, tuple[str, tuple[int, ...]]], quantization_config: dict | None
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    data = {name: torch.zeros(shape, dtype=DTYPES[dtype]) for name, (dtype, shape) in tensors.items()}
    save_file(data, str(path / "model.safetensors"))
    config: dict = {"architectures": ["Qwen3_5ForCausalLM"], "model_type": "qwen3_5_text"}
    if quantization_config is not None:
        config["quantization_config"] = quantization_config
    (path / "config.json").write_text(json.dumps(config))
    return path


def base_tensors() -> dict[str, tuple[str, tuple[int, ...]]]:
    t = {f"{m}.weight": ("BF16", (o, i)) for m, (i, o) in LINEARS.items()}
    return {**t, **OTHER}


def gptq_tensors(
    module: str, in_f: int, out_f: int, bits: int = 4, group: int = 32
) -> dict[str, tuple[str, tuple[int, ...]]]:
    pack = 32 // bits
    return {
        f"{module}.qweight": ("I32", (in_f // pack, out_f)),
        f"{module}.qzeros": ("I32", (max(in_f // group, 1), out_f // pack)),
        f"{module}.scales": ("F16", (max(in_f // group, 1), out_f)),
    }


def nvfp4_tensors(module: str, in_f: int, out_f: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {
        f"{module}.weight_packed": ("U8", (out_f, in_f // 2)),
        f"{module}.weight_scale": ("F8_E4M3", (out_f, in_f // 16)),
        f"{module}.weight_global_scale": ("F32", (1,)),
        f"{module}.input_global_scale": ("F32", (1,)),
    }


def fp8_tensors(module: str, in_f: int, out_f: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {f"{module}.weight": ("F8_E4M3", (out_f, in_f)), f"{module}.weight_scale": ("F32", (out_f, 1))}


def quantized_tensors(
    pack, keep_16bit: tuple[str, ...] = ("visual", "lm_head")
) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every Linear packed with `pack`, except modules whose name contains a `keep_16bit` fragment."""
    out = dict(OTHER)
    for m, (i, o) in LINEARS.items():
        if any(k in m for k in keep_16bit):
            out[f"{m}.weight"] = ("BF16", (o, i))
        else:
            out.update(pack(m, i, o))
    return out


def autoround_config(bits: int = 4, group: int = 32, extra: dict | None = None) -> dict:
    return {
        "quant_method": "auto-round",
        "bits": bits,
        "group_size": group,
        "sym": True,
        "data_type": "int",
        "packing_format": "auto_round:auto_gptq",
        "block_name_to_quantize": "model.layers",
        "extra_config": extra or {},
    }


def compressed_tensors_config(ignore: list[str], num_bits: int = 4, fmt: str = "nvfp4-pack-quantized") -> dict:
    return {
        "quant_method": "compressed-tensors",
        "format": fmt,
        "ignore": ignore,
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": num_bits, "type": "float"}}},
    }
