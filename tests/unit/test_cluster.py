"""Cluster placement without a cluster: parallel plans -> Ray requests and Kubernetes container resources, the
cluster profile, the instance's dagster.yaml, the graph's executor and op tags, the step watchdog, Ray-assigned GPUs.
(The real two-node Ray cluster and Postgres run in tests/e2e/test_ray_cluster.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from quant_dag import gpu
from quant_dag.profiles import ClusterProfile, PostgresProfile, ResourceProfile, load_profile
from quant_dag.serve.placement import ParallelPlan, plan_parallel, quantize_resources, serve_resources
from quant_dag.serve.plan import kv_cache_bytes
from quant_dag.serve.server import ServeOptions, inherited_env

GIB = 2**30
REAL_9B = Path(__file__).parents[1] / "data" / "qwen3.5" / "Qwen3.5-9B-config.json"
H200 = 141.0


def cluster_profile(**serve: object) -> ResourceProfile:
    gpu_node = load_profile("gpu-node")
    return gpu_node.model_copy(
        update={
            "serve": gpu_node.serve.model_copy(update=serve),
            "cluster": ClusterProfile(
                address="http://head:8265", postgres=PostgresProfile(hostname="db"), gpu_memory_gib=80
            ),
        }
    )


def plan(weights_gib: float, sequences: int = 8, **kw: object) -> ParallelPlan:
    kv = kv_cache_bytes(json.loads(REAL_9B.read_text()), 32768 * sequences)  # 8 GiB for 8 x 32k tokens
    args = {"gpu_bytes": 80 * GIB, "gpus_per_endpoint": 8, "tensor_parallel": "auto", "data_parallel": 1} | kw
    return plan_parallel(int(weights_gib * GIB), kv, **args)  # type: ignore[arg-type]


def test_tensor_parallel_plans_become_ray_gpu_requests():
    profile = cluster_profile(tensor_parallel_size="auto")
    # bf16 weights of Qwen3.5-9B and -27B with 16 GiB of KV cache (16 sequences of 32k tokens)
    nine_b, twenty_seven_b = plan(17.9, sequences=16), plan(54.0, sequences=16)
    assert (nine_b.tensor_parallel, twenty_seven_b.tensor_parallel) == (1, 2)
    assert serve_resources(profile, nine_b).ray_config() == {"num_cpus": 1.0, "num_gpus": 1}
    assert serve_resources(profile, twenty_seven_b).ray_config() == {"num_cpus": 1.0, "num_gpus": 2}
    assert "fit 2 GPU(s)" in twenty_seven_b.why
    assert plan(54.0, 16, gpu_bytes=H200 * GIB).tensor_parallel == 1  # one H200 holds the 27B and its KV cache


def test_the_same_requests_as_kubernetes_container_resources():
    profile = cluster_profile()
    res = serve_resources(profile, ParallelPlan(2, 1)).container_resources()
    assert res == {"requests": {"cpu": "1"}, "limits": {"nvidia.com/gpu": "2"}}  # GPUs: a limit, never fractional
    pod = serve_resources(profile, ParallelPlan(2, 1)).pod_spec("rayproject/ray:2.60.0-gpu")
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}  # type: ignore[index]
    cpu_only = serve_resources(load_profile("local-cpu"), ParallelPlan(1, 1)).container_resources()
    assert cpu_only == {"requests": {"cpu": "1"}, "limits": {}}
    assert quantize_resources(profile).ray_config() == {"num_cpus": 1.0, "num_gpus": 1}
    assert quantize_resources(load_profile("local-cpu")).gpus == 0


def test_data_parallel_fills_the_endpoint_budget_only_when_asked():
    p = plan(17.9, gpus_per_endpoint=4, data_parallel="auto")
    assert (p.tensor_parallel, p.data_parallel, p.gpus) == (1, 4, 4)
    assert "4 data-parallel replicas" in p.why
    p = plan(54.0, 16, gpus_per_endpoint=4, data_parallel="auto")
    assert (p.tensor_parallel, p.data_parallel) == (2, 2)
    assert plan(17.9, gpus_per_endpoint=4).data_parallel == 1  # data_parallel 1: one replica, 3 GPUs left free
    with pytest.raises(ValueError, match="exceeds serve.gpus_per_endpoint 2"):
        plan(17.9, tensor_parallel=2, data_parallel=2, gpus_per_endpoint=2)
    with pytest.raises(ValueError, match="do not fit 2 GPU"):
        plan(400.0, gpus_per_endpoint=2)


def test_an_unknown_size_is_planned_on_one_gpu_and_says_so():
    p = plan_parallel(None, None, gpu_bytes=80 * GIB, gpus_per_endpoint=None, tensor_parallel="auto")
    assert p.gpus == 1 and "size unknown" in p.why


def test_session_follows_the_plan_and_keeps_vllm_off_ray(tmp_path):
    from quant_dag.catalog.schema import ModelServe
    from quant_dag.serve.session import ServingSession
    from tests.support.ckpt import base_tensors, write_checkpoint

    ckpt = write_checkpoint(tmp_path / "ckpt", base_tensors(), None)
    (ckpt / "config.json").write_text(REAL_9B.read_text())
    s = ServingSession(
        ckpt,
        tmp_path / "ep",
        cluster_profile(),
        ModelServe(),
        python=sys.executable,
        cache_dir=tmp_path / "cache",
        locks_dir=tmp_path / "locks",
    )
    s.use_plan(ParallelPlan(2, 2, "test"))
    flags = s.options.flags()
    assert flags[flags.index("--tensor-parallel-size") + 1] == "2"
    assert flags[flags.index("--data-parallel-size") + 1] == "2"
    assert flags[flags.index("--distributed-executor-backend") + 1] == "mp"  # not Ray's workers


def test_servers_do_not_inherit_the_ray_address(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    env = inherited_env()
    assert "RAY_ADDRESS" not in env and "RAY_JOB_CONFIG_JSON_ENV_VAR" not in env and "PATH" in env
    assert ServeOptions(data_parallel_size=1).flags().count("--data-parallel-size") == 0


def test_ray_assigned_gpus_are_the_lease(monkeypatch):
    monkeypatch.setenv(
        "QUANT_DAG_GPUS", json.dumps([{"index": i, "name": "H200", "memory_total_mib": 143771} for i in range(4)])
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    lease = gpu.assigned(2)
    assert lease.cuda_visible_devices == "3,1" and lease.gpus[0].name == "H200"
    with pytest.raises(gpu.NoGpuAvailable, match="reserved 2"):
        gpu.assigned(4)


def test_cluster_profile_errors_name_file_and_field(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANT_DAG_RESOURCES", str(tmp_path))
    (tmp_path / "ray.yaml").write_text(yaml.safe_dump({"cluster": {"address": "http://h:8265"}}))
    with pytest.raises(ValueError, match=r"ray\.yaml: profile 'ray': cluster\.postgres: Field required"):
        load_profile("ray")


def test_instance_config_follows_the_profile_and_leaves_hand_written_files(tmp_path):
    from quant_dag.cli.run_study import ensure_dagster_home
    from quant_dag.home import ProjectHome

    home = ProjectHome(tmp_path)
    profile = cluster_profile().model_copy(
        update={
            "cluster": ClusterProfile(
                address="http://h:8265", postgres=PostgresProfile(hostname="db", password_env="PGPW")
            )
        }
    )
    cfg = ensure_dagster_home(home, profile) / "dagster.yaml"
    db = yaml.safe_load(cfg.read_text())["storage"]["postgres"]["postgres_db"]
    assert db["hostname"] == "db" and db["password"] == {"env": "PGPW"}  # the password never lands in the file
    assert db["scheme"] == "postgresql+psycopg2"
    ensure_dagster_home(home, load_profile("local-cpu"))  # back to local storage: the file is quant-dag's own
    assert "storage" not in yaml.safe_load(cfg.read_text())
    cfg.write_text("telemetry:\n  enabled: true\n")  # someone's own file
    ensure_dagster_home(home, profile)
    assert cfg.read_text() == "telemetry:\n  enabled: true\n"


def test_the_graph_on_a_cluster_profile(tmp_path):
    """Ray executor, GPU requests on quantize and serving steps only; the local graph imports no Ray."""
    resources = tmp_path / "resources"
    resources.mkdir()
    local = yaml.safe_load((Path(__file__).parents[2] / "resources" / "local-cpu.yaml").read_text())
    cluster = {"address": "http://127.0.0.1:1", "postgres": {"hostname": "db"}, "declared_gpus": True}
    (resources / "ray-test.yaml").write_text(yaml.safe_dump(local | {"cluster": cluster}))
    (resources / "local-cpu.yaml").write_text(yaml.safe_dump(local))
    code = textwrap.dedent(
        """
        import json, sys
        import quant_dag.definitions as d
        job = d.defs.resolve_job_def("study_demo")
        tags = {n.name: n.tags.get("dagster-ray/config") for n in job.graph.node_defs}
        print(json.dumps({"executor": job.executor_def.name, "tags": tags, "ray": "ray" in sys.modules}))
        """
    )
    out = {}
    for profile in ("ray-test", "local-cpu"):
        env = os.environ | {"QUANT_DAG_RESOURCES": str(resources), "QUANT_DAG_PROFILE": profile}
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[profile] = json.loads(proc.stdout.strip().splitlines()[-1])
    ray, local_run = out["ray-test"], out["local-cpu"]
    assert ray["executor"] == "ray" and local_run["executor"] == "multi_or_in_process_executor"
    gpu_steps = {k: json.loads(v) for k, v in ray["tags"].items() if v}
    assert "serve__smollm2_135m__base" in gpu_steps and "quantized__smollm2_135m__w4a16_rtn_g32" in gpu_steps
    assert all(v == {"num_cpus": 1, "num_gpus": 1} for v in gpu_steps.values())
    assert not any(k.startswith(("checkpoint__", "summary__")) for k in gpu_steps)
    assert not any(local_run["tags"].values()) and local_run["ray"] is False


def test_step_env_forwards_what_steps_need(monkeypatch):
    from quant_dag.defs.cluster import step_env_vars

    profile = cluster_profile().model_copy(
        update={
            "cluster": ClusterProfile(
                address="http://h:8265",
                postgres=PostgresProfile(hostname="db", password_env="PGPW"),
                env_vars=["HF_HOME"],
            )
        }
    )
    env = step_env_vars(profile)
    assert {"QUANT_DAG_HOME", "DAGSTER_HOME", "HF_HOME", "PGPW"} <= set(env)
    path = next(v for v in env if v.startswith("PATH="))
    assert path.removeprefix("PATH=").split(os.pathsep)[0] == str(Path(sys.executable).parent)  # `dagster` found


WATCHED = textwrap.dedent(
    """
    import sys, time
    from quant_dag.procs import StepStopped, watch_step
    node = int(sys.argv[1]) if sys.argv[1] != "-" else None
    timeout = float(sys.argv[2]) if sys.argv[2] != "-" else None
    watch_step(node_pid=node, timeout_s=timeout, on_fire=lambda r: print("FIRED", r, flush=True), poll_s=0.2,
               grace_s=float(sys.argv[3]))
    print("READY", flush=True)
    try:
        while True:  # a step's main thread at work
            time.sleep(0.05)
    except StepStopped as exc:
        print("STOPPED", exc, flush=True)  # the step's error names the cause
        if sys.argv[4] == "stuck":
            time.sleep(60)  # stuck: the grace period ends with SIGTERM
    """
)


def test_watchdog_stops_the_step_when_its_node_is_lost():
    node = subprocess.Popen(["sleep", "60"])  # stands in for the raylet
    step = subprocess.Popen(
        [sys.executable, "-c", WATCHED, str(node.pid), "-", "20", "exit"], stdout=subprocess.PIPE, text=True
    )
    assert step.stdout and step.stdout.readline().strip() == "READY"
    node.kill()
    node.wait()
    out, _ = step.communicate(timeout=30)
    assert step.returncode == 0  # the main thread got the error, and ended normally
    assert "STOPPED the cluster node running this step was lost" in out


@pytest.mark.parametrize("sigterm", ["default", "ignored"])
def test_watchdog_stops_a_step_past_its_time_limit(sigterm):
    """A stuck main thread: SIGTERM after the grace period, SIGKILL after another where SIGTERM is ignored (a
    disposition inherited from the parent: seen when the whole suite ran)."""
    import signal

    ignore = (lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN)) if sigterm == "ignored" else None
    step = subprocess.run(
        [sys.executable, "-c", WATCHED, "-", "1", "1", "stuck"],
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=ignore,
    )
    assert "STOPPED the step ran longer than the profile's cluster.step_timeout_s (1 s)" in step.stdout
    assert step.returncode in ((-15, -9) if sigterm == "default" else (-9,))


@pytest.mark.parametrize(("gpu_gib", "tp"), [(80, 1), (20, 2)])
def test_a_hub_model_is_planned_before_its_download(tmp_path, gpu_gib, tp):
    """The seed's Qwen3.5-9B: params_b from the catalog, KV from its shipped config.json (8 x 32k tokens: 8 GiB)."""
    from quant_dag.catalog.load import load_catalog
    from quant_dag.home import REPO, ProjectHome
    from quant_dag.serve.placement import endpoint_plan

    profile = cluster_profile(tensor_parallel_size="auto", gpus_per_endpoint=4)
    profile.cluster.gpu_memory_gib = gpu_gib  # type: ignore[union-attr]
    plan = endpoint_plan(load_catalog(REPO / "assets"), ProjectHome(tmp_path), profile, "qwen3.5-9b", "base")
    assert plan.tensor_parallel == tp and "24.8 GiB of weights and KV cache" in plan.why
