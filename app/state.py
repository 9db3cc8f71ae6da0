"""What every page shares: the runs root, the run list, readers cached by file modification time, layout helpers.

Readers take a `stamp` (the modification times of the files they read) as part of their `st.cache_data` key, so
a page renders from the stored analyses without recomputing, and a rewritten file is read again.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analysis.figures.time_axis import TimeAxis
from analysis.grids import GRIDS
from analysis.registry import ANALYSES
from app import choices, jobs
from app.serve import resolve_runs_root
from aselect_core.diffusion import make_schedule
from aselect_core.train.rundir import RunDir, RunInfo, artefact_ref

# the artefacts a run's analyses write: the registered grids', the selections', the registered analyses',
# segmentation's
ANALYSIS_FILES = (*(g.artefact for g in GRIDS.values()), "selection", *(a.artefact for a in ANALYSES.values()),
                  "segmentation")
DEFAULT_TIMESTEPS = list(range(0, 1000, 100))
SEED_TABLE_ENV = "ASELECT_SEED_TABLE"
EXPLORER = "pages/1_Timestep_explorer.py"
# px each side of a plot at least: Streamlit's plotly theme sets the template's left and right margins to 0, which
# puts the right frame line and the last tick label on the container's edge (and pads axis lines out beyond them)
MARGIN = {"l": 8, "r": 24, "t": 8, "b": 8}


@dataclass(frozen=True)
class Run:
    """A folder under the runs root: its config and status, or why it cannot be read."""

    path: Path
    row: dict[str, Any]  # the Runs table row
    error: str | None

    @property
    def name(self) -> str:
        return self.path.name


def runs_root() -> Path:
    return resolve_runs_root(None)


def seed_table_path() -> Path:
    """The seed table the Compare page shows: $ASELECT_SEED_TABLE, else bench/seed_table.py's output here."""
    default = Path(__file__).resolve().parents[1] / "bench" / "results" / "seed_table.csv"
    return Path(os.environ.get(SEED_TABLE_ENV) or default)


def stamp(*paths: Path) -> tuple[float, ...]:
    """Modification times of `paths` (0 for a missing one): the cache key of what is read from them."""
    return tuple(p.stat().st_mtime if p.exists() else 0.0 for p in paths)


def run_files(run: Path) -> list[Path]:
    """The files a run's summary depends on."""
    rd = RunDir(run)
    return [rd.config_path, rd.model_info_path, rd.metrics_path, rd.latest_path, rd.curriculum_path,
            *(rd.artefact(n) for n in ANALYSIS_FILES)]


@st.cache_data(show_spinner=False)
def _run_row(run: str, key: tuple[float, ...]) -> tuple[dict[str, Any], str | None]:
    from analysis.compare import run_row

    path, rd = Path(run), RunDir(Path(run))
    row: dict[str, Any] = {"run": path.name}
    try:
        info = rd.info()
        latest = rd.latest() or {}
        summary = run_row(path)
        if summary["status"] != "ok":  # a run file compare_runs could not read
            raise ValueError(summary["status"])
    except Exception as e:  # any unreadable file makes the run "broken", with the reason shown
        return {**row, "status": "broken"}, str(e).splitlines()[0] if str(e) else type(e).__name__
    trained = info.steps is not None  # else a model trained elsewhere, analysed by `aselect analyze --model`
    return {**row, "dataset": info.data, "model": info.model, "policy": info.policy,
            "steps": f"{latest.get('step', 0)}/{info.steps}" if trained else "–",
            "image_passes": summary["image_passes"], "best_probe_accuracy": summary["oracle_accuracy"],
            "status": latest.get("status", "not started") if trained else "analysed",
            "analyses": ", ".join(n for n in ANALYSIS_FILES if rd.artefact(n).is_file()) or "none"}, None


