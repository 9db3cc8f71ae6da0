"""What a run's analysis holds and what each page opens on: pure functions of its files' contents (no Streamlit).

A page lists the options a run holds first, marked `MARK`, and opens on them; without any it opens on the oracle
cell of summary.json, and only then shows a compute button. The Runs page's answer table comes from
`answer_row`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Mapping, Sequence, TypeVar

import numpy as np
import pandas as pd

from analysis.grids import GRIDS, Table
from analysis.segmentation import SEGMENTATION
from aselect_core.diffusion import as_time
from aselect_core.model.layer_key import LayerKey

MARK = "✓ computed"
SHORT_MARK = "✓"  # for a multiselect's chips, which a narrow column cuts off
MISSING = "—"  # a value a run's summary.json does not have
T = TypeVar("T", bound=Hashable)


def computed_first(options: Iterable[T], computed: Iterable[T]) -> list[T]:
    """`computed` then the other `options`, each once."""
    return list(dict.fromkeys([*computed, *options]))


def marked(label: str, computed: bool, mark: str = MARK) -> str:
    """`label`, with `mark` when the run holds it."""
    return f"{label} {mark}" if computed else label


def default_choice(options: Sequence[T], computed: Iterable[T], preferred: T | None = None) -> T:
    """The option a selector opens on: the first computed one, else `preferred` when offered, else the first."""
    held = [c for c in computed if c in options]
    return held[0] if held else preferred if preferred in options else options[0]


def block_index(layer: str) -> int:
    """'block.3' -> 3."""
    return LayerKey.parse(layer).index


def oracle_cell(summary: Mapping[str, Any] | None) -> tuple[int, str] | None:
    """(timestep, layer) of summary.json's most accurate probe cell; None without a summary."""
    best = (summary or {}).get("best")
    return (as_time(best["timestep"]), str(best["layer"])) if best else None


def oracle_block(summary: Mapping[str, Any] | None) -> int | None:
    """The block index of the oracle cell; None without one."""
    cell = oracle_cell(summary)
    return block_index(cell[1]) if cell else None


def default_layers(layers: Sequence[str], oracle_layer: str | None) -> list[str]:
    """The layers a curve plot opens on: the oracle's, the deepest and the first (those offered, each once)."""
    return [layer for layer in dict.fromkeys([oracle_layer, *layers[-1:], *layers[:1]]) if layer in layers]


# -- the Explorer's measures -----------------------------------------------------------------------------------
EXPLORER_TABLES: tuple[Table, ...] = (*GRIDS.values(), SEGMENTATION)  # every registered grid, then segmentation


@dataclass(frozen=True)
class MeasureChoice:
    """A measure the Explorer offers: its label, the artefact (table) holding it, its column and 95% CI columns."""

    label: str
    artefact: str
    column: str
    ci: tuple[str, str]

    @property
    def marks_selections(self) -> bool:
        """Whether the selection methods' choices are marked on its curves: they are cells of the probe grid."""
        return self.artefact == GRIDS["probe"].artefact


def measure_choices(tables: Iterable[Table] = EXPLORER_TABLES) -> list[MeasureChoice]:
    """Every measure the tables declare, in table then declaration order."""
    return [MeasureChoice(m.label, t.artefact, column, m.ci) for t in tables for column, m in t.measures.items()]


def held_measures(measures: Iterable[MeasureChoice],
                  frames: Mapping[str, pd.DataFrame | None]) -> list[MeasureChoice]:
    """The measures a run holds: `frames[artefact]` (None when absent) has the column with some value."""
    return [m for m in measures
            if frames.get(m.artefact) is not None and m.column in frames[m.artefact]
            and frames[m.artefact][m.column].notna().any()]


# -- embeddings -------------------------------------------------------------------------------------------------
def umap_blocks(points: pd.DataFrame | None) -> list[int]:
    """The blocks analysis/umap.parquet holds points of (its `layer` column), in file order."""
    if points is None or "layer" not in points:
        return []
    return [block_index(layer) for layer in points.layer.unique()]


