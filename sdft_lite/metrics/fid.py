"""FID (Heusel et al. 2017) and KID (Bińkowski et al. 2018) through clean-fid's "clean" mode (Parmar et al. 2022).

SDFT reports both (paper Tables 1–2, KID ×10³) from ``cleanfid.fid.compute_fid`` / ``compute_kid`` with their
defaults. Here both numbers come from ONE feature extraction per image set:

  folder -> clean-fid's loader (uint8 RGB, PIL bicubic per channel in float to 299x299, no re-quantisation)
         -> extractor: [B, 3, 299, 299] in [0, 255] -> features [B, D]
  FID = ||μ1 − μ2||² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)                      (metrics.frechet)
  KID = mean over 100 random subsets of size m = min(n1, n2, 1000) of the unbiased MMD² with the cubic kernel
        k(x, y) = (xᵀy / D + 1)³                                          (cleanfid.fid.kernel_distance)

The FID equals ``compute_fid(..., custom_feat_extractor=fn)`` (tested); ``compute_kid`` accepts no custom
extractor, hence the shared path. The Fréchet distance is written here with clean-fid's numerics because clean-fid
0.1.35 passes SciPy's ``sqrtm(..., disp=False)``, an argument SciPy 1.18 removes.

The paper's extractor is NVIDIA's TorchScript Inception-v3 file, registered here as ``"inception"``; it is
loaded only when the file is already on disk (see ``weights.py``).
Any other extractor is a named alternative whose numbers are never comparable with the paper's:
:meth:`FIDResult.comparable_with` and the evaluate table say so.

Tensor inputs ``[N, 3, H, W] in [-1, 1]`` are first written to a temporary folder as 8-bit PNG (as the samplers
save them), so folders and tensors go through the identical loader and resize.
"""
from __future__ import annotations

import contextlib
import importlib
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Union

import numpy as np
import torch
from torch import nn

from sdft_lite.config import pick_device
from sdft_lite.metrics.frechet import frechet_distance_of_features
from sdft_lite.metrics.weights import INCEPTION, find_weights, reading
from sdft_lite.sample import save_images

FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]  # x: [B, 3, 299, 299] float in [0, 255] -> [B, D]
ExtractorFactory = Callable[[torch.device], FeatureExtractor]
ImageSet = Union[str, Path, torch.Tensor]  # a folder of images, or x: [N, 3, H, W] in [-1, 1]

PAPER_EXTRACTOR = "inception"
KID_SUBSETS, KID_MAX_SUBSET_SIZE, KID_SEED = 100, 1000, 0  # clean-fid's defaults; the seed is ours
_EXTRACTORS: dict[str, ExtractorFactory] = {}


# ---------------------------------------------------------------------------------------------------------------
# Extractor registry


def register_extractor(name: str, factory: ExtractorFactory) -> None:
    """Make ``name`` usable as ``extractor=`` / ``--extractor``; ``factory(device)`` returns the feature function."""
    _EXTRACTORS[name] = factory


def available_extractors() -> tuple[str, ...]:
    return tuple(sorted(_EXTRACTORS))


def build_extractor(name: str, device: torch.device) -> FeatureExtractor:
    """The extractor ``name`` on ``device`` (MissingWeightsError when the Inception file is absent).

    ``name`` is a registered name, or ``"package.module:factory"``, which is imported and registered under
    that name (how a command-line user plugs in, e.g., a SynthFaces classifier).
    """
    if name not in _EXTRACTORS and ":" in name:
        module_name, _, attribute = name.partition(":")
        register_extractor(name, getattr(importlib.import_module(module_name), attribute))
    if name not in _EXTRACTORS:
        raise KeyError(f"unknown feature extractor '{name}'; registered: {', '.join(available_extractors())}")
    return _EXTRACTORS[name](device)


