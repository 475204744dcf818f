"""A study's results as tables: load the artifacts, one tidy long table, wide views for people.

Artifacts read (all optional; what is absent becomes an explicit None / missing entry):
- artifacts/benchmark/<model>/<variant>/<suite>/summary.json and records.parquet;
- artifacts/endpoint/<model>/<variant>/endpoint.json (servable, perplexity, KL, startup.weights_gib on GPU);
- artifacts/quantized/<model>/<variant>/layout_families.parquet, or artifacts/checkpoint/<model>/... for "base".

Accuracies are fractions in [0, 1] in the numeric tables and percentages in the formatted (text) views."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from quant_dag.catalog import graph
from quant_dag.catalog.graph import BASE
from quant_dag.catalog.load import Catalog
from quant_dag.evaluate.paired import compare_paired
from quant_dag.evaluate.records import COLUMNS
from quant_dag.evaluate.types import BenchmarkSummary
from quant_dag.home import ProjectHome
from quant_dag.serve.endpoint import load_record

GIB = 2**30
NEVER = "never materialized"
PACE_ONLY = "random weights (pace only): scores are noise"
SCORES = ("accuracy", "accuracy_completed", "recovery_pct")  # a pace-only model's are reported empty, with PACE_ONLY
MODE_ORDER = ("thinking", "non-thinking", "default")

# Columns kept from records.parquet (content, prompts, ... are not needed here and can be large), typed as written.
RECORD_FIELDS = (
    "key",
    "model",
    "variant",
    "benchmark",
    "task",
    "mode",
    "sample_id",
    "repeat",
    "seed",
    "params",
    "score",
    "finish_reason",
    "completion_tokens",
    "reasoning_tokens",
    "error",
    "checkpoint_id",
    "vllm_version",
    "dataset_revision",
    "run_id",
)
RECORD_SCHEMA: dict[str, pl.DataType] = {c: COLUMNS[c] for c in RECORD_FIELDS}
RECORDS_EMPTY_SCHEMA = {**RECORD_SCHEMA, "suite": pl.String()}

PROVENANCE = ("checkpoint_id", "vllm_version", "dataset_revision", "run_id", "generation")  # generation: JSON
LONG_SCHEMA: dict[str, pl.DataType] = {
    "study": pl.String(),
    "model": pl.String(),
    "variant": pl.String(),
    "benchmark": pl.String(),
    "mode": pl.String(),
    "metric": pl.String(),
    "value": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "n": pl.Int64(),
    "note": pl.String(),
    **{k: pl.String() for k in PROVENANCE},
    "asset": pl.String(),
}
# Per-mode aggregate fields carried as metrics, in this order.
AGG_METRICS = (
    "accuracy_completed",
    "cutoff_rate",
    "no_answer_rate",
    "mean_completion_tokens",
    "median_completion_tokens",
    "mean_reasoning_tokens",
    "median_reasoning_tokens",
    "errors",
)


# ---------------------------------------------------------------------------------------------------- loading


@dataclass
class VariantFacts:
    model: str
    variant: str
    weights_bytes: int | None  # sum of the layout's bytes (what the weights take on disk / in memory)
    families_16bit: list[str]  # families whose linear layers all stay 16-bit
    partly_16bit: list[str]  # families with some, not all, linear layers in 16-bit
    served_weights_gib: float | None  # vLLM's own figure at startup (GPU only)
    servable: bool | None  # None: no endpoint.json
    servability: str
    perplexity: float | None
    kl_vs_base: float | None
    ppl_ratio_vs_base: float | None = None

    @property
    def weights_gib(self) -> float | None:
        return None if self.weights_bytes is None else self.weights_bytes / GIB


class Missing(NamedTuple):
    model: str
    variant: str
    suite: str
    reason: str


@dataclass
class StudyData:
    study: str
    home: Path
    pairs: list[tuple[str, str]]  # (model, variant), each model's base first
    suites: list[str]
    facts: dict[tuple[str, str], VariantFacts]
    summaries: dict[tuple[str, str, str], BenchmarkSummary]  # (model, variant, suite) -> summary.json, evaluated or not
    records: pl.DataFrame  # every evaluated suite's records, plus a `suite` column; possibly empty
    missing: list[Missing] = field(default_factory=list)
    pace_only: frozenset[str] = frozenset()  # models with random weights: tokens and throughput, no accuracy

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(m for m, _ in self.pairs))

    def variants(self, model: str) -> list[str]:
        return [v for m, v in self.pairs if m == model]

    def evaluated(self, model: str, variant: str, suite: str) -> BenchmarkSummary | None:
        """The summary when that suite was evaluated and has aggregates, else None."""
        s = self.summaries.get((model, variant, suite))
        return s if s is not None and s.evaluated and s.aggregates else None

    def missing_reason(self, model: str, variant: str, suite: str) -> str | None:
        for m in self.missing:
            if (m.model, m.variant, m.suite) == (model, variant, suite):
                return m.reason
        return None


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_parquet(path: Path, columns: Iterable[str] | None = None) -> pl.DataFrame | None:
    if not path.is_file():
        return None
    try:
        if columns is None:
            return pl.read_parquet(path)
        present = [c for c in columns if c in pl.read_parquet_schema(path)]
        return pl.read_parquet(path, columns=present)
    except (OSError, pl.exceptions.PolarsError, ValueError):
        return None  # a broken artifact reads as absent: the report says so instead of crashing


def _float(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _provenance(s: BenchmarkSummary | None) -> dict[str, str | None]:
    """The summary's PROVENANCE fields as text; absent or empty: None."""
    values = {k: getattr(s, k) if s is not None else None for k in PROVENANCE}
    return {k: str(v) if v not in (None, "") else None for k, v in values.items()}