# -- attributions -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredAttributions:
    """analysis/attribution.npz: integrated-gradient maps of test images 0..n-1 (what `aselect analyze
    --attribution-images n` writes), each for its own label's logit, at one block."""

    maps: np.ndarray  # (n_t, n, H, W)
    timesteps: tuple[int, ...]
    images: np.ndarray  # (n, C, H, W) in [-1, 1]
    targets: tuple[int, ...]  # (n,) class of each image's map
    layer: int | None  # block index; None when nothing is stored

    @classmethod
    def read(cls, arrays: Mapping[str, np.ndarray] | None) -> "StoredAttributions":
        """From the npz's arrays (attributions, timesteps, images, targets, layer); empty for None."""
        if arrays is None:
            return cls(np.empty((0, 0, 0, 0)), (), np.empty((0, 0, 0, 0)), (), None)
        return cls(np.asarray(arrays["attributions"]), tuple(as_time(t) for t in arrays["timesteps"]),
                   np.asarray(arrays["images"]), tuple(int(y) for y in arrays["targets"]), int(arrays["layer"]))

    @property
    def image_rows(self) -> list[int]:
        return list(range(len(self.targets)))

    def classes_of(self, image: int) -> list[int]:
        """The class whose map of test image `image` is stored ([] when none is)."""
        return [self.targets[image]] if 0 <= image < len(self.targets) else []

    def blocks_of(self, image: int, target: int) -> list[int]:
        """The block whose map of (image, target) is stored ([] when none is)."""
        return [self.layer] if target in self.classes_of(image) else []

    def timesteps_of(self, image: int, target: int, layer: int) -> list[int]:
        """The timesteps whose maps of (image, target, layer) are stored ([] when none are)."""
        return list(self.timesteps) if layer in self.blocks_of(image, target) else []

    def maps_for(self, image: int, target: int, layer: int,
                 timesteps: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
        """(maps (n_t, H, W) at `timesteps`, the image (C, H, W)) when all are stored, else None."""
        stored = self.timesteps_of(image, target, layer)
        if not timesteps or not set(timesteps) <= set(stored):
            return None
        return self.maps[[stored.index(t) for t in timesteps], image], self.images[image]


# -- the Runs page's answers ------------------------------------------------------------------------------------
ANSWER_COLUMNS = ("oracle (t, layer)", "accuracy", "95% CI", "pixels", "random init", "HFR choice", "HFR regret",
                  "MI choice", "MI regret", "segmentation (t, layer)", "mIoU", "pixels mIoU")


def _number(value: float | None, fmt: str = "{:.3f}") -> str:
    return MISSING if value is None else fmt.format(value)


def _cell(entry: Mapping[str, Any] | None) -> str:
    return f"t={entry['timestep']} · {entry['layer']}" if entry else MISSING


def _runner_up(best: Mapping[str, Any]) -> str:
    """' (runner-up t=… · block.i inside)' when the summary names the oracle's runner-up cell, saying whether it
    lies inside the best cell's 95% CI (then the test set does not settle the choice); '' otherwise."""
    runner_up = best.get("runner_up")
    if not runner_up:
        return ""
    return f" (runner-up {_cell(runner_up)} {'inside' if runner_up['within_ci'] else 'outside'})"


def answer_row(summary: Mapping[str, Any] | None) -> dict[str, str]:
    """The answer columns (ANSWER_COLUMNS) of a run's summary.json: the oracle cell with its accuracy and 95% CI
    (and whether its runner-up cell lies inside that CI),
    the raw-pixel and random-init DiT baselines (best over their grids), the HFR and MI choices with their regret
    in accuracy points, the best segmentation cell with its mIoU beside the pixels' (datasets with masks); MISSING
    for what the summary lacks (older runs have no CI or random-init baseline)."""
    summary = summary or {}
    best = summary.get("best") or {}
    low, high = best.get("accuracy_ci_low"), best.get("accuracy_ci_high")
    methods = summary.get("methods") or {}
    row = {"oracle (t, layer)": _cell(best), "accuracy": _number(best.get("accuracy")),
           "95% CI": MISSING if low is None or high is None else f"{low:.3f}–{high:.3f}" + _runner_up(best),
           "pixels": _number((summary.get("pixel_baseline") or {}).get("best_accuracy")),
           "random init": _number((summary.get("random_init_baseline") or {}).get("best_accuracy"))}
    for method in ("hfr", "mi"):
        choice = methods.get(method)
        row[f"{method.upper()} choice"] = _cell(choice)
        row[f"{method.upper()} regret"] = _number((choice or {}).get("regret_points"), "{:.1f} pts")
    seg = summary.get("segmentation") or {}  # datasets with masks only
    row.update({"segmentation (t, layer)": _cell(seg), "mIoU": _number(seg.get("best_miou")),
                "pixels mIoU": _number(seg.get("pixel_baseline_miou"))})
    return row
