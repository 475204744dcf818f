"""Where each checkpoint of the catalog lives on disk, and what identifies its weights in a record."""

from __future__ import annotations

from pathlib import Path

from quant_dag.catalog.graph import BASE
from quant_dag.catalog.load import Catalog
from quant_dag.catalog.schema import ThirdPartyVariant
from quant_dag.checkpoint.store import FETCH_VERSION
from quant_dag.home import ProjectHome


def resolved_source(cat: Catalog, source: object) -> dict[str, str]:
    """A catalog source as a dict, a local `path` made absolute against the catalog folder."""
    src = source.model_dump()  # type: ignore[attr-defined]
    if "path" in src:
        src["path"] = str((cat.root / src["path"]).resolve())
    return src


def describe_source(src: dict[str, str]) -> str:
    if "hub" in src:
        return f"hub {src['hub']}@{src['revision'][:12]}"
    if "path" in src:
        return f"local path {src['path']}"
    if "random" in src:
        layers = f", first {src['layers']} layers" if src.get("layers") else ""
        return f"random weights in the {src['random']} shape{layers}"
    return f"built-in demo model {src['demo']}"


def base_checkpoint_path(cat: Catalog, home: ProjectHome, model: str) -> Path:
    src = resolved_source(cat, cat.models[model].source)
    return Path(src["path"]) if "path" in src else home.checkpoint_dir(model)


def third_party_path(cat: Catalog, home: ProjectHome, variant: ThirdPartyVariant) -> Path:
    src = resolved_source(cat, variant.source)
    return Path(src["path"]) if "path" in src else home.quantized_dir(variant.model, variant.name)


def checkpoint_path_of(cat: Catalog, home: ProjectHome, model: str, variant: str) -> Path:
    """The checkpoint an endpoint serves: the base, a third-party release or one of our recipes' output."""
    if variant == BASE:
        return base_checkpoint_path(cat, home, model)
    if variant in cat.third_party:
        return third_party_path(cat, home, cat.third_party[variant])
    return home.quantized_dir(model, variant)


def checkpoint_id(cat: Catalog, model: str, variant: str) -> str:
    """What identifies the served weights in a record: the recipe hash, or the source revision."""
    if variant in cat.recipes:
        return f"recipe:{cat.recipe_hash(variant)}"
    src = (cat.third_party[variant].source if variant in cat.third_party else cat.models[model].source).model_dump()
    if "hub" in src:
        return f"hub:{src['hub']}@{src['revision']}"
    if "demo" in src:
        return f"demo:{src['demo']}:v{FETCH_VERSION}"
    if "random" in src:
        return f"random:{src['random']}:layers={src['layers']}:v{FETCH_VERSION}"
    return f"path:{src['path']}"
