"""Gaussian diffusion maths (DDPM, Ho et al. 2020; learned variance, Nichol & Dhariwal 2021).

Conventions: ``x0``, ``x_t``, ``noise``: [B, C, H, W]; ``t``: [B] long, a *position* in ``schedule``
(for the full 1000-step schedule it is the timestep itself; for a respaced one the network is called
with ``schedule.timesteps[t]``). Model outputs are [B, C, H, W] (fixed variance) or [B, 2C, H, W]
(the prediction followed by the learned-range variance interpolant ∈ [−1, 1]).

The prediction is ε (DDPM, ADM, the SDFT source model), v = √ᾱ_t ε − √(1−ᾱ_t) x_0 (Salimans & Ho 2022) or x_0,
as the network's ``prediction`` attribute says (:func:`prediction_of`; absent means ε). Training compares the
raw prediction with its own target (:func:`prediction_target`); samplers and editors see ε only, through
:func:`call_model`, which converts (:func:`eps_x0_from_prediction`). That is the whole prediction-type seam.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .schedule import Schedule, extract
from .weighting import Constant, WeightingFn, weights_at


PREDICTIONS = ("eps", "v", "x0")


def split_eps(model_out: torch.Tensor, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split a model output into (prediction, variance interpolant): the second is None for a fixed variance.
    (For the output of :func:`call_model` the prediction is ε.)"""
    if model_out.shape[1] == channels:
        return model_out, None
    return model_out[:, :channels], model_out[:, channels:]


def prediction_of(model) -> str:
    """The parameterisation of a network's output: its ``prediction`` attribute ('eps', 'v' or 'x0'), else 'eps'."""
    prediction = getattr(model, "prediction", "eps")
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction type {prediction!r}; use one of {PREDICTIONS}")
    return prediction


def prediction_target(prediction: str, schedule: Schedule, x0: torch.Tensor, noise: torch.Tensor,
                      t: torch.Tensor) -> torch.Tensor:
    """What a network of this parameterisation learns to output at x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε:
    ε, v = √ᾱ_t ε − √(1−ᾱ_t) x0 (Salimans & Ho 2022, §4), or x0."""
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    abar = schedule.alphas_cumprod
    return extract(abar.sqrt(), t, x0) * noise - extract((1 - abar).sqrt(), t, x0) * x0


def eps_x0_from_prediction(prediction: str, schedule: Schedule, pred: torch.Tensor, x_t: torch.Tensor,
                           t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ε̂, x̂_0) from a prediction of each parameterisation. For v: x̂_0 = √ᾱ_t x_t − √(1−ᾱ_t) v and
    ε̂ = √(1−ᾱ_t) x_t + √ᾱ_t v (the rotation x_t = √ᾱ x0 + √(1−ᾱ) ε, v = √ᾱ ε − √(1−ᾱ) x0 inverted)."""
    if prediction == "eps":
        return pred, predict_x0_from_eps(schedule, x_t, t, pred)
    if prediction == "x0":
        return predict_eps_from_x0(schedule, x_t, t, pred), pred
    abar = schedule.alphas_cumprod
    a, s = extract(abar.sqrt(), t, x_t), extract((1 - abar).sqrt(), t, x_t)
    return s * x_t + a * pred, a * x_t - s * pred


def raw_output(model, x: torch.Tensor, schedule: Schedule, t: torch.Tensor) -> torch.Tensor:
    """The network's own output at schedule positions t (it receives the ORIGINAL timestep indices)."""
    return model(x, schedule.timesteps.to(t.device)[t])


def call_model(model, x: torch.Tensor, schedule: Schedule, t: torch.Tensor) -> torch.Tensor:
    """The network's output at schedule positions t with its prediction turned into ε (the variance channels,
    if any, unchanged): what every sampler and editor consumes, whatever the network was trained to predict."""
    out = raw_output(model, x, schedule, t)
    prediction = prediction_of(model)
    if prediction == "eps":
        return out
    pred, variance = split_eps(out, x.shape[1])
    eps, _ = eps_x0_from_prediction(prediction, schedule, pred, x, t)
    return eps if variance is None else torch.cat([eps, variance], dim=1)


