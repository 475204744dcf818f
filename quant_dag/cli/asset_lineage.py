"""The rows behind `quant-dag lineage` (quant_dag/cli/lineage.py): a target asset and everything upstream of it,
sources first, read from the Dagster instance, and their text form.

Each row holds the run and time of the asset's latest materialization, the code version it ran with against the
definition's current one, its data version, the few metadata entries that identify it (recipe hash, AutoRound and
vLLM builds, dataset revision, accuracy, ...) and the latest result of each asset check. Reads the instance only;
runs nothing.
"""

from __future__ import annotations

import difflib
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

# What identifies an asset of each layer; `accuracy/<mode>` entries are added for benchmarks.
LAYER_METADATA: dict[str, tuple[str, ...]] = {
    "checkpoint": ("source", "weights_bytes"),
    "quantized": ("recipe_hash", "autoround_version", "size_ratio_vs_base", "families_16bit"),
    "endpoint": ("vllm_version", "servable", "kl_vs_base", "perplexity"),
    "benchmark": ("dataset_revision", "vllm_version", "checkpoint_id", "requests_sent", "requests_reused"),
    "summary": ("report_html",),
    "vllm": ("source", "python", "newest_build", "install_problem"),  # vllm/runtime, an observed source
}
CODE_VERSION_TAG = "dagster/code_version"
DATA_VERSION_TAG = "dagster/data_version"
INPUT_DATA_VERSION_TAG = "dagster/input_data_version/"


class TargetError(ValueError):
    """The target names no asset, or more than one."""


def _plain(value: Any) -> Any:
    """A metadata value as JSON-ready Python (NaN becomes None: strict JSON has no NaN)."""
    value = getattr(value, "value", value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _study_models(defs: dg.Definitions, study: str) -> list[str] | None:
    """The study's models, from the catalog the definitions were built from (None: no such study)."""
    from quant_dag.catalog.load import load_catalog

    resource = (defs.resources or {}).get("quant_dag")
    catalog = getattr(resource, "catalog", None)
    if catalog is None:
        return None
    cat = load_catalog(Path(catalog))
    return list(cat.studies[study].models) if study in cat.studies else None


def resolve_target(defs: dg.Definitions, target: str) -> dg.AssetKey:
    """A full asset key string, or `study/variant/suite` for a benchmark of one of the study's models."""
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    key = dg.AssetKey.from_user_string(target.strip().strip("/"))
    if key in keys:
        return key
    parts = key.path
    benchmarks = sorted((k for k in keys if len(k.path) == 4 and k.path[0] == "benchmark"), key=lambda k: k.path)
    short_forms: list[str] = []
    models = _study_models(defs, parts[0]) if len(parts) == 3 else None
    if models is not None:
        study, variant, suite = parts
        mine = [k for k in benchmarks if k.path[1] in models]
        short_forms = sorted({f"{study}/{k.path[2]}/{k.path[3]}" for k in mine})
        found = [k for k in mine if k.path[2] == variant and k.path[3] == suite]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(k.to_user_string() for k in found)
            raise TargetError(f"{target!r} is ambiguous in study {study!r}: it matches {names}; name the full key")
    names = sorted(k.to_user_string() for k in keys)
    close = difflib.get_close_matches(target, short_forms + names, n=5, cutoff=0.6)
    if not close:  # a short form far from every full key may still be near a benchmark key's tail
        tails = {"/".join(k.path[2:]): k.to_user_string() for k in benchmarks}
        close = [tails[t] for t in difflib.get_close_matches("/".join(parts[1:]), list(tails), n=5, cutoff=0.6)]
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise TargetError(
        f"no asset {target!r} (a key like benchmark/<model>/<variant>/<suite>, or <study>/<variant>/<suite>){hint}"
    )


def upstream_keys(defs: dg.Definitions, key: dg.AssetKey) -> list[dg.AssetKey]:
    """The key and all its ancestors, in topological order (sources first, the key last)."""
    graph = defs.resolve_asset_graph()
    seen: set[dg.AssetKey] = set()
    stack = [key]
    while stack:
        k = stack.pop()
        if k not in seen:
            seen.add(k)
            stack.extend(graph.get(k).parent_keys)
    # level = longest path from a source; within a level, layers in pipeline order (quantized before endpoint)
    level: dict[dg.AssetKey, int] = {}
    for k in graph.toposorted_asset_keys:
        if k in seen:
            level[k] = 1 + max((level[p] for p in graph.get(k).parent_keys if p in level), default=-1)
    rank = {layer: i for i, layer in enumerate(LAYER_METADATA)}
    return sorted(level, key=lambda k: (level[k], rank.get(k.path[0], len(rank)), k.path))


def _pick_metadata(layer: str, metadata: dict[str, Any]) -> dict[str, Any]:
    names = list(LAYER_METADATA.get(layer, ()))
    if layer == "benchmark":
        names += sorted(n for n in metadata if n.startswith("accuracy/"))
    return {n: _plain(metadata[n]) for n in names if n in metadata}


def _checks(instance: dg.DagsterInstance, check_keys: list[dg.AssetCheckKey]) -> list[dict[str, Any]]:
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys) if check_keys else {}
    out = []
    for ck in sorted(check_keys, key=lambda c: c.name):
        record = latest.get(ck)
        if record is None:
            out.append({"name": ck.name, "status": "NOT_RUN"})
            continue
        row: dict[str, Any] = {"name": ck.name, "status": record.status.value, "run_id": record.run_id}
        dagster_event = record.event.dagster_event if record.event else None
        evaluation = dagster_event.event_specific_data if dagster_event else None
        if isinstance(evaluation, dg.AssetCheckEvaluation):  # a planned-only check has no evaluation yet
            row.update(
                passed=evaluation.passed, severity=evaluation.severity.value, description=evaluation.description or ""
            )
        out.append(row)
    return out


