"""PNG charts of a study (matplotlib, Agg backend). matplotlib is imported inside the functions, so importing
this module stays light. Each chart function returns the PNG's path, or None when there is nothing to draw;
none raises on missing data: what was not evaluated is written on the chart or in its footnote."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import polars as pl

from quant_dag.catalog.graph import BASE
from quant_dag.summary.tables import NEVER, StudyData, _Cells, long_table, mean_accuracy

DPI = 130
MODE_COLORS = {"thinking": "#d1495b", "non-thinking": "#00798c", "default": "#4f6d9a"}
MODEL_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Names of the (name, memory, accuracy) points no other point dominates (<= memory and >= accuracy, one of
    them strictly), in increasing memory: for each memory budget, the best accuracy reachable."""
    front = []
    for name, mem, acc in points:
        dominated = any(m2 <= mem and a2 >= acc and (m2 < mem or a2 > acc) for n2, m2, a2 in points if n2 != name)
        if not dominated:
            front.append((mem, -acc, name))
    return [name for _, _, name in sorted(front)]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; safe to call repeatedly
    import matplotlib.pyplot as plt

    return plt


def _wrap(name: str, width: int = 14) -> str:
    """Wrap a long variant name at its dashes so tick labels do not run into each other."""
    parts = name.replace("-", "-\u0000").split("\u0000")
    lines, cur = [], ""
    for p in parts:
        if cur and len(cur) + len(p) > width:
            lines.append(cur)
            cur = p
        else:
            cur += p
    lines.append(cur)
    return "\n".join(textwrap.fill(line, width + 4) for line in lines)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    _plt().close(fig)
    return path


def _status_short(data: StudyData, model: str, variant: str, suite: str) -> str:
    reason = data.missing_reason(model, variant, suite)
    if reason is None:
        return "n/a"
    return "never run" if reason == NEVER else "not evaluated"


