"""One catalog benchmark suite on one served variant: load, evaluate, aggregate, write (no Dagster here).

Files under the benchmark asset's artifact folder:
  journal.jsonl       every record ever written for this (model, variant, suite), append-only (resume, history)
  records.parquet     this materialization's records, one per (mode, sample, repeat)
  aggregates.parquet  one row per mode: accuracy and interval, cutoff rate, tokens, pass@k, errors
  summary.json        what the asset reported (also read by summaries)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from quant_dag.catalog import graph
from quant_dag.evaluate.engine import (
    Provenance,
    SuitePlan,
    TokenCounter,
    evaluate,
    pick_concurrency,
    plan_requests,
    read_journal,
)
from quant_dag.evaluate.records import to_frame, write_parquet_atomic
from quant_dag.evaluate.types import BenchmarkSummary, Builds
from quant_dag.procs import write_json_atomic
from quant_dag.serve.verify import supports_thinking_switch

if TYPE_CHECKING:
    from quant_dag.catalog.load import Catalog
    from quant_dag.serve.server import VllmServer


def load_plan(cat: "Catalog", name: str) -> SuitePlan:
    """The suite's samples, loaded and rendered; raises DatasetError naming the file, row and field."""
    from quant_dag.evaluate.datasets import load_samples

    b = cat.benchmarks[name]
    data_path = cat.benchmark_path(name)  # the dataset's file, resolved against the catalog
    d = b.dataset.model_copy(update={"path": str(data_path)}) if data_path else b.dataset
    # None: the task's default source (its hub dataset, the package's data, a generator)
    source = d if d.hub or d.path or d.generate is not None else None
    options = dict(b.options)
    if "validation" in options:  # a file, relative to the catalog like the dataset's own path
        options["validation"] = str((cat.root / options["validation"]).resolve())
    samples, revision = load_samples(
        b.task, source, limit=b.limit, template=b.prompt, options=options or None, repeats=b.repeats
    )
    return SuitePlan(
        benchmark=name,
        task=b.task,
        samples=samples,
        dataset_revision=revision,
        definition=b.resolved(),
        generation=b.generation.model_dump(),
        thinking=b.thinking,
        repeats=b.repeats,
        seed=b.seed,
        concurrency=b.concurrency,
        timeout_s=b.request_timeout_s,
    )


def context_problem(plan: SuitePlan, max_model_len: int) -> str | None:
    """Why no request of the suite fits the served context, or None. vLLM rejects a request whose prompt plus
    max_tokens exceeds --max-model-len; with max_tokens alone at or past it, every request would fail, so the step
    says so before a server starts. (Whether a long prompt fits is vLLM's to say, per request.)"""
    max_tokens = plan.generation.get("max_tokens")
    if max_tokens is None or max_tokens < max_model_len:
        return None
    return (
        f"benchmark {plan.benchmark}: generation.max_tokens {max_tokens} leaves no room for a prompt in the "
        f"{max_model_len} tokens served (--max-model-len: the profile's max_model_len, capped at the model's "
        "context); lower the suite's max_tokens or serve a longer context"
    )


def aggregate_rows(records: list[dict], modes: list[str]) -> list[dict]:
    from quant_dag.evaluate.stats import aggregate

    rows = []
    for mode in modes:
        mine = [r for r in records if r["mode"] == mode]
        if mine:
            rows.append({"mode": mode, **aggregate(mine)})
    return rows


