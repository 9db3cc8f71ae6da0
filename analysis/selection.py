"""Which (timestep, layer) of a trained DiT to read features from, and what finding it costs.

Methods (registry `METHODS`), each counted in DiT image-passes (one image at one timestep) and wall time:
- `oracle`: probe every candidate (timestep, layer) on n_images train / n_images // 2 test images, argmax of
  held-out accuracy. Its grid and cost are kept in the run dir (`analysis/oracle.parquet`, `oracle.json`);
  every other method's `regret` (oracle accuracy − accuracy at its choice, in accuracy points) and
  `cost_ratio` (oracle image-passes / its image-passes) are measured against them when they exist.
  `details["runner_up"]` (also coarse-to-fine's) names the second-best cell and whether it lies within the
  best cell's 95% CI (`within_ci`: then the test set cannot tell the two apart).
- `hfr`: A-SelecT (arXiv 2603.25758): one pass of a small batch (`hfr_images`, default 64) over the candidate
  timesteps, no probe. Score = mean high-frequency ratio of the token maps; `layer=None` scores every block
  (one forward taps them all, so this costs nothing extra) and picks the best (timestep, layer) pair, a given
  layer restricts the choice to it. Whether high or low HFR goes with good features is an empirical
  question: `hfr_mode="max"` (default) or `"min"`, and `hfr_accuracy_correlation` measures it on the grid.
- `mi`: argmax of label mutual information I(y; pooled features) (`analysis.mi.estimate_mi`, method
  `mi_method`, default "latent") on `mi_images` (default 256) train images, no probe.
- `coarse-to-fine`: probe `coarse` (default 5) evenly spread candidate timesteps, then every candidate between
  the best one's coarse neighbours; same images and probe as the oracle.
`budget` (image-passes) caps hfr/mi's image count at budget // len(timesteps).
Each method's `Selection.grid` is a table of a registered grid (`Method.grid`, `analysis.grids.GRIDS`), computed
with the grid's options the method declares among its own (same names and defaults; `analysis.grids.grid_options`).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from scipy.stats import spearmanr

from analysis.features import Source, extract_features, resolve_source
from analysis.grids import GRIDS, HFRGridOptions, LabelMIOptions, ProbeGridOptions, grid_options
from analysis.grids import parse_options as parse_grid_options
from analysis.probe import best_cell
from aselect_core.datasets import ImageDataset
from aselect_core.diffusion import NoiseSchedule, Schedule, as_time
from aselect_core.model.layer_key import resolve_block
from aselect_core.io import atomic_write_json, atomic_write_parquet
from aselect_core.train.rundir import RunDir


@dataclass
class Selection:
    """A method's choice and its cost; accuracy fields are NaN when no oracle grid exists for the run."""

    method: str
    timestep: int
    layer: str
    score: float  # the method's own criterion at its choice (accuracy, HFR, MI in nats)
    cost_image_passes: int
    wall_seconds: float
    accuracy_at_choice: float = math.nan
    oracle_accuracy: float = math.nan
    regret: float = math.nan  # accuracy points (0-100 scale)
    cost_ratio: float = math.nan  # oracle image-passes / this method's
    details: dict[str, Any] = field(default_factory=dict)  # JSON-able settings and side numbers
    grid: pd.DataFrame | None = None  # the method's per-(timestep, layer) scores

    def row(self) -> dict[str, Any]:
        """A flat record for selection.parquet (details as JSON, grid left out)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("details", "grid")}
        return {**d, "details": json.dumps(self.details, sort_keys=True)}


@dataclass
class Context:
    """Everything a method needs, resolved and validated once."""

    source: Source
    dataset: ImageDataset | str
    timesteps: list[int]
    layers: list[int] | None  # block indices, None = all
    n_images: int
    seed: int
    budget: int | None
    progress: bool
    device: str
    options: Any  # the method's frozen options dataclass

    def features(self, timesteps: list[int], n_images: int, **kw: Any):
        return extract_features(self.source.model, self.dataset, timesteps, self.layers, n_images, self.seed,
                                schedule=self.source.schedule, progress=self.progress, device=self.device,
                                cache_dir=self.cache_dir, **kw)

    @property
    def cache_dir(self) -> Path | None:
        return self.source.run.artefact("features") if self.source.run else None

    def images_for(self, default: int) -> int:
        """Images for a one-pass method: `default`, capped so that images × timesteps fits the budget."""
        return default if self.budget is None else max(2, min(default, self.budget // len(self.timesteps)))


def default_timesteps(num_timesteps: int, n: int = 20) -> list[int]:
    """n evenly spaced integers from 0 (e.g. 0, 50, ..., 950 for T = 1000): a DDPM schedule's default_times."""
    return NoiseSchedule(num_timesteps=num_timesteps).default_times(n)