def _bar_grid(data: StudyData, metric: str, path: Path, title: str, ylabel: str, with_ci: bool) -> Path | None:
    """One panel per (model, benchmark), each model starting a new row, at most as many columns as keep the
    figure about 14 inches wide (readable when a page scales it down). In a panel: one group per variant, one
    bar per mode; what was not evaluated is labelled in place."""
    cells = _Cells(data, long_table(data))
    models = [
        m
        for m in data.models
        if any(cells.value(m, v, c, metric) is not None for v in data.variants(m) for c in cells.columns)
    ]
    if not models:
        return None
    skipped = [m for m in data.models if m not in models]
    suites = list(data.suites)

    def modes_of(model: str, suite: str) -> list[str]:
        return [
            c[1]
            for c in cells.columns
            if c[0] == suite and any(cells.value(model, v, c, metric) is not None for v in data.variants(model))
        ]

    # a (model, benchmark) with no result for any variant gets a footnote, not a panel of empty bars
    panels = {m: [s for s in suites if modes_of(m, s)] for m in models}
    empty = [
        f"{m}: {', '.join(s for s in suites if s not in panels[m])}" for m in models if len(panels[m]) < len(suites)
    ]
    n_bars = max(len(data.variants(m)) * max(1, len(modes_of(m, s))) for m in models for s in panels[m])
    panel_w = min(12.0, max(4.2, 0.42 * n_bars + 1.3))
    ncols = max(1, min(max(len(p) for p in panels.values()), int(14.0 // panel_w)))
    rows_of = {m: -(-len(panels[m]) // ncols) for m in models}
    first_row = {m: sum(rows_of[x] for x in models[:i]) for i, m in enumerate(models)}
    nrows = sum(rows_of.values())
    fig_h = 3.9 * nrows + 0.8
    plt = _plt()
    from matplotlib.ticker import PercentFormatter

    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_w * ncols, fig_h), squeeze=False, sharey=True)
    used: set[tuple[int, int]] = set()
    all_modes: list[str] = []
    top = 1.0
    for i, model in enumerate(models):
        variants = data.variants(model)
        slot = (panel_w - 0.8) / len(variants)  # inches per variant group
        longest = max(len(line) for v in variants for line in _wrap(v).split("\n"))
        rotate = longest * 0.07 > slot
        for j, suite in enumerate(panels[model]):
            pos = (first_row[model] + j // ncols, j % ncols)
            used.add(pos)
            ax = axes[pos[0]][pos[1]]
            modes = modes_of(model, suite)
            all_modes += [m for m in modes if m not in all_modes]
            bar_w = 0.8 / max(1, len(modes))
            for x, variant in enumerate(variants):
                if data.missing_reason(model, variant, suite) is not None:
                    ax.text(
                        x,
                        0.02,
                        _status_short(data, model, variant, suite),
                        rotation=90,
                        ha="center",
                        va="bottom",
                        fontsize=8,
                        color="#888888",
                        style="italic",
                    )
                    continue
                for k, mode in enumerate(modes):
                    xpos = x + (k - (len(modes) - 1) / 2) * bar_w
                    r = cells.row(model, variant, (suite, mode), metric)
                    if r is None or r["value"] is None:  # ran, but not in this mode
                        ax.text(xpos, 0.02, "n/a", ha="center", va="bottom", fontsize=7, color="#888888")
                        continue
                    v = r["value"]
                    err = None
                    if with_ci and r["ci_low"] is not None and r["ci_high"] is not None:
                        err = [[max(0.0, v - r["ci_low"])], [max(0.0, r["ci_high"] - v)]]
                        top = max(top, r["ci_high"])
                    ax.bar(
                        xpos,
                        v,
                        bar_w * 0.92,
                        yerr=err,
                        capsize=3,
                        color=MODE_COLORS.get(mode, "#bcbd22"),
                        edgecolor="black",
                        linewidth=0.6,
                        hatch="//" if variant == BASE else None,
                        error_kw={"elinewidth": 1, "ecolor": "#333333"},
                    )
                    ax.text(
                        xpos,
                        v + 0.015,
                        f"{v * 100:.0f}%",
                        ha="center",
                        va="bottom",
                        fontsize=8,
                        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.5},
                    )
            ax.set_xticks(range(len(variants)), variants if rotate else [_wrap(v) for v in variants], fontsize=8)
            if rotate:  # one slanted line per name reads better than a wrapped and slanted one
                plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
            ax.set_xlim(-0.6, len(variants) - 0.4)
            ax.set_title(f"{suite} — {model}" if len(data.models) > 1 else suite, fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
            ax.tick_params(axis="y", labelleft=True)
            if pos[1] == 0:
                ax.set_ylabel(ylabel)
    for r_ in range(nrows):
        for c_ in range(ncols):
            ax = axes[r_][c_]
            if (r_, c_) not in used:
                ax.set_visible(False)
                continue
            ax.set_ylim(0, min(1.12, top + 0.12))
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    handles = [
        plt.Rectangle((0, 0), 1, 1, facecolor=MODE_COLORS.get(m, "#bcbd22"), edgecolor="black") for m in all_modes
    ]
    labels = [f"mode: {m}" for m in all_modes]
    handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black", hatch="//"))
    labels.append("base (unquantized)")
    fig.suptitle(title, x=0.01, y=1 - 0.08 / fig_h, ha="left", va="top", fontsize=12)
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.36 / fig_h),
        fontsize=8,
        ncol=len(labels),
        frameon=False,
    )
    notes = []
    if with_ci:
        notes.append("Error bars: 95% CI (Wilson, or normal over per-sample means when repeated).")
    if skipped:
        notes.append("Nothing evaluated for " + ", ".join(skipped) + " (see the missing-data table).")
    if empty:
        notes.append("No result for any variant of " + "; ".join(empty) + ".")
    if notes:
        fig.text(0.01, 0.0, "\n".join(notes), fontsize=8, color="#555555", va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig_h))
    return _save(fig, path)


def accuracy_bars(data: StudyData, outdir: Path) -> Path | None:
    """accuracy_bars.png: accuracy per variant, one panel per benchmark, bars coloured by mode, 95% CI."""
    return _bar_grid(
        data,
        "accuracy",
        Path(outdir) / "accuracy_bars.png",
        f"{data.study}: accuracy per variant",
        "accuracy",
        with_ci=True,
    )


def cutoff_bars(data: StudyData, outdir: Path) -> Path | None:
    """cutoff_bars.png: share of answers cut off at max_tokens, per variant, benchmark and mode."""
    return _bar_grid(
        data,
        "cutoff_rate",
        Path(outdir) / "cutoff_bars.png",
        f"{data.study}: answers cut off at max_tokens",
        "cut-off rate",
        with_ci=False,
    )


def _place_labels(ax: Any, items: list[tuple[str, float, float, str, bool]], fontsize: float = 8) -> None:
    """Label scatter points (text, x, y, color, bold) without overlaps: each label tries right, left, above and
    below its point and takes the first spot that stays inside the axes and clear of every point and label
    placed so far; when none is free it goes right (or left) and is pushed down, joined to its point by a thin
    line. Call once the layout is final: positions are computed in display space."""
    fig = ax.figure
    fig.canvas.draw()
    to_pt = 72.0 / fig.dpi
    bb = ax.get_window_extent()
    ax_x0, ax_x1, ax_y0, ax_y1 = bb.x0 * to_pt, bb.x1 * to_pt, bb.y0 * to_pt, bb.y1 * to_pt
    xy = {i: tuple(v * to_pt for v in ax.transData.transform((it[1], it[2]))) for i, it in enumerate(items)}
    taken: list[tuple[float, float, float, float]] = [(px - 5, px + 5, py - 5, py + 5) for px, py in xy.values()]

    def free(box: tuple[float, float, float, float]) -> bool:
        x0, x1, y0, y1 = box
        inside = ax_x0 <= x0 and x1 <= ax_x1 and ax_y0 <= y0 and y1 <= ax_y1
        return inside and not any(x0 < b1 and b0 < x1 and y0 < d1 and d0 < y1 for b0, b1, d0, d1 in taken)

    # Pareto-front labels first (they matter most), then top to bottom.
    order = sorted(range(len(items)), key=lambda i: (not items[i][4], -xy[i][1]))
    for i in order:
        text, x, y, color, bold = items[i]
        px, py = xy[i]
        w = (max(len(line) for line in text.split("\n")) * fontsize * 0.6 + 4) * (1.08 if bold else 1.0)
        h = fontsize * 1.4 * (text.count("\n") + 1)
        g = 7  # gap between point and label, points
        candidates = [  # (box, xytext offset, ha, va)
            ((px + g, px + g + w, py - h / 2, py + h / 2), (g, 0), "left", "center"),
            ((px - g - w, px - g, py - h / 2, py + h / 2), (-g, 0), "right", "center"),
            ((px - w / 2, px + w / 2, py + g, py + g + h), (0, g), "center", "bottom"),
            ((px - w / 2, px + w / 2, py - g - h, py - g), (0, -g), "center", "top"),
        ]
        if bold:  # a front point has its step line running right from it: try above / below first
            candidates = [candidates[2], candidates[3], candidates[1], candidates[0]]
        choice = next((c for c in candidates if free(c[0])), None)
        arrow = None
        if choice is None:  # crowded: beside the point, pushed down until clear, with a leader line
            left = px + g + w > ax_x1
            x0, x1 = (px - g - w, px - g) if left else (px + g, px + g + w)
            top = py + h / 2
            while any(x0 < b1 and b0 < x1 and top - h < d1 and d0 < top for b0, b1, d0, d1 in taken):
                top -= 3
            box = (x0, x1, top - h, top)
            choice = (box, (-g if left else g, top - h / 2 - py), "right" if left else "left", "center")
            arrow = {"arrowstyle": "-", "color": color, "lw": 0.6, "alpha": 0.7}
        box, offset, ha, va = choice
        taken.append(box)
        ax.annotate(
            text,
            (x, y),
            textcoords="offset points",
            xytext=offset,
            fontsize=fontsize,
            color=color,
            ha=ha,
            va=va,
            fontweight="bold" if bold else "normal",
            zorder=5,
            arrowprops=arrow,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.0},
        )