def _home(home: Any) -> Path:
    """A Path, or a ProjectHome (its .root; a Path's own .root is just its anchor, hence the type check)."""
    return Path(home) if isinstance(home, (str, Path)) else Path(home.root)


def layout_path(home: Path, model: str, variant: str) -> Path:
    return ProjectHome(home).artifacts(graph.layout_asset(model, variant)) / graph.LAYOUT_FAMILIES_FILE


def load_variant_facts(home: Path, model: str, variant: str) -> VariantFacts:
    """Memory, precision layout and endpoint facts of one variant; any file may be missing."""
    home = _home(home)
    weights, full, partly = None, [], []
    layout = _read_parquet(layout_path(home, model, variant))
    if layout is not None and {"family", "bytes", "linear", "linear_16bit"} <= set(layout.columns):
        weights = int(layout["bytes"].fill_null(0).sum())
        for fam, lin, l16 in layout.select("family", "linear", "linear_16bit").iter_rows():
            lin, l16 = lin or 0, l16 or 0
            if lin > 0 and l16 == lin:
                full.append(fam)
            elif 0 < l16 < lin:
                partly.append(fam)
    try:
        ep = load_record(ProjectHome(home).artifacts(graph.endpoint(model, variant)))
    except (OSError, ValueError, TypeError):  # unreadable, or written by another version: like never verified
        ep = None
    if ep is None:
        servable, servability, startup = None, "endpoint never materialized", {}
    else:
        servable = ep.servable if isinstance(ep.servable, bool) else None
        reason = str(ep.reason or "").strip()
        if servable is True:
            servability = f"servable ({reason})" if reason else "servable"
        elif servable is False:
            servability = f"not servable: {reason}" if reason else "not servable"
        else:
            servability = "unknown"
        startup = ep.startup if isinstance(ep.startup, dict) else {}
    return VariantFacts(
        model=model,
        variant=variant,
        weights_bytes=weights,
        families_16bit=full,
        partly_16bit=partly,
        served_weights_gib=_float(startup.get("weights_gib")),
        servable=servable,
        servability=servability,
        perplexity=_float(ep.perplexity) if ep else None,
        kl_vs_base=_float(ep.kl_vs_base) if ep else None,
        ppl_ratio_vs_base=_float(ep.ppl_ratio_vs_base) if ep else None,
    )


