"""EGSDE's domain-specific extractor (DSE): a time-dependent classifier of noisy images, source vs target.

The trunk is the ADM *encoder half* — time embedding, ``input_blocks``, ``middle_block`` — built by
:class:`sdft_lite.unet.UNetModel` itself (one source of truth for the layout; the decoder is dropped), with
a pooled linear head for the two domains. EGSDE uses only the trunk at sampling time: F(x, t) is the
middle-block output ([B, 512, 8, 8] at 256 px for the EGSDE flags), unpooled.

Training (EGSDE run_train_dse.py): cross-entropy on q_sample'd images of both domains, source label 0 and
target label 1, t ~ U{0..999}, random horizontal flips, AdamW (lr 3e-4, weight decay 0.05) annealed linearly
to 0. EGSDE initialises from guided-diffusion's ImageNet classifier and trains 5000 steps at batch 32; here the
trunk starts from random weights, and each batch draws half its images from each domain (class-balanced,
whatever the folder sizes; EGSDE samples the union of the two folders).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import read_checkpoint, reading, save_atomic, state_dict_from
from ..data import load_image_folder, random_flip
from ..diffusion import q_sample
from ..schedule import make_schedule
from ..unet import GroupNorm32, UNetConfig, UNetModel, timestep_embedding

SOURCE_LABEL, TARGET_LABEL = 0, 1
CHECKPOINT_KIND = "sdft-lite-dse"


def egsde256() -> UNetConfig:
    """EGSDE's DSE trunk for 256 px: width 128, depth 2, mult (1,1,2,2,4,4), attention at 32/16/8, 64 ch/head."""
    return UNetConfig(image_size=256, num_channels=128, num_res_blocks=2, channel_mult="",
                      attention_resolutions="32,16,8", num_head_channels=64, use_scale_shift_norm=True,
                      resblock_updown=True)


DSE_PRESETS: dict[str, Callable[[], UNetConfig]] = {
    "egsde256": egsde256,
    "small64": UNetConfig.small64,
    "small32": UNetConfig.small32,
    "tiny": UNetConfig.tiny,
}


def preset_for_size(image_size: int) -> str:
    """The DSE preset for an image size: 256 → egsde256, 64 → small64, 32 → small32."""
    by_size = {256: "egsde256", 64: "small64", 32: "small32"}
    if image_size not in by_size:
        raise ValueError(f"no DSE preset for {image_size} px; pass a preset name ({', '.join(DSE_PRESETS)})")
    return by_size[image_size]


class EncoderClassifier(nn.Module):
    """ADM encoder + pooled linear head. x: [B, C, H, W] in [−1, 1]; t: [B] original timesteps → [B, classes]."""

    def __init__(self, config: UNetConfig, num_classes: int = 2):
        super().__init__()
        trunk = UNetModel(config)
        self.config, self.num_classes = config, num_classes
        self.time_embed, self.input_blocks, self.middle_block = trunk.time_embed, trunk.input_blocks, trunk.middle_block
        self.feature_channels = int(config.channel_mult[-1] * config.num_channels)
        self.out = nn.Sequential(GroupNorm32(self.feature_channels), nn.SiLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(self.feature_channels, num_classes))

    def features(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """F(x, t): the middle-block output, [B, C_mid, H/2^L, W/2^L] (EGSDE's domain-specific features)."""
        emb = self.time_embed(timestep_embedding(t.expand(x.shape[0]) if t.ndim == 0 else t,
                                                 self.config.num_channels))
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
        return self.middle_block(h, emb)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x, t))


@dataclass(frozen=True)
class DSETrainConfig:
    """The EGSDE recipe (steps and batch are EGSDE's; smaller runs override them)."""

    steps: int = 5000
    batch: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.05
    flip: bool = True
    num_train_steps: int = 1000  # t ~ U{0..T−1} on the linear schedule of the diffusion models
    seed: int = 0


