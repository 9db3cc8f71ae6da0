"""What the app's pages open on (`app.choices`), their plot frames (`app.state.framed`) and server flags: pure
functions, no app run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.figures import probe_curves
from analysis.figures.builders import ci_of
from analysis.grids import Measure, Table
from app import choices
from app.serve import command
from app.state import MARGIN, framed

SUMMARY = {"best": {"timestep": 200, "layer": "block.3", "accuracy": 0.812, "accuracy_ci_low": 0.78,
                    "accuracy_ci_high": 0.84},
           "pixel_baseline": {"best_accuracy": 0.868, "accuracy_at_best_timestep": 0.5},
           "random_init_baseline": {"best_accuracy": 0.4, "init": "normal", "accuracy_at_best_cell": 0.3},
           "methods": {"hfr": {"timestep": 900, "layer": "block.5", "regret_points": 69.8},
                       "mi": {"timestep": 0, "layer": "block.5", "regret_points": 2.6}}}


def test_computed_options_come_first_marked_and_chosen():
    assert choices.computed_first(range(4), [2]) == [2, 0, 1, 3]
    assert choices.computed_first(range(2), [5, 1]) == [5, 1, 0]
    assert choices.marked("block.3", True) == "block.3 ✓ computed" and choices.marked("block.0", False) == "block.0"
    assert choices.marked("500", True, choices.SHORT_MARK) == "500 ✓"
    assert choices.default_choice([2, 0, 1], [2], preferred=1) == 2
    assert choices.default_choice([0, 1, 2], [], preferred=1) == 1
    assert choices.default_choice([0, 1, 2], [7], preferred=9) == 0


def test_oracle_cell_and_default_layers():
    assert choices.oracle_cell(SUMMARY) == (200, "block.3") and choices.oracle_block(SUMMARY) == 3
    assert choices.oracle_cell(None) is None and choices.oracle_block({}) is None
    layers = ["block.0", "block.1", "block.3", "block.5"]
    assert choices.default_layers(layers, "block.3") == ["block.3", "block.5", "block.0"]
    assert choices.default_layers(layers, None) == ["block.5", "block.0"]
    assert choices.default_layers(["block.0"], "block.9") == ["block.0"]


def test_umap_blocks():
    points = pd.DataFrame({"timestep": [0, 0, 500], "layer": ["block.3", "block.3", "block.1"]})
    assert choices.umap_blocks(points) == [3, 1]
    assert choices.umap_blocks(None) == [] and choices.umap_blocks(points.drop(columns="layer")) == []


def test_explorer_measures_come_from_the_grid_registry_then_segmentation():
    measures = choices.measure_choices()
    assert [m.label for m in measures] == ["probe accuracy", "k-NN accuracy", "high-frequency ratio",
                                           "label MI I(y; features)", "segmentation mIoU",
                                           "segmentation pixel accuracy"]
    assert all(ci_of(m.column) == m.ci for m in measures)  # the interval the figures draw is the declared one
    assert [m.marks_selections for m in measures] == [True, True, False, False, False, False]
    new = Table("new", {"score": Measure("new score", ("score_lo", "score_hi"))})  # a grid registered later
    assert choices.measure_choices([*choices.EXPLORER_TABLES, new])[-1] == choices.MeasureChoice(
        "new score", "new", "score", ("score_lo", "score_hi"))


def test_held_measures_are_those_the_run_has_values_of():
    frames = {"probe": pd.DataFrame({"accuracy": [0.5], "knn_accuracy": [np.nan]}), "hfr": None,
              "mi": pd.DataFrame({"timestep": [0]})}
    assert [m.column for m in choices.held_measures(choices.measure_choices(), frames)] == ["accuracy"]


def stored(n_t: int = 3, n: int = 2) -> choices.StoredAttributions:
    maps = np.arange(n_t * n * 4 * 4, dtype=np.float32).reshape(n_t, n, 4, 4)
    return choices.StoredAttributions.read({"attributions": maps, "timesteps": np.array([0, 200, 400][:n_t]),
                                            "images": np.zeros((n, 1, 4, 4)), "targets": np.array([7, 6][:n]),
                                            "layer": np.array(3)})


def test_stored_attributions_answer_what_they_hold():
    held = stored()
    assert held.image_rows == [0, 1] and held.classes_of(1) == [6] and held.classes_of(2) == []
    assert held.blocks_of(0, 7) == [3] and held.blocks_of(0, 6) == []
    assert held.timesteps_of(0, 7, 3) == [0, 200, 400] and held.timesteps_of(0, 7, 2) == []
    maps, image = held.maps_for(1, 6, 3, [0, 400])
    assert maps.shape == (2, 4, 4) and image.shape == (1, 4, 4)
    np.testing.assert_array_equal(maps, held.maps[[0, 2], 1])
    assert held.maps_for(1, 6, 3, [0, 300]) is None and held.maps_for(1, 7, 3, [0]) is None
    assert held.maps_for(1, 6, 3, []) is None


def test_no_stored_attributions():
    empty = choices.StoredAttributions.read(None)
    assert empty.image_rows == [] and empty.classes_of(0) == [] and empty.blocks_of(0, 0) == []
    assert empty.maps_for(0, 0, 0, [0]) is None


def test_answer_row():
    row = choices.answer_row(SUMMARY)
    assert list(row) == list(choices.ANSWER_COLUMNS)
    assert row == {"oracle (t, layer)": "t=200 · block.3", "accuracy": "0.812", "95% CI": "0.780–0.840",
                   "pixels": "0.868", "random init": "0.400", "HFR choice": "t=900 · block.5",
                   "HFR regret": "69.8 pts", "MI choice": "t=0 · block.5", "MI regret": "2.6 pts",
                   "segmentation (t, layer)": choices.MISSING, "mIoU": choices.MISSING, "pixels mIoU": choices.MISSING}
    seg = choices.answer_row({**SUMMARY, "segmentation": {"timestep": 100, "layer": "block.2", "best_miou": 0.4,
                                                          "pixel_baseline_miou": 0.125}})
    assert (seg["segmentation (t, layer)"], seg["mIoU"], seg["pixels mIoU"]) == ("t=100 · block.2", "0.400", "0.125")


def test_answer_row_of_older_or_missing_summaries():
    older = {k: v for k, v in SUMMARY.items() if k != "random_init_baseline"}
    older["best"] = {k: v for k, v in SUMMARY["best"].items() if not k.startswith("accuracy_ci")}
    older["methods"] = {"hfr": SUMMARY["methods"]["hfr"]}
    row = choices.answer_row(older)
    assert row["95% CI"] == row["random init"] == row["MI choice"] == row["MI regret"] == choices.MISSING
    assert row["accuracy"] == "0.812" and row["HFR regret"] == "69.8 pts"
    assert set(choices.answer_row(None).values()) == {choices.MISSING}


def test_framed_keeps_frames_and_ticks_inside():
    probe = pd.DataFrame({"timestep": [0, 500, 0, 500], "layer": ["block.0", "block.0", "pixels", "pixels"],
                          "accuracy": [0.5, 0.4, 0.3, 0.2]})
    fig, _ = probe_curves(probe)
    fig.update_layout(margin_t=40)
    framed(fig)
    assert fig.layout.margin.r >= MARGIN["r"] and fig.layout.margin.l >= 48 and fig.layout.margin.t == 40
    assert all(ax.mirror and ax.showline and ax.automargin for ax in (fig.layout.xaxis, fig.layout.yaxis))
    bare = framed(go.Figure(go.Bar(x=[0, 1], y=[1, 2])))  # no template margins
    assert {side: bare.layout.margin[side] for side in MARGIN} == MARGIN and bare.layout.margin.pad == 0


def test_server_hides_the_deploy_button():
    flags = command(8501)
    assert flags[flags.index("--client.toolbarMode") + 1] == "minimal"


def test_answer_row_says_whether_the_oracles_runner_up_is_inside_its_ci():
    runner_up = {"timestep": 100, "layer": "block.2", "accuracy": 0.8, "within_ci": True}
    row = choices.answer_row({**SUMMARY, "best": {**SUMMARY["best"], "runner_up": runner_up}})
    assert row["95% CI"] == "0.780–0.840 (runner-up t=100 · block.2 inside)"
    apart = {**SUMMARY, "best": {**SUMMARY["best"], "runner_up": {**runner_up, "accuracy": 0.7, "within_ci": False}}}
    assert choices.answer_row(apart)["95% CI"] == "0.780–0.840 (runner-up t=100 · block.2 outside)"
