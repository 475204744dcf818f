"""Precision layout of a checkpoint, read from safetensors headers only (no model load, so 397B works too).

For every tensor: its module family (embeddings, self_attn, linear_attn, mlp, experts, shared_expert,
router, vision, lm_head, norms, other), its stored dtype and bytes. For every Linear module: whether
it is stored quantized or stayed 16-bit.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1, "F4": 0.5, "F6_E2M3": 0.75,
}  # fmt: skip
FLOAT16 = {"BF16", "F16", "F32"}

# Suffixes that carry a quantized Linear: GPTQ/AutoRound/AWQ (qweight...), compressed-tensors (weight_packed...).
QUANT_SUFFIXES = (
    "qweight", "qzeros", "scales", "g_idx", "weight_packed", "weight_scale", "weight_zero_point",
    "weight_global_scale", "input_global_scale", "input_scale", "weight_shape", "weight_scale_inv",
)  # fmt: skip
PARAM_SUFFIXES = ("weight", "bias") + QUANT_SUFFIXES

# Order matters: the first matching family wins (a shared expert is also under mlp).
FAMILY_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("vision", re.compile(r"(^|\.)(visual|vision_tower|vision_model|vision|image_newline|multi_modal_projector)\.")),
    ("lm_head", re.compile(r"(^|\.)lm_head\.")),
    ("embeddings", re.compile(r"(^|\.)(embed_tokens|wte|wpe|word_embeddings|embeddings)\.")),
    ("norms", re.compile(r"(norm|ln_\d|ln_f)[^.]*\.(weight|bias)$")),
    ("shared_expert", re.compile(r"\.shared_experts?(_gate)?\.")),
    ("router", re.compile(r"\.(mlp|block_sparse_moe)\.(gate|router)\.")),
    ("experts", re.compile(r"\.experts\.")),
    ("linear_attn", re.compile(r"\.linear_attn\.")),
    ("self_attn", re.compile(r"\.(self_attn|attn|attention)\.")),
    ("mlp", re.compile(r"\.(mlp|feed_forward|ffn)\.")),
    ("mtp", re.compile(r"(^|\.)mtp\.")),
]
FAMILIES = [f for f, _ in FAMILY_PATTERNS] + ["other"]


def family_of(tensor_name: str) -> str:
    for family, pattern in FAMILY_PATTERNS:
        if pattern.search(tensor_name):
            return family
    return "other"


# transformers v5 and the real Qwen3.5 MoE checkpoints store a layer's experts fused, one 3-D tensor
# [experts, out, in] per projection, with no `.weight` suffix.
FUSED_EXPERTS = re.compile(r"\.experts\.(gate_up_proj|down_proj)$")


def split_name(tensor_name: str) -> tuple[str, str]:
    """'model.layers.0.mlp.up_proj.qweight' -> ('model.layers.0.mlp.up_proj', 'qweight'); a fused experts
    tensor is its own module's weight."""
    if FUSED_EXPERTS.search(tensor_name):
        return tensor_name, "weight"
    module, _, suffix = tensor_name.rpartition(".")
    return (module, suffix) if suffix in PARAM_SUFFIXES else (tensor_name, "")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    file: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return int(self.numel * DTYPE_BYTES.get(self.dtype, 2))


@dataclass(frozen=True)
class LinearInfo:
    """A Linear module as stored: quantized (and how), or kept in 16-bit."""

    name: str
    family: str
    quantized: bool
    storage: str  # e.g. 'BF16', 'int-packed', 'F8_E4M3', 'nvfp4-packed'
    in_features: int | None
    out_features: int | None
    nbytes: int


class LayoutError(ValueError):
    pass