def _argbest(grid: pd.DataFrame, column: str, mode: str = "max") -> pd.Series:
    i = grid[column].idxmax() if mode == "max" else grid[column].idxmin()
    return grid.loc[i]


# -- options: one frozen dataclass per method, validated at entry ---------------------------------------------
def _at_least(name: str, value: int, low: int, what: str) -> None:
    if value < low:
        raise ValueError(f"{name}: expected at least {low} {what}, got {value}")


@dataclass(frozen=True)
class ProbeOptions:
    """Options of the probe-based methods (oracle): test images (default n_images // 2), also a k-NN probe."""

    n_test: int | None = None
    knn: bool = ProbeGridOptions.knn

    def __post_init__(self) -> None:
        grid_options("probe", self)


@dataclass(frozen=True)
class CoarseToFineOptions(ProbeOptions):
    """Probe `coarse` evenly spread candidates first, then every candidate around the best one."""

    coarse: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least("coarse", self.coarse, 2, "coarse timesteps")


@dataclass(frozen=True)
class HFROptions:
    """A-SelecT's one pass: the HFR grid (`cutoff`, `remove_mean`) of `hfr_images` images; high or low best."""

    hfr_mode: str = "max"
    hfr_images: int = 64
    cutoff: float = HFRGridOptions.cutoff
    remove_mean: bool = HFRGridOptions.remove_mean

    def __post_init__(self) -> None:
        grid_options("hfr", self)
        if self.hfr_mode not in ("max", "min"):
            raise ValueError(f"hfr_mode: expected 'max' or 'min', got {self.hfr_mode!r}")
        _at_least("hfr_images", self.hfr_images, 2, "images")


@dataclass(frozen=True)
class MIOptions:
    """The label-MI grid (`mi_method`, `mi_subsamples`) of `mi_images` train images."""

    mi_method: str = LabelMIOptions.mi_method
    mi_images: int = 256
    mi_subsamples: int = LabelMIOptions.mi_subsamples

    def __post_init__(self) -> None:
        grid_options("label_mi", self)
        _at_least("mi_images", self.mi_images, 2, "images")


def parse_options(method: str, options_type: type, kw: dict[str, Any]) -> Any:
    """kw as `options_type`; an unknown (e.g. misspelt) option is a ValueError naming it and the valid ones."""
    return parse_grid_options(f"method {method!r}", options_type, kw)


# -- methods ----------------------------------------------------------------------------------------------------
def _grid(name: str, bank: Any, ctx: Context) -> pd.DataFrame:
    """Registered grid `name` of `bank` with the grid's options among the method's (validated at entry)."""
    return GRIDS[name].compute(bank, grid_options(name, ctx.options), ctx.seed, ctx.progress)


def runner_up(grid: pd.DataFrame) -> dict[str, Any]:
    """{"runner_up": the probe grid's second-best cell and whether it lies within the best one's 95% CI}: a probe
    choice the test set cannot tell from its runner-up says so."""
    return {"runner_up": best_cell(grid)["runner_up"]}


def _probe_choice(ctx: Context, timesteps: list[int]) -> tuple[pd.DataFrame, int]:
    bank = ctx.features(timesteps, ctx.n_images, n_test=ctx.options.n_test)
    return _grid("probe", bank, ctx), bank.image_passes


def oracle(ctx: Context) -> Selection:
    grid, passes = _probe_choice(ctx, ctx.timesteps)
    best = _argbest(grid, "accuracy")
    return Selection("oracle", as_time(best.timestep), best.layer, float(best.accuracy), passes, 0.0,
                     details=runner_up(grid), grid=grid)


def hfr(ctx: Context) -> Selection:
    opts: HFROptions = ctx.options
    n = ctx.images_for(opts.hfr_images)
    grids, passes = [], 0
    for t in ctx.timesteps:  # one timestep at a time: token maps of every layer only live this long
        bank = ctx.features([t], n, n_test=0, tokens=True, cache=False)
        passes += bank.image_passes
        grids.append(_grid("hfr", bank, ctx))
    grid = pd.concat(grids, ignore_index=True)
    best = _argbest(grid, "hfr_mean", opts.hfr_mode)
    return Selection("hfr", as_time(best.timestep), best.layer, float(best.hfr_mean), passes, 0.0,
                     details={**asdict(opts), "hfr_images": n}, grid=grid)


