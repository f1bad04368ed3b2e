"""Distances between two image sets, for the diversity and memorisation metrics: LPIPS, a feature network's cosine
or Euclidean distance, and pixel ℓ2. Each is a named :class:`Distance` that returns a whole matrix at once.

    D = distance.matrix(x, y)      x: [N, 3, H, W], y: [M, 3, H, W] in [-1, 1]  ->  D: [N, M] float64 (CPU)

Every image is embedded once per block of the other set, not once per pair, and D comes from matrix products.
This works for LPIPS too, because LPIPS is a squared Euclidean distance. With f̂_l(x) the channel-normalised
activations of trunk layer l ([C_l, H_l, W_l]) and w_l ≥ 0 its learned channel weights (Zhang et al. 2018, Eq. 1),

    LPIPS(x, y) = Σ_l 1/(H_l W_l) Σ_{c,h,w} w_{l,c} (f̂_l(x) − f̂_l(y))²_{c,h,w} = ‖e(x) − e(y)‖²,
    e(x) = concat_l √(w_l / (H_l W_l)) ⊙ f̂_l(x)                                         (:func:`lpips_embedding`)

So an N×M LPIPS matrix costs N + M trunk passes instead of N·M, and each entry equals ``lpips.LPIPS.forward``
on that pair (``tests/test_metrics_diversity.py``). The cosine distance 1 − cos(a, b) = ½‖â − b̂‖² is a
squared Euclidean distance too; :attr:`Distance.squared` records this for the memorisation ratio test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from sdft_lite.metrics import perceptual

Embed = Callable[[torch.Tensor], torch.Tensor]                   # x: [B, 3, H, W] in [-1, 1] -> [B, D]
PairMatrix = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # [n, D], [m, D] float64 -> [n, m]
KINDS = ("lpips", "features", "pixel")
CACHE_BYTES = 1 << 30  # embeddings of the second set kept between row blocks, at most (LPIPS at 256 px: 66 MB each)


@dataclass(frozen=True)
class Distance:
    """A named distance between images. ``kind``: "lpips", "features" or "pixel"; ``squared``: the value is a
    squared Euclidean distance in some embedding (LPIPS, cosine); ``note``: why this distance was chosen, if it
    stands in for another (e.g. LPIPS's trunk file is missing)."""

    name: str
    kind: str
    embed: Embed
    pair_matrix: PairMatrix
    squared: bool
    batch_size: int = 32
    note: str = ""

    @property
    def is_lpips(self) -> bool:
        return self.kind == "lpips"

    @property
    def short(self) -> str:
        """What a table calls it: "LPIPS" only when it is LPIPS, else the distance's own name."""
        return "LPIPS" if self.is_lpips else self.name

    @torch.no_grad()
    def matrix(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """D[i, j] = d(x_i, y_j): [N, M] float64 on the CPU; ``y=None`` means y = x."""
        same = y is None
        y = x if same else y
        out = torch.empty(len(x), len(y), dtype=torch.float64)
        step, cache, budget = self.batch_size, {}, CACHE_BYTES
        for i in range(0, len(x), step):
            ex = self._embedded(x[i:i + step])
            for j in range(0, len(y), step):
                ey = ex if same and i == j else cache.get(j)
                if ey is None:
                    ey = self._embedded(y[j:j + step])
                    if ey.numel() * ey.element_size() <= budget:
                        cache[j], budget = ey, budget - ey.numel() * ey.element_size()
                out[i:i + step, j:j + step] = self.pair_matrix(ex, ey)
        return out

    def _embedded(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images).to("cpu", torch.float64)


# ---------------------------------------------------------------------------------------------------------------
# Matrices of embedded sets: a: [n, D], b: [m, D] float64 -> [n, m]


def euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_j‖ from the differences themselves (no ‖a‖² + ‖b‖² − 2ab round-off): 0 for equal rows."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def squared_euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_j‖² through one matrix product, for long embeddings (LPIPS); clamped at 0."""
    gram = a @ b.T
    return (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * gram).clamp_min_(0)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 − cos(a_i, b_j) = ½‖â_i − b̂_j‖², in [0, 2]."""
    return (1 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T).clamp_min_(0)


FEATURE_METRICS: dict[str, tuple[PairMatrix, bool]] = {"cosine": (cosine, True), "euclidean": (euclidean, False)}


# ---------------------------------------------------------------------------------------------------------------
# The distances


def lpips_embedding(model, x: torch.Tensor) -> torch.Tensor:
    """e(x): [B, D] (module docstring) with LPIPS(x, y) = ‖e(x) − e(y)‖², for an ``lpips.LPIPS`` (v0.1, linear
    layers on, not spatial) and x: [B, 3, H, W] in [-1, 1]; D = Σ_l C_l H_l W_l."""
    import lpips

    if model.version != "0.1" or not model.lpips or model.spatial:
        raise ValueError("lpips_embedding needs an LPIPS v0.1 model with its linear layers and spatial=False")
    device = next(model.parameters()).device
    layers = model.net(model.scaling_layer(x.to(device, torch.float32)))
    parts = []
    for activation, lin in zip(layers, model.lins):
        weight = lin.model[-1].weight.reshape(1, -1, 1, 1)  # [1, C_l, 1, 1]
        if (weight < 0).any():
            raise ValueError("LPIPS linear weights must be non-negative to be a squared distance")
        h, w = activation.shape[-2:]
        parts.append((lpips.normalize_tensor(activation) * (weight / (h * w)).sqrt()).flatten(1))
    return torch.cat(parts, dim=1)


def lpips_distance(model=None, net: str = "vgg", backbone: str = "imagenet",
                   device: str | torch.device | None = None, batch_size: int = 16) -> Distance:
    """LPIPS (``perceptual.build_lpips``; MissingWeightsError when the trunk file is absent), named as
    :class:`~sdft_lite.metrics.perceptual.LPIPSResult` names it (a random trunk says so)."""
    model = model if model is not None else perceptual.build_lpips(net, backbone, device)
    name = perceptual.lpips_model_name(*model.sdft_labels)
    return Distance(name, "lpips", lambda x: lpips_embedding(model, x), squared_euclidean, squared=True,
                    batch_size=batch_size)


def feature_distance(extractor: Embed, name: str, metric: str = "cosine", batch_size: int = 256,
                     note: str = "") -> Distance:
    """A feature network's distance: ``extractor`` maps x: [B, 3, H, W] in [-1, 1] to [B, D]; ``metric`` is
    "cosine" (1 − cos) or "euclidean". The distance is named ``"{name} {metric}"``."""
    if metric not in FEATURE_METRICS:
        raise ValueError(f"feature metric must be one of {sorted(FEATURE_METRICS)}, got '{metric}'")
    pair_matrix, squared = FEATURE_METRICS[metric]
    return Distance(f"{name} {metric}", "features", extractor, pair_matrix, squared, batch_size, note)


def _pixels(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).double() / math.sqrt(x[0].numel())


def pixel_l2(batch_size: int = 256) -> Distance:
    """Model-free: the root-mean-square pixel difference ‖x − y‖₂ / √(3HW) of images in [-1, 1]."""
    return Distance("pixel-l2", "pixel", _pixels, euclidean, squared=False, batch_size=batch_size)
