"""`summary/<study>`: the study's answers at a glance, from every benchmark of the study (polars, matplotlib).

The engine is quant_dag.summary (no Dagster); this asset runs it on the project home and shows the headline
table, the chart paths and row counts in the UI. A benchmark that was not evaluated, or never ran, is a row
with its reason, not a silent gap.
"""


import dagster as dg

from quant_dag.catalog.load import Catalog
from quant_dag.defs.endpoints import BASE, benchmark_key
from quant_dag.defs.resources import QuantDag

SUMMARY_VERSION = "1"  # bump when quant_dag.summary changes what it computes


def summary_key(study: str) -> dg.AssetKey:
    return dg.AssetKey(["summary", study])


def study_served(cat: Catalog, study: str) -> list[tuple[str, str]]:
    """(model, variant) of every served checkpoint of a study, bases first."""
    return [(m, BASE) for m in cat.studies[study].models] + cat.study_variants(study)


def summary_asset(cat: Catalog, study: str) -> dg.AssetsDefinition:
    s = cat.studies[study]
    deps = [benchmark_key(m, v, b) for m, v in study_served(cat, study) for b in s.benchmarks]

    @dg.asset(
        key=summary_key(study),
        deps=deps,
        group_name="summaries",
        kinds={"polars", "parquet"},
        code_version=SUMMARY_VERSION,
        description=f"Study {study}: accuracy with intervals, recovery vs base, cutoff rate, reasoning tokens, memory "
        "and precision layout, paired tests vs the base, charts and a self-contained HTML report.",
    )
    def _summary(context: dg.AssetExecutionContext, quant_dag: QuantDag) -> dg.MaterializeResult:
        from quant_dag.summary.report import main_table_md, write_report
        from quant_dag.summary.tables import load_study

        home = quant_dag.paths()
        data = load_study(home.root, study_served(cat, study), list(s.benchmarks), study)
        out = home.artifacts(summary_key(study).path) / "report"
        files = write_report(data, out)
        context.log.info(f"report written to {out}")
        charts = {name: dg.MetadataValue.path(str(out / name)) for name in files if name.endswith(".png")}
        return dg.MaterializeResult(
            metadata={
                "main_table": dg.MetadataValue.md(main_table_md(data)),
                "report_html": dg.MetadataValue.path(str(out / "report.html")),
                "summary_md": dg.MetadataValue.path(str(out / "summary.md")),
                "long_table": dg.MetadataValue.path(str(out / "long.parquet")),
                **{f"chart/{name.removesuffix('.png')}": path for name, path in charts.items()},
                "variants": len(data.pairs),
                "benchmarks": len(s.benchmarks),
                "records": data.records.height,
                "missing_cells": len(data.missing),
                "missing": dg.MetadataValue.md(
                    "\n".join(f"- {m.model}/{m.variant}/{m.suite}: {m.reason}" for m in data.missing) or "none"
                ),
            }
        )

    return _summary


def build_summaries(cat: Catalog) -> list[dg.AssetsDefinition]:
    return [summary_asset(cat, name) for name, s in cat.studies.items() if s.benchmarks]
