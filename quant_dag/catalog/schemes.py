"""What each AutoRound scheme, export format and preset means, as plain data.

Mirrors auto_round/schemes.py and auto_round/cli/main.py (RECIPES) of AutoRound 0.16
so that the catalog can be validated, hashed and sized without importing AutoRound.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scheme:
    bits: int
    group_size: int  # -1: per channel, 0: per tensor
    data_type: str  # int, nv_fp, mx_fp, fp
    act_bits: int
    scale_bytes: float  # bytes stored per group for the scale (plus zero point for int)

    def bytes_per_param(self, group_size: int | None = None) -> float:
        """Stored bytes per weight parameter, scales included (zero points for int schemes)."""
        g = self.group_size if group_size is None else group_size
        per_group = 0.0
        if g > 0:
            per_group = self.scale_bytes / g
        elif g == -1:
            per_group = 0.0  # one scale per output channel: negligible
        return self.bits / 8 + per_group


# int schemes store an fp16 scale plus a packed zero point per group (auto_round/auto_gptq layout)
SCHEMES: dict[str, Scheme] = {
    "W2A16": Scheme(2, 128, "int", 16, 2 + 2 / 8),
    "W3A16": Scheme(3, 128, "int", 16, 2 + 3 / 8),
    "W4A16": Scheme(4, 128, "int", 16, 2 + 4 / 8),
    "W8A16": Scheme(8, 128, "int", 16, 2 + 8 / 8),
    "NVFP4": Scheme(4, 16, "nv_fp", 4, 1),  # fp8 e4m3 scale per 16
    "MXFP4": Scheme(4, 32, "mx_fp", 4, 1),  # e8m0 scale per 32
    "MXFP8": Scheme(8, 32, "mx_fp", 8, 1),
    "FPW8A16": Scheme(8, 0, "fp", 16, 0),
    "FP8_STATIC": Scheme(8, -1, "fp", 8, 0),
    "FP8_BLOCK": Scheme(8, 128, "fp", 8, 4 / 128),  # fp32 scale per 128x128 block
    "INT8": Scheme(8, -1, "int", 8, 0),  # W8A8
}

# Which export formats can carry which schemes (AutoRound 0.16 export/ modules).
FORMATS: dict[str, frozenset[str]] = {
    "auto_round": frozenset(SCHEMES),
    "auto_gptq": frozenset({"W2A16", "W3A16", "W4A16", "W8A16"}),
    "auto_awq": frozenset({"W4A16"}),
    "llm_compressor": frozenset(
        {"W4A16", "W8A16", "NVFP4", "MXFP4", "MXFP8", "FPW8A16", "FP8_STATIC", "FP8_BLOCK", "INT8"}
    ),
}

# auto_round/cli/main.py RECIPES (AutoRound 0.16.1).
PRESETS: dict[str, dict[str, object]] = {
    "rtn": {"iters": 0, "nsamples": 1, "seqlen": 2048, "batch_size": 8, "lr": None, "disable_opt_rtn": True},
    "opt_rtn": {"iters": 0, "nsamples": 128, "seqlen": 2048, "batch_size": 8, "lr": None, "disable_opt_rtn": False},
    "light": {"iters": 50, "nsamples": 128, "seqlen": 2048, "batch_size": 8, "lr": 5e-3, "disable_opt_rtn": False},
    "default": {"iters": 200, "nsamples": 128, "seqlen": 2048, "batch_size": 8, "lr": None, "disable_opt_rtn": False},
    "best": {"iters": 1000, "nsamples": 512, "seqlen": 2048, "batch_size": 8, "lr": None, "disable_opt_rtn": False},
}

# Modules AutoRound leaves in 16-bit whatever the recipe says (it quantizes Linear layers inside
# the decoder blocks only); used to predict a checkpoint's layout and size.
ALWAYS_16BIT_FAMILIES = frozenset({"embeddings", "lm_head", "norms", "vision", "router", "other"})
