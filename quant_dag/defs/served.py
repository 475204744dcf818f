"""`endpoint/<model>/<variant>` and `benchmark/<model>/<variant>/<suite>`: one served variant and its benchmarks.

One server per variant, shared by all of its benchmarks. Dagster's multiprocess executor runs every step in
its own process, so a server started by one step cannot be handed to another; instead the endpoint and the
variant's benchmarks are one subsettable multi-asset, i.e. one step: it starts the server once, verifies it
(the endpoint asset), runs every selected benchmark against it, and stops it on every exit path (the guard
process takes it down even when the step is killed). Selecting one benchmark alone runs only that one, and
starts no server at all when its journal already holds every answer. A pool (`gpu`) caps how many of these
steps run at once; each leases its own GPUs. The plumbing (servability, options, tensor parallelism, lease,
server, start journal) is quant_dag.serve.session's; this module turns its results into Dagster events.
"""

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg

from quant_dag import gpu
from quant_dag.catalog import graph
from quant_dag.catalog.graph import BASE
from quant_dag.catalog.load import Catalog
from quant_dag.catalog.schema import content_hash
from quant_dag.checkpoint.locate import checkpoint_id, checkpoint_path_of
from quant_dag.defs.cluster import Placement
from quant_dag.defs.resources import QuantDag
from quant_dag.evaluate.types import BenchmarkSummary, Builds
from quant_dag.procs import write_json_atomic
from quant_dag.runtime.version import runtime_vllm_version, serving_python, vllm_version
from quant_dag.serve.endpoint import EndpointRecord, FidelityLimits, verify_running

LIMITS = FidelityLimits()


def endpoint_failures(record: EndpointRecord | None) -> list[str]:
    """Why benchmarks must not run on this endpoint (empty: they may)."""
    if record is None:
        return ["the endpoint was never verified: materialize it first"]
    return record.blocking_problems(LIMITS)


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
    if record.random_weights:  # asked and answered is all a shape stand-in can show
        answers = result(
            "answers_not_degenerate",
            True,
            f"random weights (pace only): {len(record.answers)} smoke answers, not judged"
            + (f" ({len(bad)} degenerate, as noise is)" if bad else ""),
            warn=True,
        )
    else:
        answers = result(
            "answers_not_degenerate",
            not bad,
            "; ".join(bad) if bad else f"{len(record.answers)} smoke answers look like language",
        )
    out = [
        result("server_started", True, f"healthy after {record.start_s:.0f} s (vLLM {record.vllm_version})"),
        answers,
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


def _load_failure(ekey, is_variant, do_endpoint, checked, previous, version, exc) -> Iterator[dg.MaterializeResult]:
    """A checkpoint vLLM cannot load: the endpoint is recorded with a failed server_started check that names the
    build that did load it before (a regression of the runtime, not of the checkpoint), then the step fails."""
    if not do_endpoint:
        return
    loaded_before = previous is not None and previous.servable and bool(previous.vllm_version)
    if loaded_before and previous.vllm_version != version:
        why = f"vLLM {version} failed to load it; vLLM {previous.vllm_version} loaded it before"
    else:
        why = f"vLLM {version} failed to load it"
    tail = str(exc)[-1500:]
    names = ["server_started", "answers_not_degenerate"] + (["fidelity_vs_base"] if is_variant else [])
    results = [
        dg.AssetCheckResult(
            asset_key=ekey,
            check_name=n,
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=why if n == "server_started" else f"not run: {why}",
            metadata={"vllm_log_tail": dg.MetadataValue.md(f"```\n{tail}\n```")} if n == "server_started" else {},
        )
        for n in names
    ]
    meta = {
        "servable": True,
        "loaded": False,
        "vllm_version": version,
        "load_error": why,
        "previous_vllm_version": previous.vllm_version if previous else "",
    }
    yield dg.MaterializeResult(asset_key=ekey, metadata=meta, check_results=checked(results))


def _endpoint_metadata(record: EndpointRecord, ckpt: Path, held: gpu.Lease | None) -> dict[str, object]:
    answers = "\n".join(
        f"- thinking={a['thinking']}: **{a['question']}** → {a['content'][:160]!r}"
        + (f" (reasoning in `{a['reasoning_field']}`: {len(a['reasoning'])} chars)" if a["reasoning_field"] else "")
        for a in record.answers
    )
    return {
        "servable": record.servable,
        "servability": record.reason,
        "weights": "random (pace only: answers not judged)" if record.random_weights else "trained",
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
        # what a cluster scheduler reserved for the step (Ray sets it even for declared GPUs)
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }


def _benchmark_checks(
    key: dg.AssetKey, summary: BenchmarkSummary, pace_only: bool = False
) -> list[dg.AssetCheckResult]:
    errors, planned = summary.errors, summary.planned
    if not summary.evaluated:
        passed, text = False, f"not evaluated: {summary.reason}"
    elif errors:
        passed, text = False, f"{errors} of {planned} requests ended in an error (retried on the next run)"
    else:
        passed, text = True, f"all {planned} requests answered and scored"
    out = [
        dg.AssetCheckResult(
            asset_key=key,
            check_name="benchmark_complete",
            passed=passed,
            description=text,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"errors": errors, "planned": planned},
        )
    ]
    builds = summary.builds or Builds()
    if summary.evaluated:
        regressions, lines = builds.regressions, builds.lines
        if pace_only:  # the scores of random weights are noise: a change of them is no regression
            regressions, lines = [], ["random weights (pace only): scores not compared between vLLM builds"]
        if builds.previous is None:
            text = "no earlier vLLM build answered these samples: nothing to compare"
        else:
            text = "; ".join(regressions or lines) or f"no comparable mode vs vLLM {builds.previous}"
        out.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name="no_regression_vs_previous_build",
                passed=not regressions,
                description=text,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"previous_vllm_version": builds.previous or ""},
            )
        )
    return out


