"""Paper-figure builders, each `(data..., **opts) -> (go.Figure, plotted data)`.

Every trace is added through `Plot`, which keeps the rows the trace draws: the returned DataFrame is those rows
plus `trace` (the index into `fig.data`) and `series` (the trace's name), so its CSV reproduces the figure's
values exactly. A trace's `meta` names the columns it draws: {"x", "y"} for lines and markers, {"x", "y", "z"}
for heatmaps (whose z is the rows pivoted to y × x, both axes in natural order: numbers ascending, "block.2"
before "block.10").
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy.stats import spearmanr

from analysis.compare import pareto_front
from analysis.curriculum import bin_table, spread
from analysis.figures.theme import (FONT_SIZE, SIGNED_HEATMAP, TEMPLATE, TITLE_MARGIN, colors, figure_size,
                                    layout_for, ordered_colors)
from analysis.figures.time_axis import TimeAxis
from analysis.frames import require_columns
from analysis.grids import ci_columns
from aselect_core.diffusion import as_time

Built = tuple[go.Figure, pd.DataFrame]
PIXELS = "pixels"  # the probe grid's raw-pixel baseline rows
CHOICE_SYMBOLS = {"oracle": "star", "hfr": "diamond", "mi": "square", "coarse-to-fine": "triangle-up"}
DATASET_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star", "pentagon")
COMPARISON_CI = {"oracle_accuracy": ("oracle_ci_low", "oracle_ci_high")}  # compare_runs' accuracy -> its 95% CI
LOSS_COLUMN = re.compile(r"^loss_t(\d+)_(\d+)$")


def natural_key(value: Any) -> tuple:
    """Sort key: numbers by value, then strings with digit runs compared as numbers ("block.2" < "block.10")."""
    if isinstance(value, (int, float, np.integer, np.floating)):
        return (0, float(value))
    return (1, tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", str(value)) if p))


def ordered(values: Iterable) -> list:
    """The distinct values in natural order."""
    return sorted(pd.unique(pd.Series(list(values))), key=natural_key)


def pivot_grid(rows: pd.DataFrame, x: str, y: str, z: str) -> tuple[list, list, np.ndarray]:
    """(xs, ys, Z) with Z[i, j] = z at (ys[i], xs[j]), NaN where no row; refuses duplicate cells."""
    if rows.duplicated([x, y]).any():
        raise ValueError(f"data: expected one row per ({x}, {y}) cell, got duplicates")
    xs, ys = ordered(rows[x]), ordered(rows[y])
    grid = rows.pivot(index=y, columns=x, values=z).reindex(index=ys, columns=xs)
    return xs, ys, grid.to_numpy(dtype=np.float64)


class Plot:
    """A figure and the rows behind each of its traces (see the module doc)."""

    def __init__(self, fig: go.Figure) -> None:
        self.fig, self.parts = fig, []

    def _add(self, trace: go.BaseTraceType, rows: pd.DataFrame, row: int | None, col: int | None) -> None:
        self.parts.append(rows.assign(trace=len(self.fig.data), series=trace.name or ""))
        self.fig.add_trace(trace, row=row, col=col)

    def line(self, rows: pd.DataFrame, x: str, y: str, name: str, row: int | None = None,
             col: int | None = None, **style: Any) -> None:
        """A scatter trace (lines and/or markers) drawing rows[x] against rows[y] in row order."""
        trace = go.Scatter(x=rows[x].to_numpy(), y=rows[y].to_numpy(), name=name, meta={"x": x, "y": y}, **style)
        self._add(trace, rows, row, col)

    def heatmap(self, rows: pd.DataFrame, x: str, y: str, z: str, name: str, row: int | None = None,
                col: int | None = None, **style: Any) -> None:
        """A heatmap of rows[z] pivoted to y × x (`pivot_grid`)."""
        xs, ys, grid = pivot_grid(rows, x, y, z)
        trace = go.Heatmap(x=xs, y=ys, z=grid, name=name, meta={"x": x, "y": y, "z": z}, **style)
        self._add(trace, rows, row, col)

    def result(self) -> Built:
        data = pd.concat(self.parts, ignore_index=True) if self.parts else pd.DataFrame(columns=["trace", "series"])
        return self.fig, data[["trace", "series", *[c for c in data.columns if c not in ("trace", "series")]]]


def new_figure(size: str, height: int | None = None, **subplots: Any) -> go.Figure:
    """An empty figure in the paper template, with subplots when `subplots` (make_subplots arguments) are given."""
    fig = make_subplots(**subplots) if subplots else go.Figure()
    fig.update_layout(template=TEMPLATE, **layout_for(size, height))
    fig.update_annotations(font_size=FONT_SIZE)  # subplot titles
    return fig


def _finite(df: pd.DataFrame, columns: list[str], name: str) -> pd.DataFrame:
    out = df.replace([np.inf, -np.inf], np.nan).dropna(subset=columns)
    if out.empty:
        raise ValueError(f"{name}: no rows with finite {', '.join(columns)}")
    return out


def dit_cells(probe: pd.DataFrame, metric: str = "accuracy", pooling: str | None = None) -> pd.DataFrame:
    """The probe grid's DiT rows (no pixel baseline), one per (timestep, layer), sorted by layer then timestep."""
    require_columns(probe, ["timestep", "layer", metric], "probe")
    cells = probe[probe.layer != PIXELS]
    if pooling is not None and "pooling" in cells:
        cells = cells[cells.pooling == pooling]
    cells = _finite(cells, [metric], "probe")
    if cells.duplicated(["timestep", "layer"]).any():
        raise ValueError("probe: several rows per (timestep, layer); choose one with pooling=")
    order = {layer: i for i, layer in enumerate(ordered(cells.layer))}
    return cells.sort_values(["layer", "timestep"], key=lambda s: s.map(order) if s.name == "layer" else s,
                             ignore_index=True)


