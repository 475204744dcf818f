"""Evaluate one benchmark suite against one served endpoint: the engine behind `benchmark/<model>/<variant>/<suite>`.

Plain Python, no Dagster. Every (sample, repeat, mode) becomes one chat request; each answer is scored and
appended to the journal the moment it completes, so a killed run loses at most the requests in flight. Run
again, it sends only what the journal lacks (see quant_dag.evaluate.records for what a key covers).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path

from quant_dag.catalog import graph
from quant_dag.catalog.schema import content_hash
from quant_dag.evaluate.client import ChatClient, ChatResult, Endpoint
from quant_dag.evaluate.records import Journal
from quant_dag.evaluate.types import Record, Sample, Scored
from quant_dag.procs import die_with_parent

THINKING, NON_THINKING, DEFAULT = "thinking", "non-thinking", "default"


@dataclass
class SuitePlan:
    """A suite, resolved and loaded: what to send."""

    benchmark: str
    task: str
    samples: list[Sample]
    dataset_revision: str
    definition: dict  # Benchmark.resolved(): decides the answers, so it is part of every key
    generation: dict  # temperature, top_p, top_k, min_p, presence_penalty, max_tokens
    thinking: tuple[bool, ...] = (False,)
    repeats: int = 1
    seed: int = 0
    send_seed: bool = True  # per-request seeds (reproducible sampling); off where the server crashes on them
    concurrency: int | None = None
    timeout_s: float = 1800


@dataclass(frozen=True)
class Provenance:
    model: str
    variant: str
    checkpoint_id: str  # recipe hash, or the checkpoint's revision
    vllm_version: str
    run_id: str = ""


@dataclass
class EvalOutcome:
    records: list[dict]  # one per planned (mode, sample, repeat), in plan order
    sent: int = 0  # requests sent by this run
    reused: int = 0  # records taken from the journal
    modes: list[str] = field(default_factory=list)
    mode_notes: list[str] = field(default_factory=list)  # e.g. why thinking was not run
    wall_s: float = 0.0
    concurrency: int = 0


def plan_modes(thinking: tuple[bool, ...], switch: bool) -> tuple[list[tuple[str, bool | None]], list[str]]:
    """(mode label, enable_thinking to send or None) per mode; without the template switch, one default run."""
    if switch:
        return [(THINKING if t else NON_THINKING, t) for t in thinking], []
    note = "the chat template has no enable_thinking switch: one run in the model's default mode"
    return [(DEFAULT, None)], ([note] if thinking != (False,) else [])


class TokenCounter:
    """Counts tokens with the checkpoint's own tokenizer, for servers that report no usage."""

    def __init__(self, checkpoint: Path):
        from tokenizers import Tokenizer  # the Rust tokenizers package: light, no torch

        self._tok = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))

    def __call__(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids) if text else 0


def token_counts(result: ChatResult, prompt: str, count: Callable[[str], int] | None) -> dict[str, object]:
    """Prompt/completion/reasoning tokens: the server's usage where reported, else counted with the tokenizer."""
    server_has_usage = result.completion_tokens is not None
    if server_has_usage and (result.reasoning_tokens is not None or not result.reasoning):
        reasoning = result.reasoning_tokens if result.reasoning_tokens is not None else 0
        return dict(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            reasoning_tokens=reasoning,
            token_source="server",
        )
    if count is None:
        return dict(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            reasoning_tokens=None,
            token_source="none",
        )
    reasoning = count(result.reasoning)
    if server_has_usage:  # usage without a reasoning breakdown (vLLM's usual case): count only the reasoning
        return dict(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            reasoning_tokens=reasoning,
            token_source="server+tokenizer",
        )
    return dict(
        prompt_tokens=count(prompt),
        completion_tokens=reasoning + count(result.content),
        reasoning_tokens=reasoning,
        token_source="tokenizer",
    )


# Sandboxes share one uid (nobody) and so one process-count limit: run a few at a time, not one per request.
SANDBOX_SLOTS = threading.BoundedSemaphore(2)


def score(task: str, sample: Sample, content: str) -> Scored:
    """The task's scorer on the answer text (not the reasoning)."""
    if sample.kind != "code":
        from quant_dag.evaluate.scoring import score_sample

        return score_sample(content, sample)
    from quant_dag.evaluate import code
    from quant_dag.evaluate.sandbox import sandbox_unavailable

    why = sandbox_unavailable()
    if why:
        raise RuntimeError(f"code not run: no sandbox here ({why})")
    ref = json.loads(sample.reference)
    with SANDBOX_SLOTS:
        if task == "humaneval":
            return code.score_humaneval(content, ref["prompt"], ref["test"], ref["entry_point"])
        return code.score_livecodebench(content, ref["tests"], ref.get("func_name"))