def _clean_fid_inception(device: torch.device) -> FeatureExtractor:
    """clean-fid's own wrapper of NVIDIA's TorchScript Inception (2048-d pool features), never downloading."""
    from cleanfid.inception_torchscript import InceptionV3W

    path = find_weights(INCEPTION)
    with reading(path, f"Get it again from {INCEPTION.source}"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.load deprecation notice
        model = InceptionV3W(str(path.parent), download=False, resize_inside=False)
    return model.to(device).eval()


def _random_inception_smoke(device: torch.device) -> FeatureExtractor:
    """Inception-v3's architecture with seeded RANDOM weights: a smoke test of the pipeline, not a metric.

    Untrained BatchNorm statistics let activations grow by orders of magnitude through the network, so the
    2048-d pool features are L2-normalised to keep FID/KID finite.
    """
    from torchvision.models import inception_v3

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = inception_v3(weights=None, aux_logits=False, init_weights=True)
    model.fc = nn.Identity()
    model = model.to(device).eval()

    def features(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(model((x - 128) / 128), dim=1)

    return features


register_extractor(PAPER_EXTRACTOR, _clean_fid_inception)
register_extractor("random-inception-smoke", _random_inception_smoke)


# ---------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class FIDResult:
    """An FID with what produced it. Two FIDs compare only when the same extractor made both."""

    fid: float
    extractor: str
    n1: int
    n2: int

    @property
    def value(self) -> float:
        return self.fid

    @property
    def paper_comparable(self) -> bool:
        return self.extractor == PAPER_EXTRACTOR

    def comparable_with(self, other: object) -> bool:
        return isinstance(other, FIDResult) and other.extractor == self.extractor


@dataclass(frozen=True)
class KIDResult:
    """A KID reported ×10³ as in the paper (``kid_x1e3``), with the extractor and subset settings behind it."""

    kid_x1e3: float
    extractor: str
    n1: int
    n2: int
    num_subsets: int
    subset_size: int
    seed: int

    @property
    def value(self) -> float:
        return self.kid_x1e3

    @property
    def paper_comparable(self) -> bool:
        return self.extractor == PAPER_EXTRACTOR

    def comparable_with(self, other: object) -> bool:
        return isinstance(other, KIDResult) and other.extractor == self.extractor


# ---------------------------------------------------------------------------------------------------------------
# Features and the two distances


@contextlib.contextmanager
def as_folder(images: ImageSet) -> Iterator[Path]:
    """A folder holding ``images``: the folder itself, or a temporary PNG folder for a tensor."""
    if isinstance(images, torch.Tensor):
        with tempfile.TemporaryDirectory(prefix="sdft_metrics_") as tmp:
            save_images(images, tmp)
            yield Path(tmp)
    else:
        folder = Path(images)
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        yield folder


def folder_features(folder: str | Path, extractor: FeatureExtractor, device: torch.device,
                    batch_size: int = 32, num_workers: int = 0) -> np.ndarray:
    """Features [N, D] of every image under ``folder`` (recursive), through clean-fid's "clean" loader."""
    from cleanfid import fid as cleanfid

    feats = cleanfid.get_folder_features(str(folder), model=extractor, num_workers=num_workers,
                                         batch_size=batch_size, device=device, mode="clean", verbose=False)
    if len(feats) < 2:
        raise ValueError(f"{folder}: FID/KID need at least 2 images, found {len(feats)}")
    return feats.astype(np.float64)


def fid_from_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """FID of feats1 [N1, D] and feats2 [N2, D]: Fréchet distance of their Gaussian fits (unbiased covariances)."""
    try:
        return frechet_distance_of_features(feats1, feats2)
    except (ValueError, np.linalg.LinAlgError) as error:
        n, dim = min(len(feats1), len(feats2)), feats1.shape[1]
        raise ValueError(f"FID failed ({error}): with {len(feats1)} and {len(feats2)} images of {dim}-d features "
                         f"the covariances are {'rank-deficient' if n <= dim else 'ill-conditioned'}; use many "
                         "more images than feature dimensions (the paper uses 10,000 samples).") from error


def kid_subset_size(n1: int, n2: int, max_subset_size: int = KID_MAX_SUBSET_SIZE) -> int:
    return min(n1, n2, max_subset_size)


def kid_from_features(feats1: np.ndarray, feats2: np.ndarray, num_subsets: int = KID_SUBSETS,
                      max_subset_size: int = KID_MAX_SUBSET_SIZE, seed: int = KID_SEED) -> float:
    """KID (not scaled) via ``cleanfid.fid.kernel_distance``, its subsets drawn from NumPy's global RNG seeded
    with ``seed`` (the global state is restored afterwards)."""
    from cleanfid import fid as cleanfid

    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return float(cleanfid.kernel_distance(feats1, feats2, num_subsets=num_subsets,
                                              max_subset_size=max_subset_size))
    finally:
        np.random.set_state(state)


def set_features(images: ImageSet, extractor: FeatureExtractor, device: torch.device,
                 batch_size: int = 32, num_workers: int = 0) -> np.ndarray:
    """Features [N, D] of a folder or a tensor [N, 3, H, W] in [-1, 1]."""
    with as_folder(images) as folder:
        return folder_features(folder, extractor, device, batch_size, num_workers)


def pair_features(images1: ImageSet, images2: ImageSet, extractor: str = PAPER_EXTRACTOR,
                  device: str | torch.device | None = None, batch_size: int = 32,
                  num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features [N1, D] and [N2, D] of two image sets with one build of the extractor named ``extractor``."""
    device = pick_device(str(device) if device is not None else None)
    model = build_extractor(extractor, device)
    with torch.no_grad():
        return (set_features(images1, model, device, batch_size, num_workers),
                set_features(images2, model, device, batch_size, num_workers))


def fid_result(feats1: np.ndarray, feats2: np.ndarray, extractor: str) -> FIDResult:
    """FIDResult of two feature sets [N1, D], [N2, D] made by ``extractor``."""
    return FIDResult(fid_from_features(feats1, feats2), extractor, len(feats1), len(feats2))


def kid_result(feats1: np.ndarray, feats2: np.ndarray, extractor: str, num_subsets: int = KID_SUBSETS,
               max_subset_size: int = KID_MAX_SUBSET_SIZE, seed: int = KID_SEED) -> KIDResult:
    """KIDResult (×10³) of two feature sets [N1, D], [N2, D] made by ``extractor``."""
    kid = kid_from_features(feats1, feats2, num_subsets, max_subset_size, seed)
    n1, n2 = len(feats1), len(feats2)
    return KIDResult(1e3 * kid, extractor, n1, n2, num_subsets, kid_subset_size(n1, n2, max_subset_size), seed)


def compute_fid_kid(images1: ImageSet, images2: ImageSet, extractor: str = PAPER_EXTRACTOR,
                    device: str | torch.device | None = None, batch_size: int = 32,
                    num_workers: int = 0) -> tuple[FIDResult, KIDResult]:
    """FID and KID×10³ between two image sets from one extraction each (clean mode, ``extractor`` by name)."""
    feats1, feats2 = pair_features(images1, images2, extractor, device, batch_size, num_workers)
    return fid_result(feats1, feats2, extractor), kid_result(feats1, feats2, extractor)


def compute_fid(images1: ImageSet, images2: ImageSet,
                extractor: str = PAPER_EXTRACTOR, **kwargs) -> FIDResult:
    """FID between two image sets (see :func:`compute_fid_kid` for the arguments)."""
    return compute_fid_kid(images1, images2, extractor, **kwargs)[0]


def compute_kid(images1: ImageSet, images2: ImageSet,
                extractor: str = PAPER_EXTRACTOR, **kwargs) -> KIDResult:
    """KID×10³ between two image sets (see :func:`compute_fid_kid` for the arguments)."""
    return compute_fid_kid(images1, images2, extractor, **kwargs)[1]
