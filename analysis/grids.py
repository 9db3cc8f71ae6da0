"""The grids over a `FeatureBank`, registered: probe (linear + k-NN), label MI and HFR per (timestep, layer).

Every `Grid` takes a FeatureBank and a frozen options dataclass (validated at entry by `run_grid`: an unknown or
misspelt option is a ValueError naming it and listing the valid ones, a bad value one naming the field) and
returns one table format: a row per (timestep, layer) cell, each measure it declares beside its 95% interval
columns (`Grid.measures`: measure -> `Measure(label, (low, high))`), written to the artefact `RunDir.artefact`
resolves. The selection methods (`analysis.selection.METHODS`) compute their grids through it, the pipeline
writes them by their declared artefact, the figures find a measure's interval with `ci_columns`, and the app's
Explorer offers every measure (`app.choices.measure_choices`).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

import pandas as pd

from analysis.hfr import check_cutoff, hfr_grid
from analysis.options import check_count, check_flag, check_one_of
from analysis.probe import CI_Z, POOLINGS, probe_grid


@dataclass(frozen=True)
class ProbeGridOptions:
    """A standardised logistic probe per cell on `pooling`-pooled tokens, beside a k-NN probe (`knn`)."""

    pooling: str = "mean"
    knn: bool = True

    def __post_init__(self) -> None:
        check_one_of("pooling", self.pooling, POOLINGS)
        check_flag("knn", self.knn)


@dataclass(frozen=True)
class HFRGridOptions:
    """The high-frequency ratio of each cell's token maps above `cutoff` cycles/patch (DC removed by default)."""

    cutoff: float = 0.25
    remove_mean: bool = True  # subtract each channel's spatial mean (the DC term) before the spectrum

    def __post_init__(self) -> None:
        check_cutoff(self.cutoff)
        check_flag("remove_mean", self.remove_mean)


@dataclass(frozen=True)
class LabelMIOptions:
    """I(y; pooled features) per cell with estimator `mi_method`, its 95% interval from `mi_subsamples` random
    halves (`analysis.mi.half_sample_se`; 0 skips it)."""

    mi_method: str = "latent"
    mi_subsamples: int = 20

    def __post_init__(self) -> None:
        from analysis.mi.estimate import METHODS as MI_METHODS

        check_one_of("mi_method", self.mi_method, MI_METHODS)
        check_count("mi_subsamples", self.mi_subsamples, 0)


def with_normal_ci(df: pd.DataFrame, mean: str, se: str, prefix: str) -> pd.DataFrame:
    """`df` with `{prefix}_ci_low` / `{prefix}_ci_high` = mean ± 1.96 se (a normal 95% interval)."""
    return df.assign(**{f"{prefix}_ci_low": df[mean] - CI_Z * df[se], f"{prefix}_ci_high": df[mean] + CI_Z * df[se]})


def _probe(bank: Any, opts: ProbeGridOptions, seed: int, progress: bool) -> pd.DataFrame:
    return probe_grid(bank, pooling=opts.pooling, knn=opts.knn, progress=progress)


def _hfr(bank: Any, opts: HFRGridOptions, seed: int, progress: bool) -> pd.DataFrame:
    return with_normal_ci(hfr_grid(bank, cutoff=opts.cutoff, remove_mean=opts.remove_mean), "hfr_mean", "hfr_se",
                          "hfr")


def _label_mi(bank: Any, opts: LabelMIOptions, seed: int, progress: bool) -> pd.DataFrame:
    from analysis.mi import label_mi_grid

    return label_mi_grid(bank, method=opts.mi_method, n_subsamples=opts.mi_subsamples, seed=seed)


@dataclass(frozen=True)
class Measure:
    """A measure column of a table: its name on screen and the columns of its 95% interval (low, high)."""

    label: str
    ci: tuple[str, str]


@dataclass(frozen=True)
class Table:
    """A table artefact with a row per (timestep, layer) cell and the measures it holds (what the app's Explorer
    offers): the registered grids, and `analysis.segmentation.SEGMENTATION`, computed from a run, not a bank."""

    artefact: str
    measures: dict[str, Measure]


@dataclass(frozen=True)
class Grid(Table):
    """A registered grid: a `Table` computed by `compute(bank, options, seed, progress)` under its options
    dataclass."""

    compute: Callable[[Any, Any, int, bool], pd.DataFrame]
    options: type


GRIDS: dict[str, Grid] = {
    "probe": Grid("probe", {"accuracy": Measure("probe accuracy", ("accuracy_ci_low", "accuracy_ci_high")),
                            "knn_accuracy": Measure("k-NN accuracy", ("knn_ci_low", "knn_ci_high"))},
                  _probe, ProbeGridOptions),
    "hfr": Grid("hfr", {"hfr_mean": Measure("high-frequency ratio", ("hfr_ci_low", "hfr_ci_high"))}, _hfr,
                HFRGridOptions),
    "label_mi": Grid("mi", {"mi_nats": Measure("label MI I(y; features)", ("mi_ci_low", "mi_ci_high"))}, _label_mi,
                     LabelMIOptions),
}


def parse_options(owner: str, options_type: type, kw: dict[str, Any]) -> Any:
    """kw as `options_type`; an unknown (e.g. misspelt) option is a ValueError naming it and the valid ones."""
    valid = [f.name for f in fields(options_type)]
    unknown = sorted(set(kw) - set(valid))
    if unknown:
        raise ValueError(f"{unknown[0]}: not an option of {owner}; expected one of {valid}")
    return options_type(**kw)


def grid_options(name: str, source: Any) -> Any:
    """`GRIDS[name]`'s options from the same-named fields of `source` (a selection method's options, which declare
    the grid's among their own), validated; the grid's defaults for the fields `source` lacks."""
    options = GRIDS[name].options
    return options(**{f.name: getattr(source, f.name) for f in fields(options) if hasattr(source, f.name)})


def run_grid(name: str, bank: Any, *, seed: int = 0, progress: bool = False, **options: Any) -> pd.DataFrame:
    """Grid `name` of `bank` with `options` (`GRIDS[name].options`), validated before any work."""
    if name not in GRIDS:
        raise ValueError(f"name: expected one of {sorted(GRIDS)}, got {name!r}")
    grid = GRIDS[name]
    return grid.compute(bank, parse_options(f"grid {name!r}", grid.options, options), seed, progress)


def ci_columns(measure: str) -> tuple[str, str] | None:
    """The (low, high) 95% interval columns a registered grid declares for `measure`, or None."""
    return next((g.measures[measure].ci for g in GRIDS.values() if measure in g.measures), None)
