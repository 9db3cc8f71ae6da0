"""Generation quality of a run: its samples against held-out test images in the domain classifier's features,
with the train-vs-test images floor (what two real samples of the same size score) beside each number."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from analysis.features import probe_splits
from analysis.generation.classifier import domain_classifier
from analysis.generation.metrics import (frechet_distance, kernel_inception_distance, outside_fraction,
                                        precision_recall)
from analysis.generation.sampling import load_generator, sample
from aselect_core.io import atomic_write_json
from aselect_core.train.rundir import RunDir


CLIP_DENOISED = True  # scored samples clamp each step's x0 estimate (sampling.denoised), recorded with them


def generation_scores(run: str | Path, n_samples: int = 1000, steps: int = 50, sampler: str = "ddim",
                      seed: int = 0, cfg_scale: float = 1.0, device: str = "cpu", cache_dir: str | Path | None = None,
                      classifier_epochs: int = 10, progress: bool = False) -> dict[str, Any]:
    """FD, KID (with CI), k-NN precision / recall and the share of samples outside the test features' norm
    (`outside`) of n_samples samples vs as many test images, and the same for train vs test images (`*_floor`).
    Conditional runs sample the classes in turn, guided by cfg_scale."""
    gen = load_generator(run)
    data = RunDir(Path(run)).config().data
    size = gen.model.config["input_size"]
    clf = domain_classifier(data, size, cache_dir or Path(run).resolve().parent / ".cache" / "domain_classifier",
                            seed=seed, epochs=classifier_epochs)
    splits = probe_splits(data, n_samples, seed, n_test=n_samples, image_size=size)
    y = torch.arange(n_samples) % gen.num_classes if gen.conditional else None  # (n,) or the null class
    images = sample(gen.model, n_samples, steps, sampler, gen.schedule, y, cfg_scale if gen.conditional else 1.0,
                    seed, device=device, progress=progress, clip_denoised=CLIP_DENOISED)  # (n, C, H, W)
    fake, test, train = (clf.features(x) for x in (images, splits.test.images, splits.train.images))
    pr, pr_floor = precision_recall(test, fake), precision_recall(test, train)
    scores = {
        "fd": frechet_distance(fake, test), "fd_floor": frechet_distance(train, test),
        "kid": kernel_inception_distance(fake, test, seed=seed),
        "kid_floor": kernel_inception_distance(train, test, seed=seed),
        "precision": pr["precision"], "recall": pr["recall"],
        "precision_floor": pr_floor["precision"], "recall_floor": pr_floor["recall"],
        "outside": outside_fraction(test, fake), "outside_floor": outside_fraction(test, train),
        "n_samples": n_samples, "n_test": len(test), "steps": steps, "sampler": sampler, "seed": seed,
        "clip_denoised": CLIP_DENOISED,
        "cfg_scale": cfg_scale if gen.conditional else 1.0, "feature_extractor": clf.describe()}
    if gen.conditional:
        scores["class_accuracy"] = float((clf.predict(images) == y).double().mean())
    return scores


def write_generation(run: str | Path, **options: Any) -> dict[str, Any]:
    """generation_scores(run, **options) written atomically to RUN/analysis/generation.json."""
    scores = generation_scores(run, **options)
    atomic_write_json(RunDir(Path(run)).artefact("generation"), scores)
    return scores
