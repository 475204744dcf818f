"""Read `assets/*.yaml` into a validated Catalog; every error names the file, the entry and the field."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from quant_dag.catalog.schema import Benchmark, Model, Recipe, Study, ThirdPartyVariant, content_hash
from quant_dag.home import DATA

SECTIONS: dict[str, tuple[str, type[BaseModel]]] = {
    "models": ("model", Model),
    "recipes": ("recipe", Recipe),
    "third_party": ("third-party variant", ThirdPartyVariant),
    "benchmarks": ("benchmark", Benchmark),
    "studies": ("study", Study),
}

T = TypeVar("T", bound=BaseModel)


class CatalogError(ValueError):
    """All problems found in a catalog, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid catalog:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass
class Catalog:
    root: Path
    models: dict[str, Model] = field(default_factory=dict)
    recipes: dict[str, Recipe] = field(default_factory=dict)
    third_party: dict[str, ThirdPartyVariant] = field(default_factory=dict)
    benchmarks: dict[str, Benchmark] = field(default_factory=dict)
    studies: dict[str, Study] = field(default_factory=dict)
    origin: dict[tuple[str, str], str] = field(default_factory=dict)  # (section, name) -> file
    invalid: set[tuple[str, str]] = field(default_factory=set)  # entries already reported as invalid

    def recipe_hash(self, name: str) -> str:
        """Hash of the resolved recipe, plus the calibration file's bytes when it is a local file."""
        resolved = self.recipes[name].resolved()
        calib = self.calibration_path(name)
        if calib is not None and calib.is_file():
            resolved["calibration_sha256"] = hashlib.sha256(calib.read_bytes()).hexdigest()
        return content_hash(resolved)

    def calibration_path(self, recipe: str) -> Path | None:
        """Local calibration file of a recipe (relative paths are relative to the catalog), else None."""
        calib = self.recipes[recipe].calibration
        if calib.startswith("builtin:"):
            return DATA / f"{calib.removeprefix('builtin:')}.jsonl"
        if calib.endswith(".jsonl"):
            p = Path(calib)
            return p if p.is_absolute() else (self.root / p).resolve()
        return None

    def quantized_pairs(self) -> list[tuple[str, str]]:
        """Every (model, recipe) pair some study asks for, in a stable order."""
        seen: dict[tuple[str, str], None] = {}
        for study in self.studies.values():
            for pair in study.pairs():
                seen[pair] = None
        return list(seen)

    def study_variants(self, study: str) -> list[tuple[str, str]]:
        """(model, variant) of every quantized variant a study compares: its recipes, then its third-party
        checkpoints."""
        s = self.studies[study]
        return list(s.pairs()) + [(self.third_party[t].model, t) for t in s.third_party]

    def benchmark_path(self, name: str) -> Path | None:
        """A suite's local dataset file (relative paths are relative to the catalog), else None."""
        path = self.benchmarks[name].dataset.path
        if path is None:
            return None
        p = Path(path)
        return p if p.is_absolute() else (self.root / p).resolve()

    def study_models(self) -> list[str]:
        seen: dict[str, None] = {}
        for study in self.studies.values():
            for m in study.models:
                seen[m] = None
        return list(seen)


def _describe(section: str, name: str | None, index: int) -> str:
    kind = SECTIONS[section][0]
    return f"{kind} {name!r}" if name else f"{kind} #{index + 1}"


