"""Where a step runs and what it holds: the parallel plan of an endpoint (tensor x data parallel) and the resource
request a scheduler gets for a quantize or serving step (Ray's `num_gpus`/`num_cpus`, a Kubernetes container's
`nvidia.com/gpu` limit).

A cluster scheduler places a step before it starts, so the plan is made from what is known beforehand: the
checkpoint's safetensors headers and config.json when it is on disk, the base checkpoint's layout and the recipe's
scheme when a quantized variant is not built yet, the catalog's `params_b` and a shipped config.json for a hub model
before its download, and the profile's GPU memory. A checkpoint of unknown size is planned on one GPU, and said so:
the next run plans it from its headers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from quant_dag.catalog.graph import BASE
from quant_dag.catalog.load import Catalog
from quant_dag.catalog.schemes import SCHEMES
from quant_dag.checkpoint.checks import Expectation, predict_bytes
from quant_dag.checkpoint.layout import read_config, read_layout
from quant_dag.checkpoint.locate import base_checkpoint_path, checkpoint_path_of
from quant_dag.checkpoint.random_shape import shape_config
from quant_dag.gpu import Gpu
from quant_dag.home import DATA, ProjectHome
from quant_dag.profiles import ResourceProfile
from quant_dag.serve.plan import auto_tensor_parallel, auto_tp_kv_bytes


@dataclass(frozen=True)
class ParallelPlan:
    """How one endpoint uses its GPUs: `tensor_parallel` GPUs per replica, `data_parallel` replicas."""

    tensor_parallel: int = 1
    data_parallel: int = 1
    why: str = ""

    @property
    def gpus(self) -> int:
        return self.tensor_parallel * self.data_parallel


def plan_parallel(
    weights_bytes: int | None,
    kv_bytes: int | None,
    *,
    gpu_bytes: float,
    gpus_per_endpoint: int | None,
    max_gpus: int = 8,
    tensor_parallel: int | str = 1,
    data_parallel: int | str = 1,
    utilization: float = 0.9,
) -> ParallelPlan:
    """Tensor parallelism only as wide as the weights and KV cache need (each layer's all-reduce costs on every
    token), then, with `data_parallel: auto`, replicas on the GPUs left in the endpoint's budget: a benchmark sends
    independent requests, which replicas serve without talking to each other. `gpus_per_endpoint` None: what
    tensor parallelism needs, up to `max_gpus` (a host's GPUs)."""
    budget = gpus_per_endpoint or max_gpus
    if tensor_parallel == "auto":
        if weights_bytes is None:
            tp, why = 1, "size unknown until the checkpoint is on disk: planned on 1 GPU, re-planned on the next run"
        else:
            need = weights_bytes + (kv_bytes or 0)
            gpus = [Gpu(i, "planned", int(gpu_bytes / 2**20)) for i in range(budget)]
            try:
                tp = auto_tensor_parallel(weights_bytes, kv_bytes or 0, gpus, utilization)
            except ValueError as exc:
                raise ValueError(f"{exc} (serve.gpus_per_endpoint: {gpus_per_endpoint})") from None
            why = (
                f"{need / 2**30:.1f} GiB of weights and KV cache fit {tp} GPU(s) of "
                f"{gpu_bytes * utilization / 2**30:.1f} GiB usable"
            )
    else:
        tp, why = int(tensor_parallel), f"tensor_parallel_size {tensor_parallel} set in the profile"
    if tp > budget:
        raise ValueError(f"tensor parallelism {tp} exceeds serve.gpus_per_endpoint {budget}")
    if data_parallel == "auto":
        dp = max(1, gpus_per_endpoint // tp) if gpus_per_endpoint else 1
        if dp > 1:
            why += f"; {dp} data-parallel replicas on the endpoint's {gpus_per_endpoint} GPUs rather than TP={tp * dp}"
    else:
        dp = int(data_parallel)
        if tp * dp > budget:
            raise ValueError(f"TP {tp} x DP {dp} exceeds serve.gpus_per_endpoint {budget}")
    return ParallelPlan(tp, dp, why)


def known_config(cat: Catalog, model: str) -> dict | None:
    """A hub model's config.json shipped with the package (quant_dag/data/qwen3.5/<name>-config.json), or a shape
    stand-in's: its KV cache is known before the download or build."""
    src = cat.models[model].source.model_dump()
    if "random" in src:
        return shape_config(src["random"], src.get("layers"))
    hub = src.get("hub")
    path = DATA / "qwen3.5" / f"{hub.split('/')[-1]}-config.json" if hub else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def config_of(cat: Catalog, home: ProjectHome, model: str, variant: str) -> dict | None:
    """The variant's config.json, else its base's, else a shipped one; None when none is known."""
    for path in (checkpoint_path_of(cat, home, model, variant), base_checkpoint_path(cat, home, model)):
        if (path / "config.json").is_file():
            return read_config(path)
    return known_config(cat, model)


def weights_bytes(cat: Catalog, home: ProjectHome, model: str, variant: str) -> tuple[int | None, str]:
    """Weights bytes of a checkpoint and where the number comes from: its safetensors headers when it is on disk,
    else predicted from the base's headers and the recipe's scheme, else the catalog's `params_b` x the scheme's
    bytes per parameter; (None, why) when none of these is known."""
    ckpt = checkpoint_path_of(cat, home, model, variant)
    if any(ckpt.glob("*.safetensors")):
        return read_layout(ckpt).total_bytes, "safetensors headers"
    base = base_checkpoint_path(cat, home, model)
    if variant != BASE and variant in cat.recipes and any(base.glob("*.safetensors")):
        recipe = cat.recipes[variant]
        expect = Expectation(recipe.scheme, int(recipe.resolved()["group_size"]), recipe.ignore_layers)  # type: ignore[call-overload]
        return sum(predict_bytes(read_layout(base), expect).values()), "predicted from the base and the recipe"
    params = cat.models[model].params_b
    if params is None:
        return None, "unknown (not on disk; no params_b in the catalog)"
    scheme = variant_scheme(cat, variant)
    bpp = 2.0 if scheme == "16-bit" else SCHEMES[scheme].bytes_per_param()
    return int(params * 1e9 * bpp), f"params_b {params:g} x {bpp:.3g} bytes (decoder only: a lower bound)"


def variant_scheme(cat: Catalog, variant: str) -> str:
    """The weights' scheme: "16-bit" for a base, the recipe's or the release's scheme otherwise."""
    if variant == BASE:
        return "16-bit"
    if variant in cat.recipes:
        return cat.recipes[variant].scheme
    return cat.third_party[variant].scheme


def endpoint_plan(cat: Catalog, home: ProjectHome, profile: ResourceProfile, model: str, variant: str) -> ParallelPlan:
    """The parallel plan of `endpoint/<model>/<variant>` under `profile`, before any step runs."""
    serve = profile.serve
    if not gpu_steps(profile):
        return ParallelPlan(1, 1, "CPU serving")
    gpu_gib = profile.cluster.gpu_memory_gib if profile.cluster else 80.0
    weights, kv = None, None
    if serve.tensor_parallel_size == "auto":
        weights = weights_bytes(cat, home, model, variant)[0]
        config = config_of(cat, home, model, variant)
        kv = auto_tp_kv_bytes(config, serve.max_model_len, serve.auto_tp_sequences)
    return plan_parallel(
        weights,
        kv,
        gpu_bytes=gpu_gib * 2**30,
        gpus_per_endpoint=serve.gpus_per_endpoint,
        tensor_parallel=serve.tensor_parallel_size,
        data_parallel=serve.data_parallel_size,
        utilization=serve.gpu_memory_utilization or 0.9,
    )


@dataclass(frozen=True)
class StepResources:
    """What one step asks its scheduler for."""

    cpus: float
    gpus: int

    def ray_config(self) -> dict[str, float]:
        """dagster-ray's per-step config (`dagster-ray/config` op tag): Ray places the step on a node with these
        free and sets CUDA_VISIBLE_DEVICES to the GPUs it reserved."""
        return {"num_cpus": self.cpus, "num_gpus": self.gpus}

    def container_resources(self) -> dict[str, dict[str, str]]:
        """The same request as a Kubernetes container's `resources` (a KubeRay worker group, or dagster-k8s'
        `container_config`): GPUs are an extended resource, so they are set as a limit (requests default to it)."""
        out: dict[str, dict[str, str]] = {"requests": {"cpu": f"{self.cpus:g}"}, "limits": {}}
        if self.gpus:
            out["limits"]["nvidia.com/gpu"] = str(self.gpus)
        return out

    def pod_spec(self, image: str, name: str = "step") -> dict[str, object]:
        """A pod spec whose one container asks for these resources (e.g. a KubeRay worker group's template)."""
        return {"containers": [{"name": name, "image": image, "resources": self.container_resources()}]}


def gpu_steps(profile: ResourceProfile) -> bool:
    """Whether quantize and serving steps hold GPUs: on a CUDA profile, or on a cluster whose nodes declare GPUs."""
    return profile.quantize.device != "cpu" or bool(profile.cluster and profile.cluster.declared_gpus)


def _step_cpus(profile: ResourceProfile) -> float:
    return profile.cluster.step_cpus if profile.cluster else 1.0


def quantize_resources(profile: ResourceProfile) -> StepResources:
    return StepResources(_step_cpus(profile), profile.quantize.gpus if gpu_steps(profile) else 0)


def serve_resources(profile: ResourceProfile, plan: ParallelPlan) -> StepResources:
    return StepResources(_step_cpus(profile), plan.gpus if gpu_steps(profile) else 0)
