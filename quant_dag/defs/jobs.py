"""One job per study: every asset the study names, from the vLLM runtime and checkpoints to its summary."""

import dagster as dg

from quant_dag.catalog.load import Catalog
from quant_dag.defs.endpoints import BASE, benchmark_key, endpoint_key
from quant_dag.defs.factories import checkpoint_key, quantized_key
from quant_dag.defs.runtime import RUNTIME_KEY


def study_keys(cat: Catalog, study_name: str) -> list[dg.AssetKey]:
    study = cat.studies[study_name]
    variants = cat.study_variants(study_name)
    keys = [RUNTIME_KEY] + [checkpoint_key(m) for m in study.models]  # observes the vLLM build it serves with
    keys += [quantized_key(m, v) for m, v in variants]
    served = [(m, BASE) for m in study.models] + variants
    keys += [endpoint_key(m, v) for m, v in served]
    keys += [benchmark_key(m, v, b) for m, v in served for b in study.benchmarks]
    if study.benchmarks:
        keys.append(dg.AssetKey(["summary", study_name]))
    return keys


def study_job_name(study: str) -> str:
    return "study_" + "".join(c if c.isalnum() else "_" for c in study)


def study_jobs(cat: Catalog) -> list:
    return [
        dg.define_asset_job(
            study_job_name(s.name),
            selection=dg.AssetSelection.assets(*study_keys(cat, s.name)),
            description=s.description or f"Every asset of study {s.name}.",
        )
        for s in cat.studies.values()
    ]