def _load_math_verify() -> None:
    import math_verify  # noqa: F401  (sympy and antlr: a second or more)


class Scorer:
    """Scores answers off the event loop, so request dispatch never waits for a scorer.

    Math goes to worker processes: math_verify bounds each parse and comparison with signal.alarm, which works only
    in a process's main thread, and a model's answer can be a power tower that sympy would evaluate for ever
    (`9^{9^{9^{9}}}` stops at the 5 s limit there; in a thread it would never stop). Sympy is also pure Python: in
    a thread it would hold the GIL the event loop needs. Choice extraction (short regex work) and code (waiting on a
    sandboxed child) run in threads. Workers start on the first math answer ("spawn": the caller may hold threads).
    """

    def __init__(self, workers: int | None = None):
        # at least two: one answer stuck at the time limit must not hold up every other
        self.workers = workers or max(2, min(4, os.cpu_count() or 1))
        self._pool: ProcessPoolExecutor | None = None

    async def __call__(self, task: str, sample: Sample, content: str) -> Scored:
        if sample.kind != "math":
            return await asyncio.to_thread(score, task, sample, content)
        for attempt in (1, 2):  # a worker killed under us (OOM) breaks the pool: start a new one, once
            pool = self._pool or self._start()
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, score, task, sample, content)
            except BrokenProcessPool:
                if self._pool is pool:
                    self._pool = None
                    pool.shutdown(wait=False, cancel_futures=True)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def warm(self) -> None:
        """Start the workers and load math_verify in each now, while the first requests are in flight, not when
        the first answers are waiting to be scored."""
        pool = self._pool or self._start()
        for _ in range(self.workers):
            pool.submit(_load_math_verify)

    def _start(self) -> ProcessPoolExecutor:
        # die_with_parent: a killed evaluator (SIGKILL, OOM) takes its scorers with it
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=die_with_parent)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class Progress:
    """Done/total, rate and ETA: to the terminal (stderr) and to a log callback, every `every_s` seconds."""

    def __init__(self, label: str, total: int, log: Callable[[str], None] | None, every_s: float = 10.0):
        self.label, self.total, self.log, self.every_s = label, total, log, every_s
        self.done = self.errors = 0
        self.t0 = self.last = time.monotonic()

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100 * self.done / self.total if self.total else 100
        return (
            f"{self.label}: {self.done}/{self.total} ({pct:.0f}%), {rate:.2f} req/s, "
            f"elapsed {elapsed:.0f} s, ETA {eta:.0f} s" + (f", {self.errors} errors" if self.errors else "")
        )

    def step(self, error: bool) -> None:
        self.done += 1
        self.errors += int(error)
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done == self.total:
            self.last = now
            self.emit()

    def emit(self) -> None:
        text = self.line()
        if sys.stderr.isatty():
            print(f"\r{text}", end="" if self.done < self.total else "\n", file=sys.stderr, flush=True)
        if self.log:
            self.log(text)


