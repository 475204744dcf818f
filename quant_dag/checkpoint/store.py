"""Parent side of checkpoints: fetch once into the project home, and write layout reports."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from quant_dag.catalog.graph import LAYOUT_FAMILIES_FILE
from quant_dag.catalog.schema import content_hash
from quant_dag.checkpoint.layout import Layout
from quant_dag.procs import python_module, run_child, write_json_atomic

MARKER = "quant_dag_source.json"
# Bump when fetch.py changes what it writes (e.g. the demo model builders): it is part of the checkpoint
# assets' code_version, and a folder fetched by an older version is fetched again.
FETCH_VERSION = "2"
# The environment of a demo model's build. Intel's conditions for run-to-run reproducible MKL (the BLAS of torch's
# CPU wheels): a fixed thread count (the builders set it), no dynamic thread adjustment, and CNR mode, whose strict
# form also makes gemm independent of data alignment and thread count. MKL reads them at start: hence the child's
# environment. On the machines measured they change no bit of the demo models; they exist for the ones not measured.
REPRODUCIBLE_BUILD_ENV = {"MKL_CBWR": "AUTO,STRICT", "MKL_DYNAMIC": "FALSE", "OMP_DYNAMIC": "FALSE"}


def ensure_checkpoint(
    source: dict[str, str], dest: Path, *, on_log: Callable[[str], None] = print, env: dict[str, str] | None = None
) -> tuple[Path, bool]:
    """Fetch `source` into `dest` unless a complete copy of the same source is there. Returns (path, fetched)."""
    if "path" in source:
        path = Path(source["path"])
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: no config.json: not a checkpoint folder")
        return path, False
    marker = dest / MARKER
    source_hash = content_hash({"source": source, "fetch": FETCH_VERSION})
    if marker.is_file() and json.loads(marker.read_text()).get("source_hash") == source_hash:
        on_log(f"{dest}: already fetched from the same source, reusing it")
        return dest, False
    run_child(
        python_module("quant_dag.checkpoint.fetch", json.dumps(source), str(dest)),
        on_log=on_log,
        env={**REPRODUCIBLE_BUILD_ENV, **(env or {})} if "demo" in source else env,
        what=f"fetching checkpoint {source}",
    )
    write_json_atomic(marker, {"source": source, "fetch": FETCH_VERSION, "source_hash": source_hash})
    return dest, True


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def write_layout_report(layout: Layout, out_dir: Path) -> dict[str, Path]:
    """Parquet files: one row per module family, and one per Linear module."""
    import polars as pl  # here, not at the top: the engines run where polars is not installed (the GPU box)

    out_dir.mkdir(parents=True, exist_ok=True)
    families = pl.DataFrame(
        [{"family": f, **row} for f, row in layout.family_rows().items()],
        schema={
            "family": pl.String,
            "bytes": pl.Int64,
            "params": pl.Int64,
            "linear": pl.Int64,
            "linear_16bit": pl.Int64,
        },
    )
    modules = pl.DataFrame(
        layout.module_records(),
        schema={
            "name": pl.String,
            "family": pl.String,
            "quantized": pl.Boolean,
            "storage": pl.String,
            "in_features": pl.Int64,
            "out_features": pl.Int64,
            "nbytes": pl.Int64,
        },
    )
    paths = {
        "layout_families": out_dir / LAYOUT_FAMILIES_FILE,
        "layout_modules": out_dir / "layout_modules.parquet",
    }
    for df, key in ((families, "layout_families"), (modules, "layout_modules")):
        tmp = paths[key].with_suffix(".parquet.tmp")
        df.write_parquet(tmp)
        tmp.replace(paths[key])
    return paths