def read_header(path: Path) -> dict[str, dict]:
    """The JSON header of one .safetensors file (8-byte little-endian length, then JSON)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise LayoutError(f"{path}: too short to be a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise LayoutError(f"{path}: header length {n} is not plausible")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def read_tensors(ckpt: Path) -> list[TensorInfo]:
    files = sorted(Path(ckpt).glob("*.safetensors"))
    if not files:
        raise LayoutError(f"{ckpt}: no .safetensors files")
    out = []
    for path in files:
        for name, meta in read_header(path).items():
            out.append(TensorInfo(name, meta["dtype"], tuple(meta["shape"]), path.name))
    return out


def _unpacked(packed: TensorInfo, axis: int, bits: int) -> int:
    return int(packed.shape[axis] * DTYPE_BYTES.get(packed.dtype, 4) * 8 // bits)


# 2-D weights that are lookup tables, not Linear layers, wherever they sit (a vision tower's position table
# `model.visual.pos_embed` would otherwise read as a 16-bit Linear that no `ignore` list declares).
EMBEDDING_MODULE = re.compile(r"(^|\.)(\w*_)?(embed|embedding|embeddings|embed_tokens|wte|wpe)$")


def _linear_from(module: str, parts: dict[str, TensorInfo], bits: int) -> LinearInfo | None:
    family = family_of(module + ".weight")
    nbytes = sum(t.nbytes for t in parts.values())
    if "qweight" in parts:  # GPTQ / AutoRound: int32-packed [in/pack, out]
        q = parts["qweight"]
        return LinearInfo(module, family, True, "int-packed", _unpacked(q, 0, bits), q.shape[1], nbytes)
    if "weight_packed" in parts:  # compressed-tensors: [out, in/pack]
        q = parts["weight_packed"]
        storage = "fp4-packed" if "weight_global_scale" in parts else "int-packed"
        return LinearInfo(module, family, True, storage, _unpacked(q, 1, bits), q.shape[0], nbytes)
    w = parts.get("weight")
    fused = w is not None and len(w.shape) == 3 and FUSED_EXPERTS.search(module) is not None
    if (
        w is None
        or (len(w.shape) != 2 and not fused)
        or family in ("embeddings", "norms")
        or EMBEDDING_MODULE.search(module)
    ):
        return None
    quantized = w.dtype not in FLOAT16  # fp8 / int8 weights
    return LinearInfo(module, family, quantized, w.dtype, w.shape[-1], w.shape[-2], nbytes)


@dataclass
class Layout:
    tensors: list[TensorInfo]
    linears: list[LinearInfo]
    bits: int = 16  # bits of packed weights, from the config

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def total_params(self) -> int:
        """Parameters of the unquantized model: packed tensors are counted by what they stand for."""
        return sum(self.family_rows()[f]["params"] for f in self.family_rows())

    def family_rows(self) -> dict[str, dict[str, int]]:
        rows: dict[str, dict[str, int]] = {
            f: {"bytes": 0, "params": 0, "linear": 0, "linear_16bit": 0} for f in FAMILIES
        }
        for t in self.tensors:
            fam = family_of(t.name)
            rows[fam]["bytes"] += t.nbytes
            rows[fam]["params"] += _logical_params(t, split_name(t.name)[1], self.bits)
        for lin in self.linears:
            rows[lin.family]["linear"] += 1
            rows[lin.family]["linear_16bit"] += 0 if lin.quantized else 1
        return {f: r for f, r in rows.items() if r["bytes"] or r["linear"]}

    def dtype_rows(self) -> dict[str, dict[str, int]]:
        rows: dict[str, dict[str, int]] = defaultdict(lambda: {"bytes": 0, "tensors": 0})
        for t in self.tensors:
            rows[t.dtype]["bytes"] += t.nbytes
            rows[t.dtype]["tensors"] += 1
        return dict(rows)

    def kept_16bit(self) -> list[LinearInfo]:
        return [lin for lin in self.linears if not lin.quantized]

    def summary(self) -> dict[str, object]:
        fams = self.family_rows()
        return {
            "total_bytes": self.total_bytes,
            "total_params": self.total_params,
            "linear_modules": len(self.linears),
            "linear_quantized": sum(1 for lin in self.linears if lin.quantized),
            "families_16bit": sorted({lin.family for lin in self.kept_16bit()}),
            "families": fams,
            "dtypes": self.dtype_rows(),
        }

    def module_records(self) -> list[dict[str, object]]:
        return [asdict(lin) for lin in self.linears]


def _logical_params(t: TensorInfo, suffix: str, bits: int) -> int:
    """How many model parameters a stored tensor represents (0 for scales and zero points)."""
    if suffix in ("qweight", "weight_packed"):
        return int(t.numel * DTYPE_BYTES.get(t.dtype, 4) * 8 // bits)
    if suffix in QUANT_SUFFIXES:
        return 0
    return t.numel


def weight_bits(config: dict) -> int:
    """Bits of the packed weights according to a checkpoint's quantization_config (4 if it does not say)."""
    qc = config.get("quantization_config") or {}
    if "bits" in qc:
        return int(qc["bits"])
    for group in (qc.get("config_groups") or {}).values():
        weights = group.get("weights") or {}
        if weights.get("num_bits"):
            return int(weights["num_bits"])
    return 4


def read_config(ckpt: str | Path) -> dict:
    path = Path(ckpt) / "config.json"
    if not path.is_file():
        raise LayoutError(f"{path}: missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LayoutError(f"{path}: not valid JSON: {exc}") from exc


def read_layout(ckpt: str | Path) -> Layout:
    bits = weight_bits(read_config(ckpt))
    tensors = read_tensors(Path(ckpt))
    groups: dict[str, dict[str, TensorInfo]] = defaultdict(dict)
    for t in tensors:
        module, suffix = split_name(t.name)
        if suffix:
            groups[module][suffix] = t
    linears = [lin for module, parts in groups.items() if (lin := _linear_from(module, parts, bits)) is not None]
    return Layout(tensors, sorted(linears, key=lambda lin: lin.name), bits)
