"""analysis.figures: every builder's CSV reproduces its traces, the paper template is applied, static exports are
valid files of the requested size, and write_figures skips what a run cannot give instead of crashing."""
from __future__ import annotations

import json
import logging
import math
import shutil
import time
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis.figures import (FIGURES, FONT, OKABE_ITO, WIDTHS, attribution_grid, build_figure,
                              class_curriculum_heatmap, comparison_table, curriculum_heatmap, export_figure,
                              export_session, find_browser, hfr_scatter, immse_curve, loss_by_bin, mi_curves,
                              missing_inputs, policy_marginals, policy_pareto, probe_curves, probe_heatmap,
                              representation_vs_generation, seed_table_dots, umap_grid, write_figures)
from analysis.compare import pareto_front
from analysis.figures.export import RASTER_SCALE
from analysis.figures.time_axis import MAX_TICKS, TimeAxis
from aselect_core.diffusion import FlowSchedule, NoiseSchedule
from aselect_core.train.rundir import RunDir

TIMESTEPS = [0, 100, 200, 300, 400, 500]
LAYERS = ["block.0", "block.1", "block.2", "block.10"]  # natural order puts block.10 last


# -- synthetic inputs ------------------------------------------------------------------------------------------
def probe_frame() -> pd.DataFrame:
    rows = [{"timestep": t, "layer": layer, "kind": "block", "accuracy": 0.9 - t / 1000 + 0.01 * i,
             "knn_accuracy": 0.8 - t / 1000, "pooling": "mean"} for i, layer in enumerate(LAYERS) for t in TIMESTEPS]
    rows += [{"timestep": t, "layer": "pixels", "kind": "pixels", "accuracy": 0.85 - t / 2000,
              "knn_accuracy": np.nan, "pooling": "flatten"} for t in TIMESTEPS]
    return pd.DataFrame(rows)


def selection_frame() -> pd.DataFrame:
    """As analysis.pipeline writes it (the columns analysis.compare reads)."""
    return pd.DataFrame({"method": ["oracle", "hfr", "mi"], "timestep": [0, 100, 200],
                         "layer": ["block.10", "block.1", "block.2"], "accuracy_at_choice": [0.93, 0.81, 0.72],
                         "regret": [0.0, 12.0, 21.0], "cost_image_passes": [6000, 64, 100],
                         "cost_ratio": [1.0, 6000 / 64, 60.0]})


def hfr_frame() -> pd.DataFrame:
    return pd.DataFrame([{"timestep": t, "layer": layer, "hfr_mean": 0.2 + t / 1000 + 0.02 * i, "hfr_std": 0.01}
                         for i, layer in enumerate(LAYERS) for t in TIMESTEPS])


def mi_frame() -> pd.DataFrame:
    return pd.DataFrame([{"timestep": t, "layer": layer, "mi_nats": 2.0 - t / 300 + 0.1 * i, "method": "latent"}
                         for i, layer in enumerate(LAYERS) for t in TIMESTEPS])


def immse_frame() -> pd.DataFrame:
    t = np.array(TIMESTEPS[::-1])
    return pd.DataFrame({"timestep": t, "snr": 1.0 / (t + 1), "mmse": 0.5 + t / 1000, "mi_nats": 50.0 / (t + 1)})


def segmentation_frame() -> pd.DataFrame:
    rows = [{"timestep": t, "layer": layer, "miou": 0.5 - t / 2000 + 0.01 * i, "pixel_accuracy": 0.8 - t / 2000}
            for i, layer in enumerate(LAYERS) for t in TIMESTEPS]
    rows += [{"timestep": t, "layer": "pixels", "miou": 0.3, "pixel_accuracy": 0.6} for t in TIMESTEPS]
    return pd.DataFrame(rows).assign(miou_ci_low=lambda d: d.miou - 0.02, miou_ci_high=lambda d: d.miou + 0.02,
                                     pixel_accuracy_ci_low=0.0, pixel_accuracy_ci_high=1.0)


