"""The study on a real two-node Ray cluster with the Dagster instance on a real Postgres.

The cluster runs on this machine: a head node without GPUs and a worker node that declares 2 GPUs (Ray's GPU counts
are declared resources; the profile's `declared_gpus` schedules the CPU work as GPU steps). Every quantize and
serving step is a Ray job asking for one GPU, so they must land on the worker, at most two at a time, each with its
own CUDA_VISIBLE_DEVICES. A killed raylet must fail its step with the cause, leave no vLLM behind, and a re-run must
resume from the journals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from quant_dag.home import REPO, resources_dir
from tests.support.cluster import postgres_bin, postgres_server, ray_cluster

pytestmark = pytest.mark.skipif(
    postgres_bin() is None, reason="no PostgreSQL binaries (scripts/setup.sh installs them where apt and root are)"
)

QUANT_DAG = str(Path(sys.executable).parent / "quant-dag")
MODEL = "smollm2-135m"
RECIPES = ["w4a16-rtn-g32", "w8a16-rtn-g64", "w8a16-rtn-g32"]


def op(*parts: str) -> str:
    return "__".join(p.replace("-", "_").replace(".", "_") for p in parts)


# the steps that ask Ray for a GPU: 3 quantize steps, 4 endpoints (base + 3 variants) with their benchmarks
GPU_STEPS = {op("quantized", MODEL, r) for r in RECIPES} | {op("serve", MODEL, v) for v in ["base", *RECIPES]}

CATALOG = {
    "models": [{"name": MODEL, "source": {"demo": "smollm2-135m-instruct"}}],
    "recipes": [
        # three quantize steps ready at once: two run on the 2 declared GPUs, the third waits for one
        {
            "name": "w4a16-rtn-g32",
            "scheme": "W4A16",
            "preset": "rtn",
            "group_size": 32,
            "calibration": "builtin:calibration-en",
        },
        {
            "name": "w8a16-rtn-g64",
            "scheme": "W8A16",
            "preset": "rtn",
            "group_size": 64,
            "calibration": "builtin:calibration-en",
        },
        {
            "name": "w8a16-rtn-g32",
            "scheme": "W8A16",
            "preset": "rtn",
            "group_size": 32,
            "calibration": "builtin:calibration-en",
        },
    ],
    "benchmarks": [
        {
            "name": "arithmetic",
            "task": "arithmetic",
            "dataset": {"generate": {"count": 12, "seed": 0}},
            "generation": {"temperature": 0.0, "max_tokens": 32},
        },
        {  # long enough to kill the worker in the middle of it
            "name": "arithmetic-long",
            "task": "arithmetic",
            "dataset": {"generate": {"count": 90, "seed": 1}},
            "generation": {"temperature": 0.0, "max_tokens": 32},
            "concurrency": 1,
        },
    ],
    "studies": [
        {
            "name": "ray-cut",
            "models": [MODEL],
            "recipes": RECIPES,
            "benchmarks": ["arithmetic"],
        },
        {"name": "ray-kill", "models": [MODEL], "benchmarks": ["arithmetic-long"]},
    ],
}


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory):
    """Postgres + Ray cluster + a catalog, a resources folder with the `ray-test` profile, and a project home."""
    root = tmp_path_factory.mktemp("ray")
    catalog = root / "catalog"
    catalog.mkdir()
    (catalog / "study.yaml").write_text(yaml.safe_dump(CATALOG, sort_keys=False))
    with postgres_server() as pg, ray_cluster() as ray:
        resources = root / "resources"
        resources.mkdir()
        local = yaml.safe_load((resources_dir() / "local-cpu.yaml").read_text())
        (resources / "local-cpu.yaml").write_text(yaml.safe_dump(local))
        profile = {
            **local,
            "description": "the local-cpu profile's steps as Ray jobs on the test cluster",
            "cluster": {
                "address": ray.address,
                "home": str(root / "shared-home"),  # storage every node sees: one machine here
                "postgres": {"hostname": pg.hostname, "port": pg.port, "db_name": pg.db_name, "username": pg.username},
                "declared_gpus": True,
                "step_cpus": 1,
            },
        }
        (resources / "ray-test.yaml").write_text(yaml.safe_dump(profile))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANT_DAG_", "DAGSTER_", "RAY_"))}
        env |= {"QUANT_DAG_RESOURCES": str(resources), "QUANT_DAG_CATALOG": str(catalog)}
        yield {"ray": ray, "pg": pg, "env": env, "catalog": catalog, "home": root / "shared-home", "root": root}


def quant_dag_run(study: str, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [QUANT_DAG, "run", study, "--profile", "ray-test", *extra],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
    )


def instance(home: Path):
    import dagster as dg

    return dg.DagsterInstance.from_config(str(home / "dagster"))  # its dagster.yaml names the Postgres storage


def step_windows(inst, run_id: str) -> dict[str, dict]:
    """Per step: when its Ray job was submitted, when it started and ended (from the instance's event log)."""
    import dagster as dg

    out: dict[str, dict] = {}
    for e in inst.all_logs(run_id):
        ev = e.dagster_event
        if ev is None or not e.step_key:
            continue
        w = out.setdefault(e.step_key, {})
        if ev.event_type == dg.DagsterEventType.STEP_WORKER_STARTING:
            w.setdefault("submitted", e.timestamp)
        elif ev.event_type == dg.DagsterEventType.STEP_START:
            w["start"] = e.timestamp
        elif ev.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            w["end"] = e.timestamp
        elif ev.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            cvd = ev.event_specific_data.materialization.metadata.get("cuda_visible_devices")
            if cvd is not None:  # quantized and endpoint assets record what Ray reserved
                w["cvd"] = cvd.value
    return out


def test_study_runs_on_the_ray_cluster_with_the_instance_on_postgres(cluster_env):
    from ray.job_submission import JobSubmissionClient

    env, ray, home = cluster_env["env"], cluster_env["ray"], cluster_env["home"]
    proc = quant_dag_run("ray-cut", env)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    assert "postgres" in (home / "dagster" / "dagster.yaml").read_text()  # the profile's instance, not SQLite

    inst = instance(home)
    assert type(inst.run_storage).__name__ == "PostgresRunStorage"
    run = inst.get_runs()[0]
    windows = step_windows(inst, run.run_id)
    gpu_steps = {k: w for k, w in windows.items() if k in GPU_STEPS}
    assert set(gpu_steps) == GPU_STEPS, sorted(windows)

    # every GPU step was a Ray job on the worker node, the only node with GPUs
    jobs = {j.metadata.get("dagster/op"): j for j in JobSubmissionClient(ray.address).list_jobs()}
    for step in gpu_steps:
        assert step in jobs, f"{step} ran outside Ray"
        assert jobs[step].driver_node_id == ray.worker_node_id, f"{step} ran on {jobs[step].driver_node_id}"

    # never more than 2 GPU steps at once; two at once saw different GPUs; a third waited for one of them
    intervals = sorted((w["start"], w["end"], k) for k, w in gpu_steps.items())
    overlapping = [(a, b) for i, a in enumerate(intervals) for b in intervals[i + 1 :] if b[0] < a[1]]
    assert overlapping, intervals
    for a, b in overlapping:
        assert gpu_steps[a[2]]["cvd"] != gpu_steps[b[2]]["cvd"], (a, b, gpu_steps)
        assert {gpu_steps[a[2]]["cvd"], gpu_steps[b[2]]["cvd"]} <= {"0", "1"}
    for t, _, _ in intervals:
        assert sum(1 for s, e, _ in intervals if s <= t < e) <= 2

    def running(t: float, besides: str) -> list[tuple[float, float, str]]:
        return [i for i in intervals if i[2] != besides and i[0] <= t < i[1]]

    waited = {}  # a step submitted while two others held both GPUs, started once one of them had ended
    for k, w in gpu_steps.items():
        for t in sorted(s for s, _, o in intervals if o != k and w["submitted"] <= s < w["start"]):
            if len(running(t, k)) == 2:
                waited[k] = running(t, k)
                break
    assert waited, gpu_steps
    for k, blockers in waited.items():
        assert gpu_steps[k]["start"] >= min(e for _, e, _ in blockers), (k, gpu_steps[k], blockers)

    # the same answers summarized by the single-machine profile (multiprocess executor, SQLite instance) give
    # the same table
    report = home / "artifacts" / "summary" / "ray-cut" / "report"
    on_ray = pl.read_parquet(report / "long.parquet")
    local_env = env | {"DAGSTER_HOME": str(cluster_env["root"] / "local-dagster"), "QUANT_DAG_HOME": str(home)}
    (cluster_env["root"] / "local-dagster").mkdir()
    served = ["benchmark/smollm2-135m/base/arithmetic", "benchmark/smollm2-135m/w4a16-rtn-g32/arithmetic"]
    local = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "quant_dag.definitions"]
        + ["--select", ",".join([*served, "summary/ray-cut"])],
        env=local_env | {"QUANT_DAG_PROFILE": "local-cpu"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert local.returncode == 0, local.stdout[-5000:] + local.stderr[-5000:]
    on_host = pl.read_parquet(report / "long.parquet")
    assert on_ray.height > 0 and on_ray.filter(pl.col("metric") == "accuracy").height >= 2
    # every column but run_id: the benchmark assets were materialized again, by a run of their own
    cols = [c for c in on_ray.columns if c != "run_id"]
    assert on_host.columns == on_ray.columns
    assert on_host.select(cols).sort(cols).equals(on_ray.select(cols).sort(cols)), (on_ray, on_host)


def journal_done(path: Path) -> int:
    if not path.is_file():
        return 0
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip().endswith("}")]
    return sum(1 for r in lines if not r.get("error"))


