"""Per-sample records: appended to a JSONL journal as they complete, read back to resume.

A record's `key` hashes everything that decides the answer: model, variant, the checkpoint's identity (recipe
hash or revision), the vLLM build, the suite's resolved definition (task, dataset and its revision, prompt,
generation parameters, seed), the mode, the sample's prompt hash and the repeat. A record with the same key is
reused on resume; anything changed gets a new key, so old samples are never reused for new parameters (they
stay in the journal as history). Only records without an error count as done: errors are retried.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path

import polars as pl

from quant_dag.evaluate.types import Record

_DTYPES: dict[str, pl.DataType] = {"str": pl.String(), "int": pl.Int64(), "float": pl.Float64()}
# The record schema as a Parquet table: Record's fields, in their order, typed.
COLUMNS: dict[str, pl.DataType] = {f.name: _DTYPES[str(f.type).removesuffix(" | None")] for f in fields(Record)}


class Journal:
    """An append-only JSONL file of records; safe against a kill at any point.

    A kill can leave a torn last line: opening the journal cuts the file back to its last complete line, so
    the next append starts clean. Each record is flushed and fsynced as it is written.
    """

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self._fh = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(end)

    def read(self) -> dict[str, dict]:
        """The latest record per key (a retried sample's newer line wins)."""
        out: dict[str, dict] = {}
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    rec = json.loads(line)
                    out[rec["key"]] = rec
        return out

    def append(self, record: dict) -> None:
        """Write, flush and fsync one record; thread-safe (the evaluator appends from worker threads, so an fsync
        never stalls its event loop)."""
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def to_frame(records: Iterable[dict]) -> pl.DataFrame:
    """records.parquet's table: one row per record (a journal dict; a key it lacks is null), sorted."""
    rows = [{c: r.get(c) for c in COLUMNS} for r in records]
    frame = pl.DataFrame(rows, schema=COLUMNS)
    return frame.sort(["mode", "sample_id", "repeat"])


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)
