"""`summary/<study>`: the study's answers at a glance, from every benchmark of the study (polars, matplotlib).

The engine is quant_dag.summary (no Dagster); this asset runs it on the project home and shows the headline
table, the chart paths and row counts in the UI. A benchmark that was not evaluated, or never ran, is a row
with its reason, not a silent gap.
"""

import dagster as dg

from quant_dag.catalog import graph
from quant_dag.catalog.load import Catalog
from quant_dag.defs.resources import QuantDag

SUMMARY_VERSION = "1"  # bump when quant_dag.summary changes what it computes


def summary_asset(cat: Catalog, study: str) -> dg.AssetsDefinition:
    s = cat.studies[study]
    deps = [dg.AssetKey(graph.benchmark(m, v, b)) for m, v in graph.study_served(cat, study) for b in s.benchmarks]

    @dg.asset(
        key=dg.AssetKey(graph.summary(study)),
        deps=deps,
        group_name="summaries",
        kinds={"polars", "parquet"},
        code_version=SUMMARY_VERSION,
        description=f"Study {study}: accuracy with intervals, recovery vs base, cutoff rate, reasoning tokens, memory "
        "and precision layout, paired tests vs the base, charts and a self-contained HTML report.",
    )
    def _summary(context: dg.AssetExecutionContext, quant_dag: QuantDag) -> dg.MaterializeResult:
        from quant_dag.summary.report import main_table_md, write_report
        from quant_dag.summary.tables import load_catalog_study

        home = quant_dag.paths()
        data = load_catalog_study(home.root, cat, study)
        out = home.artifacts(graph.summary(study)) / graph.REPORT_DIR
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


def definitions(cat: Catalog) -> dg.Definitions:
    return dg.Definitions(assets=[summary_asset(cat, name) for name, s in cat.studies.items() if s.benchmarks])
