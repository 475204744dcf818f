"""Shared fixtures: the demo study, materialized once per test session for every test that needs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from quant_dag.catalog.load import load_catalog
from quant_dag.checkpoint.store import ensure_checkpoint
from quant_dag.home import REPO

# Fewer samples than the demo command runs, same suites and code paths.
DEMO_CUTS = [
    ("dataset: {generate: {count: 40, seed: 0}}\n    generation: {temperature: 0.0, max_tokens: 48}",
     "dataset: {generate: {count: 16, seed: 0}}\n    generation: {temperature: 0.0, max_tokens: 48}"),
    ("dataset: {generate: {count: 40, seed: 0}}\n    generation: {temperature: 0.0, max_tokens: 64}",
     "dataset: {generate: {count: 16, seed: 0}}\n    generation: {temperature: 0.0, max_tokens: 64}"),
    ("    limit: 8\n    repeats: 3\n    generation: {temperature: 0.8, top_p: 0.95, max_tokens: 320}",
     "    limit: 3\n    repeats: 2\n    generation: {temperature: 0.8, top_p: 0.95, max_tokens: 256}"),
]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    """The demo's tiny Qwen3.5, built (and trained) once for the tests that quantize or inspect it."""
    path, fetched = ensure_checkpoint(
        {"demo": "tiny-qwen3.5"}, tmp_path_factory.mktemp("ckpt") / "tiny-qwen3.5", on_log=lambda s: None
    )
    assert fetched
    return path


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """`quant-dag demo` on the shipped catalog, with the light recipe cut further (fewer iterations and
    samples) to keep CI short; the graph, the code paths and every other recipe are the shipped ones."""
    root = tmp_path_factory.mktemp("e2e")
    catalog = root / "assets"
    shutil.copytree(REPO / "assets", catalog)
    text = (catalog / "demo.yaml").read_text()
    light = "    preset: light\n    nsamples: 8\n    seqlen: 128\n    batch_size: 4\n"
    assert light in text, "the demo's light recipe changed: update this test's cut-down"
    text = text.replace(light, "    preset: light\n    iters: 2\n    nsamples: 4\n    seqlen: 64\n    batch_size: 2\n")
    for full, cut in DEMO_CUTS:
        assert full in text, f"the demo's benchmark suites changed ({full!r}): update this test's cut-down"
        text = text.replace(full, cut)
    (catalog / "demo.yaml").write_text(text)
    home = root / "home"
    cli = Path(sys.executable).parent / "quant-dag"
    proc = subprocess.run(
        [str(cli), "demo", "--catalog", str(catalog), "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    yield proc, home, load_catalog(catalog), instance
    instance.dispose()