def mi(ctx: Context) -> Selection:
    opts: MIOptions = ctx.options
    n = ctx.images_for(opts.mi_images)
    bank = ctx.features(ctx.timesteps, n, n_test=0)
    grid = _grid("label_mi", bank, ctx)
    best = _argbest(grid, "mi_nats")
    return Selection("mi", as_time(best.timestep), best.layer, float(best.mi_nats), bank.image_passes, 0.0,
                     details={"mi_method": opts.mi_method, "mi_images": n, "mi_subsamples": opts.mi_subsamples},
                     grid=grid)


def coarse_to_fine(ctx: Context) -> Selection:
    cands = ctx.timesteps
    k = min(ctx.options.coarse, len(cands))
    coarse_idx = sorted({round(i * (len(cands) - 1) / max(k - 1, 1)) for i in range(k)})
    coarse, passes = _probe_choice(ctx, [cands[i] for i in coarse_idx])
    pos = coarse_idx.index(cands.index(as_time(_argbest(coarse, "accuracy").timestep)))
    lo, hi = coarse_idx[max(pos - 1, 0)], coarse_idx[min(pos + 1, len(coarse_idx) - 1)]
    fine_ts = [cands[i] for i in range(lo, hi + 1) if i not in coarse_idx]
    grid = coarse
    if fine_ts:
        fine, fine_passes = _probe_choice(ctx, fine_ts)
        grid, passes = pd.concat([coarse, fine], ignore_index=True), passes + fine_passes
    best = _argbest(grid, "accuracy")
    return Selection("coarse-to-fine", as_time(best.timestep), best.layer, float(best.accuracy), passes, 0.0,
                     details={"coarse": [cands[i] for i in coarse_idx], "fine": fine_ts, **runner_up(grid)}, grid=grid)


@dataclass(frozen=True)
class Method:
    """A selection method: the function, the options dataclass its keywords are validated against, and the
    registered grid (`analysis.grids.GRIDS`) its `Selection.grid` is a table of."""

    run: Callable[[Context], Selection]
    options: type
    grid: str


METHODS: dict[str, Method] = {
    "oracle": Method(oracle, ProbeOptions, "probe"), "hfr": Method(hfr, HFROptions, "hfr"),
    "mi": Method(mi, MIOptions, "label_mi"), "coarse-to-fine": Method(coarse_to_fine, CoarseToFineOptions, "probe")}


