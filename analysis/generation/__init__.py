"""Generation: DDPM / DDIM sampling of a run's DiT and its quality in a domain classifier's feature space.

sampling    `sample`, the `SAMPLERS` registry, `load_generator`, `write_samples` (npz + PNG grid)
metrics     `frechet_distance`, `kernel_inception_distance`, `precision_recall`, `outside_fraction`
classifier  the per-dataset domain CNN whose features the metrics use (not Inception: not FID)
scores      `generation_scores`, `write_generation` -> RUN/analysis/generation.json
"""
from analysis.generation.classifier import DomainClassifier, domain_classifier
from analysis.generation.metrics import (frechet_distance, kernel_inception_distance, outside_fraction,
                                        precision_recall)
from analysis.generation.sampling import SAMPLERS, Generator, load_generator, sample, write_samples
from analysis.generation.scores import generation_scores, write_generation

__all__ = ["DomainClassifier", "domain_classifier", "frechet_distance", "kernel_inception_distance",
           "outside_fraction", "precision_recall", "SAMPLERS", "Generator", "load_generator", "sample", "write_samples",
           "generation_scores", "write_generation"]
