"""Read a study's latest results back from the Dagster instance and print them as tables."""

from __future__ import annotations

import dagster as dg

from quant_dag.catalog import graph
from quant_dag.catalog.load import Catalog
from quant_dag.evaluate.types import BenchmarkSummary
from quant_dag.home import ProjectHome

CHECKS = {
    "quantized": ("config_agrees_with_tensors", "size_matches_scheme"),
    "endpoint": ("server_started", "answers_not_degenerate", "fidelity_vs_base"),
    "benchmark": ("benchmark_complete", "no_regression_vs_previous_build"),
}


def _meta(event: object | None) -> dict[str, object]:
    if event is None or event.asset_materialization is None:  # type: ignore[attr-defined]
        return {}
    metadata = event.asset_materialization.metadata  # type: ignore[attr-defined]
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def study_rows(instance: dg.DagsterInstance, cat: Catalog, study: str) -> list[dict[str, object]]:
    """One row per asset of the study: latest materialization metadata and check outcomes."""
    rows = []
    for key in map(dg.AssetKey, graph.study_keys(cat, study)):
        if key.path[0] == "vllm":  # an observed source: observed, not materialized
            record = instance.get_latest_data_version_record(key)
            rows.append(
                {"asset": key.to_user_string(), "layer": "vllm", "materialized": record is not None, "checks": {}}
            )
            continue
        event = instance.get_latest_materialization_event(key)
        row: dict[str, object] = {
            "asset": key.to_user_string(),
            "layer": key.path[0],
            "materialized": event is not None,
        }
        row.update(_meta(event))
        names = CHECKS.get(key.path[0], ())
        if key.path[0] == "endpoint" and key.path[-1] == graph.BASE:
            names = names[:2]
        check_keys = [dg.AssetCheckKey(key, n) for n in names]
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys) if check_keys else {}
        row["checks"] = {ck.name: (latest[ck].status.value if ck in latest else "NOT_RUN") for ck in check_keys}
        rows.append(row)
    return rows


def _f(v: object, fmt: str = "") -> str:
    if v is None or v == "":
        return "-"
    if fmt == "MiB":
        return f"{int(v) / 2**20:,.1f}"  # type: ignore[call-overload]
    return format(v, fmt) if fmt else str(v)


def row_ok(row: dict[str, object]) -> bool:
    """Materialized, and every check passed; an endpoint that is not servable on this device is reported, not failed."""
    if not row["materialized"]:
        return False
    if row["layer"] == "endpoint" and row.get("servable") is False:
        return True
    if row["layer"] == "benchmark" and row.get("evaluated") is False:
        return True  # not servable here: reported with the reason
    return all(status == "SUCCEEDED" for status in row["checks"].values())  # type: ignore[union-attr]


def print_study_status(cat: Catalog, study: str, home: ProjectHome) -> bool:
    """Print the study's tables; True when every asset materialized and every check that could run passed."""
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:
        rows = study_rows(instance, cat, study)
    head = (
        f"{'asset':56} {'time s':>7} {'peak MiB':>9} {'weights MiB':>12} {'vs base':>8} {'16-bit families':22} checks"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in (r for r in rows if r["layer"] in ("checkpoint", "quantized")):
        checks = "/".join(r["checks"].values()) if r["checks"] else ""  # type: ignore[union-attr]
        fams = r.get("families_16bit") if r["layer"] == "quantized" else "(base)"
        print(
            f"{r['asset']:56} {_f(r.get('wall_time_s')):>7} {_f(r.get('peak_memory_bytes'), 'MiB'):>9} "
            f"{_f(r.get('weights_bytes'), 'MiB'):>12} {_f(r.get('size_ratio_vs_base')):>8} {_f(fams):22} "
            f"{checks if r['materialized'] else 'NOT MATERIALIZED'}"
        )
    head = f"{'endpoint':56} {'start s':>7} {'ppl':>8} {'KL/token':>9} {'reasoning':>10} checks / why not served"
    print("\n" + head + "\n" + "-" * len(head))
    for r in (r for r in rows if r["layer"] == "endpoint"):
        served = r["materialized"] and r.get("servable") is not False
        if not r["materialized"]:
            status = "NOT MATERIALIZED"
        elif not served:
            status = f"not servable here: {r.get('servability')}"
        else:
            status = "/".join(r["checks"].values())  # type: ignore[union-attr]
        print(
            f"{r['asset']:56} {_f(r.get('start_s') if served else None, '.0f'):>7} {_f(r.get('perplexity'), '.2f'):>8} "
            f"{_f(r.get('kl_vs_base'), '.4f'):>9} {_f(r.get('reasoning_field')):>10} {status}"
        )
    print_benchmarks(rows, home)
    for r in (r for r in rows if r["layer"] == "summary"):
        if r["materialized"]:
            print(f"\n{r['asset']}:\n{r.get('main_table', '')}\nreport: {r.get('report_html')}")
        else:
            print(f"\n{r['asset']}: NOT MATERIALIZED")
    return all(row_ok(r) for r in rows)


def print_benchmarks(rows: list[dict[str, object]], home: ProjectHome) -> None:
    head = (
        f"{'benchmark':58} {'mode':12} {'n':>4} {'accuracy [95% CI]':>20} {'cutoff':>7} {'tokens':>7} "
        f"{'pass@k':>12} {'sent/reused':>11}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in (r for r in rows if r["layer"] == "benchmark"):
        path = home.artifacts(str(r["asset"]).split("/")) / graph.SUMMARY_FILE
        if not r["materialized"] or not path.is_file():
            print(f"{r['asset']:58} NOT MATERIALIZED")
            continue
        summary = BenchmarkSummary.from_json(path.read_text())
        if not summary.evaluated:
            print(f"{r['asset']:58} not evaluated: {summary.reason}")
            continue
        for agg in summary.aggregates:
            passk = agg.get("pass_at_k") or {}
            top = max(passk, key=int) if passk else None
            acc = f"{agg['accuracy']:.3f} [{agg['ci_low']:.2f}, {agg['ci_high']:.2f}]"
            print(
                f"{r['asset']:58} {agg['mode']:12} {agg['n_samples']:>4} {acc:>20} {_f(agg['cutoff_rate'], '.2f'):>7} "
                f"{_f(agg['mean_completion_tokens'], '.0f'):>7} "
                f"{(f'@{top}={passk[top]:.2f}' if top else '-'):>12} {summary.sent:>5}/{summary.reused:<5}"
                + (f" {summary.errors} errors" if summary.errors else "")
            )
