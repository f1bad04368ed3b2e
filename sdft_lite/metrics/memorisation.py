"""Memorisation: each sample's nearest training image, the distribution of those distances, and the share of
near-duplicates.

For a sample x let j*(x) be its nearest training image and d₁(x) ≤ d₂(x) its distances to the nearest and the
second-nearest training image. x is a near-duplicate (a memorised copy of training image j*) when

    d₁(x) / d₂(x) < δ,      δ = 1/3 by default

the criterion of Gu et al., "On Memorization in Diffusion Models" (2023), whose released ``mem_ratio.py`` applies it
to pixel ℓ2 with δ = 1/3. The threshold is relative to the training set: a sample counts as a copy when it is
δ⁻¹ = 3 times closer to one training image than to any other, so no absolute scale has to be guessed for each
distance, resolution or dataset (Carlini et al. 2023, "Extracting Training Data from Diffusion Models", also
normalise their ℓ2 test by the sample's distances to other training images, for the same reason). A distance
that is a squared Euclidean one (LPIPS, cosine: :attr:`Distance.squared`) enters the ratio through its square
root, so δ keeps its ℓ2 meaning. The ratio needs at least two training images; 0/0 (a sample equal to two
identical training images) counts as 0.

Each report holds two distances: the pluggable one (LPIPS, or a feature network's, named) and pixel ℓ2 (model-free,
root-mean-square over pixels in [-1, 1]). Next to the samples' d₁ it keeps the training images' distances to their
own nearest other training image: the spacing against which "close to a training image" reads. Both are binned
on the same edges (``to_json``) and drawn by :meth:`MemorisationReport.figure`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from sdft_lite.metrics.distances import Distance, pixel_l2

NEAR_DUPLICATE_RATIO = 1 / 3  # δ of Gu et al. (2023)
HISTOGRAM_BINS = 30


@dataclass(frozen=True, eq=False)
class NearestTraining:
    """One distance's view. nearest: [N] long (training index); d1, d2: [N] nearest and second-nearest distance;
    train_nearest: [M] each training image's distance to its nearest other training image (float64)."""

    distance: str
    squared: bool
    nearest: torch.Tensor
    d1: torch.Tensor
    d2: torch.Tensor
    train_nearest: torch.Tensor
    ratio_threshold: float = NEAR_DUPLICATE_RATIO

    @property
    def ratio(self) -> torch.Tensor:
        """d₁ / d₂ per sample ([N]; square roots first for a squared distance; 0/0 = 0)."""
        d1, d2 = (self.d1.sqrt(), self.d2.sqrt()) if self.squared else (self.d1, self.d2)
        return torch.where(d1 == 0, torch.zeros_like(d1), d1 / d2)

    @property
    def near_duplicate(self) -> torch.Tensor:
        return self.ratio < self.ratio_threshold

    @property
    def share(self) -> float:
        """Fraction of the samples that are near-duplicates."""
        return float(self.near_duplicate.double().mean())

    def histogram(self, bins: int = HISTOGRAM_BINS) -> dict:
        """Counts of d₁ (samples) and of the training images' nearest-other distances on shared edges."""
        top = float(torch.cat([self.d1, self.train_nearest]).max())
        edges = np.linspace(0.0, top if top > 0 else 1.0, bins + 1)
        return {"edges": edges.tolist(), "samples": np.histogram(self.d1.numpy(), edges)[0].tolist(),
                "train": np.histogram(self.train_nearest.numpy(), edges)[0].tolist()}

    def to_json(self, sample_names: Sequence[str] | None = None, train_names: Sequence[str] | None = None,
                bins: int = HISTOGRAM_BINS) -> dict:
        samples = sample_names or [str(i) for i in range(len(self.d1))]
        train = train_names or [str(j) for j in range(len(self.train_nearest))]
        ratio, duplicate = self.ratio.tolist(), self.near_duplicate.tolist()
        return {
            "distance": self.distance, "squared": self.squared, "rule": "d1/d2 < threshold (Gu et al. 2023)",
            "ratio_threshold": self.ratio_threshold, "near_duplicates": int(sum(duplicate)), "share": self.share,
            "mean_nearest": float(self.d1.mean()), "median_nearest": float(self.d1.median()),
            "train_median_nearest_other": float(self.train_nearest.median()),
            "histogram": self.histogram(bins),
            "per_sample": [{"sample": s, "nearest": train[j], "distance": d, "ratio": r, "near_duplicate": n}
                           for s, j, d, r, n in zip(samples, self.nearest.tolist(), self.d1.tolist(), ratio,
                                                    duplicate)],
        }


@dataclass(frozen=True, eq=False)
class MemorisationReport:
    """Nearest training images under each distance (the pluggable one first, pixel ℓ2 last)."""

    by_distance: dict[str, NearestTraining]
    sample_names: tuple[str, ...] | None = None
    train_names: tuple[str, ...] | None = None
    bins: int = HISTOGRAM_BINS

    def to_json(self) -> dict:
        return {"distances": {name: block.to_json(self.sample_names, self.train_names, self.bins)
                              for name, block in self.by_distance.items()}}

    def figure(self):
        """Histograms of d₁ against the training set's own spacing, and of d₁/d₂ with the threshold (a
        :class:`matplotlib.figure.Figure`; pyplot's state is left alone)."""
        from sdft_lite import figures  # matplotlib only when a figure is drawn

        panels = {name: (b.d1.numpy(), b.train_nearest.numpy(), b.ratio.numpy(), b.share)
                  for name, b in self.by_distance.items()}
        threshold = next(iter(self.by_distance.values())).ratio_threshold
        return figures.nearest_distances(panels, threshold, self.bins)


def nearest_training(sample_train: torch.Tensor, train_train: torch.Tensor, name: str, squared: bool,
                     ratio_threshold: float = NEAR_DUPLICATE_RATIO) -> NearestTraining:
    """From sample_train [N, M] and train_train [M, M] distance matrices (M ≥ 2)."""
    if sample_train.shape[1] < 2:
        raise ValueError("the near-duplicate ratio needs at least 2 training images")
    two, index = sample_train.topk(2, dim=1, largest=False)  # sorted ascending
    others = train_train.clone().fill_diagonal_(float("inf"))
    return NearestTraining(name, squared, index[:, 0], two[:, 0], two[:, 1], others.min(dim=1).values,
                           ratio_threshold)


def memorisation_report(samples: torch.Tensor, train: torch.Tensor, distance: Distance | None = None,
                        ratio_threshold: float = NEAR_DUPLICATE_RATIO, bins: int = HISTOGRAM_BINS,
                        sample_train: torch.Tensor | None = None, sample_names: Sequence[str] | None = None,
                        train_names: Sequence[str] | None = None) -> MemorisationReport:
    """Nearest training images of samples: [N, 3, H, W] under ``distance`` (if given) and pixel ℓ2, from
    train: [M, 3, H, W] (both in [-1, 1], pixel ℓ2 needs one size); ``sample_train`` reuses ``distance``'s
    [N, M] matrix."""
    chosen = [distance] if distance is not None else []
    if all(d.kind != "pixel" for d in chosen):
        chosen.append(pixel_l2())
    by_distance = {}
    for d in chosen:
        matrix = sample_train if d is distance and sample_train is not None else d.matrix(samples, train)
        by_distance[d.name] = nearest_training(matrix, d.matrix(train), d.name, d.squared, ratio_threshold)
    names = (tuple(sample_names) if sample_names else None, tuple(train_names) if train_names else None)
    return MemorisationReport(by_distance, *names, bins=bins)