def _read_records(path: Path, suite: str) -> pl.DataFrame | None:
    df = _read_parquet(path, RECORD_SCHEMA)
    if df is None:
        return None
    cols = [
        (pl.col(c).cast(t, strict=False) if c in df.columns else pl.lit(None, dtype=t)).alias(c)
        for c, t in RECORD_SCHEMA.items()
    ]
    return df.select(*cols, pl.lit(suite, dtype=pl.String()).alias("suite"))


def load_study(
    home: Path, pairs: list[tuple[str, str]], suites: list[str], study: str, pace_only: Iterable[str] = ()
) -> StudyData:
    """Everything the summary needs from the project home. A model's base is added when pairs lack it:
    recovery and the paired comparison are relative to it. `pace_only`: models with random weights (catalog
    `Model.pace_only`), whose scores are noise: their tokens and throughput are reported, no accuracy."""
    pace = frozenset(pace_only)
    home = _home(home)
    ordered: list[tuple[str, str]] = []
    for model in dict.fromkeys(m for m, _ in pairs):
        ordered.append((model, BASE))
        ordered += [(m, v) for m, v in dict.fromkeys(pairs) if m == model and v != BASE]
    facts = {(m, v): load_variant_facts(home, m, v) for m, v in ordered}
    summaries: dict[tuple[str, str, str], BenchmarkSummary] = {}
    missing: list[Missing] = []
    frames: list[pl.DataFrame] = []
    for model, variant in ordered:
        for suite in suites:
            folder = ProjectHome(home).artifacts(graph.benchmark(model, variant, suite))
            raw = _read_json(folder / graph.SUMMARY_FILE)
            if raw is None:
                missing.append(Missing(model, variant, suite, NEVER))
                continue
            s = summaries[(model, variant, suite)] = BenchmarkSummary.from_dict(raw)
            if not s.evaluated:
                reason = str(s.reason or "not evaluated (no reason given)")
                missing.append(Missing(model, variant, suite, reason))
                continue
            if not s.aggregates:
                missing.append(Missing(model, variant, suite, "evaluated, but summary.json has no aggregates"))
                continue
            rec = None if model in pace else _read_records(folder / graph.RECORDS_FILE, suite)
            if rec is not None and not rec.is_empty():
                frames.append(rec)
    records = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=RECORDS_EMPTY_SCHEMA)
    return StudyData(study, home, ordered, list(suites), facts, summaries, records, missing, pace)


def load_catalog_study(home: Path, cat: Catalog, study: str) -> StudyData:
    """load_study for a study of the catalog: its served pairs, its suites, its pace-only models."""
    s = cat.studies[study]
    pace = [m for m in s.models if cat.models[m].pace_only]
    return load_study(home, graph.study_served(cat, study), list(s.benchmarks), study, pace)


# ---------------------------------------------------------------------------------------------------- long table


def _mode_key(mode: str) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), mode)


def _ratio(x: float | None, base: float | None, what: str) -> tuple[float | None, str | None]:
    if x is None:
        return None, "not reported"
    if base is None:
        return None, f"no base {what}"
    if base == 0:
        return None, f"base {what} is 0"
    return x / base, None


