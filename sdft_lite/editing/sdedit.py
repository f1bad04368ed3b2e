"""SDEdit (Meng et al. 2022): perturb a source image to an intermediate noise level, then denoise it with
the *target* model. The reverse process forgets the source's fine detail and keeps its layout.

Two forms, both built on :mod:`sdft_lite.sampling` (``start=`` picks the first reverse step):

* ``sdedit_ddim`` — the SDFT authors' deterministic variant (notebooks/quant_i2i.ipynb): the "ddim40"
  respacing, ``q_sample`` at spaced position 20 (t = 500), then DDIM (η = 0) over positions 19..0.
  Quirk, kept by default: the sample carries the noise of position 20 but the first step is told it is at
  position 19 (t = 475), one spaced step less noisy. ``match_noise_level=True`` starts at position 20 instead.
* ``sdedit_ancestral`` — the original SDEdit (runners/image_editing.py): x = √ᾱ_{t0−1} x0 + √(1−ᾱ_{t0−1}) e,
  ancestral steps t0−1..0, and ``repeats`` times over, feeding the output back in (SDEdit's ``sample_step``).
  The reverse mean is the ε-form (x − β_t/√(1−ᾱ_t) ε)/√α_t, i.e. the posterior mean of the *unclipped* x̂_0
  (``clip_denoised=False``), and the variance is "fixedsmall" β̃_t — also for ADM models with a learned variance,
  whose extra channels SDEdit and EGSDE drop (only the first 3 output channels are ε). ``variance="learned"``
  uses the model's own variance instead.

Shapes: x0 [B, C, H, W] in [−1, 1]; the result has the same shape (not clamped).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..diffusion import q_sample, split_eps
from ..sampling import Callback, ancestral_sample, ddim_sample, gaussian, nearest_position
from ..schedule import Schedule

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def draw_noise(x0: torch.Tensor, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The perturbation noise e: ``noise`` if given, else drawn from ``generator`` (on x0's device)."""
    if noise is not None:
        if noise.shape != x0.shape:
            raise ValueError(f"noise {tuple(noise.shape)} must have the shape of x0 {tuple(x0.shape)}")
        return noise.to(x0)
    return gaussian(x0.shape, generator, x0.device, x0.dtype)


def perturb(schedule: Schedule, x0: torch.Tensor, position: int, noise: torch.Tensor) -> torch.Tensor:
    """x_k = √ᾱ_k x0 + √(1 − ᾱ_k) e at schedule position k; position −1 (ᾱ = 1) returns x0 unchanged."""
    if position < 0:
        return x0.clone()
    t = torch.full((x0.shape[0],), position, device=x0.device, dtype=torch.long)
    return q_sample(schedule, x0, t, noise)


def ddim_start(schedule: Schedule, t0: int, match_noise_level: bool = False) -> tuple[int, int]:
    """(perturbation position, first reverse position) of the DDIM variant: (20, 19) for t0 = 500 on ddim40."""
    position = nearest_position(schedule, t0)
    return position, position if match_noise_level else position - 1


def ancestral_start(schedule: Schedule, t0: int) -> int:
    """SDEdit's start: perturb to ᾱ_{t0−1} and step from there (t0 − 1 on the full schedule; −1 when t0 = 0)."""
    return -1 if t0 <= 0 else nearest_position(schedule, t0 - 1)


def fixed_small_variance(model: Model, channels: int = 3) -> Model:
    """Wrap a model so that only its ε channels are seen: the sampler then uses the fixed-small variance β̃_t."""
    def eps_only(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return split_eps(model(x, t), channels)[0]
    return eps_only


def sdedit_ddim(model: Model, x0: torch.Tensor, schedule: Schedule, t0: int = 500,
                noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                clip_denoised: bool = True, rederive_eps: bool = False, match_noise_level: bool = False,
                callback: Callback | None = None) -> torch.Tensor:
    """Deterministic SDEdit over a respaced schedule (the SDFT authors' DDIM-40 form)."""
    position, first = ddim_start(schedule, t0, match_noise_level)
    x = perturb(schedule, x0, position, draw_noise(x0, noise, generator))
    if first < 0:
        return x
    return ddim_sample(model, x, schedule, eta=0.0, clip_denoised=clip_denoised, rederive_eps=rederive_eps,
                       start=first, callback=callback)


def sdedit_ancestral(model: Model, x0: torch.Tensor, schedule: Schedule, t0: int = 500, repeats: int = 1,
                     noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                     variance: str = "fixedsmall", clip_denoised: bool = False,
                     callback: Callback | None = None) -> torch.Tensor:
    """The original (stochastic) SDEdit. ``noise`` fixes e of the first repeat; later repeats draw their own."""
    if variance not in ("fixedsmall", "learned"):
        raise ValueError(f"variance must be 'fixedsmall' or 'learned', got {variance!r}")
    network = fixed_small_variance(model, x0.shape[1]) if variance == "fixedsmall" else model
    first = ancestral_start(schedule, t0)
    x = x0
    for repeat in range(repeats):
        x = perturb(schedule, x, first, draw_noise(x, noise if repeat == 0 else None, generator))
        if first >= 0:
            x = ancestral_sample(network, x, schedule, clip_denoised=clip_denoised, start=first,
                                 generator=generator, callback=callback)
    return x
