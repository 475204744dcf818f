"""The graph on a Ray cluster: dagster-ray's `ray_executor` submits every step as a Ray job, and each quantize or
serving step carries its resource request (`dagster-ray/config` op tag) from the parallel plan, so Ray places it on
a node with the GPUs free and sets CUDA_VISIBLE_DEVICES to the ones it reserved.

Only a profile with a `cluster` section uses this; the local graph keeps Dagster's multiprocess executor and
file-lock GPU leases. dagster-ray (and so Ray) is imported only then: the code location stays light.
"""

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from quant_dag.catalog.load import Catalog
from quant_dag.home import ProjectHome
from quant_dag.profiles import ResourceProfile
from quant_dag.serve.placement import ParallelPlan, StepResources, endpoint_plan, quantize_resources, serve_resources

RAY_CONFIG_TAG = "dagster-ray/config"  # dagster-ray reads a step's Ray request from this op tag (JSON)
# what every step needs to rebuild the same definitions on another node
FORWARDED_ENV = ("QUANT_DAG_HOME", "QUANT_DAG_CATALOG", "QUANT_DAG_PROFILE", "QUANT_DAG_RESOURCES", "DAGSTER_HOME")


@dataclass(frozen=True)
class Placement:
    """A serving step's plan (made before it runs) and the op tags that ask the scheduler for its resources."""

    plan: ParallelPlan
    op_tags: dict[str, str]


def op_tags(resources: StepResources) -> dict[str, str]:
    return {RAY_CONFIG_TAG: json.dumps(resources.ray_config())}


def placer(cat: Catalog, home: ProjectHome, profile: ResourceProfile) -> Callable[[str, str], Placement]:
    def place(model: str, variant: str) -> Placement:
        plan = endpoint_plan(cat, home, profile, model, variant)
        return Placement(plan, op_tags(serve_resources(profile, plan)))

    return place


def quantize_op_tags(profile: ResourceProfile) -> dict[str, str]:
    return op_tags(quantize_resources(profile))


def step_env_vars(profile: ResourceProfile) -> list[str]:
    """Environment every step gets: quant-dag's own variables, the profile's, the Postgres password's variable,
    and a PATH that starts with this interpreter's bin/ (Ray runs `dagster api execute_step` by name)."""
    assert profile.cluster is not None
    names = [*FORWARDED_ENV, *profile.cluster.env_vars]
    if profile.cluster.postgres.password_env:
        names.append(profile.cluster.postgres.password_env)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return [*dict.fromkeys(names), f"PATH={path}"]


def executor(profile: ResourceProfile) -> dg.ExecutorDefinition:
    """dagster-ray's executor pointed at the profile's cluster. No executor-wide num_gpus/num_cpus: they would
    override every step's own request."""
    from dagster_ray import ray_executor

    assert profile.cluster is not None
    return ray_executor.configured(
        {"ray": {"address": profile.cluster.address, "env_vars": step_env_vars(profile)}}, name="ray"
    )
