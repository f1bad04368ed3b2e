"""A 2-D toy where the fixed point of the SDFT loss (Hur et al., WACV 2024, Eq. 6) is exact (book chapter 9).

The source is a ring of Gaussian modes, the target a few of them (or a small sample from a few). For a Gaussian
mixture the noised density q_t and the ideal denoiser E[ε | x_t] have closed forms, so the minimiser of the SDFT
loss over the network's output at each input (x, t) is known exactly:

    ε*(x, t) = (E_trg[ε | x_t = x] + (a + b) ε_src(x, t)) / (1 + a + b),
    a = λ_d w_d(t),   b = λ_aux w_a(t) φ(x) / q_t^trg(x),

with φ = N(0, I) the density of the auxiliary input (the noise ε itself). A small MLP denoiser is trained on the
source and fine-tuned with ``sdft_lite.sdft.sdft_losses``; it is measured against ε* (at chosen points) and by
how many of the source's modes its DDIM samples keep.

Shapes: x, x_t, ε: [B, 2] points; t: [B] long positions in the schedule passed (training uses the full T-step
schedule, where position = timestep); a mixture holds K components.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from ..diffusion import training_losses
from ..sampling import ddim_sample, nearest_position
from ..schedule import Schedule, make_schedule, respace
from ..sdft import SDFTConfig, sdft_losses

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   # model(x: [B, 2], timesteps: [B] long) → ε


# ---- Gaussian mixtures and their exact denoiser ---------------------------------------------------------
@dataclass(frozen=True)
class Mixture:
    """Σ_k π_k N(m_k, s_k² I) in the plane: means [K, 2], stds [K] (0 = a point mass), weights [K]; float64."""

    means: torch.Tensor
    stds: torch.Tensor
    weights: torch.Tensor

    @classmethod
    def ring(cls, modes: int = 8, radius: float = 8.0, std: float = 0.4) -> "Mixture":
        """``modes`` equal-weight modes on a circle, mode k at angle 2πk/modes."""
        angle = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
        means = radius * torch.stack([angle.cos(), angle.sin()], dim=1)
        return cls(means, torch.full((modes,), std, dtype=torch.float64),
                   torch.full((modes,), 1.0 / modes, dtype=torch.float64))

    @classmethod
    def points(cls, x: torch.Tensor) -> "Mixture":
        """The empirical distribution of a finite set x: [N, 2] (point masses of weight 1/N)."""
        n = x.shape[0]
        return cls(x.double(), torch.zeros(n, dtype=torch.float64), torch.full((n,), 1.0 / n, dtype=torch.float64))

    def subset(self, indices) -> "Mixture":
        """The components ``indices``, weights renormalised."""
        index = torch.as_tensor(indices, dtype=torch.long)
        weights = self.weights[index]
        return Mixture(self.means[index], self.stds[index], weights / weights.sum())


def sample_mixture(mixture: Mixture, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n draws (float64 [n, 2]) and their component labels ([n] long)."""
    labels = torch.multinomial(mixture.weights, n, replacement=True, generator=generator)
    noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return mixture.means[labels] + mixture.stds[labels, None] * noise, labels


def data_std(mixture: Mixture) -> float:
    """The per-coordinate standard deviation of the mixture's samples (around 0)."""
    second = (mixture.weights * ((mixture.means ** 2).sum(1) / 2 + mixture.stds ** 2)).sum()
    return float(second.sqrt())


def _noised_components(mixture: Mixture, schedule: Schedule, x: torch.Tensor, t: torch.Tensor):
    """log(π_k N(x; √ᾱ_t m_k, v_k I)) with v_k = ᾱ_t s_k² + 1 − ᾱ_t: [B, K]; also √ᾱ_t m_k [B, K, 2], v_k [B, K]."""
    abar = schedule.alphas_cumprod.to(x.device)[t].reshape(-1, 1)                     # [B, 1]
    centres = abar.sqrt().unsqueeze(-1) * mixture.means.to(x.device)                  # [B, K, 2]
    var = abar * mixture.stds.to(x.device) ** 2 + (1 - abar)                          # [B, K]
    dist2 = ((x.double().unsqueeze(1) - centres) ** 2).sum(-1)
    log_joint = mixture.weights.to(x.device).log() - dist2 / (2 * var) - torch.log(2 * math.pi * var)
    return log_joint, centres, var


