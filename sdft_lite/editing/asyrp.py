"""Asyrp (Kwon et al. 2023, "Diffusion models already have a semantic latent space"): text- or
classifier-guided editing by a small module Δh that shifts the U-Net's bottleneck (h-space), the U-Net frozen.

h-space is the middle-block output. With h, skips, emb = unet.encode(x_t, t) (the encoder runs once):

  ε  = decode(h)                    the original noise prediction
  ε̃  = decode(h + c·Δh(h, emb))     the edited one (c = ``scale``, 1 in training)

Asymmetric reverse process (DDIM, η = 0) for t_edit ≤ t ≤ t_edit_upper — only the x̂_0 part sees the edit:

  P_t = (x_t − √(1−ᾱ_t) ε̃)/√ᾱ_t  (not clipped),   D_t = √(1−ᾱ_{t−1}) ε,   x_{t−1} = √ᾱ_{t−1} P_t + D_t

plain DDIM (unclipped, as Asyrp) elsewhere, with η = 1 for t < t_boost ("quality boosting").
Defaults t_edit = 500, t_boost = 200 (Asyrp's script_train.sh) on "40"-step respacings (Asyrp's n_train_step /
n_test_step 40; its own step list floors i·999/39 where our "40" rounds it). ``t_edit_upper`` (default 999: the
official interval, everything above t_edit) closes the interval from above, for an attribute that is decided at
moderate noise: above it the edited trajectory is the plain one, and Δh neither acts nor trains there.

Training (diffusion_latent.py ``run_training``): invert each training image with DDIM to the last step
(t = 999), walk plain DDIM down to t_edit_upper, then walk the steps of the interval on two trajectories — the edited one (asymmetric steps, x_t detached
between steps) and the original one (plain DDIM) — and at EVERY step take one SGD step on

  L = λ_CLIP · (−log((2 − L_dir(x_0, P_t^edit))/2)) + λ_L1 · f · mean|P_t^edit − P_t^orig|

with λ_CLIP = 1, λ_L1 = 3, f = the direction's ``l1_factor`` (cos(E_T(src), E_T(trg)) for CLIP, as Asyrp
multiplies it in), SGD lr 0.5 and StepLR(step 3, γ 0.1) stepped once per pass over the images.
Shapes: x [B, C, H, W] in [−1, 1]; t [B] schedule positions; the network receives original timesteps.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import read_checkpoint, reading, save_atomic
from ..diffusion import call_model, predict_x0_from_eps, split_eps
from ..sampling import Callback, ddim_invert, ddim_step
from ..schedule import Schedule, extract, make_schedule, respace
from ..unet import GroupNorm32, UNetModel
from .directions import Direction

CHECKPOINT_KIND = "sdft-lite-asyrp-delta"


class DeltaBlock(nn.Module):
    """Asyrp's Δh module (``layer_0``): h: [B, C, h, w], emb: [B, E] → Δh: [B, C, h, w].

    GN, SiLU, 1×1 conv; plus the embedding projection (SiLU, Linear E→C) ADDED; GN, SiLU, Dropout, 1×1 conv.
    No residual connection; PyTorch's default init (not zero).
    """

    def __init__(self, channels: int, emb_channels: int, dropout: float = 0.0):
        super().__init__()
        self.channels, self.emb_channels = channels, emb_channels
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, channels, 1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, channels))
        self.out_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(channels, channels, 1))

    @classmethod
    def for_unet(cls, unet: UNetModel) -> "DeltaBlock":
        """Sized for a U-Net's bottleneck (512 channels, 512-d embedding for the FFHQ-256 model)."""
        return cls(int(unet.config.channel_mult[-1] * unet.config.num_channels), unet.emb_channels)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.out_layers(self.in_layers(h) + self.emb_layers(emb)[:, :, None, None].to(h.dtype))


@dataclass(frozen=True)
class AsyrpConfig:
    """Edit interval, sampling and training recipe (Asyrp's script_train.sh values)."""

    t_edit: int = 500  # Δh acts at original timesteps t_edit ≤ t ≤ t_edit_upper
    t_edit_upper: int = 999  # 999: no upper bound (Asyrp's interval)
    t_boost: int = 200  # η = 1 below this timestep (Asyrp's t_addnoise)
    scale: float = 1.0  # c in h + c·Δh at inference (hs_coeff_delta_h); training always uses 1
    steps: str = "40"  # respacing for training and editing (n_train_step / n_test_step)
    inversion_steps: str = "40"  # respacing of the DDIM inversion (n_inv_step)
    epochs: int = 5  # passes over the training images (n_iter)
    lr: float = 0.5
    lr_step: int = 3  # StepLR step size, in passes
    lr_gamma: float = 0.1
    lambda_clip: float = 1.0  # weight of the directional term (named after CLIP, used for any direction)
    lambda_l1: float = 3.0
    batch: int = 1

    @classmethod
    def official(cls) -> "AsyrpConfig":
        """Asyrp's own FFHQ-256 recipe: Δh on every step from t_edit = 500 up to 999, boosting below 200."""
        return cls()

    @classmethod
    def synthfaces_smile(cls, steps: str = "40", epochs: int = 5, batch: int = 4) -> "AsyrpConfig":
        """The smile edit on 32-px SynthFaces models: Δh only in the window 200 ≤ t ≤ 500, boosting below 100.

        At 32 px the mouth is a few pixels wide and the source model decides it between t ≈ 200 and 500 (the
        smile-survival curve, ``experiments.editing_table.smile_survival``); above ~600 P_t is a blur and Δh
        learns colour. Of the windows 300–500, 200–500 and 300–600, 200–500 made the most source-model photos
        smile at PSNR ≥ 27 dB (``results/synthfaces_editing``, H200, 3 seeds). Batch 4 instead of Asyrp's 1: a
        32-px model leaves a GPU idle at batch 1."""
        return cls(t_edit=200, t_edit_upper=500, t_boost=100, steps=steps, inversion_steps=steps, epochs=epochs,
                   batch=batch)


