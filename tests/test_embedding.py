"""UMAP embeddings and trajectories: shapes, determinism, cluster preservation, alignment across timesteps."""
import os

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from analysis.embedding import (embed_features, layout_disparity, procrustes_align, umap_for_run, umap_trajectory,
                                use_project_numba_cache)
from analysis.features import run_splits
from aselect_core.train.rundir import RunDir

FAST = dict(n_neighbors=10, n_epochs=100)  # few epochs: the maps are still clean on ~200 points


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n_samples=200, centers=4, n_features=16, cluster_std=1.0, center_box=(-10, 10), random_state=0)
    return x, y


def knn_accuracy_2d(emb: np.ndarray, y: np.ndarray) -> float:
    return cross_val_score(KNeighborsClassifier(5), emb, y, cv=5).mean()


def test_embed_shape_determinism_and_separation(blobs):
    x, y = blobs
    a = embed_features(x, random_state=3, **FAST)
    b = embed_features(x, random_state=3, **FAST)
    assert a.shape == (200, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert knn_accuracy_2d(a, y) > 0.97


def test_default_umap_path_keeps_clusters_too(blobs):
    x, y = blobs
    direct = embed_features(x, precomputed=False, **FAST)
    assert knn_accuracy_2d(direct, y) > 0.97


def test_init_layout_is_used(blobs):
    x, _ = blobs
    start = embed_features(x, **FAST)
    again = embed_features(x, init=start, **FAST)
    fresh = embed_features(x, init="random", **FAST)
    assert layout_disparity(again, start) < layout_disparity(fresh, start)


def test_procrustes_align_recovers_a_rigid_motion():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(50, 2))
    theta = 1.1
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moving = (target @ rot) * np.array([1.0, -1.0]) + 5.0  # rotated, reflected, shifted
    np.testing.assert_allclose(procrustes_align(moving, target), target, atol=1e-10)
    assert layout_disparity(moving, target) > 0.5


def noisy_trajectory(x: np.ndarray, levels: list[float], seed: int = 0) -> dict[int, np.ndarray]:
    """Diffusion-like features: the same points with growing noise (the same noise draw at every t)."""
    noise = np.random.default_rng(seed).normal(size=x.shape)
    return {int(100 * i): np.sqrt(1 - s ** 2) * x / 6 + s * noise for i, s in enumerate(levels)}


def test_trajectory_alignment_reduces_disparity(blobs):
    x, y = blobs
    feats = noisy_trajectory(x, [0.0, 0.2, 0.4, 0.6])
    points, quality = umap_trajectory(feats, y, **FAST)
    _, unaligned = umap_trajectory(feats, y, init_from_previous=False, procrustes=False, **FAST)
    assert list(points.columns) == ["timestep", "index", "x", "y", "label"]
    assert len(points) == 4 * 200 and points.timestep.unique().tolist() == [0, 100, 200, 300]
    np.testing.assert_array_equal(points[points.timestep == 300].label, y)
    assert list(quality.timestep) == [0, 100, 200, 300] and np.isnan(quality.disparity_to_previous[0])
    aligned_d, unaligned_d = quality.disparity_to_previous[1:], unaligned.disparity_to_previous[1:]
    assert aligned_d.mean() < 0.5 * unaligned_d.mean()
    # the aligned map of the first timestep is the plain map: alignment starts from the second
    np.testing.assert_allclose(points[points.timestep == 0][["x", "y"]].to_numpy(), embed_features(feats[0], **FAST))


def test_trustworthiness_range_and_high_on_clusters(blobs):
    x, y = blobs
    rng = np.random.default_rng(1)
    feats = {0: x, 500: rng.normal(size=x.shape)}  # clustered, then pure noise
    _, quality = umap_trajectory(feats, y, **FAST)
    trust = quality.set_index("timestep").trustworthiness
    assert ((0 <= trust) & (trust <= 1)).all()
    assert trust[0] > 0.9 and trust[0] > trust[500]


@pytest.mark.parametrize("call, match", [
    (lambda x, y: embed_features(x[:, 0]), "x: expected a finite"),
    (lambda x, y: embed_features(x[:5]), "n >= 16"),
    (lambda x, y: embed_features(x, init=np.zeros((3, 2))), "init: expected an \\(200, 2\\)"),
    (lambda x, y: umap_trajectory({}, y), "features_by_t: expected at least one"),
    (lambda x, y: umap_trajectory({0: x, 1: x[:100]}, y), "same 200 images"),
    (lambda x, y: umap_trajectory({0: x}, y, trust_neighbors=150), "trust_neighbors"),
])
def test_errors(blobs, call, match):
    with pytest.raises(ValueError, match=match):
        call(*blobs)


def test_numba_cache_dir_set_only_when_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    use_project_numba_cache(tmp_path / "a" / "numba")
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "a" / "numba") and (tmp_path / "a" / "numba").is_dir()
    use_project_numba_cache(tmp_path / "b")
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "a" / "numba") and not (tmp_path / "b").exists()


def test_umap_for_run_writes_the_points_the_figures_read(tiny_run):
    run, seen = tiny_run(), []
    points = umap_for_run(run, 1, [500, 0], n_images=40, progress=lambda f, s: seen.append(f), **FAST)
    assert list(points.columns) == ["timestep", "index", "x", "y", "label", "layer"] and len(points) == 2 * 40
    assert sorted(points.timestep.unique()) == [0, 500] and set(points.layer) == {"block.1"}
    first = points[points.timestep == 0]
    assert first["index"].tolist() == list(range(40))
    assert first.label.tolist() == run_splits(run, 40).train.labels.tolist()  # index = row of the run's splits
    pd.testing.assert_frame_equal(pd.read_parquet(RunDir(run).analysis / "umap.parquet"), points)
    assert seen[0] < seen[-1] == 1.0