def curriculum_frame(steps=(0, 2, 4, 6), bins: int = 5) -> pd.DataFrame:
    rows = []
    for s in steps:
        p = np.exp(-np.arange(bins) * s / 4.0)
        p /= p.sum()
        rows += [{"step": s, "bin": b, "t_lo": 200 * b, "t_hi": 200 * b + 199, "probability": p[b]}
                 for b in range(bins)]
    return pd.DataFrame(rows)


def classes_frame() -> pd.DataFrame:
    return pd.concat([curriculum_frame(bins=5).assign(label=y) for y in (0, 1, 2)], ignore_index=True)


def metrics_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    loss = rng.uniform(0.5, 1.0, size=(20, 2))
    total = loss.mean(axis=1)
    loss[rng.uniform(size=loss.shape) < 0.3] = np.nan  # bins a batch missed
    return pd.DataFrame({"step": np.arange(1, 21), "loss": total, "image_passes": 48 * np.arange(1, 21),
                         "loss_t0000_0499": loss[:, 0], "loss_t0500_0999": loss[:, 1]})


def comparison_frame() -> pd.DataFrame:
    """The analysis.compare.compare_runs columns policy_pareto reads."""
    return pd.DataFrame({"run": list("abcdef"), "dataset": ["digits"] * 4 + ["mnist5k"] * 2,
                         "policy": ["uniform", "learned", "fixed", "loss-aware", "uniform", "learned"],
                         "image_passes": [100.0, 200.0, 150.0, 300.0, 100.0, 120.0],
                         "oracle_accuracy": [0.80, 0.90, 0.70, 0.85, 0.60, 0.65]})


def marginal_curricula() -> dict:
    """Final p(t) of three policies on two datasets: uniform, a 2-bin subset, and a selector leaning to late bins."""
    subset = curriculum_frame().assign(probability=lambda d: np.where(d.bin.isin([1, 3]), 0.5, 0.0))
    return {(data, policy): frame for data in ("mnist5k", "shapes")
            for policy, frame in (("uniform", curriculum_frame(steps=(0,))), ("uniform-subset", subset),
                                  ("learned", curriculum_frame()))}


def seed_frame() -> pd.DataFrame:
    """analysis.seed_table's summary columns: two datasets, three methods."""
    return pd.DataFrame({"dataset": ["mnist5k"] * 3 + ["shapes"] * 3, "method": ["Full", "learned", "Raw pixels"] * 2,
                         "accuracy_mean": [0.8, 0.82, 0.75, 0.3, 0.35, 0.2],
                         "accuracy_std": [0.01, 0.02, np.nan, 0.03, 0.01, np.nan], "n_seeds": [3] * 6})


def umap_frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame([{"timestep": t, "index": i, "x": rng.normal(), "y": rng.normal(), "label": i % 3}
                         for t in (0, 200, 400) for i in range(12)])


def attribution_arrays() -> dict:
    rng = np.random.default_rng(2)
    return {"attributions": rng.normal(size=(3, 2, 4, 4)), "timesteps": np.array([0, 200, 400]),
            "images": rng.uniform(-1, 1, size=(2, 1, 4, 4))}


BUILDS = {
    "probe_heatmap": lambda: probe_heatmap(probe_frame()),
    "probe_curves": lambda: probe_curves(probe_frame(), selection_frame()),
    "hfr_scatter": lambda: hfr_scatter(probe_frame(), hfr_frame()),
    "mi_curves": lambda: mi_curves(mi_frame()),
    "immse_curve": lambda: immse_curve(immse_frame()),
    "curriculum_heatmap": lambda: curriculum_heatmap(curriculum_frame()),
    "class_curriculum_heatmap": lambda: class_curriculum_heatmap(classes_frame()),
    "loss_by_bin": lambda: loss_by_bin(metrics_frame(), window=3),
    "policy_pareto": lambda: policy_pareto(comparison_frame()),
    "policy_marginals": lambda: policy_marginals(marginal_curricula()),
    "seed_table_dots": lambda: seed_table_dots(seed_frame()),
    "umap_grid": lambda: umap_grid(umap_frame()),
    "attribution_grid": lambda: attribution_grid(**attribution_arrays()),
}


