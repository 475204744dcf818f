"""The Dagster graph: keys, groups, code versions, and a light code location."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

from quant_dag.definitions import build_definitions
from quant_dag.home import REPO

ASSETS = REPO / "assets"


def specs(catalog: Path = ASSETS) -> dict[str, dg.AssetSpec]:
    defs = build_definitions(catalog=catalog, home=Path("/nonexistent-home"))
    return {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}


def test_demo_study_keys_groups_and_kinds():
    s = specs()
    demo = {
        "checkpoint/smollm2-135m",
        "checkpoint/tiny-qwen3.5",
        "quantized/smollm2-135m/w4a16-rtn-g32",
        "quantized/smollm2-135m/w4a16-light-g32",
        "quantized/smollm2-135m/w8a16-rtn-g64",
        "quantized/tiny-qwen3.5/w4a16-rtn-g32",
        "quantized/tiny-qwen3.5/w4a16-rtn-g32-keep-linear-attn",
    }
    assert demo <= set(s)
    # the seed study is in the graph too, third-party releases included
    assert {
        "checkpoint/qwen3.5-35b-a3b",
        "quantized/qwen3.5-27b/official-fp8-27b",
        "quantized/qwen3.5-9b/nvfp4",
    } <= set(s)
    for key, spec in s.items():
        assert spec.description, key
        groups = {
            "checkpoint": "checkpoints",
            "quantized": "quantized",
            "endpoint": "endpoints",
            "benchmark": "benchmarks",
            "summary": "summaries",
            "vllm": "runtime",
        }
        assert spec.group_name == groups[key.split("/")[0]], key
        assert spec.kinds, key
        assert spec.owners == ["team:quant-dag"], key
        if key != "vllm/runtime":  # an observed source: its data version is the vLLM build
            assert spec.code_version, key
            assert (
                spec.automation_condition is not None and spec.automation_condition.get_label() == "rebuild on change"
            ), key
    q = s["quantized/tiny-qwen3.5/w4a16-rtn-g32"]
    assert [d.asset_key.to_user_string() for d in q.deps] == ["checkpoint/tiny-qwen3.5"]
    assert {"autoround", "auto_round"} <= set(q.kinds)
    tp = s["quantized/qwen3.5-27b/official-fp8-27b"]
    assert [d.asset_key.to_user_string() for d in tp.deps] == ["checkpoint/qwen3.5-27b"]
    # every base and variant is served; a variant's endpoint compares against its base's
    ep = s["endpoint/tiny-qwen3.5/w4a16-rtn-g32"]
    assert {d.asset_key.to_user_string() for d in ep.deps} == {
        "quantized/tiny-qwen3.5/w4a16-rtn-g32",
        "endpoint/tiny-qwen3.5/base",
        "vllm/runtime",
    }
    assert {d.asset_key.to_user_string() for d in s["endpoint/smollm2-135m/base"].deps} == {
        "checkpoint/smollm2-135m",
        "vllm/runtime",
    }
    assert "endpoint/qwen3.5-27b/official-fp8-27b" in s
    # every served checkpoint runs every suite of its study, on top of its endpoint
    for variant in ("base", "w4a16-rtn-g32", "w4a16-light-g32", "w8a16-rtn-g64"):
        for suite in ("arithmetic", "basic-mc", "humaneval"):
            b = s[f"benchmark/smollm2-135m/{variant}/{suite}"]
            assert [d.asset_key.to_user_string() for d in b.deps] == [f"endpoint/smollm2-135m/{variant}"]
    assert "benchmark/qwen3.5-27b/official-fp8-27b/gpqa-diamond" in s


def test_endpoint_and_benchmarks_of_a_variant_are_one_subsettable_step():
    defs = build_definitions(catalog=ASSETS, home=Path("/nonexistent-home"))
    a = defs.resolve_assets_def(dg.AssetKey(["endpoint", "smollm2-135m", "w4a16-rtn-g32"]))
    assert a.can_subset
    assert {k.to_user_string() for k in a.keys} == {
        "endpoint/smollm2-135m/w4a16-rtn-g32",
        *(f"benchmark/smollm2-135m/w4a16-rtn-g32/{b}" for b in ("arithmetic", "basic-mc", "humaneval")),
    }
    assert a.node_def.pools == {"gpu"}


def test_one_suite_edit_changes_exactly_its_benchmarks(tmp_path):
    before = {k: s.code_version for k, s in specs().items()}
    edited = tmp_path / "assets"
    shutil.copytree(ASSETS, edited)
    text = (edited / "demo.yaml").read_text()
    (edited / "demo.yaml").write_text(
        text.replace(
            "generation: {temperature: 0.0, max_tokens: 64}", "generation: {temperature: 0.0, max_tokens: 65}", 1
        )
    )
    after = {k: s.code_version for k, s in specs(edited).items()}
    changed = {k for k in before if before[k] != after[k]}
    assert changed and all(k.startswith("benchmark/") and k.endswith("/basic-mc") for k in changed)
    # demo: smollm2 base + 3 recipes, tiny-qwen3.5 base + 2, its MoE twin base + 1; gpu-smoke: 4 + 3 more variants;
    # gpu-smoke-9b: the 9B shape's base + 3
    assert len(changed) == 20


def test_every_quantized_variant_has_blocking_checks():
    defs = build_definitions(catalog=ASSETS, home=Path("/nonexistent-home"))
    checks = {(c.asset_key.to_user_string(), c.name): c for d in defs.asset_checks for c in d.check_specs}
    quantized = [k for k in specs() if k.startswith("quantized/")]
    for key in quantized:
        for name in ("config_agrees_with_tensors", "size_matches_scheme"):
            assert checks[(key, name)].blocking, (key, name)


def test_one_recipe_edit_changes_exactly_its_code_versions(tmp_path):
    before = {k: s.code_version for k, s in specs().items()}
    edited = tmp_path / "assets"
    shutil.copytree(ASSETS, edited)
    text = (edited / "demo.yaml").read_text()
    (edited / "demo.yaml").write_text(text.replace("    nsamples: 8\n", "    nsamples: 9\n", 1))
    after = {k: s.code_version for k, s in specs(edited).items()}
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"quantized/smollm2-135m/w4a16-light-g32"}


def test_code_version_covers_calibration_bytes_and_autoround_version(tmp_path):
    edited = tmp_path / "assets"
    shutil.copytree(ASSETS, edited)
    calib = edited / "calib.jsonl"
    calib.write_text('{"text": "one"}\n')
    text = (edited / "demo.yaml").read_text().replace("builtin:calibration-en", "calib.jsonl")
    (edited / "demo.yaml").write_text(text)
    first = specs(edited)["quantized/smollm2-135m/w8a16-rtn-g64"].code_version
    calib.write_text('{"text": "two"}\n')
    second = specs(edited)["quantized/smollm2-135m/w8a16-rtn-g64"].code_version
    assert first != second
    from importlib.metadata import version

    assert first.endswith(f"-autoround{version('auto-round')}")


def test_study_jobs_select_their_assets():
    defs = build_definitions(catalog=ASSETS, home=Path("/nonexistent-home"))
    job = defs.resolve_job_def("study_demo")
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert "quantized/tiny-qwen3.5/w4a16-rtn-g32-keep-linear-attn" in keys
    assert not any(k.startswith("quantized/qwen3.5") for k in keys)


def test_code_location_imports_no_heavy_library():
    code = (
        "import sys, quant_dag.definitions as d; "
        "print(','.join(m for m in ('torch', 'vllm', 'auto_round', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


def test_dagster_definitions_validate(tmp_path):
    # Load time is the import test's business (no heavy library, below); a wall-time bound would flake under load.
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_serving_flags_are_the_endpoints_code_version():
    cpu = {k: s.code_version for k, s in specs().items()}
    gpu = build_definitions(catalog=ASSETS, home=Path("/nonexistent-home"), profile="gpu-node")
    changed = {
        s.key.to_user_string() for s in gpu.resolve_all_asset_specs() if cpu[s.key.to_user_string()] != s.code_version
    }
    # the endpoints and, below them, every benchmark (its answers depend on how it is served); nothing upstream
    assert changed == {k for k in cpu if k.startswith(("endpoint/", "benchmark/"))}


def test_a_change_of_the_device_flag_rules_reruns_gpu_endpoints_only(monkeypatch):
    from quant_dag import definitions

    def versions(profile: str) -> dict[str, str | None]:
        defs = build_definitions(catalog=ASSETS, home=Path("/nonexistent-home"), profile=profile)
        return {s.key.to_user_string(): s.code_version for s in defs.resolve_all_asset_specs()}

    gpu, cpu = versions("gpu-node"), versions("local-cpu")
    monkeypatch.setattr(definitions, "DEVICE_FLAGS_VERSION", "2: a new rule")
    gpu2, cpu2 = versions("gpu-node"), versions("local-cpu")
    assert cpu2 == cpu  # the CPU adds no device flags
    assert {k for k in gpu if gpu[k] != gpu2[k]} == {k for k in gpu if k.startswith(("endpoint/", "benchmark/"))}


def test_summary_depends_on_every_benchmark_of_its_study():
    s = specs()
    deps = {d.asset_key.to_user_string() for d in s["summary/demo"].deps}
    demo_variants = (
        "smollm2-135m/base/",
        "smollm2-135m/w4a16-rtn-g32/",
        "smollm2-135m/w4a16-light-g32/",
        "smollm2-135m/w8a16-rtn-g64/",
        "tiny-qwen3.5/base/",
        "tiny-qwen3.5/w4a16-rtn-g32/",
        "tiny-qwen3.5/w4a16-rtn-g32-keep-linear-attn/",
        "tiny-qwen3.5-moe/base/",
        "tiny-qwen3.5-moe/w4a16-rtn-g32-keep-shared-expert/",
    )
    assert deps == {k for k in s if k.startswith(tuple(f"benchmark/{v}" for v in demo_variants))}
    assert len(deps) == 9 * 3
    # gpu-smoke shares the tiny models' bases with the demo, not the demo's variants or its HumanEval suite
    smoke = {d.asset_key.to_user_string() for d in s["summary/gpu-smoke"].deps}
    assert len(smoke) == 9 * 2 and not any(k.endswith("/humaneval") for k in smoke)
    # its two parts, each summarized on its own, make up the whole
    dense, moe = ({d.asset_key.to_user_string() for d in s[f"summary/gpu-smoke-{p}"].deps} for p in ("dense", "moe"))
    assert dense | moe == smoke and not dense & moe and all("/tiny-qwen3.5-moe/" in k for k in moe)
    assert "benchmark/tiny-qwen3.5/base/arithmetic" in smoke and not smoke & (deps - {k for k in deps if "/base/" in k})
    defs = build_definitions(catalog=ASSETS, home=Path("/nonexistent-home"))
    keys = {k.to_user_string() for k in defs.resolve_job_def("study_demo").asset_layer.selected_asset_keys}
    assert "summary/demo" in keys and "summary/qwen3.5" not in keys and "summary/gpu-smoke" not in keys


def test_automation_sensor_runs_by_default_and_the_nightly_schedule_waits_to_be_turned_on():
    defs = build_definitions(catalog=ASSETS, home=Path("/nonexistent-home"))
    sensor = defs.resolve_sensor_def("quant_dag_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    schedule = defs.resolve_schedule_def("observe_vllm_runtime_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED and schedule.cron_schedule == "0 3 * * *"
    job = defs.resolve_job_def("observe_vllm_runtime")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} | {
        k.to_user_string() for k in job.asset_layer.asset_graph.observable_asset_keys
    } >= {"vllm/runtime"}


def test_the_readme_command_turns_the_nightly_schedule_on(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "QUANT_DAG_HOME": str(tmp_path / "home")}
    dagster = [str(Path(sys.executable).parent / "dagster"), "schedule"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*dagster, *args, "-m", "quant_dag.definitions"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    started = run("start", "observe_vllm_runtime_schedule")
    assert started.returncode == 0, started.stdout + started.stderr
    listed = run("list")
    line = next(ln for ln in listed.stdout.splitlines() if "observe_vllm_runtime_schedule" in ln)
    assert "RUNNING" in line.upper(), listed.stdout


def test_an_upstream_update_rebuilds_what_exists_and_starts_nothing_new():
    """checkpoint/tiny-qwen3.5 serves two studies: the demo's variant (built) is rebuilt when it updates, the
    gpu-smoke study's variants (never built) wait for that study's own run."""
    defs = build_definitions(catalog=ASSETS, home=Path("/nonexistent-home"))
    instance = dg.DagsterInstance.ephemeral()
    ckpt, demo_variant = (
        dg.AssetKey(["checkpoint", "tiny-qwen3.5"]),
        dg.AssetKey(["quantized", "tiny-qwen3.5", "w4a16-rtn-g32"]),
    )
    for key in (ckpt, demo_variant):
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    first = dg.evaluate_automation_conditions(defs, instance)
    instance.report_runless_asset_event(dg.AssetMaterialization(ckpt))  # e.g. the demo rebuilt the checkpoint
    result = dg.evaluate_automation_conditions(defs, instance, cursor=first.cursor)
    keys = [s.key for s in defs.resolve_all_asset_specs()]
    requested = {k.to_user_string() for k in keys if result.get_requested_partitions(k)}
    assert "quantized/tiny-qwen3.5/w4a16-rtn-g32" in requested
    assert not {"quantized/tiny-qwen3.5/light-w4a16-g32", "quantized/tiny-qwen3.5/light-nvfp4"} & requested
