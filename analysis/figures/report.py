"""Which figures a run dir can give (registry `FIGURES`), and `write_figures`: all of them for a set of runs.

`FIGURES` maps a figure name to its builder and the run-dir files it reads, keyword by keyword. An input
`FILE.npz:ARRAY` is one array of an .npz file. Files produced elsewhere and read here (the contract):
`analysis/umap.parquet` (timestep, index, x, y, label — `analysis.embedding.umap_trajectory`'s points) and
`analysis/attribution.npz` (attributions (n_t, n_images, H, W), timesteps (n_t,), optional images
(n_images, C, H, W) in [-1, 1]).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis.compare import compare_runs, pareto_front, write_table
from analysis.figures.builders import (Built, attribution_grid, class_curriculum_heatmap, curriculum_heatmap,
                                       hfr_scatter, immse_curve, loss_by_bin, mi_curves, policy_marginals,
                                       policy_pareto, probe_curves, probe_heatmap, representation_vs_generation,
                                       seed_table_dots, segmentation_heatmap, umap_grid)
from analysis.figures.export import check_formats, export_figure, export_session
from analysis.figures.time_axis import run_time_axis
from analysis.seed_table import load_seed_table, to_latex
from aselect_core.train.rundir import RunDir, RunDirError, artefact_ref

log = logging.getLogger(__name__)

PROBE, SELECTION, ATTRIBUTION = map(artefact_ref, ("probe", "selection", "attribution"))


@dataclass(frozen=True)
class FigureSpec:
    """A builder and the run-dir files behind its keyword arguments (optional ones are None when absent); `timed`
    builders plot over diffusion time and get the run's `time_axis` (its schedule's convention and log SNR)."""

    builder: Callable[..., Built]
    inputs: dict[str, str]
    optional: dict[str, str] = field(default_factory=dict)
    about: str = ""
    timed: bool = False


FIGURES: dict[str, FigureSpec] = {
    "probe_heatmap": FigureSpec(probe_heatmap, {"probe": PROBE}, about="probe accuracy, timestep × layer",
                                timed=True),
    "probe_curves": FigureSpec(probe_curves, {"probe": PROBE}, {"selection": SELECTION},
                               about="accuracy vs t per layer, pixels dashed, oracle/HFR choices marked", timed=True),
    "segmentation_heatmap": FigureSpec(segmentation_heatmap, {"segmentation": artefact_ref("segmentation")},
                                       about="segmentation probe mIoU, timestep × layer, best cell and pixels",
                                       timed=True),
    "hfr_vs_accuracy": FigureSpec(hfr_scatter, {"probe": PROBE, "hfr": artefact_ref("hfr")},
                                  about="HFR vs accuracy per cell, Spearman ρ"),
    "mi_label": FigureSpec(mi_curves, {"mi": artefact_ref("mi")}, about="I(y; features) vs t per layer",
                           timed=True),
    "mi_x0_xt": FigureSpec(immse_curve, {"immse": artefact_ref("immse")}, about="I(x0; x_t) by I-MMSE",
                           timed=True),
    "curriculum": FigureSpec(curriculum_heatmap, {"curriculum": "curriculum.parquet"},
                             about="p(t) over training and its effective timesteps"),
    "curriculum_classes": FigureSpec(class_curriculum_heatmap, {"classes": "curriculum_classes.parquet"},
                                     about="per-class p(t | y) at the last snapshot"),
    "loss_by_bin": FigureSpec(loss_by_bin, {"metrics": "metrics.parquet"}, about="loss per t bin over training"),
    "umap": FigureSpec(umap_grid, {"points": artefact_ref("umap")}, about="UMAP per timestep by label"),
    "attribution": FigureSpec(attribution_grid, {"attributions": f"{ATTRIBUTION}:attributions",
                                                 "timesteps": f"{ATTRIBUTION}:timesteps"},
                              {"images": f"{ATTRIBUTION}:images"}, about="attribution maps, image × t"),
}


def _file(run: Path, ref: str) -> tuple[Path, str | None]:
    name, _, array = ref.partition(":")
    return run / name, array or None


def _available(run: Path, ref: str) -> bool:
    path, array = _file(run, ref)
    if not path.is_file():
        return False
    if array is None:
        return True
    with np.load(path) as npz:
        return array in npz.files


def _read(run: Path, ref: str) -> Any:
    path, array = _file(run, ref)
    if array is not None:
        with np.load(path) as npz:
            return npz[array]
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise RunDirError(f"{path}: not a readable parquet file ({type(e).__name__})") from None


def missing_inputs(name: str, run: str | Path) -> list[str]:
    """The required inputs of figure `name` that `run` lacks (empty: it can be drawn)."""
    return [ref for ref in FIGURES[name].inputs.values() if not _available(Path(run), ref)]


def build_figure(name: str, run: str | Path, **opts: Any) -> Built:
    """Figure `name` of one run dir from its files (raises if a required input is missing)."""
    if name not in FIGURES:
        raise ValueError(f"name: expected one of {sorted(FIGURES)}, got {name!r}")
    run, spec = Path(run), FIGURES[name]
    if missing := missing_inputs(name, run):
        raise FileNotFoundError(f"{run}: figure {name} needs {', '.join(missing)}")
    kw = {k: _read(run, ref) for k, ref in spec.inputs.items()}
    kw.update({k: _read(run, ref) if _available(run, ref) else None for k, ref in spec.optional.items()})
    if spec.timed:
        kw["time_axis"] = run_time_axis(run)
    return spec.builder(**{**kw, **opts})


# -- comparison across runs ------------------------------------------------------------------------------------
def comparison_table(runs: Sequence[str | Path]) -> pd.DataFrame:
    """`analysis.compare.compare_runs` of the runs with its per-dataset `pareto` flags, each `run` named as its
    output folder (`_run_names`)."""
    names = dict(zip(map(str, runs), _run_names([Path(r) for r in runs])))
    table = compare_runs(runs)
    return table.assign(run=table.path.map(names), pareto=pareto_front(table))


def run_curricula(runs: Sequence[Path]) -> dict[tuple[str, str], pd.DataFrame]:
    """{(dataset, run name): curriculum} of the runs that have a readable config and curriculum.parquet."""
    out = {}
    for run, name in zip(runs, _run_names(runs)):
        rd = RunDir(run)
        try:
            out[(rd.config().data, name)] = rd.curriculum()
        except (RunDirError, FileNotFoundError, ValueError) as e:
            log.info("policy_curricula: %s left out (%s)", name, e)
    if not out:
        raise ValueError("runs: none has a curriculum.parquet")
    return out


def write_comparison(table: pd.DataFrame, out: Path) -> list[Path]:
    """comparison.csv and comparison.tex (booktabs, LaTeX-escaped, 3 decimals, – for missing, no local paths)."""
    return [write_table(table, out / "comparison.csv"), write_table(table, out / "comparison.tex")]


# -- the batch -------------------------------------------------------------------------------------------------
def _run_names(runs: Sequence[Path]) -> list[str]:
    """Output folder per run: its dir name, made unique with -2, -3 ... when names repeat."""
    seen: dict[str, int] = {}
    names = []
    for r in runs:
        seen[r.name] = seen.get(r.name, 0) + 1
        names.append(r.name if seen[r.name] == 1 else f"{r.name}-{seen[r.name]}")
    return names


def write_figures(runs: Sequence[str | Path], out: str | Path, formats: Sequence[str] = ("pdf", "svg", "png"),
                  progress: bool = True, seed_table: str | Path | None = None) -> list[Path]:
    """Every figure the runs' files allow (OUT/RUN/NAME.{formats,csv}), the cross-run policy Pareto figure and
    comparison.{csv,tex} in OUT; with `seed_table` (bench/seed_table.py's CSV) also its figure and seed_table.tex.
    Figures whose inputs are missing or unusable are skipped with a logged reason. One browser serves the whole
    batch. Returns the written paths."""
    formats = check_formats(formats)
    runs = [Path(r) for r in runs]
    if not runs and seed_table is None:
        raise ValueError("runs: expected at least one run dir, or a seed table")
    for r in runs:
        if not (RunDir(r).is_run() or RunDir(r).is_model_analysis()):
            raise ValueError(f"runs: {r} is not a run dir (no config.json, nor the model.json of analyze --model)")
    table = load_seed_table(seed_table) if seed_table is not None else None  # bad file: fail before any work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def emit(built: Callable[[], Built], where: Path, name: str, label: str) -> None:
        try:
            fig, data = built()
        except (ValueError, FileNotFoundError) as e:
            log.warning("skipped %s: %s", label, e)
            return
        start = time.perf_counter()
        written.extend(export_figure(fig, data, where, name, formats))
        log.info("wrote %s (%.2f s)", label, time.perf_counter() - start)

    jobs = [(r, n, name) for r, n in zip(runs, _run_names(runs)) for name in FIGURES]
    with export_session():
        for run, run_name, name in tqdm(jobs, desc="figures", disable=not progress, dynamic_ncols=True):
            label = f"{run_name}/{name}"
            if missing := missing_inputs(name, run):
                log.warning("skipped %s: missing %s", label, ", ".join(missing))
                continue
            emit(lambda: build_figure(name, run), out / run_name, name, label)
        if runs:
            comparison = comparison_table(runs)
            emit(lambda: policy_pareto(comparison), out, "policy_pareto", "policy_pareto")
            emit(lambda: representation_vs_generation(comparison), out, "representation_vs_generation",
                 "representation_vs_generation")  # skipped (logged) until some run has analysis/generation.json
            emit(lambda: policy_marginals(run_curricula(runs)), out, "policy_curricula", "policy_curricula")
            written += write_comparison(comparison, out)
        if table is not None:
            emit(lambda: seed_table_dots(table), out, "seed_table", "seed_table")
            (out / "seed_table.tex").write_text(to_latex(table))
            written.append(out / "seed_table.tex")
    return written