def ci_of(measure: str) -> tuple[str, str]:
    """The 95% interval columns of `measure`: those a registered grid declares (`analysis.grids.ci_columns`), else
    `{measure}_ci_low` / `{measure}_ci_high` (segmentation's, the emergence tables')."""
    return ci_columns(measure) or (f"{measure}_ci_low", f"{measure}_ci_high")


def _has_ci(df: pd.DataFrame, ci: tuple[str, str] | None) -> bool:
    """Whether `df` holds both interval columns `ci`, finite in every row."""
    return bool(ci) and set(ci) <= set(df) and bool(df[list(ci)].notna().all(axis=None))


def _whisker(rows: pd.DataFrame, value: str, low: str, high: str) -> dict[str, Any]:
    """A plotly error_x / error_y spec drawing each row's [low, high] interval around rows[value]."""
    return dict(type="data", array=(rows[high] - rows[value]).to_numpy(),
                arrayminus=(rows[value] - rows[low]).to_numpy(), thickness=0.75, width=2)


def _per_layer(plot: Plot, cells: pd.DataFrame, x: str, y: str, band: tuple[str, str] | None = None,
               whiskers: bool = False, **style: Any) -> None:
    """One line per layer; with `band` = (low, high) columns, each layer's 95% CI as a band of its colour; with
    `whiskers`, each point's 95% CI on x and y (`ci_of`, where the cells hold it) as whiskers instead."""
    layers = ordered(cells.layer)
    band = band if _has_ci(cells, band) else None
    errors = {axis: ci_of(col) for axis, col in (("x", x), ("y", y)) if whiskers and _has_ci(cells, ci_of(col))}
    keep = list(dict.fromkeys(["timestep", "layer", x, y, *(band or ()), *(c for ci in errors.values() for c in ci)]))
    for layer, color in zip(layers, ordered_colors(len(layers))):
        rows = cells[cells.layer == layer]
        if band:
            _band(plot, rows[keep], x, *band, f"{layer} CI", color)
        bars = {f"error_{axis}": _whisker(rows, col, *errors[axis]) for axis, col in (("x", x), ("y", y))
                if axis in errors}
        plot.line(rows[keep], x, y, str(layer), line_color=color, marker_color=color, **bars, **style)


