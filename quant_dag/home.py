"""Where things live: the package data, the catalog, the resource profiles and the project home (its folders derive
from asset keys)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"  # shipped with the package
ENGLISH_TEXT = DATA / "calibration-en.jsonl"  # demo calibration, tokenizer training and the fidelity reference


def catalog_dir() -> Path:
    return Path(os.environ.get("QUANT_DAG_CATALOG", REPO / "assets")).resolve()


def home_dir(profile_home: str | None = None) -> Path:
    """QUANT_DAG_HOME, else the resource profile's home (a cluster's shared storage), else .quant-dag here."""
    return Path(os.environ.get("QUANT_DAG_HOME") or profile_home or REPO / ".quant-dag").resolve()


@dataclass(frozen=True)
class ProjectHome:
    root: Path

    def checkpoint_dir(self, model: str) -> Path:
        return self.root / "checkpoints" / model

    def quantized_dir(self, model: str, variant: str) -> Path:
        return self.root / "quantized" / model / variant

    def artifacts(self, key: Sequence[str]) -> Path:
        """Reports, logs and tables that belong to one asset (kept outside the checkpoint itself)."""
        return self.root.joinpath("artifacts", *key)

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"


def resources_dir() -> Path:
    return Path(os.environ.get("QUANT_DAG_RESOURCES", REPO / "resources")).resolve()
