"""One job per study: every asset the study names, from the vLLM runtime and checkpoints to its summary."""

import dagster as dg

from quant_dag.catalog import graph
from quant_dag.catalog.load import Catalog


def study_job_name(study: str) -> str:
    return "study_" + "".join(c if c.isalnum() else "_" for c in study)


def definitions(cat: Catalog) -> dg.Definitions:
    jobs = [
        dg.define_asset_job(
            study_job_name(s.name),
            selection=dg.AssetSelection.assets(*(dg.AssetKey(k) for k in graph.study_keys(cat, s.name))),
            description=s.description or f"Every asset of study {s.name}.",
        )
        for s in cat.studies.values()
    ]
    return dg.Definitions(jobs=jobs)
