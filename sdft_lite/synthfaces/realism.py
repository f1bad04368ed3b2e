"""A realism measure for SynthFaces that looks at style and image quality, not at attributes.

Why not reuse the attribute classifier? Its features are built to separate attributes, so a Fréchet distance
on them mostly counts attributes: the feasibility study found the photo source scoring *better* than good
portraits that merely lacked attributes. The realism net is trained for the opposite:

* regress how far an image is from a clean portrait: photo-ness (a photo/portrait blend weight), extra blur,
  noise and colour shift (each present at random, attributes drawn uniformly and independently of them);
* while an invariance term makes the features of two renders that differ *only* in their attributes (same
  pose, background, style and damage) agree: within-pair variance / batch variance → 0.

Realism = Fréchet distance (Heusel et al. 2017) between realism-net features of generated images and of a
reference set. ``validate_realism`` checks the instrument before use: held-out real portraits must score
best, the photo source, blurred and noised portraits clearly worse, against both the full and the limited target.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..assets import asset_path
from ..checkpoint import MissingWeightsError, read_checkpoint, reading
from ..config import home, pick_device, quick_mode
from ..metrics.distances import Distance, euclidean, squared_euclidean
from ..metrics.frechet import frechet_distance_of_features
from .attributes import FACE_ATTRIBUTES, NUM_LEVELS
from .degrade import add_noise, color_shift, gaussian_blur, pixelate
from .domains import DomainSpec
from .nets import ConvNet, as_model_input, default_workers, rendered_batches, step_rng
from .renderer import draw_faces, sample_faces, to_tensor
from .styles import photo, portrait

TRAIN_STREAM = "instruments/realism-train"
REALISM_FILE = "realism.pt"
CORRUPTIONS = ("photo", "blur", "noise", "color")
FeatureExtractor = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class RealismConfig:
    """Realism-net size, training recipe and the range of damage it learns to measure."""

    size: int = 32
    width: int = 32
    steps: int = 3000
    batch: int = 256
    lr: float = 3e-3
    corrupt_prob: float = 0.4      # each corruption is present with this probability
    max_blur: float = 2.0          # pixels at 32 px
    max_noise: float = 0.20        # std, [0, 1] units
    max_shift: float = 0.25        # colour gain/offset strength
    invariance_weight: float = 1.0
    seed: int = 0

    @classmethod
    def quick(cls, size: int = 32) -> "RealismConfig":
        return cls(size=size, width=16, steps=300, batch=64)

    @classmethod
    def full(cls, size: int = 32) -> "RealismConfig":
        return cls(size=size, width=32, steps=3000, batch=256)


class RealismNet(nn.Module):
    """x: [B, 3, size, size] in [-1, 1] → (features [B, D], predicted corruption strengths [B, 4] in ~[0, 1])."""

    def __init__(self, config: RealismConfig):
        super().__init__()
        self.config = config
        self.backbone = ConvNet(config.width)
        self.head = nn.Linear(self.backbone.feature_dim, len(CORRUPTIONS))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        return features, self.head(features)


# ---- training data: corrupted renders in attribute-swapped pairs -------------------------------------------

def corrupt(base: np.ndarray, noise: np.ndarray, strengths: np.ndarray, config: RealismConfig,
            rng: np.random.Generator) -> np.ndarray:
    """A portrait damaged by ``strengths`` [N, 4] in [0, 1] (photo-ness, blur, noise, colour). Returns [N, 3, H, W]."""
    painted, photographed = portrait(base, noise), photo(base, noise)
    mixed = painted + strengths[:, 0, None, None, None].astype(np.float32) * (photographed - painted)
    blurred = gaussian_blur(mixed, strengths[:, 1] * config.max_blur)
    noised = add_noise(blurred, strengths[:, 2] * config.max_noise, rng)
    return color_shift(noised, strengths[:, 3] * config.max_shift, rng)


def realism_batch(step: int, config: RealismConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch ``step``: two renders of the same faces with different attributes, damaged identically.

    Returns x_a, x_b: [B, 3, S, S] in [-1, 1] and the corruption strengths [B, 4] they share.
    """
    n, rng = config.batch, step_rng(config.seed, step, "realism")
    indices = np.arange(step * n, (step + 1) * n)
    other_levels = {name: rng.integers(0, NUM_LEVELS[name], n) for name in FACE_ATTRIBUTES}
    present = rng.random((n, len(CORRUPTIONS))) < config.corrupt_prob
    strengths = np.where(present, rng.random((n, len(CORRUPTIONS))), 0.0)
    damage_seed = int(rng.integers(2**63))
    pair = []
    for fixed in (None, other_levels):
        params = sample_faces(indices, config.seed, TRAIN_STREAM, config.size, fixed=fixed)
        pair.append(to_tensor(corrupt(draw_faces(params, config.size), params.noise, strengths, config,
                                      np.random.default_rng(damage_seed))))
    return pair[0], pair[1], torch.from_numpy(strengths.astype(np.float32))