def _format_error(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    kind, msg, value = err["type"], err["msg"].removeprefix("Value error, "), err.get("input")
    if kind == "missing":
        return f"field '{loc}' is required"
    if kind == "extra_forbidden":
        return f"unknown field '{loc}'"
    if not loc:
        return msg
    if kind == "string_pattern_mismatch" and loc == "name":
        return f"name {value!r} must be lower-case letters, digits, '.', '_' or '-'"
    if isinstance(value, str) and msg.startswith(repr(value)):
        return f"{loc} {msg}"  # e.g. "scheme 'W5A16' is not one of ..."
    return f"{loc}: {msg}"


def _read_yaml(path: Path, label: str, problems: list[str]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problems.append(f"{label}: not valid YAML{where}: {getattr(exc, 'problem', exc)}")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{label}: expected a mapping with keys {', '.join(SECTIONS)}")
        return {}
    for key in data:
        if key not in SECTIONS:
            problems.append(f"{label}: unknown section {key!r} (expected {', '.join(SECTIONS)})")
    return data


def load_catalog(root: str | Path) -> Catalog:
    """Load and cross-check every `*.yaml` file under `root`; raise CatalogError listing all problems."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise CatalogError([f"{root}: catalog directory does not exist"])
    cat = Catalog(root=root)
    problems: list[str] = []
    files = sorted(root.glob("*.yaml")) + sorted(root.glob("*.yml"))
    if not files:
        problems.append(f"{root}: no *.yaml files")
    for path in files:
        label = str(path.relative_to(root.parent) if root.parent != root else path)
        data = _read_yaml(path, label, problems)
        for section, (_, cls) in SECTIONS.items():
            entries = data.get(section) or []
            if not isinstance(entries, list):
                problems.append(f"{label}: section {section!r} must be a list of entries")
                continue
            store: dict[str, BaseModel] = getattr(cat, section)
            for i, raw in enumerate(entries):
                name = raw.get("name") if isinstance(raw, dict) else None
                where = f"{label}: {_describe(section, name if isinstance(name, str) else None, i)}"
                if not isinstance(raw, dict):
                    problems.append(f"{where}: expected a mapping of fields")
                    continue
                try:
                    entry = cls.model_validate(raw)
                except ValidationError as exc:
                    problems.extend(f"{where}: {_format_error(e)}" for e in exc.errors())
                    if isinstance(name, str):
                        cat.invalid.add((section, name))
                    continue
                if entry.name in store:  # type: ignore[attr-defined]
                    first = cat.origin[(section, entry.name)]  # type: ignore[attr-defined]
                    problems.append(f"{where}: name is already used in {first}")
                    continue
                store[entry.name] = entry  # type: ignore[attr-defined]
                cat.origin[(section, entry.name)] = label  # type: ignore[attr-defined]
    problems.extend(_cross_check(cat))
    if problems:
        raise CatalogError(problems)
    return cat


def _cross_check(cat: Catalog) -> list[str]:
    """References between entries: models, recipes and variants that a study or variant names must exist."""
    out: list[str] = []

    def where(section: str, name: str) -> str:
        return f"{cat.origin[(section, name)]}: {_describe(section, name, 0)}"

    def missing(section: str, name: str) -> bool:
        return name not in getattr(cat, section) and (section, name) not in cat.invalid

    for v in cat.third_party.values():
        if missing("models", v.model):
            out.append(f"{where('third_party', v.name)}: model {v.model!r} is not a model of the catalog")
        if v.name in cat.recipes:
            out.append(
                f"{where('third_party', v.name)}: name is already a recipe's (quantized/<model>/<name> would clash)"
            )
    for r in cat.recipes.values():
        calib = cat.calibration_path(r.name)
        if calib is not None and not calib.is_file():
            out.append(f"{where('recipes', r.name)}: calibration file {str(calib)!r} does not exist")
        elif calib is not None and ("," in str(calib) or ":" in str(calib)):
            out.append(
                f"{where('recipes', r.name)}: calibration path {str(calib)!r} has ',' or ':', which AutoRound splits on"
            )
    for b in cat.benchmarks.values():
        data = cat.benchmark_path(b.name)
        if data is not None and not data.is_file():
            out.append(f"{where('benchmarks', b.name)}: dataset.path {str(data)!r} does not exist")
    for s in cat.studies.values():
        w = where("studies", s.name)
        for m in s.models:
            if missing("models", m):
                out.append(f"{w}: models: {m!r} is not a model of the catalog")
        if isinstance(s.recipes, dict):
            for m in s.recipes:
                if m not in s.models:
                    out.append(f"{w}: recipes: {m!r} is not one of the study's models")
        for _, r in s.pairs():
            if missing("recipes", r):
                out.append(f"{w}: recipes: {r!r} is not a recipe of the catalog")
        for b in s.benchmarks:
            if missing("benchmarks", b):
                out.append(f"{w}: benchmarks: {b!r} is not a benchmark of the catalog")
        for t in s.third_party:
            if missing("third_party", t):
                out.append(f"{w}: third_party: {t!r} is not a third-party variant of the catalog")
            elif t in cat.third_party and cat.third_party[t].model not in s.models:
                out.append(f"{w}: third_party: {t!r} belongs to model {cat.third_party[t].model!r}, not in the study")
    return sorted(set(out), key=out.index)
