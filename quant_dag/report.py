"""Read a study's latest results back from the Dagster instance and print them as a table."""

from __future__ import annotations

import dagster as dg

from quant_dag.catalog.load import Catalog
from quant_dag.home import ProjectHome

CHECKS = ("config_agrees_with_tensors", "size_matches_scheme")


def _meta_value(meta: dict, key: str) -> object:
    v = meta.get(key)
    return getattr(v, "value", v)


def study_rows(instance: dg.DagsterInstance, cat: Catalog, study: str) -> list[dict[str, object]]:
    """One row per asset of the study: latest materialization facts and check outcomes."""
    s = cat.studies[study]
    paths = [("checkpoint", m) for m in s.models]
    paths += [("quantized", m, r) for m, r in s.pairs()]
    paths += [("quantized", cat.third_party[t].model, t) for t in s.third_party]
    rows = []
    for path in paths:
        key = dg.AssetKey(list(path))
        event = instance.get_latest_materialization_event(key)
        meta = dict(event.asset_materialization.metadata) if event and event.asset_materialization else {}
        row: dict[str, object] = {"asset": key.to_user_string(), "materialized": event is not None}
        for field in ("wall_time_s", "peak_memory_bytes", "weights_bytes", "size_ratio_vs_base", "families_16bit"):
            row[field] = _meta_value(meta, field)
        if path[0] == "quantized":
            check_keys = [dg.AssetCheckKey(key, name) for name in CHECKS]
            latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
            for ck in check_keys:
                rec = latest.get(ck)
                row[ck.name] = rec.status.value if rec else "NOT_RUN"
        rows.append(row)
    return rows


def _fmt(v: object, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit == "MiB":
        return f"{int(v) / 2**20:,.1f}"  # type: ignore[call-overload]
    return str(v)


def print_study_status(cat: Catalog, study: str, home: ProjectHome) -> bool:
    """Print the study's table; True when every asset materialized and every check passed."""
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:
        rows = study_rows(instance, cat, study)
    header = f"{'asset':58} {'time s':>7} {'peak MiB':>9} {'weights MiB':>12} {'vs base':>8} {'16-bit families':24} checks"
    print("\n" + header + "\n" + "-" * len(header))
    ok = True
    for r in rows:
        checks = ""
        if "config_agrees_with_tensors" in r:
            checks = f"{r['config_agrees_with_tensors']}/{r['size_matches_scheme']}"
            ok &= r["config_agrees_with_tensors"] == "SUCCEEDED" and r["size_matches_scheme"] == "SUCCEEDED"
        ok &= bool(r["materialized"])
        print(
            f"{r['asset']:58} {_fmt(r['wall_time_s']):>7} {_fmt(r['peak_memory_bytes'], 'MiB'):>9} "
            f"{_fmt(r['weights_bytes'], 'MiB'):>12} {_fmt(r['size_ratio_vs_base']):>8} "
            f"{_fmt(r['families_16bit']):24} {checks if r['materialized'] else 'NOT MATERIALIZED'}"
        )
    return ok
