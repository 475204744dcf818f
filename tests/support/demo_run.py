"""Reading the demo's instance (the `demo` fixture in conftest.py): an asset's metadata, or why the demo run
left it out, so that one failed step shows as its own cause in every test that needed what it would have made."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest


def demo_run_id(instance: dg.DagsterInstance) -> str:
    return instance.get_runs(dg.RunsFilter(job_name="study_demo"))[-1].run_id  # the oldest: the demo command's run


def demo_failures(instance: dg.DagsterInstance) -> list[str]:
    """The demo run's failed steps and failed blocking checks, each with its message."""
    runs = instance.get_runs(dg.RunsFilter(job_name="study_demo"))
    if not runs:
        return ["the demo command started no study_demo run"]
    out = []
    for entry in instance.all_logs(runs[-1].run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            out.append(f"step {event.step_key} failed: {error.message.strip() if error else 'no error recorded'}")
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.event_specific_data
            if not check.passed:
                out.append(
                    f"check {check.asset_key.to_user_string()}:{check.check_name} failed: {check.description or ''}"
                )
    return out


def materialization(instance: dg.DagsterInstance, key: str) -> tuple[str, dict[str, Any]]:
    """(run id, metadata) of an asset's latest materialization; a missing one fails with the demo run's failures."""
    event = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(key))
    if event is None or event.asset_materialization is None:
        failures = demo_failures(instance)
        pytest.fail(f"{key} was not materialized; the demo run's failures: " + ("; ".join(failures) or "none recorded"))
    return event.run_id, {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def meta(instance: dg.DagsterInstance, *path: str) -> dict[str, Any]:
    return materialization(instance, "/".join(path))[1]
