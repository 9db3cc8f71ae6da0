"""compare_runs on tiny real runs with hand-written analysis tables, broken run dirs, and pareto_front."""
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from analysis.compare import compare_runs, pareto_front
from aselect_core.io import atomic_write_parquet
from aselect_core.train.rundir import ARTEFACTS, RunDir, artefact_ref

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_run):
    root = tmp_path_factory.mktemp("runs")
    uniform = tiny_run(root / "uniform", policy="uniform")
    fixed = tiny_run(root / "fixed", policy="fixed", policy_kwargs={"timesteps": [10, 20]}, curriculum_every=3)
    return root, uniform, fixed


def write_analysis(run, best=(100, "block.2", 0.8), hfr=(300, "block.1", 0.6)):
    """probe.parquet (DiT grid + pixel rows), selection.parquet (oracle + hfr) and summary.json (the best cell's CI,
    the random-init baseline) as analysis.pipeline writes them."""
    probe = pd.DataFrame({"timestep": [0, 100, 300, 0, 100, 300],
                          "layer": ["block.2", best[1], hfr[1], "pixels", "pixels", "pixels"],
                          "accuracy": [0.5, best[2], hfr[2], 0.7, 0.55, 0.3]})
    probe.loc[1, "timestep"] = best[0]
    atomic_write_parquet(run / "analysis" / "probe.parquet", probe)
    selection = pd.DataFrame({"method": ["oracle", "hfr"], "timestep": [best[0], hfr[0]], "layer": [best[1], hfr[1]],
                              "accuracy_at_choice": [best[2], hfr[2]], "regret": [0.0, 100 * (best[2] - hfr[2])],
                              "cost_image_passes": [6000, 64], "cost_ratio": [1.0, 6000 / 64]})
    atomic_write_parquet(run / "analysis" / "selection.parquet", selection)
    (run / "analysis" / "summary.json").write_text(json.dumps({
        "best": {"timestep": best[0], "layer": best[1], "accuracy": best[2], "accuracy_ci_low": best[2] - 0.05,
                 "accuracy_ci_high": best[2] + 0.04}, "random_init_baseline": {"best_accuracy": 0.65}}))


def test_rows_from_real_runs_and_analysis_tables(runs, tmp_path):
    _, uniform, fixed = runs
    run = tmp_path / "analysed"
    shutil.copytree(uniform, run)
    write_analysis(run)
    df = compare_runs([run, fixed])
    assert df.run.tolist() == ["fixed", "analysed"]  # sorted by dataset, then policy
    a = df.set_index("run").loc["analysed"]
    metrics = pd.read_parquet(uniform / "metrics.parquet")
    assert (a.dataset, a.policy, a.model, a.steps) == ("digits", "uniform", "DiT-T/4", 6)
    assert a.image_passes == metrics.image_passes.iloc[-1] == 6 * 3 * 16  # forward + backward per image-step
    assert a.effective_timesteps == pytest.approx(1000, rel=1e-9)  # uniform over all T
    assert (a.oracle_timestep, a.oracle_layer, a.oracle_accuracy) == (100, "block.2", 0.8)
    assert (a.hfr_timestep, a.hfr_layer, a.hfr_accuracy, a.hfr_regret) == (300, "block.1", 0.6, pytest.approx(20))
    assert (a.hfr_cost_image_passes, a.oracle_cost_image_passes, a.pixel_accuracy) == (64, 6000, 0.7)
    assert a.hfr_cost_ratio == 6000 / 64
    assert (a.oracle_ci_low, a.oracle_ci_high, a.random_init_accuracy) == (pytest.approx(0.75), pytest.approx(0.84), 0.65)
    assert (a.missing, a.status) == ("", "ok")
    f = df.set_index("run").loc["fixed"]
    assert f.policy == "fixed" and f.effective_timesteps == pytest.approx(2, rel=1e-6)  # p(t) on two timesteps
    assert math.isnan(f.oracle_accuracy) and math.isnan(f.hfr_accuracy) and f.status == "ok"
    assert f.missing == "analysis/probe.parquet, analysis/selection.parquet, analysis/summary.json"