def _benchmark_metadata(summary: BenchmarkSummary, server: dict | None) -> dict[str, object]:
    from quant_dag.evaluate.suite import aggregate_table_md

    meta: dict[str, object] = {
        "evaluated": summary.evaluated,
        "reason": summary.reason,
        "task": summary.task,
        "grader": summary.grader,
        "grader_differences": dg.MetadataValue.md("\n".join(f"- {d}" for d in summary.differences) or "none"),
        "modes": ", ".join(summary.modes),
        "dataset_revision": summary.dataset_revision,
        "vllm_version": summary.vllm_version,
        "checkpoint_id": summary.checkpoint_id,
        "requests_planned": summary.planned,
        "requests_sent": summary.sent,
        "requests_reused": summary.reused,
        "errors": summary.errors,
        "aggregates": dg.MetadataValue.md(aggregate_table_md(summary.aggregates)),
    }
    for agg in summary.aggregates:
        meta[f"accuracy/{agg['mode']}"] = dg.MetadataValue.float(
            float(agg["accuracy"] if agg["accuracy"] is not None else float("nan"))
        )
        meta[f"cutoff_rate/{agg['mode']}"] = dg.MetadataValue.float(
            float(agg["cutoff_rate"] if agg["cutoff_rate"] is not None else float("nan"))
        )
    paths = {"records": summary.records, "aggregates_file": summary.aggregates_file, "journal": summary.journal}
    for name, path in paths.items():
        if path:
            meta[f"{name}_path"] = dg.MetadataValue.path(path)
    throughput = {
        "wall_s": summary.wall_s,
        "concurrency": summary.concurrency,
        "output_tokens_per_s": summary.output_tokens_per_s,
    }
    for name, value in throughput.items():
        if value is not None:
            meta[name] = value
    if summary.mode_notes:
        meta["mode_notes"] = "; ".join(summary.mode_notes)
    history = summary.builds.history if summary.builds else []
    if history:  # this suite on every vLLM build that answered the same samples
        rows = "\n".join(
            f"| {h['vllm_version']} | {h['mode']} | {h['records']} | {h['coverage']:.2f} | {h['accuracy']:.3f} | "
            f"{h['cutoff_rate']:.3f} |"
            for h in history
        )
        meta["accuracy_by_vllm_build"] = dg.MetadataValue.md(
            "| vLLM | mode | records | coverage | accuracy | cutoff |\n|---|---|---|---|---|---|\n" + rows
        )
    if server:
        meta["server"] = dg.MetadataValue.json(server)
    return meta


