"""The Streamlit app on tiny real runs: every page renders without an exception, shows its key elements, and
its widgets change what it shows; background jobs report progress, failure and cancellation."""
from __future__ import annotations

import base64
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from analysis.figures.time_axis import run_time_axis
from analysis.pipeline import analyze_run
from app import choices, jobs
from app.serve import DEMO_RUNS, RUNS_ENV, resolve_runs_root
from app.state import SEED_TABLE_ENV

APP = Path(__file__).resolve().parents[1] / "app"
PAGES = {"runs": APP / "Home.py", **{p.stem.split("_", 1)[1].lower(): p for p in sorted((APP / "pages").glob("*.py"))}}


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_run) -> Path:
    """A runs root with an analysed run `a` (no UMAP: the Embeddings page offers to compute it), a trained-only
    run `b` and a broken folder."""
    root = tmp_path_factory.mktemp("runs")
    analyze_run(tiny_run(root / "a", curriculum_every=2), timesteps=[0, 500], layers=[0, 1], n_images=40,
                immse_images=8, methods=("oracle", "hfr", "mi"), embedding=False, progress=False)
    tiny_run(root / "b", curriculum_every=2)
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text("{not json")
    return root


def page_runner(root: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """`run(page, **session_state)`: the page served over `root`, run once, checked to raise nothing."""
    monkeypatch.setenv(RUNS_ENV, str(root))
    monkeypatch.setenv(SEED_TABLE_ENV, str(root / "no-seed-table.csv"))  # pages never read the repo's results
    st.cache_data.clear()

    def run(page: str, **state) -> AppTest:
        at = AppTest.from_file(str(PAGES[page]), default_timeout=120)
        for k, v in state.items():
            at.session_state[k] = v
        at.run()
        assert not at.exception, at.exception
        return at
    return run


@pytest.fixture
def app(root, monkeypatch):
    return page_runner(root, monkeypatch)


@pytest.fixture
def demo(monkeypatch):
    """The pages over the shipped, analysed runs (read, never written)."""
    return page_runner(DEMO_RUNS, monkeypatch)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_every_page_is_tested():
    assert set(PAGES) == {"runs", "timestep_explorer", "curricula", "embeddings", "attributions", "compare", "figures",
                          "generation"}


def test_runs_lists_runs_and_broken_ones(app):
    at = app("runs")
    table = at.dataframe[0].value
    assert list(table.run) == ["a", "b", "broken"]
    a = table.set_index("run").loc["a"]
    assert (a.dataset, a.model, a.policy, a.status, a.steps) == ("digits", "DiT-T/4", "uniform", "finished", "6/6")
    assert a.image_passes > 0 and 0 <= a.best_probe_accuracy <= 1 and "probe" in a.analyses
    assert table.set_index("run").loc["b"].analyses == "none"
    assert any("broken" in w.value and "not valid JSON" in w.value for w in at.warning)


def test_runs_show_each_answer_and_a_click_opens_the_explorer(demo):
    at = demo("runs")
    answers = at.dataframe[1].value.set_index("run")
    names = sorted(p.name for p in DEMO_RUNS.iterdir() if (p / "config.json").is_file())
    assert list(answers.index) == names and list(answers.columns) == list(choices.ANSWER_COLUMNS)
    for name in names:
        summary = json.loads((DEMO_RUNS / name / "analysis" / "summary.json").read_text())
        assert answers.loc[name].to_dict() == choices.answer_row(summary)
    at.session_state["answers"] = {"selection": {"rows": [1], "columns": [], "cells": []}}  # a click on row 1
    at.run()
    assert not at.exception and at.title[0].value == "Timestep explorer"
    assert at.sidebar.selectbox(key="pick_run").value == names[1] and len(charts(at)) == 3


def test_explorer_opens_on_the_oracle_cell_and_widgets_change_it(app, root):
    at = app("timestep_explorer", _run="a")
    assert len(charts(at)) == 3 and {m.label for m in at.metric} >= {"oracle choice", "hfr choice"}
    summary = json.loads((root / "a" / "analysis" / "summary.json").read_text())["best"]
    assert at.select_slider[0].value == summary["timestep"] and summary["layer"] in at.multiselect[0].value
    before_images = at.get("image")[1].proto.imgs[0].url
    at.select_slider[0].set_value(500 - summary["timestep"]).run()  # the other of the grid's timesteps 0, 500
    assert at.get("image")[1].proto.imgs[0].url != before_images  # x_t at the new t
    heat = charts(at)[0]
    at.radio[0].set_value("high-frequency ratio").run()
    assert not at.exception and charts(at)[0]["data"] != heat["data"]


def test_missing_analysis_offers_to_compute_it(app, monkeypatch):
    started = []
    monkeypatch.setattr(jobs, "start", lambda run, kind, cmd: started.append((run.name, kind, cmd)))
    at = app("timestep_explorer", _run="b")
    assert any("analysis/probe.parquet" in i.value for i in at.info) and not charts(at)
    at.button(key="compute_analyze").click().run()
    assert started and started[0][:2] == ("b", "analyze") and "analyze" in started[0][2]


def test_curricula_side_by_side(app):
    at = app("curricula", _run="a")
    one = len(charts(at))
    at.sidebar.selectbox(key="compare_with").set_value("b").run()
    assert not at.exception and len(charts(at)) == 2 * one
    assert any(m.label.startswith("KL(") for m in at.metric)


def test_embeddings_compute_then_pick_timestep(app):
    at = app("embeddings", _run="a")
    at.multiselect[0].set_value([0, 500])
    at.button[0].click().run()
    assert not at.exception and len(charts(at)) == 1
    first = charts(at)[0]["data"]
    at.select_slider[0].set_value(500).run()
    assert charts(at)[0]["data"] != first


def test_embeddings_open_on_the_stored_umap(demo):
    at = demo("embeddings")
    run = at.sidebar.selectbox(key="pick_run").value
    points = pd.read_parquet(DEMO_RUNS / run / "analysis" / "umap.parquet")
    block = at.sidebar.selectbox[1]
    assert block.value == choices.block_index(points.layer.iloc[0]) and block.options[0].endswith(choices.MARK)
    assert len(charts(at)) == 1 and not at.button
    axis = run_time_axis(DEMO_RUNS / run)  # each option is t with its log SNR under the run's schedule
    assert at.select_slider[0].options == [axis.label(t) for t in sorted(points.timestep.unique())]
    assert at.select_slider[0].label == axis.name and "log SNR" in at.select_slider[0].options[0]


def test_attributions_open_on_a_stored_map(demo):
    at = demo("attributions")
    stored = np.load(DEMO_RUNS / at.sidebar.selectbox(key="pick_run").value / "analysis" / "attribution.npz")
    image, target, block = (s.value for s in at.main.selectbox)
    assert (image, target, block) == (0, int(stored["targets"][0]), int(stored["layer"]))
    assert all(s.options[0].endswith(choices.MARK) for s in at.main.selectbox)
    assert at.multiselect[0].value == stored["timesteps"].tolist() and len(charts(at)) == 1 and not at.button


def test_attributions(app):
    at = app("attributions", _run="a")
    at.multiselect[0].set_value([0, 500])
    at.button[0].click().run()
    assert not at.exception and len(charts(at)) == 1


def test_compare_table_and_pareto(app):
    at = app("compare")
    table = at.dataframe[0].value.set_index("run")
    assert list(table.index) == ["a", "b", "broken"] and "JSON" in table.loc["broken"].status
    assert table.loc["a"].pareto and len(charts(at)) == 1
    oracle = charts(at)[0]["data"]
    at.radio[0].set_value("hfr_accuracy").run()
    assert not at.exception and charts(at)[0]["data"] != oracle


def test_compare_shows_the_seed_table(app, monkeypatch, tmp_path):
    from analysis.seed_table import TABLE_COLUMNS
    table = pd.DataFrame([["mnist5k", m, 1000.0, acc, 0.01, 3, acc - 0.8, 0.01, "t=0/block.1", 800.0, 153600.0, 1.0]
                          for m, acc in (("Full diffusion (uniform)", 0.8), ("Raw pixels", 0.7))],
                         columns=TABLE_COLUMNS)
    table.to_csv(tmp_path / "seed_table.csv", index=False)
    monkeypatch.setenv(SEED_TABLE_ENV, str(tmp_path / "seed_table.csv"))
    at = app("compare")
    assert at.dataframe[1].value.method.tolist() == table.method.tolist() and len(charts(at)) == 2
    x = charts(at)[1]["data"][0]["x"]  # plotly ships float arrays base64-encoded
    assert np.frombuffer(base64.b64decode(x["bdata"]), x["dtype"]).tolist() == [0.8, 0.7]
    at.text_input(key="seed_table_path").set_value(str(tmp_path / "none.csv")).run()
    assert not at.exception and len(at.dataframe) == 1 and "No seed table at" in at.info[0].value


def test_figures_preview_follows_the_choice(app):
    at = app("figures", _run="a")
    n = len(charts(at))
    at.multiselect[0].set_value(["probe_heatmap", "probe_curves", "mi_x0_xt"]).run()
    assert not at.exception and n == 2 and len(charts(at)) == 3


def test_resolve_runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv(RUNS_ENV, str(tmp_path))
    assert resolve_runs_root(None) == tmp_path.resolve()
    assert resolve_runs_root(tmp_path / "x") == (tmp_path / "x").resolve()


def wait_until(predicate, timeout: float = 30.0) -> None:
    end = time.time() + timeout
    while not predicate():
        assert time.time() < end, "timed out"
        time.sleep(0.1)


def test_job_progress_failure_and_cancel(tmp_path):
    run = tmp_path / "r"
    code = "import sys, time; print(' 40%|####  | 4/10', flush=True); time.sleep({}); sys.exit({})"
    jobs.start(run, "train", [sys.executable, "-c", code.format(60, 0)])
    wait_until(lambda: jobs.status(run, "train").progress == 0.4)
    assert jobs.status(run, "train").running and jobs.cancel(run, "train")
    wait_until(lambda: not jobs.status(run, "train").running)
    assert jobs.status(run, "train").returncode == -15
    jobs.start(run, "analyze", [sys.executable, "-c", code.format(0, 3)])
    wait_until(lambda: not jobs.status(run, "analyze").running)
    state = jobs.status(run, "analyze")
    assert state.returncode == 3 and "4/10" in state.tail and not jobs.cancel(run, "analyze")


def test_generation_samples_by_seed_then_shows_scores_and_the_tradeoff(root, tmp_path, monkeypatch):
    """Samples on first sight (same seed, same images); with generation.json its scores and the trade-off plot."""
    from analysis.generation import write_generation

    gen_root = tmp_path / "runs"
    shutil.copytree(root / "a", gen_root / "a")
    run = page_runner(gen_root, monkeypatch)
    at = run("generation")
    assert len(at.get("image")) == 1 and any("generation.json" in i.value for i in at.info)
    first = at.get("image")[0].proto.imgs[0].url
    assert run("generation").get("image")[0].proto.imgs[0].url == first  # deterministic: same seed, same grid
    at.number_input[0].set_value(1).run()
    assert at.get("image")[0].proto.imgs[0].url != first
    scores = write_generation(gen_root / "a", n_samples=40, steps=5, classifier_epochs=1)
    at = run("generation")
    fd = next(m for m in at.metric if m.label == "Fréchet distance")
    assert fd.value == f"{scores['fd']:.2f}" and len(charts(at)) == 1  # the trade-off plot of the one scored run
    outside = next(m for m in at.metric if m.label == "outside the data's norm")
    assert outside.value == f"{scores['outside']:.1%}"