# -- probes ----------------------------------------------------------------------------------------------------
def probe_heatmap(probe: pd.DataFrame, metric: str = "accuracy", pooling: str | None = None, size: str = "one",
                  height: int | None = None, time_axis: TimeAxis = TimeAxis()) -> Built:
    """Held-out probe accuracy (or another measure of a grid) over timestep (x) × layer (y): where in the DiT the
    label is readable. Where the grid holds the measure's 95% CI (`ci_of`), the highest cell is starred and the
    title gives its CI and how many cells lie inside it (cells the test set cannot tell from it)."""
    cells = dit_cells(probe, metric, pooling)
    plot = Plot(new_figure(size, height))
    plot.heatmap(cells[["timestep", "layer", metric]], "timestep", "layer", metric, metric,
                 colorbar_title_text=metric.replace("_", " "))
    plot.fig.update_layout(**time_axis.layout(cells.timestep), yaxis_title="layer")
    low, high = ci_of(metric)
    if _has_ci(cells, (low, high)):
        top = cells.loc[[cells[metric].idxmax()]]
        plot.line(top[["timestep", "layer", metric, low, high]], "timestep", "layer", "highest cell", mode="markers",
                  marker=dict(symbol="star", size=10, color="white", line=dict(width=0.75, color="black")),
                  showlegend=False)
        best = top.iloc[0]
        inside = int((cells[metric] >= best[low]).sum()) - 1
        plot.fig.update_layout(title_text=f"highest {metric.replace('_', ' ')} {best[metric]:.3f} [{best[low]:.3f}, "
                                          f"{best[high]:.3f}] at t = {best.timestep}, {best.layer}; {inside} other "
                                          f"cell{'s' * (inside != 1)} within its 95% CI", margin_t=TITLE_MARGIN)
    return plot.result()


def segmentation_heatmap(segmentation: pd.DataFrame, metric: str = "miou", size: str = "one",
                         height: int | None = None, time_axis: TimeAxis = TimeAxis()) -> Built:
    """Per-patch segmentation probe mIoU (or pixel_accuracy) over timestep (x) × layer (y), the best cell starred;
    the title gives it with its 95% CI beside the best raw-pixel row (`analysis.segmentation`'s grid)."""
    require_columns(segmentation, [f"{metric}_ci_low", f"{metric}_ci_high"], "segmentation")
    name = {"miou": "mIoU", "pixel_accuracy": "pixel accuracy"}.get(metric, metric.replace("_", " "))
    cells = dit_cells(segmentation, metric)
    plot = Plot(new_figure(size, height))
    plot.heatmap(cells[["timestep", "layer", metric]], "timestep", "layer", metric, name, colorbar_title_text=name)
    best = cells.loc[[cells[metric].idxmax()]]
    plot.line(best[["timestep", "layer", metric, f"{metric}_ci_low", f"{metric}_ci_high"]], "timestep", "layer",
              "best cell", mode="markers", marker=dict(symbol="star", size=10, color="white",
                                                       line=dict(width=0.75, color="black")), showlegend=False)
    pixels = segmentation[segmentation.layer == PIXELS][metric]
    top = best.iloc[0]
    title = (f"best {name} {top[metric]:.3f} [{top[f'{metric}_ci_low']:.3f}, {top[f'{metric}_ci_high']:.3f}] "
             f"at t = {top.timestep}, {top.layer}" + (f"; pixels {pixels.max():.3f}" if len(pixels) else ""))
    plot.fig.update_layout(title_text=title, margin_t=TITLE_MARGIN, **time_axis.layout(cells.timestep),
                           yaxis_title="layer")
    return plot.result()


def probe_curves(probe: pd.DataFrame, selection: pd.DataFrame | None = None, metric: str = "accuracy",
                 pooling: str | None = None, methods: tuple[str, ...] = ("oracle", "hfr"), size: str = "one",
                 height: int | None = None, time_axis: TimeAxis = TimeAxis()) -> Built:
    """Probe accuracy vs timestep, one line per layer with its 95% CI band (where the grid has one); raw pixels
    dashed; the methods' choices marked."""
    cells = dit_cells(probe, metric, pooling)
    plot = Plot(new_figure(size, height))
    _per_layer(plot, cells, "timestep", metric, ci_of(metric), mode="lines+markers", marker_size=3, line_width=1)
    pixels = probe[probe.layer == PIXELS].dropna(subset=[metric]).sort_values("timestep")
    if len(pixels):
        plot.line(pixels[["timestep", "layer", metric]], "timestep", metric, "raw pixels", mode="lines",
                  line=dict(color="black", dash="dash", width=1))
    for method in methods if selection is not None else ():
        chosen = selection[selection.method == method]
        if chosen.empty:
            continue
        t, layer = as_time(chosen.timestep.iloc[0]), chosen.layer.iloc[0]
        cell = cells[(cells.timestep == t) & (cells.layer == layer)]
        if len(cell):
            plot.line(cell[["timestep", "layer", metric]].assign(method=method), "timestep", metric,
                      f"{method} choice", mode="markers",
                      marker=dict(symbol=CHOICE_SYMBOLS.get(method, "circle-open"), size=10, color="black",
                                  line=dict(width=0.75, color="white")))
    plot.fig.update_layout(**time_axis.layout(cells.timestep), yaxis_title=f"probe {metric.replace('_', ' ')}")
    return plot.result()