def long_table(data: StudyData) -> pl.DataFrame:
    """One row per (model, variant, benchmark, mode, metric); a missing cell is one `status` row (mode and value
    null) whose note says why."""
    rows: list[dict[str, Any]] = []
    for model, variant in data.pairs:
        for suite in data.suites:
            s = data.summaries.get((model, variant, suite))
            cell = {
                "study": data.study,
                "model": model,
                "variant": variant,
                "benchmark": suite,
                **_provenance(s),
                "asset": graph.key_string(graph.benchmark(model, variant, suite)),
            }
            if data.evaluated(model, variant, suite) is None:
                rows.append(
                    {
                        **cell,
                        "mode": None,
                        "metric": "status",
                        "value": None,
                        "note": data.missing_reason(model, variant, suite) or NEVER,
                    }
                )
                continue
            base_s = data.evaluated(model, BASE, suite)
            base_aggs = {a.get("mode"): a for a in base_s.aggregates} if base_s else {}
            for agg in sorted(s.aggregates, key=lambda a: _mode_key(str(a.get("mode")))):
                mode = str(agg.get("mode"))
                n = agg.get("n_samples")
                pace = model in data.pace_only  # scores of random weights are noise: no accuracy, pass@k, recovery

                def add(metric: str, value: Any, lo: Any = None, hi: Any = None, note: str | None = None) -> None:
                    if pace and metric in SCORES:
                        value, lo, hi, note = None, None, None, PACE_ONLY
                    v = _float(value)
                    if v is None:
                        note = note or "not reported"
                    rows.append(
                        {
                            **cell,
                            "mode": mode,
                            "metric": metric,
                            "value": v,
                            "ci_low": _float(lo),
                            "ci_high": _float(hi),
                            "n": n,
                            "note": note,
                        }
                    )

                acc = _float(agg.get("accuracy"))
                add("accuracy", acc, agg.get("ci_low"), agg.get("ci_high"), agg.get("ci_method"))
                for metric in AGG_METRICS:
                    add(metric, agg.get(metric))
                pk = {} if pace else agg.get("pass_at_k") or {}
                for k in sorted(pk, key=lambda k: int(k)):
                    add(f"pass@{int(k)}", pk[k])
                b = base_aggs.get(agg.get("mode"))
                rec, note = _ratio(acc, _float(b.get("accuracy")) if b else None, "accuracy")
                add("recovery_pct", None if rec is None else rec * 100, note=note)
                for metric, src in (
                    ("reasoning_tokens_ratio", "mean_reasoning_tokens"),
                    ("completion_tokens_ratio", "mean_completion_tokens"),
                ):
                    r, note = _ratio(_float(agg.get(src)), _float(b.get(src)) if b else None, src.replace("_", " "))
                    add(metric, r, note=note)
    return pl.DataFrame(rows, schema=LONG_SCHEMA) if rows else pl.DataFrame(schema=LONG_SCHEMA)


# ---------------------------------------------------------------------------------------------------- wide views


class _Cells:
    """Index of the long table: (model, variant, benchmark, mode, metric) -> row."""

    def __init__(self, data: StudyData, long: pl.DataFrame | None = None) -> None:
        self.data = data
        self.long = long_table(data) if long is None else long
        self.rows: dict[tuple, dict] = {}
        cols: set[tuple[str, str]] = set()
        for r in self.long.iter_rows(named=True):
            if r["mode"] is None:
                continue
            self.rows[(r["model"], r["variant"], r["benchmark"], r["mode"], r["metric"])] = r
            cols.add((r["benchmark"], r["mode"]))
        order = {s: i for i, s in enumerate(data.suites)}
        self.columns = sorted(cols, key=lambda c: (order.get(c[0], len(order)), _mode_key(c[1])))

    def value(self, model: str, variant: str, col: tuple[str, str], metric: str) -> float | None:
        r = self.rows.get((model, variant, *col, metric))
        return None if r is None else r["value"]

    def row(self, model: str, variant: str, col: tuple[str, str], metric: str) -> dict | None:
        return self.rows.get((model, variant, *col, metric))

    def status(self, model: str, variant: str, col: tuple[str, str]) -> str:
        """Short text for an empty cell: why it is empty."""
        reason = self.data.missing_reason(model, variant, col[0])
        if reason is None:
            return "—"  # the suite ran, but not in this mode (or the metric was not reported)
        return "never run" if reason == NEVER else "not evaluated"


def _col(c: tuple[str, str]) -> str:
    return f"{c[0]}/{c[1]}"


def _pct(v: float | None, digits: int = 1) -> str | None:
    return None if v is None else f"{v * 100:.{digits}f}"


