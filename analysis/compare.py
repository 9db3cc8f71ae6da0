"""Policies × datasets: one row per run dir, at its counted training cost, with what its analysis found.

`compare_runs(runs)` reads each run dir (never trains or analyses anything) through `RunDir`:
- config.json          dataset, policy, model (a run without a readable config is listed, with why, and no more);
                       model.json in a folder of `aselect analyze --model` (policy "pretrained", no training files)
- metrics.parquet      steps trained and counted image-passes (latest.json when metrics.parquet is absent)
- latest.json          its checkpoint must be whole (sha256 against its sidecar), else the run is flagged
- curriculum.parquet   effective number of timesteps of the last p(t) snapshot (exp of its entropy)
- analysis/probe.parquet      oracle = the best DiT (timestep, layer) cell and its probe accuracy; the best
                              raw-pixel baseline accuracy (rows with layer "pixels")
- analysis/selection.parquet  each selection method's choice (default: hfr), the probe accuracy there, regret
                              (points), its cost in image-passes, the oracle's cost and their ratio
- analysis/summary.json       the oracle accuracy's 95% CI, whether the runner-up cell lies inside it (then the
                              oracle's choice is not resolved by the test set) and the random-init DiT baseline
- analysis/generation.json    Fréchet distance / KID of samples in the domain classifier's features (optional)
Absent files leave their columns NaN and are named in `missing` (e.g. a run not analysed yet); files that are
present but unreadable or malformed are named, with the reason, in `status` ("ok" otherwise), so one broken run
never hides the others. `pareto_front` flags, per dataset, the runs no other run beats on cost and accuracy.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from aselect_core.diffusion import as_time
from aselect_core.train.checkpoint import verify_checkpoint
from aselect_core.io import read_json
from aselect_core.train.rundir import RunDir, RunDirError, artefact_ref

PIXELS = "pixels"  # the probe grid's raw-pixel baseline rows (analysis.pipeline)
PROBE, SELECTION, SUMMARY, GENERATION = map(artefact_ref, ("probe", "selection", "summary", "generation"))
METHOD_FIELDS = {"timestep": "timestep", "layer": "layer", "accuracy": "accuracy_at_choice", "regret": "regret",
                 "cost_image_passes": "cost_image_passes", "cost_ratio": "cost_ratio"}  # suffix -> selection column
RUN_COLUMNS = ["run", "path", "dataset", "policy", "model", "steps", "image_passes", "effective_timesteps",
               "oracle_timestep", "oracle_layer", "oracle_accuracy", "oracle_ci_low", "oracle_ci_high",
               "oracle_runner_up_within_ci", "oracle_cost_image_passes", "pixel_accuracy", "random_init_accuracy",
               "fd", "fd_floor", "kid", "kid_ci_low", "kid_ci_high", "classifier_accuracy"]


class RunTableError(ValueError):
    """A run file that is readable but lacks what the comparison needs; the message names the file."""


def _need(df: pd.DataFrame, columns: Sequence[str], name: str) -> pd.DataFrame:
    lacking = [c for c in columns if c not in df.columns]
    if lacking or df.empty:
        raise RunTableError(f"{name}: expected rows with columns {list(columns)}, "
                            + (f"lacks {lacking}" if lacking else "has no rows"))
    return df


# -- readers, one per run file: each returns the comparison fields that file provides ----------------------------
def _training(rd: RunDir, methods: Sequence[str]) -> dict[str, Any]:
    if rd.metrics_path.is_file():
        last = _need(rd.metrics(), ["step", "image_passes"], "metrics.parquet").sort_values("step").iloc[-1]
        return {"steps": int(last.step), "image_passes": float(last.image_passes)}
    latest = rd.latest()
    if not {"step", "image_passes"} <= set(latest):
        raise RunTableError(f"latest.json: expected keys step and image_passes, got {sorted(latest)}")
    return {"steps": int(latest["step"]), "image_passes": float(latest["image_passes"])}


def _curriculum(rd: RunDir, methods: Sequence[str]) -> dict[str, Any]:
    c = _need(rd.curriculum(), ["step", "effective_timesteps"], "curriculum.parquet")
    return {"effective_timesteps": float(c[c.step == c.step.max()].effective_timesteps.iloc[0])}


def _probe(rd: RunDir, methods: Sequence[str]) -> dict[str, Any]:
    grid = _need(rd._read(rd.artefact("probe")), ["timestep", "layer", "accuracy"], PROBE)
    dit, pixels = grid[grid.layer != PIXELS], grid[grid.layer == PIXELS]
    best = _need(dit, ["accuracy"], f"{PROBE} (DiT rows)").loc[dit.accuracy.idxmax()]
    return {"oracle_timestep": as_time(best.timestep), "oracle_layer": best.layer,
            "oracle_accuracy": float(best.accuracy),
            "pixel_accuracy": float(pixels.accuracy.max()) if len(pixels) else math.nan}


def _selection(rd: RunDir, methods: Sequence[str]) -> dict[str, Any]:
    sel = _need(rd._read(rd.artefact("selection")), ["method", *METHOD_FIELDS.values()], SELECTION).set_index("method")
    out = {"oracle_cost_image_passes": float(sel.cost_image_passes["oracle"]) if "oracle" in sel.index else math.nan}
    for m in methods:
        if m in sel.index:
            out.update({f"{m}_{suffix}": sel.at[m, col] for suffix, col in METHOD_FIELDS.items()})
    return out


def _summary(rd: RunDir, methods: Sequence[str]) -> dict[str, Any]:
    try:
        summary = read_json(rd.artefact("summary"), RunTableError)
        best = summary["best"]
    except (KeyError, TypeError) as e:
        raise RunTableError(f"{SUMMARY}: expected a JSON object with a 'best' cell ({e})") from None
    random_init = summary.get("random_init_baseline") or {}
    runner_up = best.get("runner_up") or {}
    return {"oracle_ci_low": best.get("accuracy_ci_low", math.nan), "oracle_ci_high": best.get("accuracy_ci_high",
            math.nan), "oracle_runner_up_within_ci": runner_up.get("within_ci", math.nan),
            "random_init_accuracy": random_init.get("best_accuracy", math.nan)}


def _generation(rd: RunDir, methods: Sequence[str]) -> dict[str, Any]:
    g = read_json(rd.artefact("generation"), RunTableError)
    try:
        return {"fd": g["fd"], "fd_floor": g["fd_floor"], "kid": g["kid"]["mean"], "kid_ci_low": g["kid"]["ci_low"],
                "kid_ci_high": g["kid"]["ci_high"], "classifier_accuracy": g["feature_extractor"]["test_accuracy"]}
    except (KeyError, TypeError) as e:
        raise RunTableError(f"{GENERATION}: expected fd, fd_floor, kid and feature_extractor ({e})") from None


def _checkpoint(rd: RunDir, methods: Sequence[str]) -> dict[str, Any]:
    """Nothing to tabulate: fails (naming the file) when latest.json's checkpoint is missing, truncated or corrupt."""
    path = rd.latest_checkpoint()
    if path is not None:
        verify_checkpoint(path)
    return {}


