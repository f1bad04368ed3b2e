"""Intra-cluster LPIPS (Ojha et al., "Few-shot Image Generation via Cross-domain Correspondence", CVPR 2021, §4):
how varied a few-shot model's samples are around each of its training images.

  1. Assign each sample to the training image at the lowest distance (LPIPS-VGG in the paper): M clusters.
  2. In each cluster keep at most ``max_per_cluster`` members, drawn at random (50 in the authors' released
     ``feat_cluster.py``), and average the distance over all unordered pairs i < j of them.
  3. Report the mean of the cluster averages. A cluster with fewer than two members has no pair: its average is
     NaN and it is left out of the mean, as the authors' code does (it averages the non-NaN clusters only).

The paper draws 1000 samples against its 10 training images; later few-shot work reports the same number for
diffusion models (e.g. Zhu et al., "Few-shot Image Generation with Diffusion Models", 2022). A model that copies
its training images scores 0, and a cluster that has collapsed onto one image pulls the mean down. Distances are
taken at the images' own resolution; the authors resize to 256 px first (their data is 256 px).

The distance is pluggable (:mod:`sdft_lite.metrics.distances`). With anything but LPIPS the result is named
after that distance ("intra-cluster distance (synthfaces-realism cosine)"), never "LPIPS".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sdft_lite.metrics.distances import Distance

PAPER_CLUSTER_SIZE = 50  # members per cluster in the authors' feat_cluster.py


@dataclass(frozen=True)
class DiversityResult:
    """Intra-cluster distance: ``value`` = mean over clusters with ≥ 2 members (NaN when there is none).

    ``cluster_means[k]``: mean pairwise distance inside the cluster of training image k (NaN below 2 members);
    ``cluster_sizes[k]``: samples assigned to it (before the ``max_per_cluster`` draw)."""

    value: float
    distance: str
    is_lpips: bool
    cluster_means: tuple[float, ...]
    cluster_sizes: tuple[int, ...]
    max_per_cluster: int | None
    seed: int
    distance_note: str = ""

    @property
    def label(self) -> str:
        return "intra-cluster LPIPS" if self.is_lpips else f"intra-cluster distance ({self.distance})"

    @property
    def clusters_used(self) -> int:
        return sum(not math.isnan(m) for m in self.cluster_means)

    @property
    def spread(self) -> float:
        """Standard deviation of the cluster averages that enter the mean (the authors print it beside it)."""
        used = torch.tensor([m for m in self.cluster_means if not math.isnan(m)], dtype=torch.float64)
        return float(used.std()) if len(used) > 1 else math.nan

    def to_json(self) -> dict:
        def number(v: float) -> float | None:
            return None if math.isnan(v) else v

        return {"label": self.label, "value": number(self.value), "distance": self.distance,
                "is_lpips": self.is_lpips, "distance_note": self.distance_note,
                "samples": sum(self.cluster_sizes), "clusters": len(self.cluster_sizes),
                "clusters_used": self.clusters_used, "std_over_clusters": number(self.spread),
                "max_per_cluster": self.max_per_cluster, "seed": self.seed,
                "cluster_sizes": list(self.cluster_sizes),
                "cluster_means": [number(m) for m in self.cluster_means]}


def assign_clusters(sample_train: torch.Tensor) -> torch.Tensor:
    """Each sample's nearest training image: sample_train [N, M] distances -> [N] long (first index on ties)."""
    return sample_train.argmin(dim=1)


def cluster_members(assignment: torch.Tensor, num_clusters: int, max_per_cluster: int | None = PAPER_CLUSTER_SIZE,
                    seed: int = 0) -> list[torch.Tensor]:
    """Sample indices per cluster, at most ``max_per_cluster`` of them drawn at random (seeded); None keeps all."""
    generator = torch.Generator().manual_seed(seed)
    members = []
    for k in range(num_clusters):
        indices = (assignment == k).nonzero().flatten()
        if max_per_cluster is not None and len(indices) > max_per_cluster:
            indices = indices[torch.randperm(len(indices), generator=generator)[:max_per_cluster]].sort().values
        members.append(indices)
    return members


def mean_pairwise(within: torch.Tensor) -> float:
    """Mean of within[i, j] over i < j for a [k, k] distance matrix; NaN when k < 2."""
    k = len(within)
    if k < 2:
        return math.nan
    i, j = torch.triu_indices(k, k, offset=1)
    return float(within[i, j].mean())


def intra_cluster_distance(samples: torch.Tensor, train: torch.Tensor, distance: Distance,
                           max_per_cluster: int | None = PAPER_CLUSTER_SIZE, seed: int = 0,
                           sample_train: torch.Tensor | None = None) -> DiversityResult:
    """Intra-cluster LPIPS (module docstring) with ``distance``. samples: [N, 3, H, W], train: [M, 3, H, W] in
    [-1, 1]; ``sample_train`` ([N, M], optional) reuses a distance matrix already computed."""
    if sample_train is None:
        sample_train = distance.matrix(samples, train)
    assignment = assign_clusters(sample_train)
    members = cluster_members(assignment, len(train), max_per_cluster, seed)
    means = tuple(mean_pairwise(distance.matrix(samples[m])) if len(m) > 1 else math.nan for m in members)
    used = [m for m in means if not math.isnan(m)]
    value = sum(used) / len(used) if used else math.nan
    sizes = tuple(int(n) for n in torch.bincount(assignment, minlength=len(train)))
    return DiversityResult(value, distance.name, distance.is_lpips, means, sizes, max_per_cluster, seed,
                           distance.note)
