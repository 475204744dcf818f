"""Serve one checkpoint and verify it: the engine behind `endpoint/<model>/<variant>` (plain Python, no Dagster).

Starts vLLM, records its version, flags and startup facts, asks the smoke questions with thinking on and off
(where the chat template has the switch), records which response field carried the reasoning, scores the
fixed reference text for prompt logprobs, compares them with the base model's, and stops the server.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from quant_dag.catalog.graph import ENDPOINT_FILE, REFERENCE_FILE, VLLM_LOG
from quant_dag.procs import write_json_atomic
from quant_dag.serve.plan import Servability
from quant_dag.serve.server import ServeOptions, VllmServer
from quant_dag.serve.verify import (
    PromptLogprobs,
    perplexity,
    prompt_logprobs,
    reference_text,
    smoke,
    supports_thinking_switch,
    topk_kl,
)


@dataclass(frozen=True)
class FidelityLimits:
    """How far a variant may drift from its base on the reference text before it is kept from benchmarks."""

    max_kl: float = 0.5  # nats per token, top-k estimate
    max_ppl_ratio: float = 1.5


@dataclass
class EndpointRecord:
    servable: bool
    reason: str
    flags: list[str] = field(default_factory=list)
    vllm_version: str = ""
    startup: dict[str, object] = field(default_factory=dict)
    start_s: float = 0.0
    smoke_latency_s: float = 0.0
    answers: list[dict] = field(default_factory=list)
    reasoning_field: str | None = None
    thinking_switch: bool = False
    perplexity: float | None = None
    kl_vs_base: float | None = None
    ppl_ratio_vs_base: float | None = None
    log: str = ""
    random_weights: bool = False  # a shape stand-in (Model.pace_only): its answers are noise, not a failure

    def degenerate_answers(self) -> list[str]:
        return [
            f"{a['question']!r} (thinking={a['thinking']}): {a['degenerate']}" for a in self.answers if a["degenerate"]
        ]

    def blocking_problems(self, limits: FidelityLimits) -> list[str]:
        """Why benchmarks must not run on this endpoint: degenerate answers (unless the weights are random) and
        drift from the base (measured on random weights too: a kernel that breaks the weights breaks them both)."""
        return ([] if self.random_weights else self.degenerate_answers()) + self.fidelity_problems(limits)

    def fidelity_problems(self, limits: FidelityLimits) -> list[str]:
        out = []
        if self.kl_vs_base is not None and self.kl_vs_base > limits.max_kl:
            out.append(f"KL vs base {self.kl_vs_base:.3f} nats/token > {limits.max_kl}")
        if self.ppl_ratio_vs_base is not None and self.ppl_ratio_vs_base > limits.max_ppl_ratio:
            out.append(f"perplexity {self.ppl_ratio_vs_base:.2f}x the base's > {limits.max_ppl_ratio}x")
        return out


def new_record(
    servability: Servability, options: ServeOptions, workdir: Path, random_weights: bool = False
) -> EndpointRecord:
    workdir.mkdir(parents=True, exist_ok=True)
    return EndpointRecord(
        servability.servable,
        servability.reason,
        flags=options.flags(),
        log=str(workdir / VLLM_LOG),
        random_weights=random_weights,
    )


def verify_running(
    srv: VllmServer, checkpoint: Path, workdir: Path, record: EndpointRecord, *, base_reference: Path | None = None
) -> EndpointRecord:
    """Verify a started server: smoke answers, reasoning field, prompt logprobs and fidelity vs the base."""
    switch = supports_thinking_switch(checkpoint)
    record.start_s, record.startup = srv.started_s, srv.startup
    record.vllm_version = str(srv.startup.get("vllm_version", ""))
    t0 = time.monotonic()
    answers = smoke(srv, srv.name, switch)
    record.smoke_latency_s = round((time.monotonic() - t0) / max(len(answers), 1), 3)
    ref = prompt_logprobs(srv, srv.name, reference_text())
    record.answers = [asdict(a) for a in answers]
    record.thinking_switch = switch
    record.reasoning_field = next((a.reasoning_field for a in answers if a.reasoning_field), None)
    record.perplexity = round(perplexity(ref), 4)
    write_json_atomic(workdir / REFERENCE_FILE, ref.to_json())
    if base_reference is not None and base_reference.is_file():
        base = PromptLogprobs.from_json(json.loads(base_reference.read_text()))
        record.kl_vs_base = round(topk_kl(base, ref), 5)
        record.ppl_ratio_vs_base = round(record.perplexity / perplexity(base), 4)
    write_json_atomic(workdir / ENDPOINT_FILE, asdict(record))
    return record


def serve_and_verify(
    checkpoint: Path,
    options: ServeOptions,
    workdir: Path,
    servability: Servability,
    *,
    base_reference: Path | None = None,
    python: str | None = None,
) -> EndpointRecord:
    """Everything an endpoint asset records; writes the prompt logprobs to `workdir` for the variants to compare."""
    record = new_record(servability, options, workdir)
    if not servability.servable:
        return record
    with VllmServer(checkpoint, options, Path(record.log), python=python) as srv:
        return verify_running(srv, checkpoint, workdir, record, base_reference=base_reference)


def load_record(workdir: Path) -> EndpointRecord | None:
    """The last verification written by an endpoint step (None when it never ran)."""
    path = workdir / ENDPOINT_FILE
    return EndpointRecord(**json.loads(path.read_text())) if path.is_file() else None