def invariance_loss(features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
    """Feature change between attribute-swapped twins, relative to the feature spread over the batch.

    features: [B, D] each. 0: attributes are invisible; 1: swapping them moves features like an unrelated face.
    """
    within = (features_a - features_b).pow(2).mean()                # ≈ 2·Var for unrelated pairs
    spread = (features_a.var(dim=0) + features_b.var(dim=0)).mean()  # 2·Var
    return within / (spread + 1e-6)


def train_realism(size: int = 32, steps: int | None = None, batch: int | None = None,
                  device: str | torch.device | None = None, seed: int = 0, config: RealismConfig | None = None,
                  validation_images: int = 1000, workers: int | None = None, log=print) -> tuple[RealismNet, dict]:
    """Train the realism net, then validate it (see :func:`validate_realism`). Returns the net and a report.

    Defaults: ``RealismConfig.full`` on a GPU, ``.quick`` on a CPU or in quick mode.
    """
    device = pick_device(str(device) if device else None)
    full = device.type == "cuda" and not quick_mode()
    config = config or (RealismConfig.full(size) if full else RealismConfig.quick(size))
    config = replace(config, size=size, seed=seed, steps=steps or config.steps, batch=batch or config.batch)
    torch.manual_seed(config.seed)
    model = RealismNet(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps)
    workers = default_workers(device) if workers is None else workers
    started = time.perf_counter()
    model.train()
    batches = rendered_batches(partial(realism_batch, config=config), config.steps, workers)
    for step, (x_a, x_b, strengths) in enumerate(batches):
        features, predicted = model(torch.cat([x_a, x_b]).to(device))
        regression = F.mse_loss(predicted, strengths.to(device).repeat(2, 1))
        invariance = invariance_loss(*features.chunk(2))
        loss = regression + config.invariance_weight * invariance
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if log and (step % max(1, config.steps // 10) == 0 or step == config.steps - 1):
            log(f"realism step {step:5d}/{config.steps} regression {regression.item():.4f} "
                f"invariance {invariance.item():.4f}")
    seconds = time.perf_counter() - started
    model.eval()
    validation = validate_realism(make_feature_extractor(model), size, validation_images, seed=config.seed + 1)
    report = {"config": asdict(config), "train_seconds": round(seconds, 1), "device": str(device),
              "validation": validation}
    return model, report


# ---- measuring ---------------------------------------------------------------------------------------------

def make_feature_extractor(model: nn.Module, batch_size: int = 500, input_range: str = "auto") -> FeatureExtractor:
    """A function images → features [N, D] (float32, CPU) from ``model.backbone`` (a RealismNet or the classifier).

    images: [N, 3, H, W] in [-1, 1], uint8 [N, 3, H, W] / [N, H, W, 3], or float in [0, 255] (set
    ``input_range="0..255"`` for clean-fid's loader); any resolution is resized to the net's.
    """
    device = next(model.parameters()).device
    size = model.config.size

    @torch.no_grad()
    def extract(images) -> torch.Tensor:
        model.eval()
        chunks = [model.backbone(as_model_input(images[i:i + batch_size], size, device, input_range)).float().cpu()
                  for i in range(0, len(images), batch_size)]
        return torch.cat(chunks) if chunks else torch.zeros(0, model.backbone.feature_dim)

    return extract


def realism_score(extractor: FeatureExtractor, images, reference_features: torch.Tensor) -> float:
    """Fréchet distance between the features of ``images`` and precomputed reference features (lower = more real)."""
    return frechet_distance_of_features(extractor(images), reference_features)


# ---- validation ------------------------------------------------------------------------------------------

REAL_SETS = ("full portraits (held-out)", "limited portraits (held-out)")
FAKE_SETS = ("photo source", "blurred portraits", "noised portraits")
VALIDATION_BLUR, VALIDATION_NOISE = 1.0, 0.08    # blur in px at 32 px; noise std in [0, 1] units
CLEARLY_WORSE = 3.0                               # every fake set must score ≥ 3x the worst real set


def validation_sets(size: int, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Image sets [n, 3, H, W] in [-1, 1] to score; every set uses faces no reference uses."""
    full, limited, source = DomainSpec.full_target(), DomainSpec.limited_target(), DomainSpec.source()
    held_out = np.arange(n)
    damaged = full.render(np.arange(n, 4 * n), size, seed, split="test")[0]
    rng = np.random.default_rng(seed)
    return {
        "full portraits (held-out)": to_tensor(full.render(held_out, size, seed, split="test")[0]),
        "limited portraits (held-out)": to_tensor(limited.render(held_out, size, seed, split="test")[0]),
        "photo source": to_tensor(source.render(held_out, size, seed, split="test")[0]),
        "blurred portraits": to_tensor(gaussian_blur(damaged[:n], VALIDATION_BLUR)),
        "noised portraits": to_tensor(add_noise(damaged[n:2 * n], VALIDATION_NOISE, rng)),
        "pixelated portraits": to_tensor(pixelate(damaged[2 * n:])),
    }


def reference_sets(size: int, n: int, seed: int) -> dict[str, torch.Tensor]:
    """The two references: the full target domain and the limited target's own training portraits."""
    full, limited = DomainSpec.full_target(), DomainSpec.limited_target()
    limited_count = min(n, limited.default_count)
    return {"full": to_tensor(full.render(np.arange(n), size, seed, split="reference")[0]),
            "limited": to_tensor(limited.render(np.arange(limited_count), size, seed, split="train")[0])}


def significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def validate_realism(extractor: FeatureExtractor, size: int = 32, n: int = 1000, seed: int = 0) -> dict:
    """Score held-out real portraits and known-bad sets against both references, and check the ordering.

    Passes when, for each reference, every fake set (photo, blurred, noised) scores at least CLEARLY_WORSE times
    the worst real set. Returns {"scores": {reference: {set: FD}}, "passed": {reference: bool}, "passed_all": bool,
    "attribute_gap": {reference: FD of the real set lacking/holding attributes ÷ FD of the matching one}}.
    """
    sets = validation_sets(size, n, seed)
    features = {name: extractor(images) for name, images in sets.items()}
    scores, passed, gap = {}, {}, {}
    for reference, images in reference_sets(size, n, seed).items():
        reference_features = extractor(images)
        scores[reference] = {name: significant(frechet_distance_of_features(f, reference_features)) for name, f in features.items()}
        worst_real = max(scores[reference][name] for name in REAL_SETS)
        best_fake = min(scores[reference][name] for name in FAKE_SETS)
        passed[reference] = bool(best_fake >= CLEARLY_WORSE * worst_real)
        matching, other = (REAL_SETS[0], REAL_SETS[1]) if reference == "full" else (REAL_SETS[1], REAL_SETS[0])
        gap[reference] = significant(scores[reference][other] / max(scores[reference][matching], 1e-12))
    return {"images_per_set": n, "size": size, "margin": CLEARLY_WORSE, "scores": scores, "passed": passed,
            "passed_all": all(passed.values()), "attribute_gap": gap}


def save_realism(model: RealismNet, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": "synthfaces-realism", "config": asdict(model.config), "state_dict": model.state_dict()}, path)
    return path


def load_realism(path: str | Path, device: str | torch.device = "cpu") -> RealismNet:
    checkpoint = read_checkpoint(path)
    with reading(path, "Pass the realism.pt written by `sdft-lite synthfaces train-instruments`"):
        if checkpoint.get("kind") != "synthfaces-realism":
            raise ValueError("it is not a SynthFaces realism-net checkpoint")
        model = RealismNet(RealismConfig(**checkpoint["config"]))
        model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()


def default_realism_path() -> Path:
    """Where ``sdft-lite synthfaces train-instruments`` puts the realism net by default."""
    return home() / "synthfaces" / REALISM_FILE


def load_feature_extractor(path: str | Path | None = None, device: str | torch.device = "cpu",
                           input_range: str = "auto") -> FeatureExtractor:
    """The ``synthfaces-realism`` extractor from a saved realism net: images → features [N, D]."""
    path = Path(path) if path else default_realism_path()
    if not path.is_file():
        raise MissingWeightsError("the SynthFaces realism net (realism.pt)",
                                  "train it: sdft-lite synthfaces train-instruments --out DIR",
                                  str(default_realism_path()), searched=(path,))
    return make_feature_extractor(load_realism(path, device), input_range=input_range)



# ---- as an image distance (diversity and memorisation when LPIPS's trunk is missing) --------------------------

SHIPPED_REALISM = "synthfaces/realism.pt"
REALISM_DISTANCE = "synthfaces-realism"
DISTANCE_STAGES = (2, 4, 6)  # outputs of backbone.stages[1], [3], [5]: 16², 8², 4² positions at 32 px


@torch.no_grad()
def realism_maps(model: RealismNet, images: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """The realism net's feature maps after :data:`DISTANCE_STAGES`, flattened: images [B, 3, H, W] in [-1, 1]
    (resized to the net's size) → e: [B, D], scaled so that, with L stages and f_l(x, p) the C_l features at
    position p of stage l,

      cosine:    ‖e(x) − e(y)‖² = 1/L Σ_l mean_p (1 − cos(f_l(x, p), f_l(y, p)))   (LPIPS's form, equal weights)
      euclidean: ‖e(x) − e(y)‖² = 1/L Σ_l mean_p ‖f_l(x, p) − f_l(y, p)‖²
    """
    backbone, device = model.backbone, next(model.parameters()).device
    h, parts = backbone.stem(as_model_input(images, model.config.size, device, "-1..1")), []
    for index, stage in enumerate(backbone.stages, start=1):
        h = stage(h)
        if index in DISTANCE_STAGES:
            positions = h.shape[-1] * h.shape[-2]
            if metric == "cosine":
                parts.append(F.normalize(h, dim=1).flatten(1) / math.sqrt(2 * len(DISTANCE_STAGES) * positions))
            else:
                parts.append(h.flatten(1) / math.sqrt(len(DISTANCE_STAGES) * positions))
    return torch.cat(parts, dim=1).float().cpu()


def realism_distance(path: str | Path | None = None, metric: str = "cosine", device: str | torch.device = "cpu",
                     note: str = "") -> Distance:
    """The realism net as an image distance, "synthfaces-realism cosine" (default: the net shipped with the package).

    cosine (in [0, 1]): 1 − cos of the features at each position of three stages' maps (:func:`realism_maps`),
    averaged, as LPIPS does with its trunk but with equal weights; euclidean: the root-mean-square feature
    difference. Maps, not the pooled features :func:`make_feature_extractor` gives: those are built to ignore
    content (attributes by training, layout by pooling), and two different faces lie closer under them than a face
    and its copy with noise of std 0.03.

    What it sees: edges, colours and layout, as the net's early layers encode them. It is not calibrated on human
    judgements as LPIPS is, and it was trained on 32-px SynthFaces (other sizes are resized), so on photographs
    it is out of its domain. Numbers from it compare only with numbers from it.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got '{metric}'")
    path = Path(path) if path else asset_path(SHIPPED_REALISM)
    if not path.is_file():
        raise MissingWeightsError("the SynthFaces realism net (realism.pt)",
                                  "train it: sdft-lite synthfaces train-instruments --out DIR", str(path),
                                  searched=(path,))
    model = load_realism(path, device)
    pair_matrix = squared_euclidean if metric == "cosine" else euclidean
    return Distance(f"{REALISM_DISTANCE} {metric}", "features", partial(realism_maps, model, metric=metric),
                    pair_matrix, squared=metric == "cosine", batch_size=256, note=note)