def accuracy_vs_memory(data: StudyData, outdir: Path) -> Path | None:
    """accuracy_vs_memory.png: weights GiB vs mean accuracy (over the benchmark/modes every evaluated variant of
    the model has), labelled points, each model's Pareto front as a step line. Variants with weights but no
    accuracy are marked on the x axis."""
    means = mean_accuracy(data)
    pts: dict[str, list[tuple[str, float, float]]] = {}
    unevaluated: dict[str, list[tuple[str, float]]] = {}
    for model, variant in data.pairs:
        gib = data.facts[(model, variant)].weights_gib
        acc, _ = means[(model, variant)]
        if gib is None:
            continue
        if acc is None:
            unevaluated.setdefault(model, []).append((variant, gib))
        else:
            pts.setdefault(model, []).append((variant, gib, acc))
    if not pts:
        return None
    plt = _plt()
    from matplotlib.ticker import PercentFormatter

    fig, ax = plt.subplots(figsize=(9, 6))
    # x in the largest binary unit that keeps the biggest variant >= 1 (MiB for small models, GiB for large)
    biggest = max([p[1] for ps in pts.values() for p in ps] + [u[1] for us in unevaluated.values() for u in us])
    unit, scale = next(
        ((u, f) for u, f in (("GiB", 1.0), ("MiB", 1024.0), ("KiB", 1024.0**2)) if biggest * f >= 1),
        ("bytes", 1024.0**3),
    )
    pts = {m: [(v, x * scale, a) for v, x, a in ps] for m, ps in pts.items()}
    unevaluated = {m: [(v, x * scale) for v, x in us] for m, us in unevaluated.items()}
    all_x = [p[1] for ps in pts.values() for p in ps] + [u[1] for us in unevaluated.values() for u in us]
    log_x = max(all_x) / max(min(all_x), 1e-12) > 8  # models of very different sizes: log scale
    if log_x:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.set_xlim(min(all_x) / 1.5, max(all_x) * 1.5)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # 1-2-5 ticks, plain numbers
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        span = max(all_x) - min(all_x) or max(all_x) * 0.5
        ax.set_xlim(max(0.0, min(all_x) - 0.15 * span), max(all_x) + 0.15 * span)
    x_right = ax.get_xlim()[1]
    y_top = max(p[2] for ps in pts.values() for p in ps)
    ax.set_ylim(0, min(1.05, max(0.1, y_top * 1.25)))
    labels: list[tuple[str, float, float, str, bool]] = []
    uneval_text: list[tuple[str, float, str]] = []
    for idx, model in enumerate(dict.fromkeys(m for m, _ in data.pairs)):
        if model not in pts and model not in unevaluated:
            continue
        color = MODEL_COLORS[idx % len(MODEL_COLORS)]
        ps = pts.get(model, [])
        if ps:
            n_cells = max(means[(model, v)][1] for v, _, _ in ps)
            ax.scatter(
                [p[1] for p in ps],
                [p[2] for p in ps],
                s=60,
                color=color,
                edgecolor="black",
                zorder=3,
                label=f"{model} (mean over {n_cells} benchmark/mode)",
            )
            front = pareto_front(ps)
            fp = sorted((p for p in ps if p[0] in front), key=lambda p: p[1])
            ax.step(
                [p[1] for p in fp] + [x_right],
                [p[2] for p in fp] + [fp[-1][2]],
                where="post",
                color=color,
                linestyle="--",
                alpha=0.7,
                zorder=2,
                label=f"{model}: Pareto front",
            )
            labels += [(f"{name}  {y * 100:.1f}%", x, y, color, name in front) for name, x, y in ps]
        if unevaluated.get(model):
            ux = [u[1] for u in unevaluated[model]]
            ax.scatter(
                ux,
                [0] * len(ux),
                marker="x",
                s=60,
                color=color,
                zorder=4,
                clip_on=False,
                label=f"{model}: not evaluated",
            )
            uneval_text += [(name, x, color) for name, x in unevaluated[model]]
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(f"weights ({unit}, from the checkpoint layout)" + (", log scale" if log_x else ""))
    ax.set_ylabel("mean accuracy")
    ax.set_title(f"{data.study}: accuracy vs weight memory (up and left is better)", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=2, frameon=False)  # never on a point
    fig.text(
        0.01,
        0.005,
        "Bold: on the Pareto front (no other variant of the model is as small and at least as "
        "accurate). x: weights known, no benchmark result.",
        fontsize=8,
        color="#555555",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    for name, x, color in uneval_text:  # vertical, so neighbours on the x axis do not collide
        ax.annotate(
            name,
            (x, 0),
            textcoords="offset points",
            xytext=(0, 8),
            fontsize=7,
            color=color,
            rotation=90,
            ha="center",
            va="bottom",
            alpha=0.85,
        )
    _place_labels(ax, labels)
    return _save(fig, Path(outdir) / "accuracy_vs_memory.png")


def pass_at_k(data: StudyData, outdir: Path) -> Path | None:
    """pass_at_k.png: pass@k against k per variant, one panel per (model, benchmark, mode) sampled more than once."""
    long = long_table(data)
    pk = long.filter(pl.col("metric").str.starts_with("pass@") & pl.col("value").is_not_null()).with_columns(
        pl.col("metric").str.slice(5).cast(pl.Int64).alias("k")
    )
    if pk.is_empty():
        return None
    panels = pk.group_by("model", "benchmark", "mode").agg(pl.col("k").max().alias("kmax")).filter(pl.col("kmax") > 1)
    if panels.is_empty():
        return None
    order = {(m, v): i for i, (m, v) in enumerate(data.pairs)}
    s_order = {s: i for i, s in enumerate(data.suites)}
    keys = sorted(
        panels.select("model", "benchmark", "mode").iter_rows(),
        key=lambda r: (data.models.index(r[0]), s_order.get(r[1], 99), r[2]),
    )
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    plt = _plt()
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.0 * nrows), squeeze=False)
    markers = "osD^vP*X"
    styles = ["-", "--", "-.", ":"]
    for idx, (model, bench, mode) in enumerate(keys):
        ax = axes[idx // ncols][idx % ncols]
        sub = pk.filter((pl.col("model") == model) & (pl.col("benchmark") == bench) & (pl.col("mode") == mode))
        variants = sorted(set(sub["variant"].to_list()), key=lambda v: order.get((model, v), 99))
        kmax = int(sub["k"].max())  # type: ignore[arg-type]
        for n, variant in enumerate(variants):
            s = sub.filter(pl.col("variant") == variant).sort("k")
            ax.plot(
                s["k"].to_list(),
                s["value"].to_list(),
                marker=markers[n % len(markers)],
                linestyle=styles[n % len(styles)],
                linewidth=1.6,
                markersize=6,
                alpha=0.85,
                label=variant,
            )
        ax.set_xticks(range(1, kmax + 1))
        ax.set_xlim(0.7, kmax + 0.3)
        ax.set_ylim(-0.03, 1.03)
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda y, _: f"{y * 100:.0f}%"))
        ax.set_xlabel("k (samples per problem)")
        ax.set_ylabel("pass@k")
        ax.set_title(f"{bench} ({mode}) — {model}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        if sub["value"].max() == 0:  # every curve at 0 overlaps: say so instead of leaving a blank-looking plot
            ax.text(0.5, 0.5, "all variants at 0%", transform=ax.transAxes, ha="center", color="#888888")
    for idx in range(len(keys), nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)
    fig.suptitle(f"{data.study}: pass@k (unbiased estimator, over problems)", x=0.01, ha="left", fontsize=12)
    fig.tight_layout()
    return _save(fig, Path(outdir) / "pass_at_k.png")


def all_charts(data: StudyData, outdir: Path) -> dict[str, Path]:
    """Every chart that has something to draw, by file stem."""
    out: dict[str, Path] = {}
    for fn in (accuracy_bars, cutoff_bars, accuracy_vs_memory, pass_at_k):
        p = fn(data, Path(outdir))
        if p is not None:
            out[p.stem] = p
    return out