def hfr_scatter(probe: pd.DataFrame, hfr: pd.DataFrame, metric: str = "accuracy", pooling: str | None = None,
                size: str = "one", height: int | None = None) -> Built:
    """Each (timestep, layer) cell's mean high-frequency ratio vs its probe accuracy, each with its 95% CI as
    whiskers where the grids hold them; Spearman ρ in the title."""
    require_columns(hfr, ["timestep", "layer", "hfr_mean"], "hfr")
    cells = dit_cells(probe, metric, pooling)
    cells = cells[["timestep", "layer", metric, *(c for c in ci_of(metric) if c in cells)]]
    cells = _finite(cells.merge(hfr[["timestep", "layer", "hfr_mean", *(c for c in ci_of("hfr_mean") if c in hfr)]],
                                on=["timestep", "layer"]), ["hfr_mean"], "hfr (cells shared with probe)")
    ranked = len(cells) >= 3 and cells.hfr_mean.nunique() > 1 and cells[metric].nunique() > 1  # else ρ undefined
    rho = spearmanr(cells.hfr_mean, cells[metric]).statistic if ranked else math.nan
    plot = Plot(new_figure(size, height))
    _per_layer(plot, cells, "hfr_mean", metric, whiskers=True, mode="markers", marker_size=5)
    rho_text = f"{rho:.2f}" if math.isfinite(rho) else "n/a"
    plot.fig.update_layout(title_text=f"Spearman ρ = {rho_text} (n = {len(cells)})", margin_t=TITLE_MARGIN,
                           xaxis_title="high-frequency ratio (mean)", yaxis_title=f"probe {metric}")
    return plot.result()


# -- mutual information ----------------------------------------------------------------------------------------
def mi_curves(mi: pd.DataFrame, size: str = "one", height: int | None = None,
              time_axis: TimeAxis = TimeAxis()) -> Built:
    """Label mutual information I(y; pooled features) vs timestep, one line per layer with its 95% half-sampling
    interval as a band (where the grid has one)."""
    require_columns(mi, ["timestep", "layer", "mi_nats"], "mi")
    cells = _finite(mi, ["mi_nats"], "mi").sort_values(["layer", "timestep"], ignore_index=True)
    plot = Plot(new_figure(size, height))
    _per_layer(plot, cells, "timestep", "mi_nats", ci_of("mi_nats"), mode="lines+markers", marker_size=3,
               line_width=1)
    method = f" ({mi.method.iloc[0]})" if "method" in mi and mi.method.nunique() == 1 else ""
    plot.fig.update_layout(**time_axis.layout(cells.timestep), yaxis_title=f"I(y; features) [nats]{method}")
    return plot.result()


def immse_curve(immse: pd.DataFrame, size: str = "one", height: int | None = None,
                time_axis: TimeAxis = TimeAxis()) -> Built:
    """I(x₀; x_t) vs timestep by the I-MMSE relation: how much of the image survives the noise at t, with its 95%
    bootstrap interval as a band where the table holds one (immse.parquet files older than it do not)."""
    require_columns(immse, ["timestep", "mi_nats"], "immse")
    rows = _finite(immse, ["mi_nats"], "immse").sort_values("timestep", ignore_index=True)
    plot = Plot(new_figure(size, height))
    band = ci_of("mi_nats")
    if _has_ci(rows, band):
        _band(plot, rows[["timestep", "mi_nats", *band]], "timestep", *band, "95% CI", "black")
    plot.line(rows[[c for c in ("timestep", "snr", "mmse", "mi_nats") if c in rows]], "timestep", "mi_nats",
              "I(x₀; x_t)", mode="lines+markers", marker_size=3, line_width=1, line_color="black")
    plot.fig.update_layout(**time_axis.layout(rows.timestep),
                           yaxis_title="I(x<sub>0</sub>; x<sub>t</sub>) [nats]", yaxis_type="log", yaxis_dtick=1, showlegend=False)  # ticks at decades
    return plot.result()


