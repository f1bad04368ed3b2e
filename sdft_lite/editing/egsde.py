"""EGSDE (Zhao et al. 2022): SDEdit whose every reverse step is pushed by two energies.

At reverse step k (sample y, source x0, its re-perturbed copy x_k = √ᾱ_k x0 + √(1−ᾱ_k) e with the SAME e
as the start point):

  y_{k−1} = step(y) − (β_k/√α_k) · [λs ∇_y Es(y, x_k, t) + λi ∇_y Ei(y, x_k)]

* Es, the domain-specific (realism) energy: the cosine similarity, per spatial location over channels (each
  vector L2-normalised with eps 1e-10) and averaged over H·W, between F(y, t) and F(x_k, t), F the middle-block
  features of the DSE (:mod:`.dse`). Subtracting its gradient moves y away from the source domain's features.
* Ei, the domain-independent (faithfulness) energy: ‖LPF(y) − LPF(x_k)‖², summed over C, H, W, with the
  low-pass filter of :mod:`.lowpass`. Subtracting its gradient keeps y's coarse layout on the source's.

``step`` is a plain sampler step of :mod:`sdft_lite.sampling`; the energy term is added after it, which for
the ancestral step is the same as shifting the mean before the noise is added (the noise is additive).
Both gradients are taken at the pre-step sample y and summed over the batch (each image's energy depends on
that image only). Defaults λs = 500, λi = 2.

* ``egsde_ancestral``: EGSDE as published — ancestral steps, ε-form mean (unclipped x̂_0), fixed-small β̃,
  M = t0 = 500 steps on the full schedule, guidance at every step including the last.
* ``egsde_ddim``: the SDFT authors' form (gaussian_diffusion.py ``ddim_sample_loop_progressive``) — DDIM η = 0
  on "ddim40" from ``q_sample`` at position 20, steps 19..0, weight β'_k/√α'_k of the *respaced* schedule,
  guidance while position > 0 (``range_t = 0``). Two quirks of their code are available in
  :class:`EGSDEConfig`, off by default: ``source_noise="fresh"`` (their x_k draws new noise at every step) and
  ``dse_timestep="position"`` (their DSE receives the spaced index 0..19, not the original timestep).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..diffusion import call_model
from ..sampling import Callback, ancestral_step, ddim_step
from ..schedule import Schedule, extract
from .dse import EncoderClassifier
from .lowpass import LowPass
from .sdedit import Model, ancestral_start, ddim_start, draw_noise, fixed_small_variance, perturb

COSINE_EPS = 1e-10


@dataclass(frozen=True)
class EGSDEConfig:
    """Energy weights and the two filters. ``lowpass`` is the faithfulness filter (8 x 8 grid by default)."""

    lambda_s: float = 500.0  # realism (domain-specific) weight, EGSDE's ls
    lambda_i: float = 2.0  # faithfulness (domain-independent) weight, EGSDE's li
    lowpass: LowPass = LowPass()
    source_noise: str = "shared"  # "shared": x_k reuses the start noise e (EGSDE); "fresh": new per step (SDFT)
    dse_timestep: str = "original"  # "original": DSE gets t = schedule.timesteps[k]; "position": gets k (SDFT code)

    def __post_init__(self):
        if self.source_noise not in ("shared", "fresh"):
            raise ValueError(f"source_noise must be 'shared' or 'fresh', got {self.source_noise!r}")
        if self.dse_timestep not in ("original", "position"):
            raise ValueError(f"dse_timestep must be 'original' or 'position', got {self.dse_timestep!r}")


def spatial_cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a, b: [B, C, H, W] → [B]: cos(a[:, :, i, j], b[:, :, i, j]) averaged over the H·W locations."""
    a = F.normalize(a.flatten(2), dim=1, eps=COSINE_EPS)
    b = F.normalize(b.flatten(2), dim=1, eps=COSINE_EPS)
    return (a * b).sum(dim=1).mean(dim=1)