# -- the plotted values are the CSV's values -------------------------------------------------------------------
def _key(v):
    """A value as read back from CSV: numbers as float, anything else as str."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def assert_csv_reproduces(fig, data: pd.DataFrame, tmp_path) -> None:
    data.to_csv(tmp_path / "d.csv", index=False)
    csv = pd.read_csv(tmp_path / "d.csv")
    assert sorted(csv.trace.unique()) == list(range(len(fig.data))), "every trace has rows, no stray rows"
    for i, trace in enumerate(fig.data):
        rows, meta = csv[csv.trace == i], trace.meta
        assert (rows.series.fillna("").astype(str) == (trace.name or "")).all()
        if trace.type == "heatmap":
            xs, ys, z = [_key(v) for v in trace.x], [_key(v) for v in trace.y], np.asarray(trace.z, dtype=float)
            assert np.isfinite(z).sum() == rows[meta["z"]].notna().sum()
            for _, r in rows.iterrows():
                cell = z[ys.index(_key(r[meta["y"]])), xs.index(_key(r[meta["x"]]))]
                np.testing.assert_allclose(cell, r[meta["z"]], rtol=1e-12, equal_nan=True)
        else:
            for axis in ("x", "y"):
                plotted, stored = list(getattr(trace, axis)), rows[meta[axis]].tolist()
                assert [_key(v) for v in plotted] == pytest.approx([_key(v) for v in stored], rel=1e-12) \
                    if all(isinstance(_key(v), float) for v in plotted) else \
                    [_key(v) for v in plotted] == [_key(v) for v in stored]


@pytest.mark.parametrize("name", BUILDS)
def test_csv_reproduces_every_trace(name, tmp_path):
    fig, data = BUILDS[name]()
    assert len(fig.data) > 0
    assert_csv_reproduces(fig, data, tmp_path)


@pytest.mark.parametrize("name", BUILDS)
def test_template_applied(name):
    fig, _ = BUILDS[name]()
    layout = fig.layout.template.layout
    assert layout.font.family == FONT and 11 <= layout.font.size <= 14  # 9-10 pt at 96 dpi
    assert tuple(layout.colorway) == OKABE_ITO and layout.plot_bgcolor == "white"
    assert fig.layout.width in WIDTHS.values()


def test_palette_of_categories_and_heatmaps():
    fig, _ = policy_pareto(comparison_frame())
    marker_colors = {t.marker.color for t in fig.data if t.mode == "markers"}
    assert marker_colors <= set(OKABE_ITO) and len(marker_colors) == 4  # one per policy
    fig, _ = probe_heatmap(probe_frame())
    assert fig.layout.template.data.heatmap[0].colorscale[0][1].lower() in ("#440154", "rgb(68,1,84)")  # viridis


def test_probe_curves_mark_choices_and_pixels():
    fig, data = probe_curves(probe_frame(), selection_frame())
    names = [t.name for t in fig.data]
    assert names[:4] == LAYERS  # natural layer order
    pixels = fig.data[names.index("raw pixels")]
    assert pixels.line.dash == "dash"
    oracle = fig.data[names.index("oracle choice")]
    assert (oracle.x[0], oracle.y[0]) == (0, pytest.approx(0.93))  # block.10 at t=0: 0.9 + 0.03
    assert oracle.marker.symbol == "star"
    assert "mi choice" not in names  # only the requested methods
    assert data[data.series == "hfr choice"][["timestep", "layer"]].values.tolist() == [[100, "block.1"]]


def test_hfr_scatter_title_has_spearman_rho():
    fig, data = hfr_scatter(probe_frame(), hfr_frame())
    from scipy.stats import spearmanr
    rho = spearmanr(data.hfr_mean, data.accuracy).statistic
    assert fig.layout.title.text == f"Spearman ρ = {rho:.2f} (n = {len(data)})"
    flat = probe_frame().assign(accuracy=0.5)  # every cell at one accuracy: no ranking, so no ρ (and no warning)
    assert hfr_scatter(flat, hfr_frame())[0].layout.title.text == f"Spearman ρ = n/a (n = {len(data)})"


def test_curriculum_heatmap_rows_sum_to_one_and_effective_line():
    fig, data = curriculum_heatmap(curriculum_frame())
    heat, line = fig.data
    np.testing.assert_allclose(np.asarray(heat.z).sum(axis=0), 1.0)  # each step (column) is a distribution
    assert line.y[0] == pytest.approx(1000.0)  # uniform over 5 bins of 200 timesteps at step 0


def test_loss_by_bin_is_a_nan_aware_rolling_mean():
    metrics = metrics_frame()
    fig, data = loss_by_bin(metrics, window=3)
    expected = metrics.loss_t0000_0499.rolling(3, min_periods=1).mean().dropna()
    np.testing.assert_allclose(fig.data[0].y, expected.to_numpy())
    assert fig.data[0].name == "t 0–499"


def test_policy_pareto_draws_the_compare_front():
    df = comparison_frame()
    fig, data = policy_pareto(df)
    fronts = {t.name: list(t.x) for t in fig.data if t.name.startswith("Pareto front")}
    assert fronts == {"Pareto front · digits": [100.0, 200.0], "Pareto front · mnist5k": [100.0, 120.0]}
    drawn = data[data.series.str.startswith("Pareto front")].run.tolist()
    assert drawn == df[pareto_front(df)].run.tolist() == ["a", "b", "e", "f"]  # c, d: costlier and less accurate


def test_representation_vs_generation_fronts_low_fd_and_high_accuracy():
    df = comparison_frame()
    df = df.assign(fd=df.image_passes / 10.0)  # here FD ranks the runs as cost does
    fig, data = representation_vs_generation(df)
    assert "Fréchet distance" in fig.layout.xaxis.title.text and set(data.fd.dropna()) <= set(df.fd)
    drawn = data[data.series.str.startswith("Pareto front")].run.tolist()
    assert drawn == df[pareto_front(df, "fd")].run.tolist() == ["a", "b", "e", "f"]
    with pytest.raises(ValueError, match="comparison: no rows with finite oracle_accuracy, fd"):
        representation_vs_generation(df.assign(fd=np.nan))


def test_policy_marginals_are_densities_on_one_axis():
    fig, data = policy_marginals(marginal_curricula())
    assert [t.name for t in fig.data] == ["uniform", "uniform-subset", "learned"] * 2
    assert sum(t.showlegend for t in fig.data) == 3  # one legend entry per policy, not per panel
    mass = (data.density * data.width).groupby(data.trace).sum()
    np.testing.assert_allclose(mass, 1.0)  # each trace is a probability density over t
    subset = data[data.series == "uniform-subset"]
    assert set(subset[subset.density > 0].bin) == {1, 3} and subset.density.max() == pytest.approx(0.5 / 200)
    assert (data[data.series == "learned"].step == 6).all()  # the last snapshot by default


def test_seed_table_dots_whiskers_are_the_std():
    fig, data = seed_table_dots(seed_frame())
    assert len(fig.data) == 2 and list(fig.layout.yaxis.categoryarray) == ["Raw pixels", "learned", "Full"]
    np.testing.assert_allclose(fig.data[1].error_x.array, [0.03, 0.01, 0.0])  # shapes; no std -> no whisker
    assert data[data.dataset == "shapes"].accuracy_mean.tolist() == [0.3, 0.35, 0.2]


def test_builders_refuse_bad_inputs():
    with pytest.raises(ValueError, match=r"probe: expected columns .* missing \['accuracy'\]"):
        probe_heatmap(probe_frame().drop(columns="accuracy"))
    with pytest.raises(ValueError, match="metrics: expected per-bin loss columns"):
        loss_by_bin(metrics_frame()[["step", "loss"]])
    with pytest.raises(ValueError, match=r"attributions: expected \(n_timesteps=2"):
        attribution_grid(np.zeros((3, 1, 4, 4)), [0, 1])
    with pytest.raises(ValueError, match="several rows per"):
        probe_heatmap(pd.concat([probe_frame(), probe_frame().assign(pooling="flatten")]))


# -- static export (needs Chromium: fails, never skips, without it) --------------------------------------------
@pytest.fixture(scope="module")
def browser():
    """One headless browser for every export test of this module (starting one costs seconds)."""
    try:
        path = find_browser()
    except RuntimeError as e:
        pytest.fail(f"{e} — CI must install the browser for static export tests")
    with export_session():
        yield path


def test_export_formats_are_valid(browser, tmp_path):
    fig, data = probe_curves(probe_frame(), selection_frame())
    paths = export_figure(fig, data, tmp_path, "curves", formats=("pdf", "svg", "png"))
    assert [p.name for p in paths] == ["curves.pdf", "curves.svg", "curves.png", "curves.csv"]
    assert (tmp_path / "curves.pdf").read_bytes().startswith(b"%PDF")
    assert ET.parse(tmp_path / "curves.svg").getroot().tag.endswith("svg")
    png = (tmp_path / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(tmp_path / "curves.png") as im:
        assert im.size == (fig.layout.width * RASTER_SCALE, fig.layout.height * RASTER_SCALE)
    assert_csv_reproduces(fig, pd.read_csv(tmp_path / "curves.csv"), tmp_path)


def test_one_browser_exports_every_builder(browser, tmp_path):
    timings = {}
    with export_session():
        for name, build in BUILDS.items():
            start = time.perf_counter()
            export_figure(*build(), tmp_path, name, formats=("svg",))
            timings[name] = time.perf_counter() - start
    assert all((tmp_path / f"{n}.svg").stat().st_size > 1000 for n in BUILDS)
    print("svg export seconds:", {k: round(v, 2) for k, v in timings.items()})


def test_bad_formats_refused(tmp_path):
    fig, data = immse_curve(immse_frame())
    with pytest.raises(ValueError, match="formats: expected some of"):
        export_figure(fig, data, tmp_path, "x", formats=("eps",))


# -- run dirs --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run(curriculum_every=2)


def test_missing_inputs_and_build_from_run(run):
    assert missing_inputs("curriculum", run) == []
    assert missing_inputs("probe_curves", run) == ["analysis/probe.parquet"]
    with pytest.raises(FileNotFoundError, match="figure probe_heatmap needs analysis/probe.parquet"):
        build_figure("probe_heatmap", run)
    fig, data = build_figure("curriculum", run)
    assert sorted(data.step.unique()) == [0, 2, 4, 6]


def test_write_figures_on_a_tiny_run(browser, run, tmp_path, caplog):
    # a second run with analysis files, so the probe figures and the Pareto plot are drawn too
    analysed = tmp_path / "analysed"
    analysed.mkdir()
    for f in ("config.json", "metrics.parquet", "curriculum.parquet"):
        (analysed / f).write_bytes((run / f).read_bytes())
    (analysed / "analysis").mkdir()
    probe_frame().to_parquet(analysed / "analysis" / "probe.parquet")
    selection_frame().to_parquet(analysed / "analysis" / "selection.parquet")
    with caplog.at_level(logging.INFO, logger="analysis.figures.report"):
        paths = write_figures([run, analysed], tmp_path / "out", formats=("svg", "png"), progress=False)
    out = tmp_path / "out"
    for name in ("curriculum", "loss_by_bin"):
        for ext in ("svg", "png", "csv"):
            assert out / "r" / f"{name}.{ext}" in paths
    assert (out / "analysed" / "probe_curves.svg").is_file() and (out / "policy_pareto.png").is_file()
    curricula = pd.read_csv(out / "policy_curricula.csv")  # both runs' p(t), named by their output folder
    assert set(curricula.series) == {"r", "analysed"} and set(curricula.dataset) == {RunDir(run).config().data}
    assert "skipped r/probe_heatmap: missing analysis/probe.parquet" in caplog.text
    assert "skipped analysed/hfr_vs_accuracy: missing analysis/hfr.parquet" in caplog.text
    table = pd.read_csv(out / "comparison.csv").set_index("run")  # analysis.compare's table, its order
    assert sorted(table.index) == ["analysed", "r"] and set(table.policy) == {"uniform"}
    assert table.steps.tolist() == [6, 6] and table.image_passes["r"] == 6 * 16 * 3  # fwd + bwd per image
    assert np.isnan(table.oracle_accuracy["r"]) and table.oracle_accuracy["analysed"] == pytest.approx(0.93)
    assert table.hfr_accuracy["analysed"] == pytest.approx(0.81) and table.oracle_layer["analysed"] == "block.10"
    assert table.effective_timesteps["r"] == pytest.approx(1000.0)  # uniform policy
    assert table.pareto["analysed"] and not table.pareto["r"]  # no accuracy: never on the front
    tex = (out / "comparison.tex").read_text()
    assert "\\toprule" in tex and "oracle\\_accuracy" in tex and str(tmp_path) not in tex


def test_write_figures_refuses_non_runs(tmp_path):
    with pytest.raises(ValueError, match="runs: .* is not a run dir"):
        write_figures([tmp_path], tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="runs: expected at least one run dir, or a seed table"):
        write_figures([], tmp_path / "out", progress=False)
    with pytest.raises(FileNotFoundError, match="no seed table there"):
        write_figures([], tmp_path / "out", progress=False, seed_table=tmp_path / "none.csv")


def test_write_figures_of_a_seed_table_alone(browser, tmp_path):
    table = seed_frame().assign(effective_timesteps=[1000.0, 40.0, np.nan] * 2, best_cells="t=0/block.1",
                                delta_vs_full_mean=[0.0, 0.02, -0.05, 0.0, 0.05, -0.1], delta_vs_full_std=0.01,
                                steps=800.0, image_passes=153600.0, cost_relative_to_full=[1.0, 0.99, 0.0] * 2)
    table.to_csv(tmp_path / "seed_table.csv", index=False)
    paths = write_figures([], tmp_path / "out", formats=("png",), progress=False,
                          seed_table=tmp_path / "seed_table.csv")
    assert sorted(p.name for p in paths) == ["seed_table.csv", "seed_table.png", "seed_table.tex"]
    assert "82.0 $\\pm$ 2.0" in (tmp_path / "out" / "seed_table.tex").read_text()


def test_registry_names_existing_builders():
    assert {"probe_heatmap", "probe_curves", "hfr_vs_accuracy", "mi_label", "mi_x0_xt", "curriculum",
            "loss_by_bin", "umap", "attribution"} <= set(FIGURES)
    assert comparison_table([]).empty


# -- the time axis ---------------------------------------------------------------------------------------------
def linear_log_snr(t: int) -> float:
    """log SNR of the DDPM linear schedule in closed form: betas linspace(1e-4, 0.02, 1000), abar = prod(1 - beta)."""
    abar = np.prod(1 - np.linspace(1e-4, 0.02, 1000)[: t + 1])
    return float(np.log(abar / (1 - abar)))


def test_time_axis_labels_each_tick_with_its_log_snr():
    axis = TimeAxis(NoiseSchedule("linear", 1000))
    fig, _ = probe_heatmap(probe_frame(), time_axis=axis)
    assert list(fig.layout.xaxis.tickvals) == TIMESTEPS
    assert list(fig.layout.xaxis.ticktext) == [f"{t}<br>{linear_log_snr(t):.1f}" for t in TIMESTEPS]
    assert fig.layout.xaxis.title.text == "timestep index (0 = clean, T - 1 = noisiest) · log SNR below"
    assert probe_heatmap(probe_frame())[0].layout.xaxis.title.text == "timestep t"  # no schedule known: no SNR


def test_flow_time_axis_has_snr_one_at_the_middle_and_infinite_at_the_data_end():
    axis = TimeAxis(FlowSchedule("sit-linear"))  # x_t = t x0 + (1 - t) eps: data at t = 1
    assert axis.tick(0.5) == "0.5<br>0.0" and axis.tick(1.0) == "1<br>∞" and axis.tick(0.0) == "0<br>−∞"
    assert axis.label(0.25) == f"0.25 · log SNR {2 * math.log(0.25 / 0.75):.1f}"
    assert axis.name.startswith("flow time t")


def test_time_axis_thins_many_ticks_evenly():
    axis = TimeAxis(NoiseSchedule())
    assert axis.ticks(range(0, 1000, 50)) == [0, 150, 300, 450, 600, 750, 900]  # every 3rd of 20
    assert axis.ticks(range(0, 1000, 100)) == [0, 200, 400, 600, 800]  # every 2nd of 10
    assert axis.ticks([0, 500, 900]) == [0, 500, 900] and len(axis.ticks(range(1000))) <= MAX_TICKS


@pytest.mark.parametrize("name", [n for n, spec in FIGURES.items() if spec.timed])
def test_run_figures_use_the_run_schedule(run, tmp_path, name):
    """build_figure gives every figure over t the run's own time axis (here a cosine schedule)."""
    cosine = tmp_path / "cosine"
    shutil.copytree(run, cosine)
    config = json.loads((cosine / "config.json").read_text())
    (cosine / "config.json").write_text(json.dumps({**config, "schedule": "cosine"}))
    (cosine / "analysis").mkdir(exist_ok=True)
    frames = {"probe_heatmap": probe_frame, "probe_curves": probe_frame, "mi_label": mi_frame,
              "mi_x0_xt": immse_frame, "segmentation_heatmap": segmentation_frame}
    for ref in FIGURES[name].inputs.values():
        frames[name]().to_parquet(cosine / ref)
    fig, _ = build_figure(name, cosine)
    cos = NoiseSchedule("cosine", config["num_timesteps"])
    assert list(fig.layout.xaxis.ticktext) == [TimeAxis(cos).tick(t) for t in TIMESTEPS]