def prompt_hash(messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Request:
    """One chat request to send: the sample as this repeat asks it, the messages and parameters, and its record as
    far as it is known before the answer (identity and provenance)."""

    sample: Sample
    messages: list[dict]
    params: dict
    record: Record


@dataclass
class RequestPlan:
    planned: list[str]  # every key of the suite, in plan order
    todo: list[Request]  # requests still to send (not in the journal, or errored there)
    modes: list[str]
    notes: list[str]


def plan_requests(plan: SuitePlan, prov: Provenance, switch: bool, done: dict[str, dict]) -> RequestPlan:
    """Every (mode, sample, repeat) as a keyed request; those already done in the journal are left out."""
    modes, notes = plan_modes(plan.thinking, switch)
    planned: list[str] = []
    todo: list[Request] = []
    for label, enable in modes:
        for each in plan.samples:
            for repeat in range(plan.repeats):
                sample = each.for_repeat(repeat)  # the same item every repeat, unless the task varies it
                messages = [{"role": "user", "content": sample.prompt}]
                phash = prompt_hash(messages)
                seed = plan.seed + repeat if plan.send_seed else None  # a record never claims a seed it did not send
                params = {k: v for k, v in plan.generation.items() if v is not None}
                if seed is not None:
                    params["seed"] = seed
                if enable is not None:
                    params["chat_template_kwargs"] = {"enable_thinking": enable}
                key = content_hash(
                    {
                        "model": prov.model,
                        "variant": prov.variant,
                        "checkpoint": prov.checkpoint_id,
                        "vllm": prov.vllm_version,
                        "suite": plan.definition,
                        "dataset_revision": plan.dataset_revision,
                        "mode": label,
                        "sample": sample.id,
                        "prompt": phash,
                        "repeat": repeat,
                        "params": params,
                    }
                )  # without a seed, the repeat index alone keeps repeats apart
                planned.append(key)
                if key in done and not done[key].get("error"):
                    continue
                record = Record(
                    key=key,
                    asset_key=graph.key_string(graph.benchmark(prov.model, prov.variant, plan.benchmark)),
                    model=prov.model,
                    variant=prov.variant,
                    benchmark=plan.benchmark,
                    task=plan.task,
                    mode=label,
                    sample_id=sample.id,
                    repeat=repeat,
                    seed=seed,
                    params=json.dumps(params, sort_keys=True),
                    params_hash=content_hash(params),
                    prompt_hash=phash,
                    reference=sample.reference if sample.kind != "code" else None,
                    checkpoint_id=prov.checkpoint_id,
                    vllm_version=prov.vllm_version,
                    dataset_revision=plan.dataset_revision,
                    run_id=prov.run_id,
                )
                todo.append(Request(sample, messages, params, record))
    return RequestPlan(planned, todo, [m for m, _ in modes], notes)


def read_journal(path: Path) -> dict[str, dict]:
    """The journal's records by key, read-only (empty when there is none yet)."""
    if not path.exists():
        return {}
    with Journal(path) as journal:
        return journal.read()


async def _evaluate(
    endpoint: Endpoint,
    plan: SuitePlan,
    prov: Provenance,
    journal: Journal,
    *,
    switch: bool,
    concurrency: int,
    count: Callable[[str], int] | None,
    log: Callable[[str], None] | None,
) -> EvalOutcome:
    done = journal.read()
    rp = plan_requests(plan, prov, switch, done)
    planned, todo = rp.planned, rp.todo
    progress = Progress(f"{prov.variant}/{plan.benchmark}", len(todo), log)
    if log:
        log(
            f"{plan.benchmark}: {len(planned)} requests planned, {len(planned) - len(todo)} already in the journal, "
            f"{len(todo)} to send at concurrency {concurrency}"
        )

    async def one(client: ChatClient, request: Request) -> None:
        result = await client.chat(request.messages, **request.params)
        rec = replace(
            request.record,
            content=result.content,
            reasoning=result.reasoning,
            reasoning_field=result.reasoning_field,
            finish_reason=result.finish_reason,
            latency_s=round(result.latency_s, 4),
            attempts=result.attempts,
            error=result.error,
        )
        if result.error is None:
            counts = await asyncio.to_thread(token_counts, result, request.sample.prompt, count)  # off the loop
            rec = replace(rec, **counts)
            try:
                scored = await scorer(plan.task, request.sample, result.content)
                rec = replace(rec, extracted=scored.extracted, score=scored.score, score_detail=scored.detail)
            except Exception as exc:  # a scorer failure is this sample's error, not the run's
                rec = replace(rec, error=f"scoring failed: {type(exc).__name__}: {exc}")
        row = replace(rec, finished_at=time.time()).to_dict()
        await asyncio.to_thread(journal.append, row)  # an fsync per record: off the event loop
        done[rec.key] = row
        progress.step(rec.error is not None)

    t0 = time.monotonic()
    scorer = Scorer()
    try:
        if any(request.sample.kind == "math" for request in todo):
            scorer.warm()
        if todo:
            async with ChatClient(endpoint, concurrency=concurrency, timeout_s=plan.timeout_s) as client:
                await asyncio.gather(*(one(client, s) for s in todo))
    finally:
        scorer.close()
    return EvalOutcome(
        records=[done[k] for k in planned if k in done],
        sent=len(todo),
        reused=len(planned) - len(todo),
        modes=rp.modes,
        mode_notes=rp.notes,
        wall_s=round(time.monotonic() - t0, 3),
        concurrency=concurrency,
    )


def evaluate(
    endpoint: Endpoint,
    plan: SuitePlan,
    prov: Provenance,
    journal_path: Path,
    *,
    thinking_switch: bool,
    concurrency: int = 8,
    count: Callable[[str], int] | None = None,
    log: Callable[[str], None] | None = None,
) -> EvalOutcome:
    """Send what the journal lacks, score and append each answer, return this plan's records."""
    with Journal(journal_path) as journal:
        return asyncio.run(
            _evaluate(
                endpoint, plan, prov, journal, switch=thinking_switch, concurrency=concurrency, count=count, log=log
            )
        )


def pick_concurrency(configured: int | None, server_capacity: float | None, cap: int = 64) -> int:
    """The suite's setting, else what the server says it can hold at full length (vLLM's 'Maximum concurrency')."""
    if configured:
        return configured
    if server_capacity:
        return max(1, min(cap, int(server_capacity)))
    return 8