def in_edit_interval(config: AsyrpConfig, timestep: int) -> bool:
    """Whether Δh acts at this original timestep."""
    return config.t_edit <= timestep <= config.t_edit_upper


def asyrp_schedules(config: AsyrpConfig, base: Schedule | None = None) -> tuple[Schedule, Schedule]:
    """(inversion schedule, editing schedule); both must end at the same original timestep."""
    base = make_schedule() if base is None else base
    inversion, editing = respace(base, config.inversion_steps), respace(base, config.steps)
    if int(inversion.timesteps[-1]) != int(editing.timesteps[-1]):
        raise ValueError(f"inversion ({config.inversion_steps}) and editing ({config.steps}) respacings end at "
                         f"different timesteps: {int(inversion.timesteps[-1])} vs {int(editing.timesteps[-1])}")
    return inversion, editing


def eps_pair(unet: UNetModel, delta: DeltaBlock, x: torch.Tensor, timesteps: torch.Tensor,
             scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ε, ε̃) at original timesteps: the encoder runs once, the decoder twice (h and h + c·Δh)."""
    h, skips, emb = unet.encode(x, timesteps)
    eps = split_eps(unet.decode(h, skips, emb, x.dtype), x.shape[1])[0]
    eps_edit = split_eps(unet.decode(h + scale * delta(h, emb), skips, emb, x.dtype), x.shape[1])[0]
    return eps, eps_edit


def asymmetric_step(schedule: Schedule, eps: torch.Tensor, eps_edit: torch.Tensor, x: torch.Tensor,
                    t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x_{t−1} = √ᾱ_{t−1} P_t(ε̃) + √(1−ᾱ_{t−1}) ε. Returns (x_prev, P_t)."""
    p_t = predict_x0_from_eps(schedule, x, t, eps_edit)
    abar_prev = extract(schedule.alphas_cumprod_prev, t, x)
    return abar_prev.sqrt() * p_t + (1 - abar_prev).sqrt() * eps, p_t