# file (relative to the run dir) or files (any one present suffices) -> reader
READERS: dict[tuple[str, ...], Callable[[RunDir, Sequence[str]], dict[str, Any]]] = {
    ("metrics.parquet", "latest.json"): _training,
    ("latest.json",): _checkpoint,
    ("curriculum.parquet",): _curriculum,
    (PROBE,): _probe,
    (SELECTION,): _selection,
    (SUMMARY,): _summary,
    (GENERATION,): _generation,
}
TRAINING = {("metrics.parquet", "latest.json"), ("latest.json",), ("curriculum.parquet",)}  # a training run's
OPTIONAL = {(GENERATION,)}  # computed only when asked (aselect analyze --generation N)
READ_ERRORS = (RunDirError, RunTableError, KeyError, ValueError, TypeError)  # pyarrow/pandas raise several types


def method_columns(methods: Sequence[str]) -> list[str]:
    return [f"{m}_{suffix}" for m in methods for suffix in METHOD_FIELDS]


def run_row(run: str | Path, methods: Sequence[str] = ("hfr",)) -> dict[str, Any]:
    """One comparison row for `run`: every readable field, NaN for the rest, plus `missing` and `status`."""
    rd = RunDir(Path(run))
    row: dict[str, Any] = dict.fromkeys(RUN_COLUMNS + method_columns(methods), math.nan)
    row.update(run=rd.path.name, path=str(rd.path), missing="", status="ok")
    if not (rd.config_path.is_file() or rd.model_info_path.is_file()):
        row["status"] = f"not a run dir: {rd.config_path.name} not found"
        return row
    try:
        info = rd.info()
    except READ_ERRORS as e:
        row["status"] = str(e)
        return row
    row.update(dataset=info.data, policy=info.policy, model=info.model)
    missing, problems = [], []
    for files, reader in READERS.items():
        if info.steps is None and files in TRAINING:  # analysed without a training run (`analyze --model`)
            continue
        if not any((rd.path / f).is_file() for f in files):
            missing += [] if files in OPTIONAL else [" or ".join(files)]
            continue
        try:
            row.update(reader(rd, methods))
        except READ_ERRORS as e:
            problems.append(str(e).replace(str(rd.path) + "/", ""))
    row.update(missing=", ".join(missing), status="; ".join(problems) or "ok")
    return row