def vllm_processes(home: Path) -> list[int]:
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "vllm.entrypoints.openai.api_server" in cmd and str(home) in cmd:
            out.append(p.pid)
    return out


def test_a_lost_worker_fails_its_step_stops_vllm_and_the_rerun_resumes(cluster_env):
    import dagster as dg

    env, ray, home = cluster_env["env"], cluster_env["ray"], cluster_env["home"]
    bench = home / "artifacts" / "benchmark" / MODEL / "base" / "arithmetic-long"
    journal = bench / "journal.jsonl"
    first = subprocess.Popen(
        [QUANT_DAG, "run", "ray-kill", "--profile", "ray-test"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 900
        while journal_done(journal) < 5:  # the server is up and answering
            assert first.poll() is None, first.stdout.read()[-6000:] if first.stdout else ""
            assert time.monotonic() < deadline, "no answers within 15 minutes"
            time.sleep(1)
        assert vllm_processes(home), "answers are arriving, so a vLLM server should be running"
        ray.kill_worker_raylet()
        out, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode != 0, out[-4000:]

    deadline = time.monotonic() + 60
    while vllm_processes(home) and time.monotonic() < deadline:
        time.sleep(1)
    assert not vllm_processes(home), "a vLLM server outlived the lost worker"

    inst = instance(home)
    run = inst.get_runs(dg.RunsFilter(job_name="study_ray_kill"))[0]
    failures = [  # each failure with its causes
        e.dagster_event.step_failure_data.error.to_string()
        for e in inst.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        if e.step_key and e.step_key.startswith("serve__") and e.dagster_event.step_failure_data.error
    ]
    # the step stopped itself naming the cause (or, had it not, Ray's health check would have: node terminated)
    named = ("the cluster node running this step was lost", "node was terminated unexpectedly")
    assert failures and any(n in m for m in failures for n in named), failures

    answered = journal_done(journal)
    assert answered >= 5
    ray.start_worker()  # the node comes back (a new raylet, a new node id)
    second = quant_dag_run("ray-kill", env)
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-6000:]
    summary = json.loads((bench / "summary.json").read_text())
    assert summary["reused"] == answered, summary  # nothing answered before the loss was sent again
    assert summary["sent"] == summary["planned"] - answered and summary["errors"] == 0, summary
