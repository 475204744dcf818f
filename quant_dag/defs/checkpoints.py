"""`checkpoint/<model>`: each base checkpoint of a study, made available locally, with its precision layout.

The fetch asset is shared with the third-party releases (quant_dag.defs.quantized): both only make a
checkpoint available and report what is in it.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import dagster as dg

from quant_dag.catalog import graph
from quant_dag.catalog.load import Catalog
from quant_dag.catalog.schema import Model, content_hash
from quant_dag.checkpoint.layout import Layout, read_layout
from quant_dag.checkpoint.locate import base_checkpoint_path, describe_source, resolved_source
from quant_dag.checkpoint.store import FETCH_VERSION, dir_bytes, ensure_checkpoint, write_layout_report
from quant_dag.defs.resources import QuantDag


def _layout_table(layout: Layout) -> dg.TableMetadataValue:
    cols = ["family", "bytes", "params", "linear", "linear_16bit"]
    return dg.MetadataValue.table(
        records=[dg.TableRecord({"family": f, **row}) for f, row in layout.family_rows().items()],
        schema=dg.TableSchema(
            columns=[dg.TableColumn(c, "string" if c == "family" else "int") for c in cols],
        ),
    )


def layout_metadata(layout: Layout, reports: dict[str, Path]) -> dict[str, object]:
    """A checkpoint's precision layout as asset metadata: totals, 16-bit families, dtypes, the per-family table."""
    summary = layout.summary()
    return {
        "weights_bytes": dg.MetadataValue.int(layout.total_bytes),
        "parameters": dg.MetadataValue.int(layout.total_params),
        "linear_modules": summary["linear_modules"],
        "linear_quantized": summary["linear_quantized"],
        "families_16bit": ", ".join(summary["families_16bit"]) or "none",  # type: ignore[arg-type]
        "dtypes": dg.MetadataValue.json(summary["dtypes"]),
        "precision_layout": _layout_table(layout),
        **{name: dg.MetadataValue.path(str(p)) for name, p in reports.items()},
    }


def fetch_asset(
    cat: Catalog,
    key: dg.AssetKey,
    source: object,
    dest_of: Callable[[QuantDag], Path],
    group: str,
    description: str,
    deps: Sequence[dg.AssetKey] = (),
    extra_meta: dict[str, object] | None = None,
) -> dg.AssetsDefinition:
    """An asset that makes a checkpoint available locally (base model or third-party variant) and reports its layout."""
    src = resolved_source(cat, source)

    @dg.asset(
        key=key,
        deps=list(deps),
        group_name=group,
        kinds={"safetensors"} | ({"huggingface"} if "hub" in src else set()),
        code_version=content_hash({"source": src, "fetch": FETCH_VERSION}),
        description=description,
        metadata={"source": dg.MetadataValue.json(src), **(extra_meta or {})},
    )
    def _fetched(context: dg.AssetExecutionContext, quant_dag: QuantDag) -> dg.MaterializeResult:
        path, fetched = ensure_checkpoint(
            src, dest_of(quant_dag), on_log=context.log.info, env=quant_dag.run_profile().quantize.env
        )
        layout = read_layout(path)
        reports = write_layout_report(layout, quant_dag.paths().artifacts(key.path))
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(path)),
                "source": describe_source(src),
                "fetched": fetched,
                "size_on_disk_bytes": dg.MetadataValue.int(dir_bytes(path)),
                **layout_metadata(layout, reports),
            }
        )

    return _fetched


def checkpoint_asset(cat: Catalog, model: Model) -> dg.AssetsDefinition:
    src = resolved_source(cat, model.source)
    return fetch_asset(
        cat,
        dg.AssetKey(graph.checkpoint(model.name)),
        model.source,
        lambda qd: base_checkpoint_path(cat, qd.paths(), model.name),
        "checkpoints",
        model.description or f"Base checkpoint {model.name}: {describe_source(src)}.",
    )


def definitions(cat: Catalog) -> dg.Definitions:
    """The base checkpoint of every model a study or a third-party release names."""
    models = set(cat.study_models()) | {v.model for v in cat.third_party.values()}
    return dg.Definitions(assets=[checkpoint_asset(cat, cat.models[name]) for name in sorted(models)])