def realism_energy(dse: EncoderClassifier, y: torch.Tensor, x_k: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Es: [B], the similarity of y's and x_k's domain-specific features at DSE timestep t: [B]."""
    with torch.no_grad():
        source_features = dse.features(x_k, t)
    return spatial_cosine_similarity(dse.features(y, t), source_features)


def faithfulness_energy(lowpass: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor,
                        x_k: torch.Tensor) -> torch.Tensor:
    """Ei: [B], ‖LPF(y) − LPF(x_k)‖² summed over C, H, W."""
    return (lowpass(y) - lowpass(x_k)).square().sum(dim=(1, 2, 3))


def energy_gradient(y: torch.Tensor, x_k: torch.Tensor, dse_t: torch.Tensor, dse: EncoderClassifier | None,
                    config: EGSDEConfig) -> torch.Tensor:
    """λs ∇_y Es + λi ∇_y Ei at y: [B, C, H, W] (zeros when both weights are 0)."""
    total = torch.zeros_like(y)
    with torch.enable_grad():
        if config.lambda_s != 0:
            if dse is None:
                raise ValueError("lambda_s > 0 needs a domain-specific extractor (dse)")
            y_ = y.detach().requires_grad_(True)
            total += config.lambda_s * torch.autograd.grad(realism_energy(dse, y_, x_k, dse_t).sum(), y_)[0]
        if config.lambda_i != 0:
            y_ = y.detach().requires_grad_(True)
            total += config.lambda_i * torch.autograd.grad(faithfulness_energy(config.lowpass, y_, x_k).sum(), y_)[0]
    return total


Step = Callable[[Schedule, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def guided_reverse(model: Model, dse: EncoderClassifier | None, x0: torch.Tensor, y: torch.Tensor,
                   noise: torch.Tensor, schedule: Schedule, first: int, step: Step, config: EGSDEConfig,
                   guide_last: bool, generator: torch.Generator | None = None,
                   callback: Callback | None = None) -> torch.Tensor:
    """Reverse positions first..0 with ``step``, subtracting (β_k/√α_k)·(energy gradient) after each step."""
    weight = schedule.betas / schedule.alphas.sqrt()
    for k in range(first, -1, -1):
        t = torch.full((y.shape[0],), k, device=y.device, dtype=torch.long)
        if k > 0 or guide_last:
            source_noise = noise if config.source_noise == "shared" else draw_noise(x0, None, generator)
            x_k = perturb(schedule, x0, k, source_noise)
            dse_t = schedule.timesteps.to(y.device)[t] if config.dse_timestep == "original" else t
            shift = energy_gradient(y, x_k, dse_t, dse, config)
        else:
            shift = None
        with torch.no_grad():
            y_next, pred_x0 = step(schedule, call_model(model, y, schedule, t), y, t)
        y = y_next if shift is None else y_next - extract(weight, t, y) * shift
        if callback is not None:
            callback(k, y, pred_x0)
    return y


def egsde_ddim(model: Model, dse: EncoderClassifier | None, x0: torch.Tensor, schedule: Schedule, t0: int = 500,
               config: EGSDEConfig = EGSDEConfig(), noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None, clip_denoised: bool = True, rederive_eps: bool = False,
               match_noise_level: bool = False, callback: Callback | None = None) -> torch.Tensor:
    """The SDFT authors' deterministic EGSDE: sdedit_ddim plus the energy term (no guidance at position 0).

    With λs = λi = 0 it equals :func:`~.sdedit.sdedit_ddim` given the same noise.
    """
    position, first = ddim_start(schedule, t0, match_noise_level)
    noise = draw_noise(x0, noise, generator)
    y = perturb(schedule, x0, position, noise)

    def step(s: Schedule, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor):
        return ddim_step(s, out, x, t, eta=0.0, clip_denoised=clip_denoised, rederive_eps=rederive_eps)

    return guided_reverse(model, dse, x0, y, noise, schedule, first, step, config, guide_last=False,
                          generator=generator, callback=callback)


def egsde_ancestral(model: Model, dse: EncoderClassifier | None, x0: torch.Tensor, schedule: Schedule,
                    t0: int = 500, config: EGSDEConfig = EGSDEConfig(), repeats: int = 1,
                    noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                    callback: Callback | None = None) -> torch.Tensor:
    """EGSDE as published: guided ancestral sampling from ᾱ_{t0−1}, fixed-small variance, unclipped x̂_0.

    ``repeats`` re-runs the procedure on its own output (x0 stays the original source, as in EGSDE).
    With λs = λi = 0 it equals :func:`~.sdedit.sdedit_ancestral` given the same noise and generator.
    """
    network = fixed_small_variance(model, x0.shape[1])
    first = ancestral_start(schedule, t0)

    def step(s: Schedule, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor):
        return ancestral_step(s, out, x, t, clip_denoised=False, generator=generator)

    y = x0
    for repeat in range(repeats):
        e = draw_noise(x0, noise if repeat == 0 else None, generator)
        y = perturb(schedule, y, first, e)
        y = guided_reverse(network, dse, x0, y, e, schedule, first, step, config, guide_last=True,
                           generator=generator, callback=callback)
    return y
