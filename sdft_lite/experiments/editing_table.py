"""The paper's Table 2 on SynthFaces: Asyrp editing (neutral → smiling) with a fine-tuned model, measured.

Δh is trained on neutral limited-target portraits with the attribute classifier's direction (the stand-in for
CLIP's "face" → "smiling face"), then edits held-out neutral portraits. The classifier then says how often the
edit made the face smile (edit success), and how often it kept skin, eyewear, hair and the portrait style of the
input (attribute preservation, the stand-in for the paper's identity score); S_dir is the direction's own score.
Chapter 6 builds this step by step; ``asyrp_table_row`` is the same computation in one call.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..editing import AsyrpConfig, ClassifierDirection, DeltaBlock, edit_images, train_delta_block
from ..editing.asyrp import asyrp_schedules, invert
from ..editing.sdedit import sdedit_ddim
from ..metrics.fidelity import compute_fidelity
from ..schedule import make_schedule, respace
from ..synthfaces.attributes import FACE_ATTRIBUTES
from ..synthfaces.domains import DomainSpec
from ..synthfaces.renderer import to_tensor

KEPT = ("skin", "eyewear", "hair", "style")   # attributes the smile edit must not change


@dataclass(frozen=True)
class EditBenchConfig:
    """Images and Asyrp recipe. ``full``: Asyrp's 100 training images, 5 passes, lr 0.5 with decay at pass 3,
    40 steps; a batch of 4 instead of Asyrp's 1 (a 32-px model leaves a GPU idle at batch 1)."""

    n_train: int = 100
    n_test: int = 500
    size: int = 32
    asyrp: AsyrpConfig = field(default_factory=lambda: AsyrpConfig(steps="40", inversion_steps="40", epochs=5,
                                                                   batch=4))
    seed: int = 0   # Δh's initialisation and the boosting noise

    @classmethod
    def quick(cls) -> "EditBenchConfig":
        return cls(n_train=8, n_test=24, asyrp=AsyrpConfig(steps="20", inversion_steps="20", epochs=2, batch=2))


def smile_direction(classifier) -> ClassifierDirection:
    """neutral → smiling in the classifier's expression logits."""
    return ClassifierDirection(classifier, "expression", src_class=0, trg_class=1,
                               class_names=FACE_ATTRIBUTES["expression"])


def neutral_portraits(n: int, size: int, split: str, device) -> torch.Tensor:
    """[n, 3, size, size] in [-1, 1]: limited-target portraits (every one neutral)."""
    floats, _ = DomainSpec.limited_target().render(range(n), size, seed=0, split=split)
    return to_tensor(floats).to(device)


def edit_scores(classifier, direction, inputs: torch.Tensor, outputs: torch.Tensor) -> dict[str, float]:
    """Smile rate, S_dir, kept attributes and PSNR of outputs [N, C, H, W] against their inputs."""
    before, after = classifier.predict(inputs), classifier.predict(outputs)
    with torch.no_grad():
        s_dir = direction.similarity(inputs, outputs).mean().item()
    kept = {f"kept_{a}": float(np.mean(getattr(after, a) == getattr(before, a))) for a in KEPT}
    return {"smiling": float(np.mean(after.expression != 0)), "s_dir": s_dir, **kept,
            "kept_mean": float(np.mean(list(kept.values()))),
            "psnr_db": compute_fidelity(inputs, outputs).psnr_db}


def asyrp_table_row(unet, classifier, config: EditBenchConfig, device) -> dict:
    """Train Δh on ``unet`` (frozen) and edit the held-out portraits; scores of the edit and of the plain
    reconstruction (the same inversion and sampling without Δh)."""
    unet = unet.to(device).eval().requires_grad_(False)
    direction = smile_direction(classifier)
    inversion, editing = asyrp_schedules(config.asyrp)
    started = time.perf_counter()
    train = neutral_portraits(config.n_train, config.size, "train", device)
    torch.manual_seed(config.seed)
    delta = DeltaBlock.for_unet(unet).to(device)
    history = train_delta_block(unet, delta, train, invert(unet, train, inversion), direction, editing,
                                config.asyrp)
    trained = time.perf_counter()
    test = neutral_portraits(config.n_test, config.size, "test", device)
    result = edit_images(unet, delta, test, direction.name, config.asyrp, seed=config.seed)
    edited, original = result["edited"].clamp(-1, 1), result["original"].clamp(-1, 1)
    return {"direction": direction.name, "n_train": config.n_train, "n_test": config.n_test,
            "sgd_steps": len(history), "final_directional": float(np.mean([r["directional"] for r in history[-20:]])),
            "edit": edit_scores(classifier, direction, test, edited),
            "reconstruction": edit_scores(classifier, direction, test, original),
            "train_seconds": round(trained - started, 1), "edit_seconds": round(time.perf_counter() - trained, 1)}


def smiling_faces(n: int, size: int, style: str, split: str = "test", seed: int = 0) -> torch.Tensor:
    """[n, 3, size, size] in [-1, 1]: renders of ``style`` ("photo" or "portrait") that all smile (smile or open
    smile), every other attribute drawn as in the full domain."""
    spec = DomainSpec(f"smiling-{style}", style, (("expression", (1, 2)),), n)
    floats, labels = spec.render(range(n), size, seed, split)
    assert bool(np.all(labels.expression != 0))
    return to_tensor(floats)


@torch.no_grad()
def smile_survival(unet, classifier, faces: torch.Tensor, timesteps, steps: str = "20", seed: int = 0
                   ) -> dict[int, float]:
    """How long ``unet`` keeps a smile it is handed: for each t, the share of ``faces`` (all smiling) still read
    as smiling after SDEdit from t (noise to t, then the model's deterministic DDIM down to 0, the same noise for
    every t). A smile survives from t when the model's reverse process below t no longer redraws the mouth; an
    Asyrp edit that acts only above that t is undone below it, which is how its edit interval is chosen here."""
    schedule = respace(make_schedule(), steps)
    noise = torch.randn(faces.shape, generator=torch.Generator().manual_seed(seed)).to(faces.device)
    survival = {}
    for t in timesteps:
        out = sdedit_ddim(unet, faces, schedule, t0=int(t), noise=noise).clamp(-1, 1)
        survival[int(t)] = float(np.mean(classifier.predict(out).expression != 0))
    return survival