# -- training --------------------------------------------------------------------------------------------------
def curriculum_heatmap(curriculum: pd.DataFrame, size: str = "one", height: int | None = None) -> Built:
    """The policy's p(t) over training (step × timestep-bin centre) above its effective number of timesteps."""
    bins = bin_table(curriculum)[["bin", "t_mid"]]
    cells = curriculum[["step", "bin", "t_lo", "t_hi", "probability"]].merge(bins, on="bin")
    plot = Plot(new_figure(size, height or 300, rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3],
                           vertical_spacing=0.05))
    plot.heatmap(cells, "step", "t_mid", "probability", "p(t)", row=1, col=1,
                 colorbar=dict(title_text="p(bin)", len=0.7, y=1, yanchor="top"))
    plot.line(spread(curriculum)[["step", "effective_timesteps"]], "step", "effective_timesteps",
              "effective timesteps", row=2, col=1, mode="lines", line=dict(color="black", width=1))
    plot.fig.update_layout(showlegend=False, xaxis2_title="training step", yaxis_title="timestep t",
                           yaxis2_title="eff. timesteps")
    return plot.result()


def policy_marginals(curricula: dict[tuple[str, str], pd.DataFrame], step: int | None = None, size: str = "two",
                     height: int | None = None) -> Built:
    """Each policy's p(t) at `step` (None = each run's last snapshot) as a density over t (bin probability per
    timestep of the bin, a step per bin), one panel per dataset: `{(dataset, policy): curriculum}` on one axis."""
    datasets = ordered(d for d, _ in curricula)
    policies = list(dict.fromkeys(p for _, p in curricula))
    color = dict(zip(policies, colors(len(policies))))
    plot = Plot(new_figure(size, height or 300, rows=1, cols=len(datasets), shared_yaxes=True,
                           subplot_titles=datasets, horizontal_spacing=0.04))
    for (dataset, policy), curriculum in curricula.items():
        at = curriculum[curriculum.step == (curriculum.step.max() if step is None else step)]
        if at.empty:
            raise ValueError(f"step: curricula[{dataset}, {policy}] has no snapshot at step {step}")
        rows = (at[["step", "bin", "probability"]].merge(bin_table(curriculum), on="bin").sort_values("bin")
                .assign(dataset=dataset, policy=policy))
        rows["density"] = rows.probability / rows.width
        plot.line(rows, "t_mid", "density", policy, row=1, col=datasets.index(dataset) + 1, mode="lines",
                  line_shape="hvh", line=dict(color=color[policy], width=1.5), legendgroup=policy,
                  showlegend=dataset == datasets[0])
    plot.fig.update_xaxes(title_text="timestep t")
    plot.fig.update_layout(yaxis_title="p(t) per timestep", margin_t=3 * TITLE_MARGIN // 2, legend_y=1.1)
    return plot.result()


def class_curriculum_heatmap(classes: pd.DataFrame, step: int | None = None, size: str = "one",
                             height: int | None = None) -> Built:
    """Per-class p(t | y) of an image-dependent policy at `step` (None = last): which labels want which t."""
    require_columns(classes, ["step", "label", "bin", "t_lo", "t_hi", "probability"], "classes")
    step = int(classes.step.max()) if step is None else step
    at = classes[classes.step == step]
    if at.empty:
        raise ValueError(f"step: expected one of the snapshot steps {sorted(classes.step.unique())}, got {step}")
    cells = at.assign(t_mid=(at.t_lo + at.t_hi) / 2)[["step", "label", "bin", "t_mid", "probability"]]
    plot = Plot(new_figure(size, height))
    plot.heatmap(cells, "t_mid", "label", "probability", f"p(t | y), step {step}", colorbar_title_text="p(bin | y)")
    plot.fig.update_layout(title_text=f"p(t | y) at step {step}", margin_t=TITLE_MARGIN, xaxis_title="timestep t", yaxis_title="label y",
                           yaxis_type="category")
    return plot.result()


def loss_by_bin(metrics: pd.DataFrame, window: int | None = None, size: str = "one",
                height: int | None = None) -> Built:
    """Training loss per timestep bin over training, a rolling mean over `window` steps (default ~1/50 of the run)."""
    require_columns(metrics, ["step"], "metrics")
    columns = [c for c in metrics.columns if LOSS_COLUMN.match(c)]
    if not columns:
        raise ValueError("metrics: expected per-bin loss columns loss_tXXXX_YYYY, found none")
    window = window or max(1, len(metrics) // 50)
    m = metrics.sort_values("step")
    plot = Plot(new_figure(size, height))
    for column, color in zip(columns, ordered_colors(len(columns))):
        lo, hi = (int(v) for v in LOSS_COLUMN.match(column).groups())
        smooth = m[column].rolling(window, min_periods=1).mean()
        rows = pd.DataFrame({"step": m.step.to_numpy(), "t_lo": lo, "t_hi": hi, "window": window,
                             "loss": smooth.to_numpy()}).dropna(subset=["loss"])
        plot.line(rows, "step", "loss", f"t {lo}–{hi}", mode="lines", line=dict(color=color, width=1))
    plot.fig.update_layout(xaxis_title="training step",
                           yaxis_title="loss" + (f" (mean of {window} steps)" if window > 1 else ""))
    return plot.result()


def policy_pareto(comparison: pd.DataFrame, accuracy: str = "oracle_accuracy", cost: str = "image_passes",
                  size: str = "one", height: int | None = None,
                  cost_title: str = "training cost [image-passes]") -> Built:
    """Accuracy vs counted training cost (or any lower-is-better `cost`) of `analysis.compare.compare_runs` rows,
    one marker per policy × dataset with the oracle accuracy's 95% CI as whiskers (where the rows hold it), each
    dataset's Pareto front (`analysis.compare.pareto_front`) dotted."""
    require_columns(comparison, ["policy", "dataset", accuracy, cost], "comparison")
    rows = _finite(comparison, [accuracy, cost], "comparison")
    on_front = pareto_front(rows, cost, accuracy)
    ci = COMPARISON_CI.get(accuracy)
    ci = ci if ci and set(ci) <= set(rows) else None
    keep = [c for c in ("run", "policy", "dataset", cost, accuracy, *(ci or ())) if c in rows]
    policies, datasets = ordered(rows.policy), ordered(rows.dataset)
    color = dict(zip(policies, colors(len(policies))))
    symbol = {d: DATASET_SYMBOLS[i % len(DATASET_SYMBOLS)] for i, d in enumerate(datasets)}
    plot = Plot(new_figure(size, height))
    for dataset in datasets:
        front = rows[on_front & (rows.dataset == dataset)].sort_values([cost, accuracy])
        if len(front) > 1:
            plot.line(front[keep], cost, accuracy, f"Pareto front · {dataset}", mode="lines", line_shape="hv",
                      line=dict(color="grey", dash="dot", width=1), showlegend=False)
    for policy in policies:
        for dataset in datasets:
            group = rows[(rows.policy == policy) & (rows.dataset == dataset)]
            if len(group):
                bars = {"error_y": _whisker(group, accuracy, *ci)} if ci else {}
                plot.line(group[keep], cost, accuracy, f"{policy} · {dataset}", mode="markers",
                          marker=dict(color=color[policy], symbol=symbol[dataset], size=7), **bars)
    plot.fig.update_layout(xaxis_title=cost_title, yaxis_title=accuracy.replace("_", " "),
                           legend_entrywidth=0.5)  # "policy · dataset" entries are long: two per row
    return plot.result()


def representation_vs_generation(comparison: pd.DataFrame, accuracy: str = "oracle_accuracy", size: str = "one",
                                 height: int | None = None) -> Built:
    """The seed's task-interference question per run: probe accuracy (representation) vs the Fréchet distance of
    its samples to test images (generation, `analysis.generation`; domain-classifier features, not Inception
    FID), one marker per policy × dataset, each dataset's front of runs no other beats on both dotted."""
    return policy_pareto(comparison, accuracy, "fd", size, height,
                         cost_title="Fréchet distance to test images (domain-classifier features; lower is better)")


def _band(plot: Plot, rows: pd.DataFrame, x: str, low: str, high: str, name: str, color: str) -> None:
    """A filled band between rows[low] and rows[high] over rows[x] (a CI), drawn as one closed polygon."""
    outline = pd.concat([rows.assign(edge="low", y=rows[low]), rows.iloc[::-1].assign(edge="high", y=rows[high])],
                        ignore_index=True)
    plot.line(outline, x, "y", name, mode="lines", fill="toself", fillcolor=color, opacity=0.2,
              line=dict(width=0), hoverinfo="skip", showlegend=False)


def emergence_curves(curves: pd.DataFrame, size: str = "two", height: int | None = None) -> Built:
    """Probe accuracy over t at each checkpoint's best layer (`analysis.emergence.best_layer_curves`), one line
    per training budget with its 95% CI band, raw pixels and the random-init DiT dashed."""
    require_columns(curves, ["model", "step", "series", "timestep", "accuracy", "accuracy_ci_low",
                             "accuracy_ci_high"], "curves")
    dit = curves[curves.model == "dit"]
    steps = ordered(dit.step)
    keep = ["model", "step", "image_passes", "layer", "timestep", "accuracy", "accuracy_ci_low", "accuracy_ci_high"]
    plot = Plot(new_figure(size, height))
    for step, color in zip(steps, ordered_colors(len(steps))):
        rows = dit[dit.step == step]
        _band(plot, rows[keep], "timestep", "accuracy_ci_low", "accuracy_ci_high", f"{rows.series.iloc[0]} CI", color)
        plot.line(rows[keep], "timestep", "accuracy", f"{rows.series.iloc[0]} · {rows.layer.iloc[0]}",
                  mode="lines+markers", marker_size=3, line=dict(color=color, width=1))
    for model, dash in (("pixels", "dash"), ("random-init", "dot")):
        rows = curves[curves.model == model]
        if len(rows):
            plot.line(rows[keep], "timestep", "accuracy", f"{model} · {rows.layer.iloc[0]}", mode="lines",
                      line=dict(color="black", dash=dash, width=1))
    plot.fig.update_layout(xaxis_title="timestep t", yaxis_title="probe accuracy (best layer, 95% CI)")
    return plot.result()


def emergence_budget(summary: pd.DataFrame, size: str = "one", height: int | None = None) -> Built:
    """Best-cell probe accuracy vs training budget (log x, 95% CI whiskers) per dataset, each dataset's pixel and
    random-init baselines as horizontal lines in its colour (dashed, dotted)."""
    require_columns(summary, ["dataset", "image_passes", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
                              "pixels", "random_init"], "summary")
    datasets = ordered(summary.dataset)
    plot = Plot(new_figure(size, height))
    for dataset, color in zip(datasets, colors(len(datasets))):
        rows = summary[summary.dataset == dataset].sort_values("image_passes")
        plot.line(rows, "image_passes", "accuracy", dataset, mode="lines+markers", marker_size=5,
                  line=dict(color=color, width=1), error_y=_whisker(rows, "accuracy", *ci_of("accuracy")))
        span = rows.iloc[[0, -1]]
        for column, dash in (("pixels", "dash"), ("random_init", "dot")):
            plot.line(span, "image_passes", column, f"{dataset} {column.replace('_', '-')}", mode="lines",
                      line=dict(color=color, dash=dash, width=1), showlegend=False)
    plot.fig.update_layout(xaxis_title="training budget [image-passes]", yaxis_title="best-cell probe accuracy",
                           xaxis_type="log")
    return plot.result()


def seed_table_dots(table: pd.DataFrame, size: str = "two", height: int | None = None) -> Built:
    """The seed table (`analysis.seed_table`): linear-probe accuracy per method, mean ± std over seeds as a dot
    with whiskers, one panel per dataset, methods top to bottom in the table's order."""
    require_columns(table, ["dataset", "method", "accuracy_mean", "accuracy_std", "n_seeds"], "table")
    datasets, methods = ordered(table.dataset), list(dict.fromkeys(table.method))
    plot = Plot(new_figure(size, height or 60 + 22 * len(methods), rows=1, cols=len(datasets), shared_yaxes=True,
                           subplot_titles=datasets, horizontal_spacing=0.04))
    for i, dataset in enumerate(datasets, start=1):
        rows = table[table.dataset == dataset][["dataset", "method", "accuracy_mean", "accuracy_std", "n_seeds"]]
        plot.line(rows, "accuracy_mean", "method", dataset, row=1, col=i, mode="markers", showlegend=False,
                  marker=dict(color="black", size=6),
                  error_x=dict(type="data", array=rows.accuracy_std.fillna(0).to_numpy(), thickness=1, width=3))
    plot.fig.update_yaxes(categoryorder="array", categoryarray=methods[::-1], automargin=True)
    plot.fig.update_xaxes(title_text="linear-probe accuracy (mean ± std over seeds)")
    plot.fig.update_layout(margin_t=TITLE_MARGIN)
    return plot.result()


# -- embeddings and attributions (data produced by analysis.embedding / analysis.attribution) -------------------
def umap_grid(points: pd.DataFrame, cols: int = 4, size: str = "two", height: int | None = None) -> Built:
    """A UMAP map per timestep (one panel each, coloured by label): how class structure dissolves with noise."""
    require_columns(points, ["timestep", "x", "y", "label"], "points")
    timesteps, labels = ordered(points.timestep), ordered(points.label)
    cols = min(cols, len(timesteps))
    n_rows = math.ceil(len(timesteps) / cols)
    panel = figure_size(size)["width"] // cols
    fig = new_figure(size, height or panel * n_rows + 40, rows=n_rows, cols=cols,
                     subplot_titles=[f"t = {t}" for t in timesteps], horizontal_spacing=0.02,
                     vertical_spacing=0.08 / n_rows)
    plot = Plot(fig)
    keep = [c for c in ("timestep", "index", "label", "x", "y") if c in points]
    for i, t in enumerate(timesteps):
        for label, color in zip(labels, colors(len(labels))):
            rows = points[(points.timestep == t) & (points.label == label)]
            if len(rows):
                plot.line(rows[keep], "x", "y", str(label), row=i // cols + 1, col=i % cols + 1, mode="markers",
                          marker=dict(color=color, size=3, opacity=0.8), legendgroup=str(label), showlegend=i == 0)
    fig.update_xaxes(showticklabels=False, ticks="")
    fig.update_yaxes(showticklabels=False, ticks="")
    fig.update_layout(legend=dict(orientation="h", y=-0.02, yanchor="top", x=0.5, xanchor="center"),
                      margin=dict(l=8, r=8, t=24, b=24))
    return plot.result()


def _image_rows(values: np.ndarray, **fields: Any) -> pd.DataFrame:
    """(H, W) values as rows (row, col, value) plus constant `fields`."""
    r, c = np.indices(values.shape)
    return pd.DataFrame({**fields, "row": r.ravel(), "col": c.ravel(), "value": values.ravel()})


def attribution_grid(attributions: np.ndarray, timesteps: Iterable[int], images: np.ndarray | None = None,
                     size: str = "two", height: int | None = None) -> Built:
    """Attribution maps (n_t, n_images, H, W): a row per image, a column per timestep, the image first if given.

    One colour scale for all maps (symmetric around 0 when attributions are signed), so panels compare.
    """
    attributions = np.asarray(attributions, dtype=np.float64)
    timesteps = [as_time(t) for t in np.asarray(timesteps).ravel()]
    if attributions.ndim != 4 or attributions.shape[0] != len(timesteps):
        raise ValueError(f"attributions: expected (n_timesteps={len(timesteps)}, n_images, H, W), "
                         f"got shape {attributions.shape}")
    n_images = attributions.shape[1]
    if images is not None:
        images = np.asarray(images, dtype=np.float64)
        if images.ndim != 4 or images.shape[0] != n_images or images.shape[2:] != attributions.shape[2:]:
            raise ValueError(f"images: expected ({n_images}, C, {attributions.shape[2]}, {attributions.shape[3]}), "
                             f"got shape {images.shape}")
    offset = int(images is not None)
    cols = len(timesteps) + offset
    panel = figure_size(size)["width"] // cols
    titles = (["image"] if offset else []) + [f"t = {t}" for t in timesteps]
    fig = new_figure(size, height or panel * n_images + 30, rows=n_images, cols=cols, horizontal_spacing=0.01,
                     vertical_spacing=0.01, column_titles=titles)
    lo, hi = float(np.nanmin(attributions)), float(np.nanmax(attributions))
    signed = lo < 0 < hi
    bound = max(abs(lo), abs(hi))
    fig.update_layout(coloraxis=dict(colorscale=SIGNED_HEATMAP if signed else "Viridis",
                                     cmin=-bound if signed else lo, cmax=bound if signed else hi,
                                     colorbar=dict(thickness=8, outlinewidth=0, title_text="attribution")),
                      coloraxis2=dict(colorscale="gray", cmin=-1, cmax=1, showscale=False),
                      margin=dict(l=8, r=8, t=24, b=8))
    plot = Plot(fig)
    for i in range(n_images):
        if images is not None:
            plot.heatmap(_image_rows(images[i].mean(axis=0), image=i, panel="image"), "col", "row", "value",
                         f"image {i}", row=i + 1, col=1, coloraxis="coloraxis2")
        for j, t in enumerate(timesteps):
            plot.heatmap(_image_rows(attributions[j, i], image=i, panel=f"t = {t}", timestep=t), "col", "row",
                         "value", f"image {i}, t = {t}", row=i + 1, col=j + 1 + offset, coloraxis="coloraxis")
    fig.update_xaxes(showticklabels=False, ticks="", showline=False)
    fig.update_yaxes(showticklabels=False, ticks="", showline=False, autorange="reversed")
    return plot.result()