def test_curves_draw_each_layer_ci_as_a_band_of_its_colour():
    probe = probe_frame().assign(accuracy_ci_low=lambda d: d.accuracy - 0.03,
                                 accuracy_ci_high=lambda d: d.accuracy + 0.02)
    mi = mi_frame().assign(mi_ci_low=lambda d: d.mi_nats - 0.1, mi_ci_high=lambda d: d.mi_nats + 0.1)
    for fig, low, high in [(probe_curves(probe)[0], probe.accuracy_ci_low, probe.accuracy_ci_high),
                           (mi_curves(mi)[0], mi.mi_ci_low, mi.mi_ci_high)]:
        bands = {t.name: t for t in fig.data if t.fill == "toself"}
        assert set(bands) == {f"{layer} CI" for layer in LAYERS}
        lines = {t.name: t for t in fig.data if t.name in LAYERS}
        assert all(bands[f"{k} CI"].fillcolor == lines[k].line.color for k in LAYERS)
        y = np.concatenate([t.y for t in bands.values()])
        assert y.min() == pytest.approx(low.min()) and y.max() == pytest.approx(high.max())
    assert not [t for t in probe_curves(probe_frame())[0].data if t.fill == "toself"]  # no CI columns: no band


def test_immse_curve_draws_its_bootstrap_interval_and_old_tables_without_it():
    immse = immse_frame().assign(mi_ci_low=lambda d: 0.8 * d.mi_nats, mi_ci_high=lambda d: 1.3 * d.mi_nats)
    fig, data = immse_curve(immse)
    (band,) = [t for t in fig.data if t.fill == "toself"]
    assert band.name == "95% CI" and fig.layout.yaxis.type == "log"
    np.testing.assert_allclose(sorted(band.y), sorted([*immse.mi_ci_low, *immse.mi_ci_high]))
    assert {"mi_ci_low", "mi_ci_high"} <= set(data.columns) and fig.data[-1].name == "I(x₀; x_t)"
    old, _ = immse_curve(immse_frame())  # an immse.parquet written before the interval: the curve alone
    assert [t.name for t in old.data] == ["I(x₀; x_t)"]