def served_variant(
    cat: Catalog,
    model: str,
    variant: str,
    serve_flags: list[str],
    suites: list[str],
    placement: Placement | None = None,
) -> dg.AssetsDefinition:
    """The endpoint of one (model, variant) and its benchmarks: one step, one server. `placement`: on a cluster,
    the plan made before the step runs and the resources it asks the scheduler for."""
    plan = placement.plan if placement else None
    ekey = dg.AssetKey(graph.endpoint(model, variant))
    is_variant = variant != BASE
    upstream = dg.AssetKey(graph.quantized(model, variant) if is_variant else graph.checkpoint(model))
    model_serve = cat.models[model].serving()
    pace_only = cat.models[model].pace_only
    endpoint_cv = content_hash({"flags": serve_flags + model_serve.flags(), "vllm": vllm_version()})
    specs = [
        dg.AssetSpec(
            ekey,
            deps=[upstream, dg.AssetKey(graph.RUNTIME)]
            + ([dg.AssetKey(graph.endpoint(model, BASE))] if is_variant else []),
            group_name="endpoints",
            kinds={"vllm"},
            code_version=endpoint_cv,
            description=f"{model} / {variant} served by vLLM and verified: startup facts, smoke answers, fidelity "
            "vs the base.",
        )
    ]
    checks = [
        dg.AssetCheckSpec(
            "server_started", asset=ekey, blocking=True, description="vLLM loaded the checkpoint and answered /health."
        ),
        dg.AssetCheckSpec(
            "answers_not_degenerate",
            asset=ekey,
            blocking=True,
            description="Random weights (pace only): the smoke questions are asked and answered, not judged."
            if pace_only
            else "Smoke answers are not empty, one character or a loop.",
        ),
    ]
    if is_variant:
        checks.append(
            dg.AssetCheckSpec(
                "fidelity_vs_base",
                asset=ekey,
                blocking=True,
                description=f"On the reference text: KL vs the base <= {LIMITS.max_kl} nats/token, "
                f"perplexity <= {LIMITS.max_ppl_ratio}x.",
            )
        )
    suite_of: dict[dg.AssetKey, str] = {}
    for name in suites:
        b = cat.benchmarks[name]
        bkey = dg.AssetKey(graph.benchmark(model, variant, name))
        suite_of[bkey] = name
        specs.append(
            dg.AssetSpec(
                bkey,
                deps=[ekey],
                group_name="benchmarks",
                kinds={"vllm", "parquet"},
                code_version=content_hash(
                    {
                        "endpoint": endpoint_cv,
                        "suite": b.resolved(),
                        "thinking": b.thinking,
                        "repeats": b.repeats,
                        "limit": b.limit,
                    }
                ),
                description=f"{model} / {variant} on {name} ({b.task}"
                + (", thinking on and off" if len(b.thinking) > 1 else "")
                + f", {b.repeats} repeat(s)): per-sample records (content, reasoning, finish_reason, tokens, score) "
                "and aggregates.",
            )
        )
        checks.append(
            dg.AssetCheckSpec(
                "benchmark_complete",
                asset=bkey,
                description="Every planned request was answered and scored, none errored.",
            )
        )
        checks.append(
            dg.AssetCheckSpec(
                "no_regression_vs_previous_build",
                asset=bkey,
                description="Accuracy on the same samples is not significantly lower than with the previous vLLM build "
                "(paired bootstrap over samples, per mode).",
            )
        )

    @dg.multi_asset(
        name="serve__" + "__".join(part.replace("-", "_").replace(".", "_") for part in (model, variant)),
        specs=specs,
        check_specs=checks,
        can_subset=True,
        pool="gpu",  # caps concurrent serving steps: `dagster instance concurrency set gpu N`
        op_tags=placement.op_tags if placement else None,
    )
    def _served(context: dg.AssetExecutionContext, quant_dag: QuantDag):
        # polars, aiohttp: loaded by the step, not the code location
        from quant_dag.evaluate.suite import SuiteRunner, context_problem
        from quant_dag.serve.server import ServerFailed
        from quant_dag.serve.session import ServingSession

        home = quant_dag.paths()
        profile = quant_dag.run_profile()
        python = serving_python(home, profile)
        ckpt = checkpoint_path_of(cat, home, model, variant)
        edir = home.artifacts(ekey.path)
        session = ServingSession(
            ckpt,
            edir,
            profile,
            model_serve,
            python=python,
            cache_dir=home.root / "cache",
            locks_dir=home.root / "locks",
            label=ekey.to_user_string(),
            log=context.log.info,
        )
        servable = session.servability.servable
        do_endpoint = ekey in context.selected_asset_keys
        benches = [(k, suite_of[k]) for k in suite_of if k in context.selected_asset_keys]

        def checked(results: list[dg.AssetCheckResult]) -> list[dg.AssetCheckResult]:
            return [
                r for r in results if dg.AssetCheckKey(r.asset_key, r.check_name) in context.selected_asset_check_keys
            ]

        runners = {
            k: SuiteRunner(
                cat,
                name,
                model,
                variant,
                home.artifacts(k.path),
                ckpt,
                python=python,
                checkpoint_id=checkpoint_id(cat, model, variant),
                run_id=context.run.run_id,
                vllm_version=runtime_vllm_version(python) if servable else "",
                send_seed=profile.serve.request_seed,
            )
            for k, name in benches
        }  # loads every dataset before any server starts: bad data fails fast
        if not servable:
            if do_endpoint:
                record = session.new_record(random_weights=pace_only)
                write_json_atomic(edir / graph.ENDPOINT_FILE, dataclasses.asdict(record))
                yield dg.MaterializeResult(
                    asset_key=ekey,
                    metadata=_endpoint_metadata(record, ckpt, None),
                    check_results=checked(_results(ekey, record, is_variant)),
                )
            for k, runner in runners.items():
                summary = runner.not_evaluated(f"not servable here: {session.servability.reason}")
                yield dg.MaterializeResult(
                    asset_key=k,
                    metadata=_benchmark_metadata(summary, None),
                    check_results=checked(_benchmark_checks(k, summary, pace_only)),
                )
            return
        if runners and not do_endpoint:
            problems = endpoint_failures(session.previous_record())
            if problems:
                raise dg.Failure(
                    f"{ekey.to_user_string()} failed verification, its benchmarks do not run: " + "; ".join(problems)
                )
        todo = {k: r.pending() for k, r in runners.items()}
        pending = sum(todo.values())
        context.log.info(f"{len(runners)} benchmark(s) selected, {pending} request(s) not yet in their journals")
        too_long = [
            p for k, r in runners.items() if todo[k] and (p := context_problem(r.plan, session.options.max_model_len))
        ]
        if too_long:  # before the server starts: every request of such a suite would be refused
            raise dg.Failure("; ".join(too_long))
        session.use_plan(plan or session.plan_on_host())
        if not (do_endpoint or pending > 0):  # every answer is journaled already: no server needed
            for k, runner in runners.items():
                summary = runner.run(None, log=context.log.info)
                yield _benchmark_result(k, ekey, summary, None, checked, pace_only)
            return
        previous = session.previous_record()  # the last verification, before this run overwrites it
        record = session.new_record(random_weights=pace_only)
        with contextlib.ExitStack() as stack:
            try:
                srv = stack.enter_context(session.start(record, context.run.run_id))
            except ServerFailed as exc:
                yield from _load_failure(
                    ekey, is_variant, do_endpoint, checked, previous, runtime_vllm_version(python), exc
                )
                raise dg.Failure(f"{ekey.to_user_string()}: {str(exc)[:4000]}") from None
            context.log.info(
                f"vLLM up on port {srv.port} after {srv.started_s:.0f} s, shared by {len(runners)} benchmark(s)"
            )
            if do_endpoint:
                base_ref = home.artifacts(graph.endpoint(model, BASE)) / graph.REFERENCE_FILE if is_variant else None
                record = verify_running(srv, ckpt, edir, record, base_reference=base_ref)
                meta = {
                    **_endpoint_metadata(record, ckpt, session.lease),
                    "server": dg.MetadataValue.json(session.server_info),
                    "parallel_plan": (
                        f"TP {session.plan.tensor_parallel} x DP {session.plan.data_parallel}: {session.plan.why}"
                        if session.plan
                        else ""
                    ),
                    "served_checkpoint": dg.MetadataValue.asset(upstream),  # a link in the UI
                }
                yield dg.MaterializeResult(
                    asset_key=ekey, metadata=meta, check_results=checked(_results(ekey, record, is_variant))
                )
                problems = endpoint_failures(record)
                if problems and runners:
                    raise dg.Failure(
                        f"{ekey.to_user_string()} failed verification, its benchmarks do not run: "
                        + "; ".join(problems)
                    )
            for k, runner in runners.items():
                summary = runner.run(srv, log=context.log.info)
                yield _benchmark_result(k, ekey, summary, session.server_info, checked, pace_only)

    return _served


def _benchmark_result(
    key: dg.AssetKey, ekey: dg.AssetKey, summary: BenchmarkSummary, server: dict | None, checked, pace_only: bool
) -> dg.MaterializeResult:
    meta = {**_benchmark_metadata(summary, server), "endpoint": dg.MetadataValue.asset(ekey)}
    return dg.MaterializeResult(
        asset_key=key, metadata=meta, check_results=checked(_benchmark_checks(key, summary, pace_only))
    )


def definitions(
    cat: Catalog, serve_flags: list[str], place: Callable[[str, str], Placement] | None = None
) -> dg.Definitions:
    """One multi-asset per served (model, variant) of any study, with the suites of every study that has it.
    `place(model, variant)`: on a cluster, each serving step's plan and resource request."""
    return dg.Definitions(
        assets=[
            served_variant(cat, m, v, serve_flags, suites, place(m, v) if place else None)
            for (m, v), suites in graph.served_suites(cat).items()
        ]
    )