def test_broken_runs_are_listed_not_raised(runs, tmp_path):
    _, uniform, _ = runs
    (tmp_path / "empty").mkdir()
    bad_json = tmp_path / "bad_json"
    bad_json.mkdir()
    (bad_json / "config.json").write_text("{not json")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(uniform, corrupt)
    write_analysis(corrupt)
    (corrupt / "analysis" / "selection.parquet").write_bytes(b"PAR1 not really")
    atomic_write_parquet(corrupt / "curriculum.parquet", pd.DataFrame({"step": [0], "bin": [0]}))
    df = compare_runs([tmp_path / "empty", bad_json, corrupt, tmp_path / "absent"]).set_index("run")
    assert df.status["empty"] == df.status["absent"] == "not a run dir: config.json not found"
    assert "config.json: not valid JSON" in df.status["bad_json"]
    status = df.status["corrupt"]
    assert "analysis/selection.parquet: not a readable parquet file" in status
    assert "curriculum.parquet: expected rows with columns ['step', 'effective_timesteps'], lacks" in status
    c = df.loc["corrupt"]
    assert c.oracle_accuracy == 0.8 and c.image_passes == 288 and math.isnan(c.hfr_accuracy)  # the rest still read
    assert df.index.tolist()[0] == "corrupt"  # rows without a dataset sort last


def test_latest_json_stands_in_for_missing_metrics(runs, tmp_path):
    _, uniform, _ = runs
    run = tmp_path / "no_metrics"
    shutil.copytree(uniform, run)
    (run / "metrics.parquet").unlink()
    row = compare_runs([run]).iloc[0]
    latest = json.loads((run / "latest.json").read_text())
    assert (row.steps, row.image_passes, row.status) == (6, latest["image_passes"], "ok")
    (run / "latest.json").unlink()
    row = compare_runs([run]).iloc[0]
    assert math.isnan(row.image_passes) and row.missing.startswith("metrics.parquet or latest.json")


def test_more_selection_methods_get_their_columns(runs, tmp_path):
    _, uniform, _ = runs
    run = tmp_path / "r"
    shutil.copytree(uniform, run)
    write_analysis(run)
    df = compare_runs([run], methods=("hfr", "mi"))
    assert {"mi_timestep", "mi_accuracy", "mi_cost_image_passes"} <= set(df.columns)
    assert math.isnan(df.mi_accuracy.iloc[0]) and df.hfr_accuracy.iloc[0] == 0.6  # no mi row in this selection


def test_pareto_front_flags():
    df = pd.DataFrame({"dataset": ["a"] * 6 + ["b"],
                       "image_passes": [100, 200, 200, 300, 50, np.nan, 1e9],
                       "oracle_accuracy": [0.5, 0.7, 0.6, 0.7, np.nan, 0.99, 0.1]})
    flags = pareto_front(df)
    # 100/0.5 and 200/0.7 on the front; 200/0.6 and 300/0.7 dominated; NaN rows never; b alone is its own front
    assert flags.tolist() == [True, True, False, False, False, False, True]
    ties = pd.DataFrame({"image_passes": [1, 1], "oracle_accuracy": [0.5, 0.5]})
    assert pareto_front(ties, by=None).tolist() == [True, True]
    assert pareto_front(df, by=None).tolist() == [True, True, False, False, False, False, False]
    with pytest.raises(ValueError, match="df: expected a column 'cost'"):
        pareto_front(df, x="cost")


def test_run_dir_resolves_every_artefact_by_name(tmp_path):
    rd = RunDir(tmp_path)
    assert rd.artefact("probe") == tmp_path / "analysis" / "probe.parquet"
    assert artefact_ref("attribution") == "analysis/attribution.npz" and len(set(ARTEFACTS.values())) == len(ARTEFACTS)
    with pytest.raises(ValueError, match="artefact: expected one of probe, random_init, .*, got 'prob'"):
        rd.artefact("prob")


def test_summary_reader_carries_whether_the_oracles_runner_up_is_inside_its_ci(tmp_path):
    from analysis.compare import _summary

    rd = RunDir(tmp_path)
    rd.artefact("summary").parent.mkdir(parents=True)
    best = {"accuracy": 0.8, "accuracy_ci_low": 0.75, "accuracy_ci_high": 0.84,
            "runner_up": {"timestep": 0, "layer": "block.1", "accuracy": 0.77, "within_ci": True}}
    rd.artefact("summary").write_text(json.dumps({"best": best}))
    assert _summary(rd, ())["oracle_runner_up_within_ci"] is True
    rd.artefact("summary").write_text(json.dumps({"best": {"accuracy": 0.8}}))  # older: no runner-up recorded
    assert math.isnan(_summary(rd, ())["oracle_runner_up_within_ci"])
