"""Checks that a quantized checkpoint's config agrees with its tensors, and that its size is what it claims.

Both read safetensors headers and config.json only. They catch the silent failures seen in practice:
a vision tower or lm_head stored 16-bit but missing from compressed-tensors' `ignore` (vLLM then
reads bf16 as packed weights, or FP8_STATIC gives NaN logits), ignore patterns that match nothing
(vLLM #40252), Linear layers AutoRound skipped because their dims do not divide the group size
(AutoRound #1650), and "4-bit" checkpoints nearly as large as FP8.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from quant_dag.catalog.schemes import ALWAYS_16BIT_FAMILIES, SCHEMES
from quant_dag.checkpoint.layout import Layout, LinearInfo, family_of, read_config, read_layout, split_name
from quant_dag.procs import write_json_atomic


@dataclass
class CheckOutcome:
    passed: bool
    summary: str
    problems: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Expectation:
    """What a recipe (or a third-party variant's card) says the checkpoint should be."""

    scheme: str
    group_size: int | None = None
    keep_16bit: tuple[str, ...] = ()  # module-name fragments or family names
    tolerance: float = 0.10

    def wants_16bit(self, lin: LinearInfo) -> bool:
        if lin.family in ALWAYS_16BIT_FAMILIES:
            return True
        return any(frag == lin.family or frag in lin.name for frag in self.keep_16bit)


def _compressed_tensors_match(pattern: str, module: str) -> bool:
    if pattern.startswith("re:"):
        return re.match(pattern[3:], module) is not None
    return pattern == module


def _autoround_match(key: str, module: str) -> bool:
    """extra_config keys are full layer names or regexes such as '.*linear_attn.*'."""
    if key == module:
        return True
    try:
        return re.fullmatch(key, module) is not None
    except re.error:
        return False


def _declared_16bit(config: dict) -> tuple[str, list[str], Callable[[str, str], bool]]:
    """(quant_method, patterns that declare 16-bit modules, matcher)."""
    qc = config.get("quantization_config") or {}
    method = str(qc.get("quant_method", "")).lower()
    if method == "compressed-tensors":
        return method, list(qc.get("ignore") or []), _compressed_tensors_match
    if method in ("auto-round", "intel/auto-round"):
        extra = qc.get("extra_config") or {}
        keys = [k for k, v in extra.items() if int((v or {}).get("bits", 16)) >= 16]
        return method, keys, _autoround_match
    # gptq / awq / fp8 (HF): substring match on modules_to_not_convert, like transformers does
    keys = list(qc.get("modules_to_not_convert") or qc.get("ignored_layers") or [])
    return method, keys, lambda pat, mod: pat in mod


def _outside_blocks(config: dict, module: str) -> bool:
    """AutoRound/GPTQ quantize only inside `block_name_to_quantize`; what lies outside stays 16-bit by design."""
    qc = config.get("quantization_config") or {}
    blocks = qc.get("block_name_to_quantize")
    if not blocks or qc.get("quant_method") == "compressed-tensors":
        return False
    prefixes = blocks if isinstance(blocks, list) else str(blocks).split(",")
    return not any(module.startswith(p.strip() + ".") for p in prefixes)


def check_config_agrees(ckpt: str | Path, expect: Expectation, layout: Layout | None = None) -> CheckOutcome:
    """Every 16-bit Linear is declared 16-bit by the config, every declared pattern matches a module,
    and every quantized Linear's input width divides the group size."""
    config = read_config(ckpt)
    layout = layout or read_layout(ckpt)
    qc = config.get("quantization_config")
    problems: list[str] = []
    if not qc:
        return CheckOutcome(False, "config.json has no quantization_config", ["no quantization_config"])
    method, patterns, match = _declared_16bit(config)
    modules = [lin.name for lin in layout.linears]

    undeclared = [
        lin
        for lin in layout.kept_16bit()
        if not _outside_blocks(config, lin.name) and not any(match(p, lin.name) for p in patterns)
    ]
    for lin in undeclared:
        problems.append(
            f"{lin.name} ({lin.family}) is stored {lin.storage} but {method} config does not declare it 16-bit"
        )

    unused = [p for p in patterns if not any(match(p, m) for m in modules)]
    for p in unused:
        problems.append(f"16-bit pattern {p!r} in {method} config matches no Linear module")

    declared_but_quantized = [
        lin.name for lin in layout.linears if lin.quantized and any(match(p, lin.name) for p in patterns)
    ]
    for name in declared_but_quantized:
        problems.append(f"{name} is declared 16-bit by the config but stored quantized")

    if method in ("auto-round", "intel/auto-round", "gptq") and layout.bits < 16:
        pack = 32 // layout.bits  # GPTQ-style qzeros pack the output dimension into int32
        for lin in layout.linears:
            if lin.storage == "int-packed" and lin.out_features and lin.out_features % pack:
                problems.append(
                    f"{lin.name}: out_features {lin.out_features} is not divisible by {pack} "
                    f"(int32 packing of {layout.bits}-bit zero points): loaders reject it"
                )

    group = expect.group_size if expect.group_size is not None else SCHEMES[expect.scheme].group_size
    if group and group > 0:
        for lin in layout.linears:
            if lin.quantized and lin.in_features and lin.in_features % group:
                problems.append(f"{lin.name}: in_features {lin.in_features} is not divisible by group_size {group}")

    unrequested = [lin for lin in layout.kept_16bit() if not expect.wants_16bit(lin)]
    details = {
        "quant_method": method,
        "declared_16bit_patterns": len(patterns),
        "linear_16bit": len(layout.kept_16bit()),
        "linear_quantized": sum(lin.quantized for lin in layout.linears),
        "kept_16bit_unrequested": [lin.name for lin in unrequested],
    }
    if problems:
        return CheckOutcome(False, f"{len(problems)} disagreement(s) between config and tensors", problems, details)
    note = f"; {len(unrequested)} Linear kept 16-bit though not requested (declared)" if unrequested else ""
    return CheckOutcome(True, f"config ({method}) agrees with tensors{note}", [], details)


def declare_kept_16bit(ckpt: str | Path) -> list[str]:
    """Name in a compressed-tensors config's `ignore` every Linear its tensors keep 16-bit; returns the names added.

    The export lists only what it was told to skip. Seen on the H100 (AutoRound 0.16.1, llm_compressor format):
    NVFP4 of the tiny Qwen3.5 left the vision tower out of `ignore`, FP8_STATIC of the MoE left out the vision tower,
    `lm_head` and the routers, all stored BF16; vLLM reads an undeclared module with the quantized scheme (FACTS:
    FP8_STATIC without lm_head gives NaN logits). Names are the checkpoint's own: vLLM maps them to its modules as
    it maps the weights. config.json and the exporter's quantization_config.json (where written) are rewritten;
    other configs are left alone (auto-round's extra_config is written by AutoRound from its own decisions)."""
    ckpt = Path(ckpt)
    config = read_config(ckpt)
    method, ignore, match = _declared_16bit(config)
    if method != "compressed-tensors":
        return []
    added = [lin.name for lin in read_layout(ckpt).kept_16bit() if not any(match(p, lin.name) for p in ignore)]
    if not added:
        return []
    config["quantization_config"]["ignore"] = [*ignore, *added]
    write_json_atomic(ckpt / "config.json", config)
    exported = ckpt / "quantization_config.json"  # the exporter's copy, where it wrote one
    if exported.is_file():
        doc = json.loads(exported.read_text())
        doc["ignore"] = [*(doc.get("ignore") or []), *added]
        write_json_atomic(exported, doc)
    return added


def predict_bytes(base: Layout, expect: Expectation) -> dict[str, int]:
    """Bytes per module family if every Linear the recipe quantizes takes the scheme's bits per parameter."""
    scheme = SCHEMES[expect.scheme]
    bpp = scheme.bytes_per_param(expect.group_size)
    linear_by_name = {lin.name: lin for lin in base.linears}
    out: dict[str, int] = {}
    for t in base.tensors:
        module, suffix = split_name(t.name)
        lin = linear_by_name.get(module)
        fam = family_of(t.name)
        if lin is not None and suffix == "weight" and not expect.wants_16bit(lin):
            nbytes = int(t.numel * bpp)
        else:
            nbytes = t.numel * 2 if t.dtype == "F32" and lin is not None else t.nbytes
        out[fam] = out.get(fam, 0) + nbytes
    return out


def check_size(ckpt: str | Path, expect: Expectation, base: Layout, layout: Layout | None = None) -> CheckOutcome:
    """Actual size within `tolerance` of the prediction; on failure, name the families that explain it."""
    layout = layout or read_layout(ckpt)
    predicted = predict_bytes(base, expect)
    actual = {f: r["bytes"] for f, r in layout.family_rows().items()}
    total_p, total_a = sum(predicted.values()), sum(actual.values())
    ratio = total_a / total_p if total_p else float("inf")
    excess = sorted(
        ((f, actual.get(f, 0) - predicted.get(f, 0)) for f in set(actual) | set(predicted)),
        key=lambda kv: -kv[1],
    )
    details = {
        "predicted_bytes": total_p,
        "actual_bytes": total_a,
        "ratio": round(ratio, 4),
        "tolerance": expect.tolerance,
        "bits_per_param": round(8 * total_a / max(layout.total_params, 1), 3),
        "excess_by_family": {f: b for f, b in excess if b},
    }
    if abs(ratio - 1) <= expect.tolerance:
        return CheckOutcome(True, f"size {total_a:,} B is {ratio:.1%} of the predicted {total_p:,} B", [], details)
    culprits = [f"{f} (+{b:,} B)" for f, b in excess if b > 0.02 * total_p][:4] or ["no single family"]
    msg = (
        f"size {total_a:,} B is {ratio:.1%} of the {expect.scheme} prediction {total_p:,} B "
        f"(tolerance {expect.tolerance:.0%}); explained by: {', '.join(culprits)}"
    )
    return CheckOutcome(False, msg, [msg], details)
