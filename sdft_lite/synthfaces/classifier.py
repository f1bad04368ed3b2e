"""The attribute classifier: one small CNN with five heads (skin, expression, eyewear, hair, style).

It is the measuring instrument for "does the fine-tuned model keep attributes the target set lacks": classify
each generated face and count. It trains on fresh renders of both styles (never on any domain's faces: its
own random stream) with mild blur/noise/colour damage, because it will read diffusion samples, not renders.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import read_checkpoint, reading
from ..config import pick_device, quick_mode
from .attributes import ATTRIBUTES, NUM_LEVELS, FaceLabels
from .degrade import random_degradation
from .nets import ConvNet, as_model_input, default_workers, rendered_batches, step_rng
from .renderer import render_floats, to_tensor

TRAIN_STREAM, HELDOUT_STREAM = "instruments/classifier-train", "instruments/classifier-heldout"


@dataclass(frozen=True)
class ClassifierConfig:
    """Classifier size and training recipe."""

    size: int = 32
    width: int = 32
    steps: int = 3000
    batch: int = 256
    lr: float = 3e-3
    degrade_prob: float = 0.5
    seed: int = 0

    @classmethod
    def quick(cls, size: int = 32) -> "ClassifierConfig":
        """A CPU run of about half a minute on 2 cores."""
        return cls(size=size, width=16, steps=300, batch=64)

    @classmethod
    def full(cls, size: int = 32) -> "ClassifierConfig":
        """A GPU run (the shipped instrument)."""
        return cls(size=size, width=32, steps=3000, batch=256)


class AttributeClassifier(nn.Module):
    """x: [B, 3, H, W] in [-1, 1] → {attribute: logits [B, levels]} for the five attributes; other resolutions
    than ``config.size`` are resized to it first (area down, bilinear up; differentiable), so a 64-px model's images
    are read as the classifier was trained to read them."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        self.backbone = ConvNet(config.width)
        width = self.backbone.feature_dim
        self.heads = nn.ModuleDict({name: nn.Linear(width, NUM_LEVELS[name]) for name in ATTRIBUTES})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(as_model_input(x, self.config.size, x.device, "-1..1"))
        return {name: head(features) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images, batch_size: int = 512) -> FaceLabels:
        """Predicted levels for any image batch (see ``nets.as_model_input`` for accepted formats)."""
        self.eval()
        device = next(self.parameters()).device
        predictions = {name: [] for name in ATTRIBUTES}
        for begin in range(0, len(images), batch_size):
            logits = self(as_model_input(images[begin:begin + batch_size], self.config.size, device))
            for name in ATTRIBUTES:
                predictions[name].append(logits[name].argmax(dim=1).cpu().numpy())
        return FaceLabels(**{name: np.concatenate(parts) if parts else np.zeros(0, np.int64)
                             for name, parts in predictions.items()})


def two_style_renders(indices: np.ndarray, size: int, seed: int, stream: str,
                      fixed: dict | None = None) -> tuple[np.ndarray, FaceLabels]:
    """Faces ``indices``, even positions as photos then odd ones as portraits; ``fixed`` as ``render_floats``
    takes it (arrays are per position of ``indices``). Images: [N, 3, H, W] in [0, 1]."""
    parts = []
    for style, positions in (("photo", slice(0, None, 2)), ("portrait", slice(1, None, 2))):
        part_fixed = {k: (np.asarray(v)[positions] if np.ndim(v) else v) for k, v in (fixed or {}).items()}
        parts.append(render_floats(indices[positions], style, size, seed, stream, fixed=part_fixed))
    return np.concatenate([p[0] for p in parts]), FaceLabels.concat([p[1] for p in parts])