def _frame(rows: list[dict[str, Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


def _wide(
    data: StudyData, metric: str, formatted: bool, fmt: Callable[[dict], str | None], long: pl.DataFrame | None
) -> pl.DataFrame:
    cells = _Cells(data, long)
    schema: dict[str, pl.DataType] = {"model": pl.String(), "variant": pl.String()}
    for c in cells.columns:
        schema[_col(c)] = pl.String() if formatted else pl.Float64()
    rows = []
    for model, variant in data.pairs:
        row: dict[str, Any] = {"model": model, "variant": variant}
        for c in cells.columns:
            v = cells.value(model, variant, c, metric)
            if formatted:  # the value as text, or why there is none
                r = cells.row(model, variant, c, metric)
                if v is not None:
                    row[_col(c)] = fmt(r)
                elif r is not None and r["note"]:  # e.g. recovery when the base scored 0
                    row[_col(c)] = f"n/a ({r['note']})"
                else:
                    row[_col(c)] = cells.status(model, variant, c)
            else:
                row[_col(c)] = v
        rows.append(row)
    return _frame(rows, schema)


def accuracy_wide(data: StudyData, formatted: bool = False, long: pl.DataFrame | None = None) -> pl.DataFrame:
    """Rows model+variant, columns '<benchmark>/<mode>'. Numeric: accuracy in [0, 1] plus '<col> ci_low' and
    '<col> ci_high' columns. Formatted: '37.5 [18.5, 61.4]' (percent, 95% CI), or why the cell is empty."""
    if formatted:
        return _wide(
            data,
            "accuracy",
            True,
            lambda r: (
                f"{_pct(r['value'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"
                if r["ci_low"] is not None and r["ci_high"] is not None
                else _pct(r["value"])
            ),
            long,
        )
    cells = _Cells(data, long)
    schema: dict[str, pl.DataType] = {"model": pl.String(), "variant": pl.String()}
    for c in cells.columns:
        schema |= {_col(c): pl.Float64(), f"{_col(c)} ci_low": pl.Float64(), f"{_col(c)} ci_high": pl.Float64()}
    rows = []
    for model, variant in data.pairs:
        row: dict[str, Any] = {"model": model, "variant": variant}
        for c in cells.columns:
            r = cells.row(model, variant, c, "accuracy") or {}
            row |= {
                _col(c): r.get("value"),
                f"{_col(c)} ci_low": r.get("ci_low"),
                f"{_col(c)} ci_high": r.get("ci_high"),
            }
        rows.append(row)
    return _frame(rows, schema)


def recovery_wide(data: StudyData, formatted: bool = False, long: pl.DataFrame | None = None) -> pl.DataFrame:
    """Accuracy as a percentage of the base's on the same benchmark and mode (base = 100)."""
    return _wide(data, "recovery_pct", formatted, lambda r: f"{r['value']:.1f}%", long)


def cutoff_wide(data: StudyData, formatted: bool = False, long: pl.DataFrame | None = None) -> pl.DataFrame:
    """Share of answers cut off at max_tokens (finish_reason 'length'), in [0, 1] (formatted: percent)."""
    return _wide(data, "cutoff_rate", formatted, lambda r: f"{_pct(r['value'])}%", long)


def reasoning_wide(data: StudyData, formatted: bool = False, long: pl.DataFrame | None = None) -> pl.DataFrame:
    """Does it think longer? Mean reasoning and completion tokens and their ratio to the base's. Numeric columns
    '<col> reasoning_tokens', '<col> reasoning_ratio', '<col> completion_tokens', '<col> completion_ratio';
    formatted: 'think 1,234 (1.25×) · out 1,500 (1.10×)'."""
    cells = _Cells(data, long)
    parts = (
        ("reasoning_tokens", "mean_reasoning_tokens"),
        ("reasoning_ratio", "reasoning_tokens_ratio"),
        ("completion_tokens", "mean_completion_tokens"),
        ("completion_ratio", "completion_tokens_ratio"),
    )
    schema: dict[str, pl.DataType] = {"model": pl.String(), "variant": pl.String()}
    for c in cells.columns:
        if formatted:
            schema[_col(c)] = pl.String()
        else:
            schema |= {f"{_col(c)} {name}": pl.Float64() for name, _ in parts}
    rows = []
    for model, variant in data.pairs:
        row: dict[str, Any] = {"model": model, "variant": variant}
        for c in cells.columns:
            vals = {name: cells.value(model, variant, c, metric) for name, metric in parts}
            if not formatted:
                row |= {f"{_col(c)} {name}": v for name, v in vals.items()}
                continue
            if vals["completion_tokens"] is None and vals["reasoning_tokens"] is None:
                row[_col(c)] = cells.status(model, variant, c)
                continue

            def part(label: str, n: float | None, ratio: float | None) -> str:
                return f"{label} {'-' if n is None else f'{n:,.0f}'}" + (
                    f" ({ratio:.2f}×)" if ratio is not None else ""
                )

            row[_col(c)] = (
                part("think", vals["reasoning_tokens"], vals["reasoning_ratio"])
                + " · "
                + part("out", vals["completion_tokens"], vals["completion_ratio"])
            )
        rows.append(row)
    return _frame(rows, schema)


def mean_accuracy(data: StudyData, long: pl.DataFrame | None = None) -> dict[tuple[str, str], tuple[float | None, int]]:
    """(model, variant) -> (mean accuracy, number of benchmark/mode cells averaged). The cells are those evaluated
    for every variant of the model that was evaluated at all, so the means of one model compare like with like;
    a variant with nothing evaluated gets (None, 0)."""
    cells = _Cells(data, long)
    out: dict[tuple[str, str], tuple[float | None, int]] = {}
    for model in data.models:
        have = {
            v: {c for c in cells.columns if cells.value(model, v, c, "accuracy") is not None}
            for v in data.variants(model)
        }
        evaluated = [v for v in data.variants(model) if have[v]]
        common = set.intersection(*(have[v] for v in evaluated)) if evaluated else set()
        for v in data.variants(model):
            vals = [cells.value(model, v, c, "accuracy") for c in common] if v in evaluated else []
            vals = [x for x in vals if x is not None]
            out[(model, v)] = (math.fsum(vals) / len(vals), len(vals)) if vals else (None, 0)
    return out


MEMORY_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(),
    "variant": pl.String(),
    "weights_bytes": pl.Int64(),
    "weights_gib": pl.Float64(),
    "size_ratio_vs_base": pl.Float64(),
    "served_weights_gib": pl.Float64(),
    "families_16bit": pl.String(),
    "partly_16bit": pl.String(),
    "servable": pl.Boolean(),
    "servability": pl.String(),
    "perplexity": pl.Float64(),
    "ppl_ratio_vs_base": pl.Float64(),
    "kl_vs_base": pl.Float64(),
    "mean_accuracy": pl.Float64(),
    "mean_accuracy_cells": pl.Int64(),
    "mean_recovery_pct": pl.Float64(),
}


def memory_table(data: StudyData, long: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per (model, variant): weights and their ratio to the base, what stays 16-bit, servability,
    fidelity (perplexity, KL vs base) and mean accuracy (see mean_accuracy) with its recovery vs the base's."""
    means = mean_accuracy(data, long)
    rows = []
    for model, variant in data.pairs:
        f = data.facts[(model, variant)]
        base = data.facts.get((model, BASE))
        ratio = (
            f.weights_bytes / base.weights_bytes
            if base and base.weights_bytes and f.weights_bytes is not None
            else None
        )
        acc, n = means[(model, variant)]
        base_acc = means.get((model, BASE), (None, 0))[0]
        rows.append(
            {
                "model": model,
                "variant": variant,
                "weights_bytes": f.weights_bytes,
                "weights_gib": f.weights_gib,
                "size_ratio_vs_base": ratio,
                "served_weights_gib": f.served_weights_gib,
                "families_16bit": ", ".join(f.families_16bit),
                "partly_16bit": ", ".join(f.partly_16bit),
                "servable": f.servable,
                "servability": f.servability,
                "perplexity": f.perplexity,
                "ppl_ratio_vs_base": f.ppl_ratio_vs_base,
                "kl_vs_base": f.kl_vs_base,
                "mean_accuracy": acc,
                "mean_accuracy_cells": n,
                "mean_recovery_pct": acc / base_acc * 100 if acc is not None and base_acc else None,
            }
        )
    return _frame(rows, MEMORY_SCHEMA)


PAIRED_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(),
    "variant": pl.String(),
    "benchmark": pl.String(),
    "mode": pl.String(),
    "n_paired": pl.Int64(),
    "n_unpaired_base": pl.Int64(),
    "n_unpaired_variant": pl.Int64(),
    "base_accuracy": pl.Float64(),
    "variant_accuracy": pl.Float64(),
    "diff": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "significant": pl.Boolean(),
    "mcnemar_n": pl.Int64(),
    "mcnemar_b": pl.Int64(),
    "mcnemar_c": pl.Int64(),
    "mcnemar_p": pl.Float64(),
    "verdict": pl.String(),
}


def paired_vs_base(data: StudyData, iters: int = 2000, seed: int = 0) -> pl.DataFrame:
    """Each evaluated variant vs its base on the same (benchmark, mode), paired on sample_id (see
    stats.compare_paired). A row whose comparison cannot be made says why in `verdict`."""
    rec = data.records
    rows = []
    for model, variant in data.pairs:
        if variant == BASE:
            continue
        for suite in data.suites:
            s = data.evaluated(model, variant, suite)
            if s is None:
                continue  # listed under missing data
            if model in data.pace_only:
                rows.append({"model": model, "variant": variant, "benchmark": suite, "verdict": PACE_ONLY})
                continue
            base_s = data.evaluated(model, BASE, suite)
            base_modes = {a.get("mode") for a in base_s.aggregates} if base_s else set()
            for mode in sorted({str(a.get("mode")) for a in s.aggregates}, key=_mode_key):
                row: dict[str, Any] = {"model": model, "variant": variant, "benchmark": suite, "mode": mode}
                if base_s is None:
                    rows.append(
                        row | {"verdict": f"no base result: {data.missing_reason(model, BASE, suite) or NEVER}"}
                    )
                    continue
                if mode not in base_modes:
                    rows.append(row | {"verdict": "the base was not run in this mode"})
                    continue
                sel = (pl.col("model") == model) & (pl.col("suite") == suite) & (pl.col("mode") == mode)
                b = rec.filter(sel & (pl.col("variant") == BASE))
                o = rec.filter(sel & (pl.col("variant") == variant))
                if b.is_empty() or o.is_empty():
                    rows.append(row | {"verdict": "no per-sample records (records.parquet missing)"})
                    continue
                cmp = compare_paired(b, o, iters=iters, seed=seed)
                rows.append(
                    row
                    | {
                        "n_paired": cmp.n_paired,
                        "n_unpaired_base": cmp.n_unpaired_base,
                        "n_unpaired_variant": cmp.n_unpaired_other,
                        "base_accuracy": cmp.base_accuracy,
                        "variant_accuracy": cmp.other_accuracy,
                        "diff": cmp.diff,
                        "ci_low": cmp.ci_low,
                        "ci_high": cmp.ci_high,
                        "significant": cmp.significant,
                        "mcnemar_n": cmp.mcnemar_n,
                        "mcnemar_b": cmp.mcnemar_b,
                        "mcnemar_c": cmp.mcnemar_c,
                        "mcnemar_p": cmp.mcnemar_p,
                        "verdict": cmp.verdict,
                    }
                )
    return _frame(rows, PAIRED_SCHEMA)


def missing_table(data: StudyData) -> pl.DataFrame:
    schema = {"model": pl.String(), "variant": pl.String(), "suite": pl.String(), "reason": pl.String()}
    return _frame([m._asdict() for m in data.missing], schema)


def provenance_table(data: StudyData) -> pl.DataFrame:
    """Per benchmark asset found: what produced it (checkpoint, vLLM, dataset revision, run) and its mode notes."""
    schema = {
        "asset": pl.String(),
        "evaluated": pl.Boolean(),
        **{k: pl.String() for k in PROVENANCE},
        "modes": pl.String(),
        "mode_notes": pl.String(),
    }
    rows = []
    for model, variant in data.pairs:
        for suite in data.suites:
            s = data.summaries.get((model, variant, suite))
            if s is None:
                continue
            rows.append(
                {
                    "asset": graph.key_string(graph.benchmark(model, variant, suite)),
                    "evaluated": bool(s.evaluated),
                    **_provenance(s),
                    "modes": ", ".join(map(str, s.modes or [])),
                    "mode_notes": "; ".join(map(str, s.mode_notes or [])),
                }
            )
    return _frame(rows, schema)
