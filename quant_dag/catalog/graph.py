"""The asset graph's vocabulary, without Dagster: asset key paths, the base variant's name, the artifact files
each asset writes under `<home>/artifacts/<key path>`, and which (model, variant) pairs a study serves.

The Dagster layer wraps these paths in `AssetKey`; the engines use them to name their artifacts and records, so
a key is spelled in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

from quant_dag.catalog.load import Catalog

BASE = "base"  # the variant name of a model's own (unquantized) checkpoint

KeyPath = tuple[str, ...]

RUNTIME: KeyPath = ("vllm", "runtime")


def checkpoint(model: str) -> KeyPath:
    return ("checkpoint", model)


def quantized(model: str, variant: str) -> KeyPath:
    return ("quantized", model, variant)


def endpoint(model: str, variant: str) -> KeyPath:
    return ("endpoint", model, variant)


def benchmark(model: str, variant: str, suite: str) -> KeyPath:
    return ("benchmark", model, variant, suite)


def summary(study: str) -> KeyPath:
    return ("summary", study)


def layout_asset(model: str, variant: str) -> KeyPath:
    """The asset that measured a served checkpoint's precision layout: the base checkpoint or the variant."""
    return checkpoint(model) if variant == BASE else quantized(model, variant)


def key_string(path: Sequence[str]) -> str:
    """A key path as Dagster prints it (`AssetKey.to_user_string`): benchmark/<model>/<variant>/<suite>."""
    return "/".join(path)


# Artifact files, relative to an asset's artifacts folder.
RECIPE_FILE = "recipe.json"  # quantized/: the recipe as resolved, with its hash
LAYOUT_FAMILIES_FILE = "layout_families.parquet"  # checkpoint/, quantized/: bytes and params per module family
ENDPOINT_FILE = "endpoint.json"  # endpoint/: the last verification (serve.endpoint.EndpointRecord)
REFERENCE_FILE = "prompt_logprobs.json"  # endpoint/: the reference text's prompt logprobs (fidelity vs base)
SERVER_STARTS_FILE = "server_starts.jsonl"  # endpoint/: one line per server start
VLLM_LOG = "vllm.log"  # endpoint/
JOURNAL_FILE = "journal.jsonl"  # benchmark/: every answered request, appended as it arrives (resume)
RECORDS_FILE = "records.parquet"  # benchmark/: this materialization's per-sample records
AGGREGATES_FILE = "aggregates.parquet"  # benchmark/: one row per thinking mode
SUMMARY_FILE = "summary.json"  # benchmark/: what the asset reported
HISTORY_FILE = "history.parquet"  # benchmark/: accuracy on the same samples per vLLM build
REPORT_DIR = "report"  # summary/: tables, charts, summary.md and report.html


def study_served(cat: Catalog, study: str) -> list[tuple[str, str]]:
    """(model, variant) of every checkpoint a study serves, bases first."""
    return [(m, BASE) for m in cat.studies[study].models] + cat.study_variants(study)


def served_suites(cat: Catalog) -> dict[tuple[str, str], list[str]]:
    """Every served (model, variant) of any study, with the suites of every study that serves it."""
    suites: dict[tuple[str, str], dict[str, None]] = {}
    for name, study in cat.studies.items():
        for pair in study_served(cat, name):
            suites.setdefault(pair, {}).update(dict.fromkeys(study.benchmarks))
    return {pair: list(s) for pair, s in suites.items()}


def study_keys(cat: Catalog, study_name: str) -> list[KeyPath]:
    """Every asset a study needs, from the vLLM runtime it serves with to its summary."""
    study = cat.studies[study_name]
    served = study_served(cat, study_name)
    keys = [RUNTIME, *(checkpoint(m) for m in study.models)]
    keys += [quantized(m, v) for m, v in cat.study_variants(study_name)]
    keys += [endpoint(m, v) for m, v in served]
    keys += [benchmark(m, v, b) for m, v in served for b in study.benchmarks]
    if study.benchmarks:
        keys.append(summary(study_name))
    return keys