def compare_runs(runs: Sequence[str | Path], methods: Sequence[str] = ("hfr",)) -> pd.DataFrame:
    """The comparison table (module doc): one row per run, sorted by dataset, policy, image_passes, run.

    Columns: run, path, dataset, policy, model, steps, image_passes, effective_timesteps, oracle_timestep,
    oracle_layer, oracle_accuracy, oracle_cost_image_passes, pixel_accuracy, then for each selection method m
    m_timestep, m_layer, m_accuracy, m_regret, m_cost_image_passes, m_cost_ratio (oracle's image-passes / m's),
    then missing and status. Accuracies are in
    [0, 1], regret in accuracy points (0-100), costs in DiT image-passes.
    """
    columns = RUN_COLUMNS + method_columns(methods) + ["missing", "status"]
    df = pd.DataFrame([run_row(r, methods) for r in runs], columns=columns)
    return df.sort_values(["dataset", "policy", "image_passes", "run"], na_position="last", ignore_index=True)


def pareto_front(df: pd.DataFrame, x: str = "image_passes", y: str = "oracle_accuracy",
                 by: str | None = "dataset") -> pd.Series:
    """(n,) bool: True for rows no other row (of the same `by` group) dominates, i.e. none has x' <= x and
    y' >= y with one of them strict. Lower x (cost) and higher y (accuracy) are better; rows with NaN in x or
    y are never on the front, equal points are both on it."""
    for col in (x, y) + ((by,) if by else ()):
        if col not in df.columns:
            raise ValueError(f"df: expected a column {col!r}, got {list(df.columns)}")
    flags = pd.Series(False, index=df.index, name="pareto")
    groups = df.groupby(by, dropna=False) if by else [(None, df)]
    for _, g in groups:
        g = g[g[x].notna() & g[y].notna()]
        gx, gy = g[x].to_numpy(np.float64), g[y].to_numpy(np.float64)  # (m,), (m,)
        no_worse = (gx[None, :] <= gx[:, None]) & (gy[None, :] >= gy[:, None])  # (m, m): j no worse than i
        better = (gx[None, :] < gx[:, None]) | (gy[None, :] > gy[:, None])  # (m, m): j strictly better somewhere
        flags[g.index] = ~(no_worse & better).any(axis=1)
    return flags


def table_latex(df: pd.DataFrame) -> str:
    """The table as LaTeX (booktabs, escaped, 3 decimals, – for missing), without local paths."""
    return df.drop(columns="path", errors="ignore").to_latex(index=False, escape=True, float_format="%.3f", na_rep="–")


def _cell(row: pd.Series, prefix: str) -> str:
    """'(t, block.i)' of a choice; '–' when absent."""
    t, layer = row.get(f"{prefix}_timestep"), row.get(f"{prefix}_layer")
    return "–" if pd.isna(t) else f"({as_time(t)}, {layer})"


def _pct(x: float) -> str:
    return "–" if pd.isna(x) else f"{100 * x:.1f}"


def table_markdown(df: pd.DataFrame, methods: Sequence[str] = ("hfr", "mi")) -> str:
    """The README's results table: per run its counted cost, the oracle cell with accuracy and 95% CI (%), the
    pixel and random-init baselines and each method's choice with its regret (points)."""
    header = ["run", "image-passes", "eff. timesteps", "oracle (t, layer)", "accuracy % [95% CI]", "raw pixels %",
              "random-init DiT %", *[f"{m} choice: regret" for m in methods]]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for _, r in df.iterrows():
        ci = "" if pd.isna(r.oracle_ci_low) else f" [{_pct(r.oracle_ci_low)}, {_pct(r.oracle_ci_high)}]"
        cells = [r.run, "–" if pd.isna(r.image_passes) else f"{int(r.image_passes):,}",
                 "–" if pd.isna(r.effective_timesteps) else f"{r.effective_timesteps:.0f}", _cell(r, "oracle"),
                 _pct(r.oracle_accuracy) + ci, _pct(r.pixel_accuracy), _pct(r.random_init_accuracy),
                 *[f"{_cell(r, m)}: {r[f'{m}_regret']:.1f} pts" if pd.notna(r.get(f"{m}_regret")) else "–"
                   for m in methods]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


TABLE_WRITERS: dict[str, Callable[[pd.DataFrame, Path], None]] = {
    ".csv": lambda df, path: df.to_csv(path, index=False),
    ".tex": lambda df, path: path.write_text(table_latex(df)),
    ".md": lambda df, path: path.write_text(table_markdown(df, [c.removesuffix("_regret") for c in df.columns
                                                               if c.endswith("_regret")])),
}


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write the comparison table as CSV, LaTeX or Markdown (the README's table), chosen by the file's suffix."""
    path = Path(path)
    if path.suffix not in TABLE_WRITERS:
        raise ValueError(f"{path}: expected a file name ending in {' or '.join(TABLE_WRITERS)}")
    TABLE_WRITERS[path.suffix](df, path)
    return path
