"""The shapes shared by the evaluation engine: one benchmark sample, one scored answer, one record (a journal line,
a row of records.parquet) and what a suite reports (BenchmarkSummary: its summary.json). Standard library only: the
Dagster code location imports this module."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

Kind = Literal["choice", "math", "code"]


@dataclass(frozen=True)
class Sample:
    """One benchmark item, in the form the evaluator sends and scores.

    `prompt` is the user message, already rendered from the suite's template. `reference` is what the scorer
    compares against: a choice letter ("C"), a math answer ("\\frac{1}{2}"), or for code a JSON string of the
    tests (see quant_dag.evaluate.scoring.score_code)."""

    id: str
    prompt: str
    reference: str
    kind: Kind
    choices: tuple[str, ...] = ()
    meta: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    # (prompt, reference, choices) per repeat, for a task that varies the item between repeats (GPQA's option order
    # drawn anew for each repeat, as simple-evals does); empty: every repeat sends this sample as it is
    per_repeat: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def for_repeat(self, repeat: int) -> "Sample":
        """The sample as repeat `repeat` sends and scores it."""
        if not self.per_repeat:
            return self
        prompt, reference, choices = self.per_repeat[repeat % len(self.per_repeat)]
        return replace(self, prompt=prompt, reference=reference, choices=choices, per_repeat=())


@dataclass(frozen=True)
class Scored:
    extracted: str | None  # the answer found in the output (None: nothing found)
    score: float  # 1.0 correct, 0.0 wrong (code: all tests pass)
    detail: str = ""  # why, for a person reading one record (e.g. "2/3 tests passed", "timeout")


@dataclass(frozen=True, kw_only=True)
class Record:
    """One answered (or failed) request: a line of the journal and a row of records.parquet, fields in column order
    (quant_dag.evaluate.records.COLUMNS is this, as a Parquet schema). The fields up to `prompt_hash` and the
    provenance are known before sending; the answer's fields stay None until it comes (and when it fails)."""

    key: str  # hashes everything that decides the answer (see quant_dag.evaluate.records)
    asset_key: str  # benchmark/<model>/<variant>/<suite>
    model: str
    variant: str
    benchmark: str
    task: str
    mode: str  # "thinking", "non-thinking" or "default"
    sample_id: str
    repeat: int
    seed: int | None  # None: no per-request seed was sent
    params: str  # the generation parameters sent, JSON
    params_hash: str
    prompt_hash: str
    content: str | None = None
    reasoning: str | None = None
    reasoning_field: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    token_source: str | None = None  # "server", "server+tokenizer", "tokenizer" or "none"
    latency_s: float | None = None
    attempts: int | None = None
    reference: str | None = None  # None for code (its tests are not copied into every record)
    extracted: str | None = None
    score: float | None = None
    score_detail: str | None = None
    error: str | None = None
    checkpoint_id: str
    vllm_version: str
    dataset_revision: str
    run_id: str
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The journal's JSON object (records travel as these dicts: the journal reads back what it wrote)."""
        return {name: getattr(self, name) for name in _names(type(self))}


@dataclass
class Builds:
    """This suite's metrics per vLLM build and the comparison with the previous build (quant_dag.evaluate.history)."""

    previous: str | None = None  # the previous vLLM build that answered the same samples (None: none did)
    regressions: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # one comparison line per mode
    history: list[dict[str, Any]] = field(default_factory=list)  # history.parquet's rows
    history_file: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Builds:
        return cls(**{k: data[k] for k in _names(cls) if k in data})


# Keys a summary writes only when the suite was evaluated, and only when it was not.
EVALUATED_ONLY = (
    "mode_notes",
    "sent",
    "reused",
    "wall_s",
    "concurrency",
    "output_tokens_per_s",
    "records",
    "aggregates_file",
    "journal",
    "builds",
)
NOT_EVALUATED_ONLY = ("reason",)


@dataclass
class BenchmarkSummary:
    """What one suite on one served variant reported: the benchmark asset's summary.json (read by summaries, the
    report and the Dagster metadata). Every field has a default, so an older summary.json with fewer keys still
    reads; unknown keys (a newer file) are ignored. Written, it has the same keys as ever: those of EVALUATED_ONLY
    only for an evaluated suite, `reason` only for one that was not."""

    benchmark: str = ""
    task: str = ""
    model: str = ""
    variant: str = ""
    grader: str = ""  # the reference whose rules score the task
    differences: list[str] = field(default_factory=list)  # where the project deliberately differs from it
    dataset_revision: str = ""
    checkpoint_id: str = ""
    vllm_version: str = ""
    run_id: str = ""
    asset_key: str = ""  # benchmark/<model>/<variant>/<suite>
    generation: str = ""  # JSON: generation parameters, repeats, seed, per_request_seed
    evaluated: bool = False
    reason: str = ""  # why it was not evaluated
    modes: list[str] = field(default_factory=list)
    mode_notes: list[str] = field(default_factory=list)  # e.g. why thinking was not run
    planned: int = 0  # requests (mode, sample, repeat) in the plan
    sent: int = 0  # requests this run sent
    reused: int = 0  # records taken from the journal
    errors: int = 0
    aggregates: list[dict[str, Any]] = field(default_factory=list)  # one row per mode: {"mode": ..., **aggregate()}
    wall_s: float | None = None
    concurrency: int | None = None
    output_tokens_per_s: float | None = None
    records: str = ""  # records.parquet
    aggregates_file: str = ""  # aggregates.parquet
    journal: str = ""  # journal.jsonl
    builds: Builds | None = None

    def to_dict(self) -> dict[str, Any]:
        """The summary.json object."""
        skip = NOT_EVALUATED_ONLY if self.evaluated else EVALUATED_ONLY
        out = {name: getattr(self, name) for name in _names(type(self)) if name not in skip}
        if "builds" in out:
            out["builds"] = None if self.builds is None else {n: getattr(self.builds, n) for n in _names(Builds)}
        return out

    def to_json(self) -> str:
        """summary.json's text, as quant_dag.procs.write_json_atomic writes it."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkSummary:
        kwargs = {k: data[k] for k in _names(cls) if k in data}
        if isinstance(kwargs.get("builds"), dict):
            kwargs["builds"] = Builds.from_dict(kwargs["builds"])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> BenchmarkSummary:
        return cls.from_dict(json.loads(text))


def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]