def list_runs(root: Path | None = None) -> list[Run]:
    """Every folder under the runs root, sorted by name; broken ones carry their reason."""
    root = root or runs_root()
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")) if root.is_dir() else []
    runs = [Run(d, *_run_row(str(d), stamp(*run_files(d)))) for d in folders]
    return [Run(r.path, {**r.row, "status": "starting"}, "training is starting (no config.json yet)")
            if r.error and (job := jobs.status(r.path, "train")) and job.running else r for r in runs]


@st.cache_data(show_spinner=False)
def _read_parquet(path: str, key: tuple[float, ...]) -> pd.DataFrame:
    return pd.read_parquet(path)


def table(run: Path, name: str) -> pd.DataFrame | None:
    """Artefact NAME of the run (or a run-dir table: metrics, curriculum), None when absent."""
    rd = RunDir(run)
    training = {"metrics": rd.metrics_path, "curriculum": rd.curriculum_path}
    path = training[name] if name in training else rd.artefact(name)
    return _read_parquet(str(path), stamp(path)) if path.is_file() else None


@st.cache_data(show_spinner=False)
def _run_info(run: str, key: tuple[float, ...]) -> RunInfo:
    return RunDir(Path(run)).info()


def run_info(run: Path) -> RunInfo:
    """The run's `RunInfo` (config.json, or model.json of `aselect analyze --model`), cached until either changes."""
    rd = RunDir(run)
    return _run_info(str(run), stamp(rd.config_path, rd.model_info_path))


def time_axis(run: Path) -> TimeAxis:
    """The run's time axis for figures and sliders: its schedule's convention, with log SNR."""
    return _time_axis(tuple(run_info(run).schedule))


@functools.lru_cache(maxsize=16)
def _time_axis(schedule: tuple) -> TimeAxis:
    return TimeAxis(make_schedule(*schedule))


def summary(run: Path) -> dict[str, Any] | None:
    path = RunDir(run).artefact("summary")
    return json.loads(path.read_text()) if path.is_file() else None


@st.cache_data(show_spinner=False)
def _attributions(path: str, key: tuple[float, ...]) -> choices.StoredAttributions:
    with np.load(path) as arrays:
        return choices.StoredAttributions.read(arrays)


def stored_attributions(run: Path) -> choices.StoredAttributions:
    """The run's analysis/attribution.npz (empty when it has none)."""
    path = RunDir(run).artefact("attribution")
    return _attributions(str(path), stamp(path)) if path.is_file() else choices.StoredAttributions.read(None)


@st.cache_data(show_spinner=False)
def _segmentation_masks(path: str, key: tuple[float, ...]):
    from analysis.segmentation import StoredMasks

    return StoredMasks.read(path)


def segmentation_masks(run: Path):
    """The run's analysis/segmentation_masks.npz as `analysis.segmentation.StoredMasks`; None when absent."""
    path = RunDir(run).artefact("segmentation_masks")
    return _segmentation_masks(str(path), stamp(path)) if path.is_file() else None


@st.cache_data(show_spinner=False)
def _figure(name: str, run: str, key: tuple[float, ...], opts: tuple[tuple[str, Any], ...]):
    from analysis.figures import build_figure

    return build_figure(name, run, **dict(opts))


def figure(name: str, run: Path, **opts: Any):
    """(fig, data) of figure `name` of the `analysis.figures` registry, cached by the run's file times."""
    return _figure(name, str(run), stamp(*run_files(run), RunDir(run).path / "curriculum_classes.parquet"),
                   tuple(sorted(opts.items())))