def _positions(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.full((x.shape[0],), k, device=x.device, dtype=torch.long)


@torch.no_grad()
def asyrp_sample(unet: UNetModel, delta: DeltaBlock | None, x: torch.Tensor, schedule: Schedule,
                 config: AsyrpConfig = AsyrpConfig(), start: int | None = None,
                 generator: torch.Generator | None = None, callback: Callback | None = None) -> torch.Tensor:
    """The Asyrp generative process from position ``start`` (default: the last); delta=None gives plain DDIM."""
    start = len(schedule) - 1 if start is None else start
    for k in range(start, -1, -1):
        t = _positions(x, k)
        timestep = int(schedule.timesteps[k])
        if delta is not None and in_edit_interval(config, timestep):
            eps, eps_edit = eps_pair(unet, delta, x, schedule.timesteps.to(x.device)[t], config.scale)
            x, pred_x0 = asymmetric_step(schedule, eps, eps_edit, x, t)
        else:
            eta = 1.0 if timestep < config.t_boost else 0.0
            x, pred_x0 = ddim_step(schedule, call_model(unet, x, schedule, t), x, t, eta=eta, clip_denoised=False,
                                   generator=generator)
        if callback is not None:
            callback(k, x, pred_x0)
    return x


def invert(unet: UNetModel, x0: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """DDIM inversion (η = 0, unclipped) to the last kept step (t = 999 for "40")."""
    return ddim_invert(unet, x0, schedule, stop=len(schedule) - 1, clip_denoised=False)


@contextlib.contextmanager
def frozen(module: nn.Module):
    """Turn off a module's parameter gradients for the block, then restore them."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


def asyrp_loss(direction: Direction, x0: torch.Tensor, p_edit: torch.Tensor, p_orig: torch.Tensor,
               config: AsyrpConfig) -> dict[str, torch.Tensor]:
    """Asyrp's per-step loss: {"loss", "directional" = −log((2 − L_dir)/2) (batch mean), "l1"} (scalars)."""
    directional = -torch.log((2 - direction.loss(x0, p_edit)) / 2).mean()
    l1 = F.l1_loss(p_edit, p_orig)
    loss = config.lambda_clip * directional + config.lambda_l1 * direction.l1_factor * l1
    return {"loss": loss, "directional": directional, "l1": l1}


def train_delta_block(unet: UNetModel, delta: DeltaBlock, x0: torch.Tensor, latents: torch.Tensor,
                      direction: Direction, schedule: Schedule, config: AsyrpConfig = AsyrpConfig(),
                      callback: Callable[[dict], None] | None = None) -> list[dict]:
    """Train Δh in place on images x0 and their inverted latents (both [N, C, H, W]); the U-Net is frozen.

    Returns one record per optimiser step: {direction, epoch, image, timestep, loss, directional, l1, lr}.
    """
    optimizer = torch.optim.SGD(delta.parameters(), lr=config.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    edit_positions = [k for k in range(len(schedule) - 1, -1, -1) if in_edit_interval(config, int(schedule.timesteps[k]))]
    if not edit_positions:
        raise ValueError(f"no step of the {config.steps!r} respacing lies in the edit interval "
                         f"[{config.t_edit}, {config.t_edit_upper}]")
    above = range(len(schedule) - 1, edit_positions[0], -1)   # plain DDIM down to the interval
    history = []
    unet.eval()
    delta.train()
    with frozen(unet):
        for epoch in range(config.epochs):
            for first in range(0, len(x0), config.batch):
                source = x0[first:first + config.batch]
                x_edit = x_orig = descend(unet, latents[first:first + config.batch], schedule, above)
                for k in edit_positions:
                    t = _positions(x_edit, k)
                    timesteps = schedule.timesteps.to(x_edit.device)[t]
                    eps, eps_edit = eps_pair(unet, delta, x_edit.detach(), timesteps)
                    x_next, p_edit = asymmetric_step(schedule, eps, eps_edit, x_edit.detach(), t)
                    with torch.no_grad():
                        x_orig, p_orig = ddim_step(schedule, call_model(unet, x_orig, schedule, t), x_orig, t,
                                                   clip_denoised=False)
                    terms = asyrp_loss(direction, source, p_edit, p_orig, config)
                    optimizer.zero_grad(set_to_none=True)
                    terms["loss"].backward()
                    optimizer.step()
                    x_edit = x_next.detach()
                    record = {"direction": direction.name, "epoch": epoch, "image": first,
                              "timestep": int(timesteps[0]), "lr": optimizer.param_groups[0]["lr"],
                              **{name: value.item() for name, value in terms.items()}}
                    history.append(record)
                    if callback is not None:
                        callback(record)
            scheduler.step()
    delta.eval()
    return history


@torch.no_grad()
def descend(unet: UNetModel, x: torch.Tensor, schedule: Schedule, positions) -> torch.Tensor:
    """Plain DDIM steps (η = 0, unclipped) at the given positions, in order."""
    for k in positions:
        t = _positions(x, k)
        x, _ = ddim_step(schedule, call_model(unet, x, schedule, t), x, t, clip_denoised=False)
    return x


@torch.no_grad()
def edit_images(unet: UNetModel, delta: DeltaBlock, x0: torch.Tensor, direction_name: str,
                config: AsyrpConfig = AsyrpConfig(), base: Schedule | None = None, seed: int = 0) -> dict:
    """Invert x0 and regenerate it with and without Δh (same boosting noise for both).

    Returns {"direction", "input", "latent", "original", "edited"}, images [N, C, H, W] (not clamped).
    """
    inversion, editing = asyrp_schedules(config, base)
    latent = invert(unet, x0, inversion)
    device = x0.device
    original = asyrp_sample(unet, None, latent, editing, config,
                            generator=torch.Generator(device).manual_seed(seed))
    edited = asyrp_sample(unet, delta, latent, editing, config,
                          generator=torch.Generator(device).manual_seed(seed))
    return {"direction": direction_name, "input": x0, "latent": latent, "original": original, "edited": edited}


def save_delta(delta: DeltaBlock, path: str | Path, direction_name: str, config: AsyrpConfig) -> Path:
    """Write {kind, model, channels, emb_channels, direction, config} atomically."""
    return save_atomic({"kind": CHECKPOINT_KIND, "model": delta.state_dict(), "channels": delta.channels,
                        "emb_channels": delta.emb_channels, "direction": direction_name,
                        "config": asdict(config)}, path)


def load_delta(path: str | Path) -> tuple[DeltaBlock, str, AsyrpConfig]:
    """(Δh module, its direction's name, the config it was trained with)."""
    checkpoint = read_checkpoint(path)
    with reading(path, "Pass a Δh written by `sdft-lite edit` (delta_*.pt), or drop --delta to train one"):
        if not isinstance(checkpoint, dict) or checkpoint.get("kind") != CHECKPOINT_KIND:
            raise ValueError("it is not an Asyrp Δh checkpoint written by sdft-lite")
        delta = DeltaBlock(checkpoint["channels"], checkpoint["emb_channels"])
        delta.load_state_dict(checkpoint["model"])
        return delta.eval(), checkpoint["direction"], AsyrpConfig(**checkpoint["config"])