def options_for(methods: list[str] | tuple[str, ...], kw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Route keywords to the methods that declare them: {method: its keywords}; a keyword no method of
    `methods` declares is a ValueError naming it and the valid ones."""
    valid = {m: {f.name for f in fields(METHODS[m].options)} for m in methods}
    known = set().union(*valid.values())
    unknown = sorted(set(kw) - known)
    if unknown:
        raise ValueError(f"{unknown[0]}: not an option of methods {list(methods)}; expected one of {sorted(known)}")
    return {m: {k: v for k, v in kw.items() if k in valid[m]} for m in methods}


# -- the oracle grid on disk ------------------------------------------------------------------------------------
def oracle_paths(run: RunDir) -> tuple[Path, Path]:
    return run.artefact("oracle"), run.artefact("oracle_setting")


def save_oracle(run: RunDir, sel: Selection) -> None:
    grid_path, info_path = oracle_paths(run)
    atomic_write_parquet(grid_path, sel.grid)
    atomic_write_json(info_path, {"timestep": sel.timestep, "layer": sel.layer, "accuracy": sel.score,
                                  "cost_image_passes": sel.cost_image_passes, "wall_seconds": sel.wall_seconds,
                                  **sel.details})


def load_oracle(run: RunDir | None) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """The run's oracle probe grid and its record (cost, best accuracy), or None when not computed yet."""
    if run is None:
        return None
    grid_path, info_path = oracle_paths(run)
    if not (grid_path.is_file() and info_path.is_file()):
        return None
    return pd.read_parquet(grid_path), json.loads(info_path.read_text())


def score_against_oracle(sel: Selection, oracle_grid: pd.DataFrame, info: dict[str, Any]) -> Selection:
    """Fill accuracy_at_choice, oracle_accuracy, regret (points) and cost_ratio from the oracle's grid."""
    at = oracle_grid[(oracle_grid.timestep == sel.timestep) & (oracle_grid.layer == sel.layer)].accuracy
    sel.oracle_accuracy = float(oracle_grid.accuracy.max())
    sel.accuracy_at_choice = float(at.iloc[0]) if len(at) else math.nan
    sel.regret = 100.0 * (sel.oracle_accuracy - sel.accuracy_at_choice)
    sel.cost_ratio = info["cost_image_passes"] / sel.cost_image_passes
    return sel


# -- entry point ------------------------------------------------------------------------------------------------
def resolve_layer_arg(layer: int | str | list[int | str] | None, depth: int) -> list[int] | None:
    """`layer` of select_timestep -> sorted block indices, or None for all blocks."""
    if layer is None:
        return None
    return sorted({resolve_block(x, depth) for x in (layer if isinstance(layer, (list, tuple)) else [layer])})


def dataset_identity(dataset: ImageDataset | str) -> str:
    """The name an oracle record keeps of the probed data: the spec, or an in-memory dataset's name."""
    return dataset if isinstance(dataset, str) else dataset.name


def oracle_mismatch(info: dict[str, Any], setting: dict[str, Any]) -> list[str]:
    """The setting fields (dataset, timesteps, layers, images, seed, n_test) where an oracle record differs."""
    return [k for k, v in setting.items() if info.get(k) != v]


def select_timestep(run: str | Path, dataset: ImageDataset | str | None = None, method: str = "hfr",
                    budget: int | None = None, layer: int | str | list[int | str] | None = None,
                    timesteps: list[int] | None = None,
                    *, n_images: int = 1000, seed: int = 0, progress: bool = False, device: str = "cpu",
                    use_oracle_cache: bool = True, schedule: Schedule | None = None, **options: Any) -> Selection:
    """Pick a (timestep, layer) for `run` (a run dir or checkpoint) with `method`; see the module doc.

    `layer`: a block index or "block.i" (or a list of them) to restrict the candidates; None = every block.
    `schedule` overrides the source's (a bare DiT's default is the DDPM linear one). `options` are the method's (`METHODS[method].options`: hfr_mode, hfr_images, cutoff, remove_mean, mi_method,
    mi_images, coarse, n_test, knn); an unknown one is a ValueError. The oracle grid is saved in the run dir with
    its setting (dataset, candidates, images, seed, n_test); `method="oracle"` reuses it when the setting is the
    same (`use_oracle_cache=False` recomputes), and another method is only scored against an oracle of the same
    setting: otherwise its regret stays NaN and `details["oracle_mismatch"]` names the differing fields.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {sorted(METHODS)}, got {method!r}")
    opts = parse_options(method, METHODS[method].options, options)
    if budget is not None and budget < 1:
        raise ValueError(f"budget: expected a positive number of image-passes, got {budget}")
    source = resolve_source(run, schedule)
    if dataset is None and source.data_spec is None:
        raise ValueError("dataset: required when run is not a run dir (no run config to read it from)")
    dataset = dataset if dataset is not None else source.data_spec
    ts = source.schedule.check_timesteps(source.schedule.default_times() if timesteps is None else timesteps)
    layers = resolve_layer_arg(layer, source.model.depth)
    ctx = Context(source, dataset, ts, layers, n_images, seed, budget, progress, device, opts)
    stored = load_oracle(source.run)
    setting = {"dataset": dataset_identity(dataset), "timesteps": ts, "layers": layers, "n_images": n_images,
               "seed": seed, **({"n_test": opts.n_test} if isinstance(opts, ProbeOptions) else {})}
    if method == "oracle" and stored is not None and not oracle_mismatch(stored[1], setting) and use_oracle_cache:
        grid, info = stored
        sel = Selection("oracle", info["timestep"], info["layer"], info["accuracy"], info["cost_image_passes"],
                        info["wall_seconds"], details={**setting, **runner_up(grid)}, grid=grid)
        return score_against_oracle(sel, grid, info)
    start = time.perf_counter()
    sel = METHODS[method].run(ctx)
    sel.wall_seconds = time.perf_counter() - start
    if method == "oracle" and source.run is not None:
        sel.details.update(setting)
        save_oracle(source.run, sel)
        stored = load_oracle(source.run)
    if stored is None:
        return sel
    if mismatch := oracle_mismatch(stored[1], setting):
        sel.details["oracle_mismatch"] = mismatch
        return sel
    return score_against_oracle(sel, *stored)


def hfr_accuracy_correlation(grid_df: pd.DataFrame, hfr_df: pd.DataFrame | None = None) -> tuple[float, float]:
    """Spearman (rho, p) between mean HFR and probe accuracy over the (timestep, layer) cells of a grid.

    `grid_df` holds both `accuracy` and `hfr_mean`, or pass the HFR grid separately (merged on timestep, layer).
    NaN when either column is constant (the rank correlation is undefined there).
    """
    df = grid_df if hfr_df is None else grid_df.merge(hfr_df, on=["timestep", "layer"])
    if len(df) < 3:
        raise ValueError(f"grid_df: expected at least 3 (timestep, layer) cells with accuracy and hfr_mean, "
                         f"got {len(df)}")
    if df.hfr_mean.nunique() < 2 or df.accuracy.nunique() < 2:
        return math.nan, math.nan
    rho, p = spearmanr(df.hfr_mean, df.accuracy)
    return float(rho), float(p)