def classifier_batch(step: int, config: ClassifierConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Training batch ``step``: images [B, 3, S, S] in [-1, 1] (half photo, half portrait, some damaged);
    labels [B, 5]."""
    indices = np.arange(step * config.batch, (step + 1) * config.batch)
    images, labels = two_style_renders(indices, config.size, config.seed, TRAIN_STREAM)
    images = random_degradation(images, step_rng(config.seed, step, "classifier-damage"), config.degrade_prob)
    return to_tensor(images), torch.from_numpy(labels.stack())


def classification_loss(logits: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Sum over the five heads of the cross-entropy. labels: [B, 5] in the column order of ATTRIBUTES."""
    return sum(F.cross_entropy(logits[name], labels[:, i]) for i, name in enumerate(ATTRIBUTES))


def heldout_set(size: int, n: int, seed: int, damaged: bool) -> tuple[torch.Tensor, FaceLabels]:
    """n held-out renders of both styles ([N, 3, H, W] in [-1, 1]); ``damaged``: all mildly degraded."""
    images, labels = two_style_renders(np.arange(n), size, seed, HELDOUT_STREAM)
    if damaged:
        images = random_degradation(images, step_rng(seed, 0, "classifier-heldout-damage"), prob=1.0)
    return to_tensor(images), labels


def accuracy_per_head(model: AttributeClassifier, images, labels: FaceLabels) -> dict[str, float]:
    predicted = model.predict(images)
    return {name: float((getattr(predicted, name) == getattr(labels, name)).mean()) for name in ATTRIBUTES}


def evaluate_classifier(model: AttributeClassifier, n: int = 2000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Held-out accuracy per head, on clean renders and on mildly damaged ones."""
    size = model.config.size
    return {kind: accuracy_per_head(model, *heldout_set(size, n, seed, damaged=kind == "damaged"))
            for kind in ("clean", "damaged")}


def train_classifier(size: int = 32, steps: int | None = None, batch: int | None = None,
                     device: str | torch.device | None = None, seed: int = 0,
                     config: ClassifierConfig | None = None, eval_images: int = 2000,
                     workers: int | None = None, log=print) -> tuple[AttributeClassifier, dict]:
    """Train the attribute classifier on fresh renders; return it (in eval mode) and a report of held-out accuracy.

    Defaults: ``ClassifierConfig.full`` on a GPU, ``.quick`` on a CPU or in quick mode; ``steps``/``batch``
    override the preset.
    """
    device = pick_device(str(device) if device else None)
    full = device.type == "cuda" and not quick_mode()
    config = config or (ClassifierConfig.full(size) if full else ClassifierConfig.quick(size))
    config = replace(config, size=size, seed=seed, steps=steps or config.steps, batch=batch or config.batch)
    torch.manual_seed(config.seed)
    model = AttributeClassifier(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps)
    workers = default_workers(device) if workers is None else workers
    started = time.perf_counter()
    model.train()
    batches = rendered_batches(partial(classifier_batch, config=config), config.steps, workers)
    for step, (images, labels) in enumerate(batches):
        loss = classification_loss(model(images.to(device)), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if log and (step % max(1, config.steps // 10) == 0 or step == config.steps - 1):
            log(f"classifier step {step:5d}/{config.steps} loss {loss.item():.4f}")
    seconds = time.perf_counter() - started
    model.eval()
    report = {"config": asdict(config), "train_seconds": round(seconds, 1), "device": str(device),
              "heldout_images": eval_images, "accuracy": evaluate_classifier(model, eval_images, seed=config.seed + 1)}
    return model, report


def save_classifier(model: AttributeClassifier, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"kind": "synthfaces-classifier", "config": asdict(model.config), "state_dict": model.state_dict()}
    torch.save(checkpoint, path)
    return path


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> AttributeClassifier:
    checkpoint = read_checkpoint(path)
    with reading(path, "Pass the classifier.pt written by `sdft-lite synthfaces train-instruments`"):
        if checkpoint.get("kind") != "synthfaces-classifier":
            raise ValueError("it is not a SynthFaces attribute classifier checkpoint")
        model = AttributeClassifier(ClassifierConfig(**checkpoint["config"]))
        model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()