def _latest_event(instance: dg.DagsterInstance, key: dg.AssetKey, observable: bool) -> tuple[str, Any] | None:
    """("materialization" | "observation", EventLogEntry) of the asset's latest event, None when it has none.
    Observable source assets (vllm/runtime) are never materialized: their observation carries the data version."""
    entry = instance.get_latest_materialization_event(key)
    if entry is not None and entry.asset_materialization is not None:
        return "materialization", entry
    if observable:
        records = instance.fetch_observations(key, limit=1).records
        if records:
            return "observation", records[0].event_log_entry
    return None


def lineage(instance: dg.DagsterInstance, defs: dg.Definitions, target: str) -> list[dict[str, Any]]:
    """One row per asset of the target's upstream chain, sources first (what a row holds: the module docstring)."""
    key = resolve_target(defs, target)
    graph = defs.resolve_asset_graph()
    data_version: dict[dg.AssetKey, str | None] = {}
    present: set[dg.AssetKey] = set()  # materialized or observed
    rows = []
    for k in upstream_keys(defs, key):
        node = graph.get(k)
        layer = k.path[0]
        source = node.is_observable and not node.is_materializable
        row: dict[str, Any] = {
            "key": k.to_user_string(),
            "layer": layer,
            "target": k == key,
            "parents": sorted(p.to_user_string() for p in node.parent_keys),
            "observable_source": source,
            "current_code_version": node.code_version,
            "event": None,  # "materialization" or, for an observable source, "observation"
            "materialized": False,
            "run_id": None,
            "timestamp": None,
            "code_version": None,
            "stale": None,
            "stale_causes": [],
            "data_version": None,
            "metadata": {},
        }
        found = _latest_event(instance, k, node.is_observable)
        data_version[k] = None
        if found is not None:
            kind, entry = found
            present.add(k)
            event = entry.asset_materialization if kind == "materialization" else entry.asset_observation
            tags = event.tags or {}
            code = tags.get(CODE_VERSION_TAG)
            if kind == "materialization" and code is None:
                code = instance.get_latest_materialization_code_versions([k]).get(k)
            data_version[k] = tags.get(DATA_VERSION_TAG)
            causes = []
            if kind == "materialization" and code != node.code_version:
                causes.append(f"code version {code} -> {node.code_version}")
            for parent in sorted(node.parent_keys, key=lambda p: p.path):
                used = tags.get(INPUT_DATA_VERSION_TAG + parent.to_user_string())
                now = data_version.get(parent)  # parents come earlier in topological order
                if used and now and used != now:
                    causes.append(f"{parent.to_user_string()} changed since (data {used[:16]} -> {now[:16]})")
                elif parent not in present and graph.get(parent).is_materializable:  # an unobserved source is no cause
                    causes.append(f"{parent.to_user_string()} is not materialized")
            row.update(
                event=kind,
                materialized=kind == "materialization",
                run_id=entry.run_id or None,  # an observation outside a run has no run id
                timestamp=datetime.fromtimestamp(entry.timestamp, tz=UTC).isoformat(timespec="seconds"),
                code_version=code,
                stale=(code != node.code_version) if kind == "materialization" else None,
                stale_causes=causes,
                data_version=data_version[k],
                metadata=_pick_metadata(layer, event.metadata),
            )
        row["checks"] = _checks(instance, sorted(node.check_keys, key=lambda c: c.name))
        rows.append(row)
    return rows


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if value is None or value == "":
        return "-"
    return str(value)


def format_lineage(rows: list[dict[str, Any]]) -> str:
    """A readable listing: one block per asset, sources first, the target marked."""
    if not rows:
        return "(empty lineage)"
    target = next((r["key"] for r in rows if r.get("target")), rows[-1]["key"])
    lines = [f"lineage of {target}: {len(rows)} assets, sources first", ""]
    for i, row in enumerate(rows, 1):
        mark = "  <== target" if row.get("target") else ""
        lines.append(f"{i}. {row['key']}{mark}")
        parents = row["parents"]
        if parents:  # a summary has dozens of parents: the first few say enough in text (--json has them all)
            more = f" and {len(parents) - 4} more" if len(parents) > 6 else ""
            lines.append(f"     from:  {', '.join(parents[:4] if more else parents)}{more}")
        if row["event"] is None:
            if row.get("observable_source"):
                lines.append("     NOT OBSERVED")
            else:
                lines.append(f"     NOT MATERIALIZED (current code version {row['current_code_version']})")
        elif row["event"] == "observation":
            lines.append(f"     observed: {row['timestamp']}" + (f" in run {row['run_id']}" if row["run_id"] else ""))
            lines.append(f"     data:  {row['data_version'] or '-'}")
        else:
            lines.append(f"     run:   {row['run_id']}  at {row['timestamp']}")
            state = "STALE" if row["stale"] else "current"
            code = f"{row['code_version']}" + (f" (now {row['current_code_version']})" if row["stale"] else "")
            lines.append(f"     code:  {code}  [{state}]   data: {(row['data_version'] or '-')[:16]}")
            for cause in row["stale_causes"]:
                lines.append(f"     stale: {cause}")
            for name, value in row["metadata"].items():
                lines.append(f"     {name}: {_fmt_value(value)}")
        for check in row["checks"]:
            extra = f" ({check['severity']})" if check.get("severity") and check.get("passed") is False else ""
            desc = f": {check['description']}" if check.get("description") else ""
            lines.append(f"     check {check['name']}: {check['status']}{extra}{desc}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