def to_image(x: np.ndarray) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W[, C]) in [0, 1] for st.image."""
    x = np.clip((np.asarray(x) + 1) / 2, 0, 1).transpose(1, 2, 0)
    return x[..., 0] if x.shape[-1] == 1 else x


# -- layout ----------------------------------------------------------------------------------------------------
def page(title: str, about: str) -> None:
    st.set_page_config(page_title=f"{title} · A-SelecT", layout="wide")
    st.title(title)
    st.caption(about)


def page_run(title: str, about: str) -> Path:
    """`page` and `pick_run` of a page about one run; stops the page (after pick_run's message) when there is none."""
    page(title, about)
    run = pick_run()
    if run is None:
        st.stop()
    return run


def pick_run(label: str = "run", key: str = "run", runs: list[Run] | None = None) -> Path | None:
    """A sidebar choice among the readable runs (remembered across pages); None, with a message, when there are none."""
    good = [r for r in (runs if runs is not None else list_runs()) if r.error is None]
    if not good:
        st.info(f"No readable run dirs under `{runs_root()}`. Start a training on the Runs page, or serve another "
                "folder with `aselect app --runs DIR`.")
        return None
    names = [r.name for r in good]
    remembered = st.session_state.get(f"_{key}")
    index = names.index(remembered) if remembered in names else 0
    name = st.sidebar.selectbox(label, names, index=index, key=f"pick_{key}")
    st.session_state[f"_{key}"] = name
    return good[names.index(name)].path


def framed(fig: go.Figure) -> go.Figure:
    """`fig` with each margin at least MARGIN's (its own or its template's when larger), no padding between plot
    area and axes, and every axis line drawn on both sides, so its frame and tick labels lie inside the container."""
    own, template = fig.layout.margin, fig.layout.template.layout.margin
    fig.update_layout(margin={**{side: max(own[side] or template[side] or 0, least) for side, least in MARGIN.items()},
                              "pad": 0})
    fig.update_xaxes(showline=True, mirror=True, automargin=True)
    return fig.update_yaxes(showline=True, mirror=True, automargin=True)


def open_run(name: str, page: str = EXPLORER) -> None:
    """Switch to `page` (a path relative to Home.py) with run `name` chosen in its `pick_run` (default key); call it
    before this script's own `pick_run`."""
    st.session_state["_run"] = name
    st.session_state.pop("pick_run", None)  # the selectbox opens on `_run` again
    st.switch_page(page)


def show(built: tuple[Any, pd.DataFrame], key: str, height: int = 360, mark_x: int | None = None,
         **layout: Any) -> None:
    """A figure builder's (fig, data) at screen size (builders set paper sizes), `mark_x` as a dotted vertical line."""
    fig, _ = built
    if mark_x is not None:
        fig.add_vline(x=mark_x, line_dash="dot")
    st.plotly_chart(framed(fig.update_layout(height=height, width=None, **layout)), key=key)


def job_panel(run: Path, kind: str) -> jobs.JobState | None:
    """Progress bar, log tail and cancel button of the run's `kind` job; refreshes itself while it runs."""
    state = jobs.status(run, kind)
    if state is None:
        return None

    @st.fragment(run_every=2 if state.running else None)
    def panel() -> None:
        now = jobs.status(run, kind)
        if now.running:
            st.progress(now.progress or 0.0, text=f"{kind} running · {round(100 * (now.progress or 0))}%")
            if st.button(f"Cancel {kind}", key=f"cancel_{kind}_{run.name}"):
                jobs.cancel(run, kind)
        elif now.returncode == 0:
            st.success(f"{kind} finished.")
        else:
            st.error(f"{kind} ended with exit code {now.returncode} (see the log below).")
        with st.expander(f"{kind} log", expanded=now.running or now.returncode not in (0, None)):
            st.code(now.tail or "(empty)", language=None)
        if state.running and not now.running:
            st.rerun()

    panel()
    return state


def require(run: Path, names: tuple[str, ...], what: str, kind: str, launch: Callable[[], list[str]]) -> bool:
    """True when the run has analysis/NAME files for all `names`; else a message naming the missing ones, a button
    that computes them in a background job, and the job's progress."""
    missing = [n for n in names if not RunDir(run).artefact(n).is_file()]
    state = jobs.status(run, kind)
    running = bool(state and state.running)
    if missing:
        st.info(f"**{what}** needs `{', '.join(map(artefact_ref, missing))}`, "
                f"which `{run.name}` does not have yet.")
        if not running and st.button(f"Compute {what.lower()}", key=f"compute_{kind}", type="primary"):
            jobs.start(run, kind, launch())
            running = True
    if missing or running:
        job_panel(run, kind)
    return not missing


@st.cache_data(show_spinner=False)
def noised_examples(run: str, t: int, n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(x_0 strip, x_t strip, class names) of n train images of the run's dataset: `q_sample` with each image's
    fixed noise (the same noise the analysis used); each strip one (H, n·(W+1) − 1[, C]) uint8 image, so the page
    loads two pictures, not 2n."""
    from analysis.features import probe_splits
    from analysis.generation.sampling import image_grid
    from aselect_core.diffusion import make_schedule

    info = RunDir(Path(run)).info()
    splits = probe_splits(info.data, n, seed, 1, info.image_size)
    xt = splits.noisy("train", t, make_schedule(*info.schedule))  # (n, C, H, W)
    names = [splits.train.classes[y] for y in splits.train.labels.tolist()]
    return image_grid(splits.train.images, cols=n), image_grid(xt, cols=n), names


def block_choice(run: Path, where: Any = st, computed: list[int] | None = None, preferred: int | None = None) -> int:
    """A selectbox (in `where`: st, st.sidebar or a column) over the blocks of the run's latest DiT, the `computed`
    ones first and marked; it opens on the first computed block, else on `preferred`."""
    computed = computed or []
    options = choices.computed_first(range(run_info(run).depth), computed)
    default = choices.default_choice(options, computed, preferred)
    return where.selectbox("block", options, index=options.index(default),
                           format_func=lambda i: choices.marked(f"block.{i}", i in computed))


@st.cache_data(show_spinner=False)
def probe_images(run: str, n_images: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(train images, test images, class names) as displayable arrays; rows match the feature bank's."""
    from analysis.features import run_splits

    s = run_splits(run, n_images)
    return (np.stack([to_image(x) for x in s.train.images.numpy()]),
            np.stack([to_image(x) for x in s.test.images.numpy()]), list(s.train.classes))


def progress_bar(text: str) -> Callable[[float, str], None]:
    """A st.progress bar as a (fraction, message) callback."""
    bar = st.progress(0.0, text=text)
    return lambda fraction, message: bar.progress(fraction, text=f"{text}: {message}")


@st.cache_data(show_spinner="Sampling…", max_entries=32)
def samples(run: str, key: tuple[float, ...], n: int, steps: int, sampler: str, seed: int, cfg_scale: float,
            label: int | None) -> np.ndarray:
    """A (rows·H, cols·W, C) uint8 grid of n samples of the run's latest EMA DiT (`analysis.generation.sample`),
    cached per checkpoint (`key`) and settings: the same settings give the same images."""
    from analysis.generation import load_generator, sample
    from analysis.generation.sampling import image_grid

    gen = load_generator(run)
    images = sample(gen.model, n, steps, sampler, gen.schedule, label, cfg_scale, seed)  # (n, C, H, W)
    return image_grid(images)


def generation_scores(run: Path) -> dict[str, Any] | None:
    """The run's analysis/generation.json (`aselect analyze --generation N`), None when absent."""
    path = RunDir(run).artefact("generation")
    return json.loads(path.read_text()) if path.is_file() else None


@st.cache_data(show_spinner=False)
def _comparison(paths: tuple[str, ...], key: tuple[float, ...]) -> pd.DataFrame:
    from analysis.compare import compare_runs

    return compare_runs(list(paths))


def comparison(runs: list[Path]) -> pd.DataFrame:
    """`analysis.compare.compare_runs` of the runs, cached until any of their files changes."""
    return _comparison(tuple(map(str, runs)), stamp(*(f for r in runs for f in run_files(r))))