def q_sample(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Sample q(x_t | x_0): x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε."""
    abar = schedule.alphas_cumprod
    return extract(abar.sqrt(), t, x0) * x0 + extract((1 - abar).sqrt(), t, x0) * noise


def predict_x0_from_eps(schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x̂_0 = √(1/ᾱ_t) x_t − √(1/ᾱ_t − 1) ε."""
    abar = schedule.alphas_cumprod
    return extract((1 / abar).sqrt(), t, x_t) * x_t - extract((1 / abar - 1).sqrt(), t, x_t) * eps


def predict_eps_from_x0(schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """ε = (√(1/ᾱ_t) x_t − x̂_0) / √(1/ᾱ_t − 1)."""
    abar = schedule.alphas_cumprod
    return (extract((1 / abar).sqrt(), t, x_t) * x_t - x0) / extract((1 / abar - 1).sqrt(), t, x_t)


def q_posterior(schedule: Schedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
    """Mean, variance and clipped log-variance of q(x_{t−1} | x_t, x_0)."""
    mean = (extract(schedule.posterior_mean_coef_x0, t, x_t) * x0
            + extract(schedule.posterior_mean_coef_xt, t, x_t) * x_t)
    variance = extract(schedule.posterior_variance, t, x_t)
    return mean, variance, extract(schedule.posterior_log_variance_clipped, t, x_t)


@dataclass
class PMeanVar:
    """p(x_{t−1} | x_t) for one step: mean, variance, log-variance, x̂_0 and the ε it came from."""

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance: torch.Tensor
    pred_x0: torch.Tensor
    eps: torch.Tensor


def model_log_variance(schedule: Schedule, v: torch.Tensor | None, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """log σ²_t: learned range frac·log β_t + (1 − frac)·log β̃_t with frac = (v+1)/2, or fixed-small log β̃_t."""
    min_log = extract(schedule.posterior_log_variance_clipped, t, like)
    if v is None:
        return min_log
    max_log = extract(schedule.betas.log(), t, like)
    frac = (v + 1) / 2
    return frac * max_log + (1 - frac) * min_log


def p_mean_variance(schedule: Schedule, model_out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                    clip_denoised: bool = True) -> PMeanVar:
    """The reverse step's Gaussian from a model output (ε-prediction, learned-range or fixed-small variance)."""
    eps, v = split_eps(model_out, x_t.shape[1])
    log_var = model_log_variance(schedule, v, t, x_t)
    pred_x0 = predict_x0_from_eps(schedule, x_t, t, eps)
    if clip_denoised:
        pred_x0 = pred_x0.clamp(-1, 1)
    mean, _, _ = q_posterior(schedule, pred_x0, x_t, t)
    return PMeanVar(mean, log_var.exp(), log_var, pred_x0, eps)


# ---- the variational bound term (in bits per dimension) -------------------------------------------
def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log p(x) of 8-bit data x ∈ [−1, 1] under a Gaussian discretised into 256 bins (elementwise, nats).

    Uses the tanh approximation of the normal CDF, as DDPM's and ADM's decoders do.
    """
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _std_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_minus = _std_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_minus).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the batch: [B, ...] → [B]."""
    return x.mean(dim=tuple(range(1, x.ndim)))


def vb_term(schedule: Schedule, model_out: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor,
            t: torch.Tensor) -> torch.Tensor:
    """The VLB term L_{t−1} in bits per dimension: [B].

    KL(q(x_{t−1}|x_t,x_0) ‖ p(x_{t−1}|x_t)) for t > 0 and the decoder NLL at t = 0. Call it with the ε
    channels detached (as the official trainer does) so that only the variance channels learn from it.
    """
    true_mean, _, true_log_var = q_posterior(schedule, x0, x_t, t)
    out = p_mean_variance(schedule, model_out, x_t, t, clip_denoised=False)
    kl = mean_flat(normal_kl(true_mean, true_log_var, out.mean, out.log_variance)) / math.log(2.0)
    nll = -mean_flat(discretized_gaussian_log_likelihood(x0, out.mean, 0.5 * out.log_variance)) / math.log(2.0)
    return torch.where(t == 0, nll, kl)


# ---- the denoising loss ---------------------------------------------------------------------------
def diffusion_terms(schedule: Schedule, model_out: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor,
                    t: torch.Tensor, noise: torch.Tensor, mse_weighting: WeightingFn = Constant(),
                    prediction: str = "eps") -> dict[str, torch.Tensor]:
    """Per-sample terms of the ADM training loss, each [B]: ``mse`` (weighted ‖target − prediction‖², the target
    ε, v or x0 as ``prediction`` says; L_simple for ε) and ``vb``. model_out: the raw output.

    ``vb`` is zero for a fixed-variance model. With learned variance it is scaled by T/1000, as
    guided-diffusion's ``rescale_learned_sigmas`` does (a factor of 1 for T = 1000).
    """
    pred, v = split_eps(model_out, x0.shape[1])
    target = prediction_target(prediction, schedule, x0, noise, t)
    mse = mean_flat((target - pred) ** 2) * weights_at(mse_weighting, schedule, t)
    if v is None:
        return {"mse": mse, "vb": torch.zeros_like(mse)}
    eps, _ = eps_x0_from_prediction(prediction, schedule, pred, x_t, t)
    frozen_mean_out = torch.cat([eps.detach(), v], dim=1)
    vb = vb_term(schedule, frozen_mean_out, x0, x_t, t) * (len(schedule) / 1000.0)
    return {"mse": mse, "vb": vb}


def training_losses(model, schedule: Schedule, x0: torch.Tensor, t: torch.Tensor,
                    noise: torch.Tensor | None = None, mse_weighting: WeightingFn = Constant()
                    ) -> dict[str, torch.Tensor]:
    """The standard (naive / scratch) diffusion loss: per-sample ``mse``, ``vb`` and ``loss`` = mse + vb, each [B]."""
    noise = torch.randn_like(x0) if noise is None else noise
    x_t = q_sample(schedule, x0, t, noise)
    terms = diffusion_terms(schedule, raw_output(model, x_t, schedule, t), x0, x_t, t, noise, mse_weighting,
                            prediction_of(model))
    terms["loss"] = terms["mse"] + terms["vb"]
    return terms
