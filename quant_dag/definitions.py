"""The Dagster code location: the catalog in assets/ becomes the asset graph.

Imports no torch, vLLM or AutoRound: heavy work runs in child processes, so the UI loads fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from quant_dag.catalog.load import load_catalog
from quant_dag.defs import automation, checkpoints, cluster, jobs, quantized, runtime, served, summary
from quant_dag.defs.resources import QuantDag
from quant_dag.home import ProjectHome, catalog_dir, home_dir
from quant_dag.profiles import load_profile
from quant_dag.serve.plan import DEVICE_FLAGS_VERSION
from quant_dag.serve.server import ServeOptions


def build_definitions(
    catalog: Path | None = None, home: Path | None = None, profile: str | None = None
) -> dg.Definitions:
    cat = load_catalog(catalog or catalog_dir())
    profile = profile or os.environ.get("QUANT_DAG_PROFILE", "local-cpu")
    resources = load_profile(profile)
    home = home or home_dir(resources.cluster.home if resources.cluster else None)
    serve_flags = ServeOptions.from_profile(resources.serve, home / "cache").flags()
    if not resources.serve.request_seed:  # changes the answers, so it belongs in the endpoints' code version
        serve_flags.append("(benchmark requests without per-request seeds)")
    if resources.quantize.device != "cpu":  # the device's own flags, added per checkpoint when a step serves it
        serve_flags.append(f"(device flags {DEVICE_FLAGS_VERSION})")
    on_cluster = resources.cluster is not None  # steps as Ray jobs, each asking for its plan's GPUs
    stages = dg.Definitions.merge(
        checkpoints.definitions(cat),
        quantized.definitions(cat, cluster.quantize_op_tags(resources) if on_cluster else None),
        served.definitions(cat, serve_flags, cluster.placer(cat, ProjectHome(home), resources) if on_cluster else None),
        summary.definitions(cat),
    )
    graph = dg.Definitions(
        assets=dg.map_asset_specs(automation.automated, list(stages.assets or [])), asset_checks=stages.asset_checks
    )
    return dg.Definitions.merge(
        graph,
        runtime.definitions(resources),
        jobs.definitions(cat),
        automation.definitions(),
        dg.Definitions(
            resources={"quant_dag": QuantDag(home=str(home), catalog=str(cat.root), profile=profile)},
            executor=cluster.executor(resources) if on_cluster else None,
        ),
    )


defs = build_definitions()