def noised_log_prob(mixture: Mixture, schedule: Schedule, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """log q_t(x), q_t = Σ_k π_k N(√ᾱ_t m_k, (ᾱ_t s_k² + 1 − ᾱ_t) I), the density of x_t: [B] float64."""
    return torch.logsumexp(_noised_components(mixture, schedule, x, t)[0], dim=1)


def exact_eps(mixture: Mixture, schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[ε | x_t] = −√(1−ᾱ_t) ∇ log q_t(x_t) = Σ_k r_k(x_t) √(1−ᾱ_t) (x_t − √ᾱ_t m_k) / v_k, r the posterior over
    components: [B, 2] float64. This is the minimiser of E‖ε − ε_θ(x_t, t)‖² (the ideal ε-prediction)."""
    log_joint, centres, var = _noised_components(mixture, schedule, x_t, t)
    posterior = torch.softmax(log_joint, dim=1)                                       # [B, K]
    noise_std = (1 - schedule.alphas_cumprod.to(x_t.device)[t]).sqrt().reshape(-1, 1, 1)
    per_component = noise_std * (x_t.double().unsqueeze(1) - centres) / var.unsqueeze(-1)
    return (posterior.unsqueeze(-1) * per_component).sum(1)


def log_std_normal(x: torch.Tensor) -> torch.Tensor:
    """log φ(x) for φ = N(0, I) in 2-D, the density of the auxiliary input: [B] float64."""
    return -(x.double() ** 2).sum(-1) / 2 - math.log(2 * math.pi)


# ---- the fixed point of the SDFT loss -------------------------------------------------------------------
def fixed_point(eps_target: torch.Tensor, eps_src: torch.Tensor, distill, aux=0.0) -> torch.Tensor:
    """ε* = (E_trg[ε|x] + (a + b) ε_src) / (1 + a + b), the minimiser over e of
    E[‖ε − e‖² | x] + a ‖ε_src − e‖² + b ‖ε_src − e‖². distill = a, aux = b: floats or [B]; ε's: [B, 2]."""
    pull = pull_fraction(distill, aux)
    pull = pull.reshape(-1, 1) if isinstance(pull, torch.Tensor) else pull
    return eps_target + pull * (eps_src - eps_target)


def pull_fraction(distill, aux=0.0):
    """(a + b) / (1 + a + b): how far the fixed point moves from the target's ε towards the source's."""
    return (distill + aux) / (1 + distill + aux)


def sdft_pulls(config: SDFTConfig, schedule: Schedule, target: Mixture, x: torch.Tensor, t: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, log b), both [B] float64: a = λ_d w_d(t) and log b = log(λ_aux w_a(t)) + log φ(x) − log q_t^trg(x).
    b is returned as a log because φ/q_t overflows where the target never puts noised mass. The weights are the
    exact float64 ones (the loss computes them in float32) and ``aux_skip_below`` is ignored."""
    a = config.lambda_distill * config.distill_weighting(schedule.snr).to(x.device)[t]
    log_weight = torch.log(config.lambda_aux * config.aux_weighting(schedule.snr).to(x.device)[t])
    return a, log_weight + log_std_normal(x) - noised_log_prob(target, schedule, x, t)


def fixed_point_eps(target: Mixture, eps_src: torch.Tensor, schedule: Schedule, x: torch.Tensor, t: torch.Tensor,
                    config: SDFTConfig, aux: bool = True) -> torch.Tensor:
    """The SDFT fixed point ε*(x, t) for a target mixture and the source's ε at (x, t): [B, 2] float64.
    The pull (a + b)/(1 + a + b) is evaluated as sigmoid(log(a + b)) so that b = ∞ gives ε* = ε_src."""
    a, log_b = sdft_pulls(config, schedule, target, x, t)
    log_pull = torch.logaddexp(a.log(), log_b) if aux else a.log()
    pull = torch.sigmoid(log_pull).reshape(-1, 1)
    mu = exact_eps(target, schedule, x, t)
    return mu + pull * (eps_src.double() - mu)


def _unrespaced(schedule: Schedule) -> Schedule:
    """The models below index the schedule by original timestep, so they need the full one (position = t)."""
    if len(schedule) != schedule.num_train_steps:
        raise ValueError("pass the un-respaced schedule: a model is called with original timesteps")
    return schedule


def exact_eps_model(mixture: Mixture, schedule: Schedule) -> Model:
    """The mixture's ideal denoiser as a model: model(x, timesteps) = E[ε | x_t = x] in x's dtype (``schedule``
    un-respaced; samplers may walk any respacing of it)."""
    schedule = _unrespaced(schedule)

    def model(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return exact_eps(mixture, schedule, x, timesteps).to(x.dtype)
    return model


def fixed_point_model(target: Mixture, teacher: Model, schedule: Schedule, config: SDFTConfig,
                      aux: bool = True) -> Model:
    """The SDFT fixed point (target mixture, frozen teacher) as a model, for sampling and vector fields
    (``schedule`` un-respaced)."""
    schedule = _unrespaced(schedule)

    def model(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            eps_src = teacher(x, timesteps)
        return fixed_point_eps(target, eps_src, schedule, x, timesteps, config, aux).to(x.dtype)
    return model


# ---- a small MLP denoiser --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MLPConfig:
    """Width and depth of the denoiser; ``time_features`` sinusoidal features of t."""

    width: int = 128
    depth: int = 3
    time_features: int = 32


class MLPDenoiser(torch.nn.Module):
    """ε_θ(x, t) for 2-D points: an MLP on [c_in(t) x, sin/cos features of t], with EDM's input scaling
    c_in(t) = 1/√(ᾱ_t σ_data² + 1 − ᾱ_t) so that the network sees unit-scale inputs at every t.
    x: [B, 2]; t: [B] long original timesteps → ε: [B, 2]."""

    def __init__(self, config: MLPConfig = MLPConfig(), sigma_data: float = 1.0, schedule: Schedule | None = None):
        super().__init__()
        schedule = make_schedule("linear") if schedule is None else schedule
        abar = schedule.alphas_cumprod
        self.register_buffer("c_in", (abar * sigma_data ** 2 + 1 - abar).rsqrt().float())
        half = config.time_features // 2
        self.register_buffer("freqs", torch.exp(-math.log(1000.0) * torch.arange(half) / half))
        layers, width_in = [], 2 + 2 * half
        for _ in range(config.depth):
            layers += [torch.nn.Linear(width_in, config.width), torch.nn.SiLU()]
            width_in = config.width
        self.net = torch.nn.Sequential(*layers, torch.nn.Linear(width_in, 2))
        self.config = config

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        angle = t.float().unsqueeze(1) * self.freqs                                   # [B, half]
        h = torch.cat([x.float() * self.c_in[t].unsqueeze(1), angle.sin(), angle.cos()], dim=1)
        return self.net(h).to(x.dtype)


# ---- the experiment's configuration ----------------------------------------------------------------------
@dataclass(frozen=True)
class ToyConfig:
    """The toy: a ring source, a target sample from ``target_modes``, an MLP, its training and its evaluation."""

    modes: int = 8
    radius: float = 8.0
    mode_std: float = 0.4
    target_modes: tuple[int, ...] = (0, 1, 2)
    target_size: int = 32
    model: MLPConfig = field(default_factory=MLPConfig)
    source_steps: int = 3000
    source_lr: float = 5e-3
    finetune_steps: int = 1500
    finetune_lr: float = 1e-3
    batch: int = 256
    lambdas: tuple[float, ...] = (0.0, 0.1, 1.0, 10.0)
    samples: int = 2000
    sampling_steps: int = 50
    min_share: float = 0.02
    seed: int = 0
    # the regime experiment: (target size, lr, width, steps) per cell, constant lr, evaluated at checkpoints
    regime_cells: tuple[tuple[int, float, int, int], ...] = ((32, 1e-3, 128, 100),)
    regime_lambdas: tuple[float, ...] = (0.0, 0.1, 1.0)
    regime_checkpoints: tuple[int, ...] = (1, 3, 10, 30, 100, 300, 1000, 3000)

    @classmethod
    def quick(cls) -> "ToyConfig":
        """Under a minute on two CPU cores."""
        return cls(source_steps=2000, finetune_steps=400)

    @classmethod
    def full(cls) -> "ToyConfig":
        """Longer training, more samples and the whole regime grid; minutes on two CPU cores."""
        cells = ((4, 1e-3, 128, 1000), (32, 1e-3, 128, 1000), (256, 1e-3, 128, 1000),   # target size
                 (32, 1e-4, 128, 3000),                                                 # lr
                 (32, 1e-3, 32, 1000), (32, 1e-3, 256, 1000))                           # capacity
        return cls(source_steps=6000, finetune_steps=4000, samples=4000, regime_cells=cells)

    @property
    def within(self) -> float:
        """A sample counts for a mode when it lies within 3 mode standard deviations of it."""
        return 3 * self.mode_std

    def source(self) -> Mixture:
        return Mixture.ring(self.modes, self.radius, self.mode_std)

    def target_points(self) -> torch.Tensor:
        """The limited target set: ``target_size`` draws from the target modes, float32 [N, 2]."""
        generator = torch.Generator().manual_seed(self.seed + 1)
        return sample_mixture(self.source().subset(self.target_modes), self.target_size, generator)[0].float()


def _cosine_lr(optimizer: torch.optim.Optimizer, base: float, step: int, steps: int) -> None:
    for group in optimizer.param_groups:
        group["lr"] = base * 0.5 * (1 + math.cos(math.pi * step / steps))


def train_source(config: ToyConfig, schedule: Schedule) -> MLPDenoiser:
    """The source model: an MLP trained on fresh source samples with the plain diffusion loss (Adam, cosine lr)."""
    source = config.source()
    torch.manual_seed(config.seed)
    model = MLPDenoiser(config.model, data_std(source), schedule)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.source_lr)
    generator = torch.Generator().manual_seed(config.seed)
    for step in range(config.source_steps):
        _cosine_lr(optimizer, config.source_lr, step, config.source_steps)
        x0 = sample_mixture(source, config.batch, generator)[0].float()
        t = torch.randint(0, len(schedule), (config.batch,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        loss = training_losses(model, schedule, x0, t, noise)["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def finetune(source: MLPDenoiser, points: torch.Tensor, schedule: Schedule, loss_config: SDFTConfig,
             steps: int, lr: float, batch: int = 256, seed: int = 0, teacher: Model | None = None,
             timesteps: torch.Tensor | None = None, decay: bool = True,
             callback: Callable[[int, MLPDenoiser], None] | None = None) -> MLPDenoiser:
    """Fine-tune a copy of ``source`` on ``points`` [N, 2] with ``sdft_losses`` (λ = 0: naive) and Adam, the lr
    cosine-decayed to 0 (``decay``) or constant. The teacher is a frozen copy of ``source`` unless given;
    ``timesteps``, if given, restricts t to those positions; ``callback(step, student)`` runs after every step."""
    student = copy.deepcopy(source).train()
    frozen = copy.deepcopy(source).eval().requires_grad_(False) if teacher is None else teacher
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        if decay:
            _cosine_lr(optimizer, lr, step, steps)
        x0 = points[torch.randint(0, points.shape[0], (batch,), generator=generator)]
        if timesteps is None:
            t = torch.randint(0, len(schedule), (batch,), generator=generator)
        else:
            t = timesteps[torch.randint(0, len(timesteps), (batch,), generator=generator)]
        noise = torch.randn(x0.shape, generator=generator)
        loss = sdft_losses(student, frozen, schedule, x0, t, noise, loss_config)["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if callback is not None:
            callback(step + 1, student)
    return student.eval()


# ---- evaluation ------------------------------------------------------------------------------------------
def shared_noise(n: int, seed: int = 0) -> torch.Tensor:
    """x_T for every model: [n, 2] float32 from a fixed seed."""
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def ddim_points(model: Model, noise: torch.Tensor, schedule: Schedule, steps: int = 50) -> torch.Tensor:
    """DDIM (η = 0) from x_T = noise over ``steps`` respaced steps, x̂_0 not clipped (the ring is not in [−1, 1])."""
    return ddim_sample(model, noise.clone(), respace(schedule, str(steps)), clip_denoised=False)


def mode_shares(samples: torch.Tensor, means: torch.Tensor, within: float | None = None) -> torch.Tensor:
    """Share of samples [N, 2] whose nearest mode is k, for each of the K means: [K] float64. With ``within``,
    a sample farther than that from its nearest mode counts for none (the shares then sum to less than 1)."""
    dist = torch.cdist(samples.double(), means.double())                              # [N, K]
    nearest, index = dist.min(dim=1)
    keep = torch.ones_like(nearest, dtype=torch.bool) if within is None else nearest <= within
    return torch.bincount(index[keep], minlength=means.shape[0]).double() / samples.shape[0]


def surviving_modes(shares: torch.Tensor, min_share: float = 0.02) -> torch.Tensor:
    """A mode survives if at least ``min_share`` of the samples land on it: [K] bool."""
    return shares >= min_share


def mode_summary(samples: torch.Tensor, config: ToyConfig) -> dict:
    """Shares of DDIM samples [N, 2]: on the modes the target lacks ("absent"), on any mode ("on_mode"); modes kept
    in all and among the absent ones (a mode is kept with at least ``config.min_share`` of the samples)."""
    shares = mode_shares(samples, config.source().means, config.within)
    absent = torch.ones(config.modes, dtype=torch.bool)
    absent[list(config.target_modes)] = False
    kept = surviving_modes(shares, config.min_share)
    return {"absent": float(shares[absent].sum()), "on_mode": float(shares.sum()), "kept": int(kept.sum()),
            "absent_kept": int(kept[absent].sum())}


def mode_decision(mixture: Mixture, schedule: Schedule, n: int = 2000, seed: int = 0) -> torch.Tensor:
    """How decided the mode of x_t is at each t: the mean posterior probability of the component that x_0 came
    from, E[r_k(x_t)] with k the true component, for t = 0..T−1: [T] float64 (1 = decided, 1/K = not at all)."""
    generator = torch.Generator().manual_seed(seed)
    x0, labels = sample_mixture(mixture, n, generator)
    noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    decided = torch.empty(len(schedule), dtype=torch.float64)
    abar = schedule.alphas_cumprod
    for k in range(len(schedule)):
        t = torch.full((n,), k, dtype=torch.long)
        x_t = abar[k].sqrt() * x0 + (1 - abar[k]).sqrt() * noise
        log_joint = _noised_components(mixture, schedule, x_t, t)[0]
        decided[k] = torch.softmax(log_joint, dim=1).gather(1, labels[:, None]).mean()
    return decided


# ---- checks against the fixed point ----------------------------------------------------------------------
def probe_points(points: torch.Tensor, schedule: Schedule, timesteps, n: int = 256, seed: int = 0
                 ) -> dict[tuple[int, str], torch.Tensor]:
    """Inputs at which to compare a model with the fixed point, keyed (timestep, kind): "x_t", noised target
    points √ᾱ_t x_0 + √(1−ᾱ_t) ε (the inputs of L_simple and L_distill), and "noise", ε itself (L_aux's input)."""
    generator = torch.Generator().manual_seed(seed)
    probes = {}
    for timestep in timesteps:
        abar = schedule.alphas_cumprod[timestep]
        x0 = points[torch.randint(0, points.shape[0], (n,), generator=generator)].double()
        noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        probes[(timestep, "x_t")] = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        probes[(timestep, "noise")] = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return probes


@torch.no_grad()
def fixed_point_errors(model: Model, teacher: Model, target: Mixture, schedule: Schedule, loss_config: SDFTConfig,
                       probes: dict[tuple[int, str], torch.Tensor]) -> list[dict]:
    """Per probe set: the median distance ‖ε_θ − ε*_λ‖ of the model from its fixed point, the median size of the
    λ-effect ‖ε*_λ − ε*_0‖ (ε*_0: the naive fixed point) and the share of probes closer to ε*_λ than to ε*_0."""
    rows = []
    for (timestep, kind), x in probes.items():
        t = torch.full((x.shape[0],), timestep, dtype=torch.long)
        steps = schedule.timesteps[t]
        eps_src = teacher(x.float(), steps).double()
        eps = model(x.float(), steps).double()
        sdft = fixed_point_eps(target, eps_src, schedule, x, t, loss_config)
        naive = exact_eps(target, schedule, x, t)
        error, effect = (eps - sdft).norm(dim=1), (sdft - naive).norm(dim=1)
        rows.append({"t": timestep, "input": kind, "error": float(error.median()), "effect": float(effect.median()),
                     "closer": float((error < (eps - naive).norm(dim=1)).double().mean())})
    return rows


# ---- figures (each returns a Figure and leaves matplotlib's global state alone) -------------------------
def plot_pull(schedule: Schedule, lambdas, decided: torch.Tensor | None = None,
              base: SDFTConfig = SDFTConfig()) -> Figure:
    """The pull fraction λw_d/(1 + λw_d) against t for each λ (solid), and (λw_d + λw_a)/(1 + λw_d + λw_a), its
    value where the auxiliary input and x_t have the same density (dashed); ``decided``, if given, on a twin axis."""
    fig = Figure(figsize=(8, 3.4))
    ax = fig.subplots()
    steps = np.arange(len(schedule))
    for lam in lambdas:
        config = replace(base, lambda_distill=lam, lambda_aux=lam)
        a = (config.lambda_distill * config.distill_weighting(schedule.snr)).numpy()
        b = (config.lambda_aux * config.aux_weighting(schedule.snr)).numpy()
        line, = ax.plot(steps, pull_fraction(a), label=f"λ = {lam:g}")
        ax.plot(steps, pull_fraction(a, b), "--", color=line.get_color(), lw=0.9)
    ax.set(xlabel="t", ylabel="pull towards ε_src", ylim=(0, 1),
           title="How far the fixed point moves towards the source")
    ax.legend(loc="upper left", fontsize=8)
    if decided is not None:
        twin = ax.twinx()
        twin.plot(steps, decided.numpy(), color="0.4", lw=1.2, ls=":")
        twin.set(ylabel="P(true mode | x_t), dotted", ylim=(0, 1.02))
    fig.tight_layout()
    return fig


_WARM = ("#d62728", "#ff7f0e", "#e377c2", "#bcbd22", "#8c564b")
_COOL = ("#1f77b4", "#17becf", "#2ca02c", "#9467bd", "#7f7fff", "#006d5b", "#393b79", "#6b6ecf")


def _mode_colours(covered: torch.Tensor) -> list[str]:
    """Warm colours for the modes the target covers, cool ones for the others."""
    warm, cool = iter(_WARM * 4), iter(_COOL * 4)
    return [next(warm) if flag else next(cool) for flag in covered.tolist()]


@torch.no_grad()
def plot_fields(models: dict[str, Model], schedule: Schedule, timestep: int, source: Mixture,
                target_points: torch.Tensor, within: float, steps: int = 50, grid: int = 81,
                arrows: int = 15) -> Figure:
    """One panel per model at one timestep t. Background: the mode in which DDIM from (x_t = x, t) ends, for
    every x (warm: a mode the target covers, cool: one it lacks, white: none within ``within``). Arrows:
    −ε(x, t), the direction of ∇ log q_t, at unit length. Circles: the source modes at √ᾱ_t m_k; red: the
    target set at √ᾱ_t x_0."""
    respaced = respace(schedule, str(steps))
    start = nearest_position(respaced, timestep)
    timestep = int(respaced.timesteps[start])
    scale = float(schedule.alphas_cumprod[timestep]) ** 0.5
    half = 1.3 * (scale * float(source.means.norm(dim=1).max()) + 2 * (1 - scale ** 2) ** 0.5)
    covered = surviving_modes(mode_shares(target_points, source.means, within), 1e-9)
    colours = _mode_colours(covered)
    cmap = ListedColormap(["white"] + colours)
    fine, coarse = _grid(half, grid), _grid(half, arrows)
    fig = Figure(figsize=(3.2 * len(models), 3.5))
    axes = np.atleast_1d(fig.subplots(1, len(models)))
    for ax, (name, model) in zip(axes, models.items()):
        final = ddim_sample(model, fine.clone(), respaced, clip_denoised=False, start=start)
        dist, index = torch.cdist(final.double(), source.means).min(dim=1)
        label = torch.where(dist <= within, index, -1).reshape(grid, grid).numpy()
        ax.imshow(label, cmap=cmap, vmin=-1.5, vmax=len(colours) - 0.5, origin="lower", alpha=0.45,
                  extent=(-half, half, -half, half), interpolation="nearest")
        eps = model(coarse, respaced.timesteps[torch.full((coarse.shape[0],), start)]).float()
        unit = -eps / eps.norm(dim=1, keepdim=True).clamp(min=1e-8)
        ax.quiver(*coarse.T.numpy(), *unit.T.numpy(), color="0.25", scale=arrows * 1.4, width=0.005)
        for centre, colour in zip(source.means.numpy() * scale, colours):
            ax.add_patch(Circle(centre, 0.25, fill=False, color=colour, lw=1.2))
        ax.plot(*(scale * target_points.float().numpy()).T, "r.", ms=2.5)
        ax.set(title=name, xlim=(-half, half), ylim=(-half, half), aspect="equal", xticks=[], yticks=[])
        ax.title.set_fontsize(9)
    fig.suptitle(f"t = {timestep}: where DDIM from each x_t ends (colour) and −ε(x_t, t) (arrows)", fontsize=10)
    fig.tight_layout()
    return fig


def _grid(half: float, n: int) -> torch.Tensor:
    """An n × n grid over [−half, half]², row by row from the bottom: [n², 2] float32."""
    axis = torch.linspace(-half, half, n)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def plot_samples(samples: dict[str, torch.Tensor], source: Mixture, target_points: torch.Tensor,
                 within: float, min_share: float = 0.02) -> Figure:
    """DDIM samples, one panel per model, with the source modes (grey circles of radius ``within``), the target
    set (red) and, in each title, the modes kept and the share of samples on modes the target lacks."""
    fig = Figure(figsize=(3.0 * len(samples), 3.3))
    axes = np.atleast_1d(fig.subplots(1, len(samples)))
    limit = 1.3 * float(source.means.norm(dim=1).max())
    covered = surviving_modes(mode_shares(target_points, source.means, within), 1e-9)
    for ax, (name, points) in zip(axes, samples.items()):
        shares = mode_shares(points, source.means, within)
        kept = surviving_modes(shares, min_share)
        ax.plot(*points.float().numpy().T, ".", ms=1.5, alpha=0.3, zorder=2)
        for centre in source.means.numpy():
            ax.add_patch(Circle(centre, within, fill=False, color="0.5", lw=0.8))
        ax.plot(*target_points.float().numpy().T, "rx", ms=3, mew=0.8, zorder=1)
        ax.set(title=f"{name}\n{int(kept.sum())} modes; {float(shares[~covered].sum()):.0%} on absent ones",
               xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", xticks=[], yticks=[])
        ax.title.set_fontsize(9)
    fig.tight_layout()
    return fig


# ---- the regime experiment: when does a small λ matter? -------------------------------------------------
def forgetting_curve(source: MLPDenoiser, points: torch.Tensor, schedule: Schedule, loss_config: SDFTConfig,
                     lr: float, steps: int, config: ToyConfig, noise: torch.Tensor) -> list[dict]:
    """Fine-tune at a constant lr and summarise DDIM samples from ``noise`` at each checkpoint ≤ steps (and at
    step 0, the source): one row per checkpoint with ``mode_summary``'s keys, the step and the budget lr × step."""
    def summary(step: int, model: MLPDenoiser) -> dict:
        with torch.no_grad():
            samples = ddim_points(model, noise, schedule, config.sampling_steps)
        return {"step": step, "budget": lr * step, **mode_summary(samples, config)}

    rows = [summary(0, source)]
    checkpoints = {step for step in config.regime_checkpoints if step <= steps} | {steps}

    def record(step: int, model: MLPDenoiser) -> None:
        if step in checkpoints:
            rows.append(summary(step, model.eval()))
            model.train()

    finetune(source, points, schedule, loss_config, steps, lr, config.batch, config.seed, decay=False,
             callback=record)
    return rows


def regime_experiment(config: ToyConfig, schedule: Schedule, sources: dict[int, MLPDenoiser],
                      log: Callable[[str], None] | None = None) -> list[dict]:
    """For each cell (target size, lr, width, steps) of ``config.regime_cells`` and each λ of
    ``config.regime_lambdas``: a forgetting curve of the source model of that width (``sources[width]``).
    Rows carry the cell, λ, the wall time of the run and ``forgetting_curve``'s keys."""
    noise = shared_noise(config.samples, config.seed)
    rows = []
    for size, lr, width, steps in config.regime_cells:
        points = replace(config, target_size=size).target_points()
        for lam in config.regime_lambdas:
            started = time.perf_counter()
            loss_config = replace(SDFTConfig(), lambda_distill=lam, lambda_aux=lam)
            curve = forgetting_curve(sources[width], points, schedule, loss_config, lr, steps, config, noise)
            seconds = time.perf_counter() - started
            rows += [{"target_size": size, "lr": lr, "width": width, "lambda": lam, "seconds": seconds, **row}
                     for row in curve]
            if log is not None:
                log(f"n={size} lr={lr:g} width={width} λ={lam:g}: absent share "
                    + " ".join(f"{row['absent']:.2f}@{row['step']}" for row in curve) + f" ({seconds:.0f} s)")
    return rows


def plot_regime(rows: list[dict], lambdas=None, columns: int = 3) -> Figure:
    """Forgetting curves: the share of samples on absent modes against the budget lr × steps (log scale; the
    source at step 0 drawn at the left edge), one panel per cell (target size, lr, width), one line per λ."""
    cells = list(dict.fromkeys((row["target_size"], row["lr"], row["width"]) for row in rows))
    lambdas = sorted({row["lambda"] for row in rows}) if lambdas is None else lambdas
    shape = (-(-len(cells) // columns), min(columns, len(cells)))
    fig = Figure(figsize=(3.0 * shape[1], 2.7 * shape[0]))
    axes = np.atleast_1d(fig.subplots(*shape, sharey=True, squeeze=False)).reshape(-1)
    floor = min(row["budget"] for row in rows if row["step"] > 0) / 3
    for ax, (size, lr, width) in zip(axes, cells):
        for lam in lambdas:
            curve = [row for row in rows if (row["target_size"], row["lr"], row["width"], row["lambda"])
                     == (size, lr, width, lam)]
            ax.plot([max(row["budget"], floor) for row in curve], [row["absent"] for row in curve], "o-", ms=3,
                    label=f"λ = {lam:g}")
        ax.set(xscale="log", xlabel="lr × steps", title=f"n = {size}, lr = {lr:g}, width {width}")
        ax.title.set_fontsize(9)
    for ax in axes[len(cells):]:
        ax.set_visible(False)
    for ax in axes[::shape[1]]:
        ax.set_ylabel("share on absent modes")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