def dse_batch(source: torch.Tensor, target: torch.Tensor, batch: int, generator: torch.Generator,
              device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """A class-balanced batch: ⌈B/2⌉ source images (label 0), ⌊B/2⌋ target images (label 1), uint8 → [−1, 1]."""
    n_src = (batch + 1) // 2
    src = source[torch.randint(len(source), (n_src,), generator=generator)]
    trg = target[torch.randint(len(target), (batch - n_src,), generator=generator)]
    x = torch.cat([src, trg]).to(device).float() / 127.5 - 1.0
    labels = torch.cat([torch.full((n_src,), SOURCE_LABEL), torch.full((batch - n_src,), TARGET_LABEL)])
    return x, labels.to(device)


def train_dse_on_tensors(source: torch.Tensor, target: torch.Tensor, config: UNetConfig,
                         train: DSETrainConfig = DSETrainConfig(), device: torch.device | str = "cpu",
                         callback: Callable[[int, float], None] | None = None) -> EncoderClassifier:
    """Train a DSE on uint8 image tensors source, target: [N, C, H, W]; ``callback(step, loss)`` after each step."""
    device = torch.device(device)
    torch.manual_seed(train.seed)
    model = EncoderClassifier(config).to(device).train()
    schedule = make_schedule("linear", train.num_train_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    anneal = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / train.steps)
    generator = torch.Generator().manual_seed(train.seed)
    for step in range(train.steps):
        x0, labels = dse_batch(source, target, train.batch, generator, device)
        if train.flip:
            x0 = random_flip(x0, generator)
        t = torch.randint(train.num_train_steps, (len(x0),), generator=generator).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        loss = F.cross_entropy(model(q_sample(schedule, x0, t, noise), t), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        anneal.step()
        if callback is not None:
            callback(step, loss.item())
    return model.eval()


def train_dse(source_dir: str | Path, target_dir: str | Path, config: UNetConfig, steps: int = 5000,
              batch: int = 32, device: torch.device | str = "cpu", limit: int | None = None,
              callback: Callable[[int, float], None] | None = None, **recipe) -> EncoderClassifier:
    """Train a DSE on two image folders (read recursively, centre-cropped and resized to config.image_size)."""
    source = load_image_folder(source_dir, config.image_size, limit).images
    target = load_image_folder(target_dir, config.image_size, limit).images
    train = DSETrainConfig(steps=steps, batch=batch, **recipe)
    return train_dse_on_tensors(source, target, config, train, device, callback)


def save_dse(model: EncoderClassifier, path: str | Path, info: dict | None = None) -> Path:
    """Write {kind, model, dse_config (UNetConfig flags), num_classes, info} atomically."""
    return save_atomic({"kind": CHECKPOINT_KIND, "model": model.state_dict(), "dse_config": model.config.to_flags(),
                        "num_classes": model.num_classes, "info": info or {}}, path)


def load_dse(path: str | Path, config: UNetConfig | None = None) -> EncoderClassifier:
    """Load our DSE checkpoint, or a bare guided-diffusion encoder state dict (e.g. EGSDE's ``face2portrait.pt``).

    A bare state dict carries no flags: ``config`` defaults to :func:`egsde256`. Its trunk must match exactly;
    its head (EGSDE's attention pool) is not loaded — EGSDE never uses the head at sampling time.
    """
    checkpoint = read_checkpoint(path)
    with reading(path, "Pass a DSE written by `sdft-lite train-dse`, or EGSDE's face2portrait.pt"):
        if isinstance(checkpoint, dict) and checkpoint.get("kind") == CHECKPOINT_KIND:
            model = EncoderClassifier(config or UNetConfig.from_flags(checkpoint["dse_config"]),
                                      checkpoint["num_classes"])
            model.load_state_dict(checkpoint["model"], strict=True)
            return model.eval()
        state = state_dict_from(checkpoint)
        model = EncoderClassifier(config or egsde256())
        trunk = {k: v for k, v in state.items() if not k.startswith("out.")}
        missing, unexpected = model.load_state_dict(trunk, strict=False)
        missing = [k for k in missing if not k.startswith("out.")]
        if missing or unexpected:
            raise ValueError(f"it does not fit the DSE trunk: missing {missing[:5]}, unexpected {unexpected[:5]}")
        return model.eval()
