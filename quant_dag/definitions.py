"""The Dagster code location: the catalog in assets/ becomes the asset graph.

Imports no torch, vLLM or AutoRound: heavy work runs in child processes, so the UI loads fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from quant_dag.catalog.load import load_catalog
from quant_dag.defs.endpoints import build_served
from quant_dag.defs.factories import build_assets
from quant_dag.defs.jobs import study_jobs
from quant_dag.defs.resources import QuantDag
from quant_dag.home import catalog_dir, home_dir, load_profile


def build_definitions(catalog: Path | None = None, home: Path | None = None, profile: str | None = None) -> dg.Definitions:
    cat = load_catalog(catalog or catalog_dir())
    home = home or home_dir()
    profile = profile or os.environ.get("QUANT_DAG_PROFILE", "local-cpu")
    assets, checks = build_assets(cat)
    serve_flags = load_profile(profile).serve.options(home / "cache").flags()
    return dg.Definitions(
        assets=assets + build_served(cat, serve_flags),
        asset_checks=checks,
        jobs=study_jobs(cat),
        resources={"quant_dag": QuantDag(home=str(home), catalog=str(cat.root), profile=profile)},
    )


defs = build_definitions()