def test_every_accuracy_or_mi_figure_draws_the_grids_ci():
    """knn and HFR curves take their intervals from the grid registry; the heatmap stars the highest cell and counts
    the cells inside its CI; the HFR scatter and the Pareto figure draw whiskers."""
    probe = probe_frame().assign(accuracy_ci_low=lambda d: d.accuracy - 0.03,
                                 accuracy_ci_high=lambda d: d.accuracy + 0.02,
                                 knn_ci_low=lambda d: d.knn_accuracy - 0.05,
                                 knn_ci_high=lambda d: d.knn_accuracy + 0.05)
    hfr = hfr_frame().assign(hfr_ci_low=lambda d: d.hfr_mean - 0.01, hfr_ci_high=lambda d: d.hfr_mean + 0.01)
    for fig in (probe_curves(probe, metric="knn_accuracy")[0], probe_curves(hfr, metric="hfr_mean")[0]):
        assert {t.name for t in fig.data if t.fill == "toself"} == {f"{layer} CI" for layer in LAYERS}

    fig, _ = probe_heatmap(probe)
    star = [t for t in fig.data if t.name == "highest cell"]
    dit = probe[probe.layer != "pixels"]
    best = dit.loc[dit.accuracy.idxmax()]  # block.10 at t = 0: 0.93 [0.90, 0.95]
    assert len(star) == 1 and (star[0].x[0], star[0].y[0]) == (best.timestep, best.layer)
    inside = int((dit.accuracy >= best.accuracy_ci_low).sum()) - 1
    assert fig.layout.title.text.startswith("highest accuracy 0.930 [0.900, 0.950] at t = 0, block.10")
    assert fig.layout.title.text.endswith(f"; {inside} other cells within its 95% CI") and inside == 3
    assert not [t for t in probe_heatmap(probe_frame())[0].data if t.name == "highest cell"]  # no CI columns: no star

    fig, _ = hfr_scatter(probe, hfr)
    points = fig.data[0]  # block.0, t ascending
    rows = probe[probe.layer == "block.0"]
    np.testing.assert_allclose(points.error_y.array, (rows.accuracy_ci_high - rows.accuracy).to_numpy())
    np.testing.assert_allclose(points.error_y.arrayminus, (rows.accuracy - rows.accuracy_ci_low).to_numpy())
    np.testing.assert_allclose(points.error_x.array, 0.01)
    assert hfr_scatter(probe_frame(), hfr_frame())[0].data[0].error_y.array is None  # no CI columns: no whiskers

    df = comparison_frame().assign(oracle_ci_low=lambda d: d.oracle_accuracy - 0.04,
                                   oracle_ci_high=lambda d: d.oracle_accuracy + 0.01)
    markers = [t for t in policy_pareto(df)[0].data if t.mode == "markers"]
    assert markers and all(list(t.error_y.array) == pytest.approx([0.01]) for t in markers)
    assert all(list(t.error_y.arrayminus) == pytest.approx([0.04]) for t in markers)