def aggregate_table_md(rows: list[dict]) -> str:
    if not rows:
        return "no records"

    def fmt(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    columns = ["mode", "samples", "accuracy", "95% CI", "cutoff", "acc. completed", "completion tok (mean)",
               "reasoning tok (mean)", "pass@k", "errors"]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        passk = ", ".join(
            f"@{k}={v:.2f}" for k, v in sorted((int(k), v) for k, v in (r.get("pass_at_k") or {}).items())
        )
        lines.append(
            f"| {r['mode']} | {r['n_samples']} | {fmt(r['accuracy'])} | [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}] | "
            f"{fmt(r['cutoff_rate'])} | {fmt(r['accuracy_completed'])} | {fmt(r['mean_completion_tokens'])} | "
            f"{fmt(r['mean_reasoning_tokens'])} | {passk} | {r['errors']} |"
        )
    return "\n".join(lines)


class SuiteRunner:
    """Evaluates one suite of the catalog for one (model, variant), against a server the caller owns."""

    def __init__(
        self,
        cat: "Catalog",
        name: str,
        model: str,
        variant: str,
        workdir: Path,
        checkpoint: Path,
        *,
        python: str,
        checkpoint_id: str,
        run_id: str,
        vllm_version: str,
        send_seed: bool = True,
    ):
        self.name, self.workdir, self.checkpoint = name, workdir, checkpoint
        self.plan = load_plan(cat, name)
        self.options = dict(cat.benchmarks[name].options)
        self.plan.send_seed = send_seed
        self.prov = Provenance(model, variant, checkpoint_id, vllm_version, run_id)
        self.switch = supports_thinking_switch(checkpoint)
        self.journal = workdir / graph.JOURNAL_FILE

    def pending(self) -> int:
        """Requests the journal does not hold yet (0: no server needed for this suite)."""
        return len(plan_requests(self.plan, self.prov, self.switch, read_journal(self.journal)).todo)

    def _base_summary(self) -> dict[str, Any]:
        """The summary fields every outcome reports, evaluated or not."""
        from quant_dag.evaluate.datasets import TASKS

        return {
            "benchmark": self.name,
            "task": self.plan.task,
            "model": self.prov.model,
            "variant": self.prov.variant,
            **TASKS[self.plan.task].grading(self.options),
            "dataset_revision": self.plan.dataset_revision,
            "checkpoint_id": self.prov.checkpoint_id,
            "vllm_version": self.prov.vllm_version,
            "run_id": self.prov.run_id,
            "asset_key": graph.key_string(graph.benchmark(self.prov.model, self.prov.variant, self.name)),
            "generation": json.dumps(
                {
                    **self.plan.generation,
                    "repeats": self.plan.repeats,
                    "seed": self.plan.seed,
                    "per_request_seed": self.plan.send_seed,
                },
                sort_keys=True,
            ),
        }

    def not_evaluated(self, reason: str) -> BenchmarkSummary:
        """What a variant that cannot be served reports: explicit, so summaries show it with the reason."""
        summary = BenchmarkSummary(
            **self._base_summary(), evaluated=False, reason=reason, modes=[], planned=0, errors=0, aggregates=[]
        )
        write_json_atomic(self.workdir / graph.SUMMARY_FILE, summary.to_dict())
        return summary

    def _builds(self, records: list[dict]) -> Builds:
        """This suite's metrics per vLLM build (history.parquet) and the comparison with the previous build."""
        from quant_dag.evaluate.history import build_history, compare_with_previous_build

        journal = read_journal(self.journal)
        history = build_history(journal, records, self.prov.vllm_version)
        write_parquet_atomic(history, self.workdir / graph.HISTORY_FILE)
        cmp = compare_with_previous_build(journal, records, self.prov.vllm_version)
        return Builds(
            previous=cmp.previous,
            regressions=cmp.regressions,
            lines=cmp.lines,
            history=history.to_dicts(),
            history_file=str(self.workdir / graph.HISTORY_FILE),
        )

    def run(self, server: "VllmServer | None", log: Callable[[str], None] | None = None) -> BenchmarkSummary:
        from quant_dag.evaluate.client import Endpoint

        endpoint = Endpoint(server.base_url, server.api_key, server.name) if server else None
        capacity = server.startup.get("max_concurrency") if server else None
        concurrency = pick_concurrency(self.plan.concurrency, capacity if isinstance(capacity, float) else None)
        tokenizer = self.checkpoint / "tokenizer.json"
        outcome = evaluate(
            endpoint,
            self.plan,
            self.prov,
            self.journal,
            thinking_switch=self.switch,
            concurrency=concurrency,
            count=TokenCounter(self.checkpoint) if tokenizer.is_file() else None,
            log=log,
        )
        frame = to_frame(outcome.records)
        write_parquet_atomic(frame, self.workdir / graph.RECORDS_FILE)
        rows = aggregate_rows(outcome.records, outcome.modes)
        agg_frame = pl.DataFrame([{**r, "pass_at_k": json.dumps(r.get("pass_at_k") or {})} for r in rows])
        write_parquet_atomic(agg_frame, self.workdir / graph.AGGREGATES_FILE)
        completion = sum(r.get("completion_tokens") or 0 for r in outcome.records if r["run_id"] == self.prov.run_id)
        summary = BenchmarkSummary(
            **self._base_summary(),
            evaluated=True,
            modes=outcome.modes,
            mode_notes=outcome.mode_notes,
            planned=len(outcome.records),
            sent=outcome.sent,
            reused=outcome.reused,
            errors=sum(1 for r in outcome.records if r.get("error")),
            aggregates=rows,
            wall_s=outcome.wall_s,
            concurrency=concurrency,
            output_tokens_per_s=round(completion / outcome.wall_s, 2) if outcome.sent and outcome.wall_s else None,
            records=str(self.workdir / graph.RECORDS_FILE),
            aggregates_file=str(self.workdir / graph.AGGREGATES_FILE),
            journal=str(self.journal),
        )
        summary.builds = self._builds(outcome.records)
        write_json_atomic(self.workdir / graph.SUMMARY_FILE, summary.to_dict())
        return summary
