"""The Dagster code location: the catalog in assets/ becomes the asset graph.

Imports no torch, vLLM or AutoRound: heavy work runs in child processes, so the UI loads fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from quant_dag.catalog.load import load_catalog
from quant_dag.defs.automation import OWNER, automation_sensor, rebuild_on_change
from quant_dag.defs.endpoints import build_served
from quant_dag.defs.factories import build_assets
from quant_dag.defs.jobs import study_jobs
from quant_dag.defs.resources import QuantDag
from quant_dag.defs.runtime import runtime_defs
from quant_dag.defs.summary import build_summaries
from quant_dag.home import catalog_dir, home_dir, load_profile
from quant_dag.serve.server import ServeOptions


def build_definitions(catalog: Path | None = None, home: Path | None = None, profile: str | None = None) -> dg.Definitions:
    cat = load_catalog(catalog or catalog_dir())
    home = home or home_dir()
    profile = profile or os.environ.get("QUANT_DAG_PROFILE", "local-cpu")
    assets, checks = build_assets(cat)
    resources = load_profile(profile)
    serve_flags = ServeOptions.from_profile(resources.serve, home / "cache").flags()
    if not resources.serve.request_seed:  # changes the answers, so it belongs in the endpoints' code version
        serve_flags.append("(benchmark requests without per-request seeds)")
    runtime, observe_job, observe_schedule = runtime_defs(resources)
    # every asset: an owner for the UI, and the automation that rebuilds what a change touches
    graph = dg.map_asset_specs(
        lambda spec: spec.replace_attributes(automation_condition=rebuild_on_change()).merge_attributes(owners=[OWNER]),
        assets + build_served(cat, serve_flags) + build_summaries(cat),
    )
    return dg.Definitions(
        assets=[runtime, *graph],
        asset_checks=checks,
        jobs=[*study_jobs(cat), observe_job],
        schedules=[observe_schedule],
        sensors=[automation_sensor()],
        resources={"quant_dag": QuantDag(home=str(home), catalog=str(cat.root), profile=profile)},
    )


defs = build_definitions()
