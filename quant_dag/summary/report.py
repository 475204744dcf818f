"""A study's report folder: summary.md, a self-contained report.html, the PNG charts, and every table as
.parquet and .csv. Written atomically: built in a temporary folder beside the target, then renamed over it."""

from __future__ import annotations

import base64
import html
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from quant_dag.summary import charts
from quant_dag.summary.tables import (
    GIB,
    StudyData,
    accuracy_wide,
    cutoff_wide,
    long_table,
    memory_table,
    missing_table,
    paired_vs_base,
    provenance_table,
    reasoning_wide,
    recovery_wide,
)


@dataclass
class Section:
    title: str
    intro: str  # plain text, one paragraph
    table: pl.DataFrame | None = None  # shown as is (cells already formatted as text)
    bullets: list[str] | None = None


# ---------------------------------------------------------------------------------------------------- formatting


def _s(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "?"
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB else f"{nbytes / 2**20:.1f} MiB"


def _opt(v: float | None, fmt: str, suffix: str = "") -> str:
    return "" if v is None else f"{v:{fmt}}{suffix}"


def md_table(df: pl.DataFrame) -> str:
    """GitHub-flavoured Markdown table; '|' and newlines inside cells are escaped."""
    if df.width == 0:
        return "_(empty)_\n"

    def cell(v: Any) -> str:
        return _s(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |", "|" + "---|" * df.width]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.iter_rows()]
    if df.is_empty():
        lines.append("| " + " | ".join("" for _ in df.columns) + " |")
    return "\n".join(lines) + "\n"


def html_table(df: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_s(v))}</td>" for v in row) + "</tr>" for row in df.iter_rows())
    if df.is_empty():
        body = f'<tr><td colspan="{max(1, df.width)}"><em>(none)</em></td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text_frame(rows: list[dict[str, str]], columns: list[str]) -> pl.DataFrame:
    return pl.DataFrame([{c: r.get(c, "") for c in columns} for r in rows], schema={c: pl.String() for c in columns})


# ---------------------------------------------------------------------------------------------------- tables for people


def main_table(data: StudyData, memory: pl.DataFrame | None = None) -> pl.DataFrame:
    """The headline: per variant, weights and their ratio to the base, what stays 16-bit, mean accuracy and its
    recovery vs the base (over the benchmark/modes every evaluated variant of the model has), servability."""
    mem = memory_table(data) if memory is None else memory
    cols = ["model", "variant", "weights", "vs base", "16-bit families", "mean accuracy", "recovery", "served"]
    rows = []
    for r in mem.iter_rows(named=True):
        acc = r["mean_accuracy"]
        fams = ", ".join(x for x in (r["families_16bit"], r["partly_16bit"] and f"partly {r['partly_16bit']}") if x)
        cells = r["mean_accuracy_cells"]
        rows.append(
            {
                "model": r["model"],
                "variant": r["variant"],
                "weights": _size(r["weights_bytes"]),
                "vs base": _opt(r["size_ratio_vs_base"], ".2f", "×"),
                "16-bit families": fams or "none",
                "mean accuracy": "not evaluated" if acc is None else f"{acc * 100:.1f}% ({cells} bench/mode)",
                "recovery": _opt(r["mean_recovery_pct"], ".1f", "%"),
                "served": {True: "yes", False: "no"}.get(r["servable"], "?"),
            }
        )
    return _text_frame(rows, cols)


def main_table_md(data: StudyData) -> str:
    """Accuracy / recovery / memory per variant as a short Markdown table (fits Dagster metadata)."""
    return md_table(main_table(data))


def _memory_text(mem: pl.DataFrame) -> pl.DataFrame:
    cols = [
        "model",
        "variant",
        "weights",
        "vs base",
        "served weights",
        "16-bit families",
        "partly 16-bit",
        "perplexity",
        "ppl vs base",
        "KL vs base",
        "servability",
    ]
    rows = [
        {
            "model": r["model"],
            "variant": r["variant"],
            "weights": _size(r["weights_bytes"]),
            "vs base": _opt(r["size_ratio_vs_base"], ".3f", "×"),
            "served weights": _opt(r["served_weights_gib"], ".2f", " GiB"),
            "16-bit families": r["families_16bit"] or "none",
            "partly 16-bit": r["partly_16bit"],
            "perplexity": _opt(r["perplexity"], ".2f"),
            "ppl vs base": _opt(r["ppl_ratio_vs_base"], ".3f", "×"),
            "KL vs base": _opt(r["kl_vs_base"], ".4f"),
            "servability": r["servability"],
        }
        for r in mem.iter_rows(named=True)
    ]
    return _text_frame(rows, cols)


def _paired_text(paired: pl.DataFrame) -> pl.DataFrame:
    cols = [
        "model",
        "variant",
        "benchmark/mode",
        "paired (unpaired)",
        "base",
        "variant acc.",
        "diff [95% CI]",
        "McNemar b/c, p",
        "verdict",
    ]
    rows = []
    for r in paired.iter_rows(named=True):
        row = {
            "model": r["model"],
            "variant": r["variant"],
            "benchmark/mode": f"{r['benchmark']}/{r['mode']}",
            "verdict": r["verdict"],
        }
        if r["n_paired"] is not None:
            unp = (r["n_unpaired_base"] or 0) + (r["n_unpaired_variant"] or 0)
            row |= {
                "paired (unpaired)": f"{r['n_paired']} ({unp})",
                "base": f"{r['base_accuracy'] * 100:.1f}%" if r["base_accuracy"] is not None else "",
                "variant acc.": f"{r['variant_accuracy'] * 100:.1f}%" if r["variant_accuracy"] is not None else "",
                "diff [95% CI]": (
                    f"{r['diff'] * 100:+.1f} [{r['ci_low'] * 100:+.1f}, {r['ci_high'] * 100:+.1f}] pts"
                    if r["diff"] is not None
                    else ""
                ),
                "McNemar b/c, p": (
                    f"{r['mcnemar_b']}/{r['mcnemar_c']}, p={r['mcnemar_p']:.3g}" if r["mcnemar_p"] is not None else ""
                ),
            }
        rows.append(row)
    return _text_frame(rows, cols)


def _missing_text(miss: pl.DataFrame) -> pl.DataFrame:
    """One row per (model, variant, reason), the suites joined: the same reason repeated per suite is noise."""
    return (
        miss.group_by("model", "variant", "reason", maintain_order=True)
        .agg(pl.col("suite").str.join(", ").alias("suites"))
        .select("model", "variant", "suites", "reason")
    )


def _provenance_bullets(prov: pl.DataFrame) -> list[str]:
    def distinct(col: str) -> str:
        vals = sorted({v for v in prov[col].to_list() if v}) if not prov.is_empty() else []
        return ", ".join(vals) or "none recorded"

    return [
        f"vLLM versions: {distinct('vllm_version')}",
        f"dataset revisions: {distinct('dataset_revision')}",
        f"run ids: {distinct('run_id')}",
        f"checkpoints: {distinct('checkpoint_id')}",
    ]


def build_sections(data: StudyData, tables: dict[str, pl.DataFrame]) -> list[Section]:
    acc_txt = accuracy_wide(data, formatted=True, long=tables["long"])
    miss = tables["missing"]
    return [
        Section(
            "Headline: accuracy, recovery and memory",
            "Mean accuracy over the benchmark/modes that every evaluated variant of the model has; recovery = "
            "that mean as a percentage of the base's; weights from the checkpoint layout.",
            main_table(data, tables["memory"]),
        ),
        Section(
            "Accuracy (95% CI)",
            "Percent correct per benchmark and mode, with the 95% confidence interval in brackets. "
            "'not evaluated' / 'never run': see Missing data.",
            acc_txt,
        ),
        Section(
            "Recovery vs base",
            "Accuracy as a percentage of the base model's accuracy on the same benchmark and mode "
            "(n/a where the base scored 0).",
            recovery_wide(data, formatted=True, long=tables["long"]),
        ),
        Section(
            "Paired comparison vs base",
            "Per benchmark and mode, the variant against its base on the same samples: per-sample means over "
            "repeats (errors count as wrong), paired on sample id; bootstrap 95% CI of the accuracy difference "
            "(significant when it excludes 0) and exact McNemar on the first repeat.",
            _paired_text(tables["paired_vs_base"]),
        ),
        Section(
            "Cut-off rate",
            "Share of answers that hit max_tokens (finish_reason 'length'): a quantized model that rambles "
            "or thinks longer gets cut off more.",
            cutoff_wide(data, formatted=True, long=tables["long"]),
        ),
        Section(
            "Reasoning and output length",
            "Mean reasoning ('think') and completion ('out') tokens per answer, with the ratio to the base's "
            "in parentheses: does the variant think longer?",
            reasoning_wide(data, formatted=True, long=tables["long"]),
        ),
        Section(
            "Memory and precision layout",
            "Weights size and ratio to the base; families whose linear layers all stay 16-bit, and those only "
            "partly; fidelity of the served endpoint (perplexity, KL per token vs base).",
            _memory_text(tables["memory"]),
        ),
        Section(
            "Missing data",
            "Benchmark suites with no result, and why (one row per variant and reason; missing.csv has one "
            "row per suite)."
            if not miss.is_empty()
            else "Every suite has a result.",
            _missing_text(miss) if not miss.is_empty() else None,
        ),
        Section(
            "Provenance",
            "What produced each benchmark asset.",
            tables["provenance"],
            _provenance_bullets(tables["provenance"]),
        ),
    ]


# ---------------------------------------------------------------------------------------------------- rendering

CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1300px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #4f6d9a; padding-bottom: .2em; }
h2 { margin-top: 1.8em; color: #2b4a75; }
table { border-collapse: collapse; margin: .6em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef2f7; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; border: 1px solid #ddd; margin: .5em 0; }
p.intro { color: #555; max-width: 60em; }
.scroll { overflow-x: auto; }
"""


def render_markdown(data: StudyData, sections: list[Section], pngs: dict[str, Path]) -> str:
    out = [
        f"# Study `{data.study}`\n",
        f"Models: {', '.join(data.models)}. Suites: {', '.join(data.suites)}. "
        f"Variants: {len(data.pairs)} (bases included).\n",
    ]
    for sec in sections:
        out.append(f"## {sec.title}\n\n{sec.intro}\n")
        if sec.bullets:
            out.append("\n".join(f"- {b}" for b in sec.bullets) + "\n")
        if sec.table is not None:
            out.append(md_table(sec.table))
    if pngs:
        out.append("## Charts\n")
        out += [f"![{name}]({p.name})\n" for name, p in pngs.items()]
    else:
        out.append("## Charts\n\nNothing to draw: no variant was evaluated.\n")
    return "\n".join(out)


def render_html(data: StudyData, sections: list[Section], pngs: dict[str, Path]) -> str:
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(data.study)} summary</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Study <code>{html.escape(data.study)}</code></h1>",
        f"<p>Models: {html.escape(', '.join(data.models))}. Suites: {html.escape(', '.join(data.suites))}. "
        f"Variants: {len(data.pairs)} (bases included).</p>",
    ]
    charts_after = {
        "Headline: accuracy, recovery and memory": ["accuracy_vs_memory"],
        "Accuracy (95% CI)": ["accuracy_bars", "pass_at_k"],
        "Cut-off rate": ["cutoff_bars"],
    }  # charts next to their tables
    shown: set[str] = set()
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2><p class='intro'>{html.escape(sec.intro)}</p>")
        if sec.bullets:
            parts.append("<ul>" + "".join(f"<li>{html.escape(b)}</li>" for b in sec.bullets) + "</ul>")
        if sec.table is not None:
            parts.append(f"<div class='scroll'>{html_table(sec.table)}</div>")
        for name in charts_after.get(sec.title, []):
            if name in pngs:
                shown.add(name)
                parts.append(_img(pngs[name]))
    rest = [n for n in pngs if n not in shown]
    if rest:
        parts.append("<h2>More charts</h2>" + "".join(_img(pngs[n]) for n in rest))
    parts.append("</body></html>")
    return "\n".join(parts)


def _img(path: Path) -> str:
    b64 = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<figure><img alt='{html.escape(path.stem)}' src='data:image/png;base64,{b64}'></figure>"


# ---------------------------------------------------------------------------------------------------- writing


def study_tables(data: StudyData, iters: int = 2000, seed: int = 0) -> dict[str, pl.DataFrame]:
    """Every table of the report, numeric (what goes to parquet / csv), by file stem."""
    long = long_table(data)
    return {
        "long": long,
        "accuracy": accuracy_wide(data, long=long),
        "recovery": recovery_wide(data, long=long),
        "cutoff": cutoff_wide(data, long=long),
        "reasoning": reasoning_wide(data, long=long),
        "memory": memory_table(data, long=long),
        "paired_vs_base": paired_vs_base(data, iters=iters, seed=seed),
        "missing": missing_table(data),
        "provenance": provenance_table(data),
    }


def write_report(data: StudyData, outdir: Path, iters: int = 2000, seed: int = 0) -> dict[str, Path]:
    """Write the report folder; returns every file written by its name (e.g. 'summary.md', 'long.parquet',
    'accuracy_bars.png'), with paths inside outdir."""
    outdir = Path(outdir)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", suffix=".tmp", dir=outdir.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the report is meant to be read
        tables = study_tables(data, iters=iters, seed=seed)
        written: list[Path] = []
        for stem, df in tables.items():
            df.write_parquet(tmp / f"{stem}.parquet")
            df.write_csv(tmp / f"{stem}.csv")
            written += [tmp / f"{stem}.parquet", tmp / f"{stem}.csv"]
        pngs = charts.all_charts(data, tmp)
        written += list(pngs.values())
        sections = build_sections(data, tables)
        (tmp / "summary.md").write_text(render_markdown(data, sections, pngs))
        (tmp / "report.html").write_text(render_html(data, sections, pngs))
        written += [tmp / "summary.md", tmp / "report.html"]
        # Swap in: two renames (no atomic directory exchange in the stdlib), the old copy removed afterwards.
        old = None
        if outdir.exists():
            old = outdir.parent / f".{outdir.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(outdir, old)
        os.rename(tmp, outdir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {p.name: outdir / p.name for p in written}
