"""Declarative automation against the demo's real instance: a recipe edit requests exactly its subgraph, a new
vLLM build on a local PEP 503 index requests the endpoints and benchmarks below `vllm/runtime` and nothing else,
and a bad index or a failed install changes nothing downstream."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from quant_dag.definitions import build_definitions
from quant_dag.home import REPO
from tests.support.demo_run import materialization
from tests.support.pep503 import SimpleIndex, build_wheel

LIGHT = "quantized/smollm2-135m/w4a16-light-g32"


def requested(result: dg.EvaluateAutomationConditionsResult, defs: dg.Definitions) -> set[str]:
    keys = [s.key for s in defs.resolve_all_asset_specs()]
    return {k.to_user_string() for k in keys if result.get_requested_partitions(k)}


def test_nothing_is_requested_when_nothing_changed(demo):
    _, home, cat, instance = demo
    defs = build_definitions(catalog=cat.root, home=home)
    result = dg.evaluate_automation_conditions(defs, instance)
    assert requested(result, defs) == set()  # missing assets (the seed study) are not started by automation


def test_recipe_edited_while_the_sensor_was_off_requests_exactly_its_subgraph(demo, tmp_path):
    _, home, cat, instance = demo
    materialization(instance, "summary/demo")  # automation requests only what exists: else name the demo's failure
    edited = tmp_path / "assets"
    shutil.copytree(cat.root, edited)
    text = (edited / "demo.yaml").read_text()
    assert "    nsamples: 4\n" in text
    (edited / "demo.yaml").write_text(text.replace("    nsamples: 4\n", "    nsamples: 5\n", 1))
    defs = build_definitions(catalog=edited, home=home)
    # the first evaluation ever (no cursor): code_version_changed() would see nothing; the drift condition does
    result = dg.evaluate_automation_conditions(defs, instance)
    subgraph = {LIGHT, "endpoint/smollm2-135m/w4a16-light-g32", "summary/demo"} | {
        f"benchmark/smollm2-135m/w4a16-light-g32/{s}" for s in ("arithmetic", "basic-mc", "humaneval")
    }
    assert requested(result, defs) == subgraph
    # handled: the next tick does not request it again
    again = dg.evaluate_automation_conditions(defs, instance, cursor=result.cursor)
    assert requested(again, defs) == set()


@pytest.fixture
def nightly(tmp_path, monkeypatch):
    """A resource profile like local-cpu whose vLLM builds come from a PEP 503 index on 127.0.0.1."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with SimpleIndex(wheels) as index:
        resources = tmp_path / "resources"
        shutil.copytree(REPO / "resources", resources)
        profile = yaml.safe_load((resources / "local-cpu.yaml").read_text())
        profile["runtime"] = {
            "index": index.url,
            "project": "vllm",
            "timeout_s": 2,
            "isolated_pip": True,
            "pip_args": ["--no-deps"],
        }
        (resources / "nightly.yaml").write_text(yaml.safe_dump(profile))
        monkeypatch.setenv("QUANT_DAG_RESOURCES", str(resources))
        yield index, wheels


def observe(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("observe_vllm_runtime").execute_in_process(instance=instance, raise_on_error=False)


def test_new_vllm_build_requests_endpoints_and_benchmarks_only(demo, nightly):
    _, home, cat, instance = demo
    index, wheels = nightly
    index.add_wheel(build_wheel(wheels, "vllm", "0.11.1rc1.dev5+gabc1234"))
    defs = build_definitions(catalog=cat.root, home=home, profile="nightly")
    first = observe(defs, instance)
    assert first.success
    obs = first.asset_observations_for_node("vllm_runtime")[0]
    assert obs.data_version == "0.11.1rc1.dev5+gabc1234"
    python = Path(obs.metadata["python"].value)
    assert python.is_file() and str(home / "runtimes") in str(python)  # an isolated environment for that build
    tick = dg.evaluate_automation_conditions(defs, instance)
    # a nightly appears
    index.add_wheel(build_wheel(wheels, "vllm", "0.11.1rc1.dev7+gdef5678"))
    assert observe(defs, instance).success
    result = dg.evaluate_automation_conditions(defs, instance, cursor=tick.cursor)
    got = requested(result, defs)
    study_served = {k for k in got if k.startswith(("endpoint/", "benchmark/", "summary/"))}
    assert got == study_served and "endpoint/smollm2-135m/base" in got and "summary/demo" in got
    assert "benchmark/smollm2-135m/w4a16-rtn-g32/humaneval" in got
    assert not any(k.startswith(("quantized/", "checkpoint/")) for k in got)
    assert not any("/qwen3.5-" in k for k in got)  # the seed study was never materialized: not started


def test_bad_index_fails_the_observation_and_requests_nothing(demo, nightly):
    _, home, cat, instance = demo
    index, wheels = nightly
    index.add_wheel(build_wheel(wheels, "vllm", "0.12.0"))
    defs = build_definitions(catalog=cat.root, home=home, profile="nightly")
    assert observe(defs, instance).success
    tick = dg.evaluate_automation_conditions(defs, instance)
    index.malformed()
    bad = observe(defs, instance)
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert index.url in message and "malformed" in message
    assert requested(dg.evaluate_automation_conditions(defs, instance, cursor=tick.cursor), defs) == set()


def test_failed_install_keeps_the_previous_runtime(demo, nightly):
    _, home, cat, instance = demo
    index, wheels = nightly
    index.add_wheel(build_wheel(wheels, "vllm", "0.13.0"))
    defs = build_definitions(catalog=cat.root, home=home, profile="nightly")
    assert observe(defs, instance).success
    tick = dg.evaluate_automation_conditions(defs, instance)
    index.add_wheel(build_wheel(wheels, "vllm", "0.13.1", metadata_version="9.9.9"))  # installs as the wrong version
    result = observe(defs, instance)
    assert result.success
    obs = result.asset_observations_for_node("vllm_runtime")[0]
    assert obs.data_version == "0.13.0" and "0.13.1 failed to install" in obs.metadata["install_problem"].value
    assert "0.13.1" in (home / "runtimes" / "failed.jsonl").read_text()
    assert requested(dg.evaluate_automation_conditions(defs, instance, cursor=tick.cursor), defs) == set()
