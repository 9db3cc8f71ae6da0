"""bench/selector_vs_uniform.py's probe: the oracle and both HFR picks of one run, each option passed only to the
methods that take it (HFR refuses the probe's `knn`), and every HFR choice scored inside the oracle's grid."""
from __future__ import annotations

from argparse import Namespace

import pytest

from bench.selector_vs_uniform import probe

pytestmark = pytest.mark.usefixtures("one_thread")


def test_probe_scores_hfr_choices_against_the_oracle(tiny_run):
    args = Namespace(probe_images=40, seed=0, probe_timesteps=[0, 500], device="cpu")
    out = probe(tiny_run(), args)
    assert {out["oracle_timestep"], out["hfr_max_timestep"], out["hfr_min_timestep"]} <= {0, 500}
    for mode in ("max", "min"):
        assert 0.0 <= out[f"hfr_{mode}_accuracy"] <= out["oracle_accuracy"]  # the oracle is the grid's best cell
