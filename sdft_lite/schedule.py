"""Noise schedules (DDPM, Ho et al. 2020; improved DDPM, Nichol & Dhariwal 2021) and timestep respacing.

A :class:`Schedule` holds the per-step constants of the forward process as float64 tensors. Respacing
(guided-diffusion's idea) keeps a subset of the original steps and recomputes the betas so that the kept
steps have the same ᾱ; ``schedule.timesteps`` remembers the original index of each kept step, and the
network is always called with that original index.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass(frozen=True)
class Schedule:
    """Forward-process constants. All tensors are float64 of shape [K] (K kept steps).

    betas: β_k; timesteps: original index t of each kept step (long, [K]); num_train_steps: T of the
    un-respaced schedule (1000 for ADM/P2).
    """

    betas: torch.Tensor
    timesteps: torch.Tensor
    num_train_steps: int

    def __len__(self) -> int:
        return self.betas.shape[0]

    # ---- derived quantities (computed once, on first access) --------------------------------
    @cached_property
    def alphas(self) -> torch.Tensor:
        return 1.0 - self.betas

    @cached_property
    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ_k = ∏_{j≤k} (1 − β_j)."""
        return torch.cumprod(self.alphas, dim=0)

    @cached_property
    def alphas_cumprod_prev(self) -> torch.Tensor:
        """ᾱ_{k−1}, with ᾱ_{−1} = 1."""
        return torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])

    @cached_property
    def alphas_cumprod_next(self) -> torch.Tensor:
        """ᾱ_{k+1}, with ᾱ_K = 0."""
        return torch.cat([self.alphas_cumprod[1:], torch.zeros(1, dtype=torch.float64)])

    @cached_property
    def snr(self) -> torch.Tensor:
        """SNR(t) = ᾱ_t / (1 − ᾱ_t)."""
        abar = self.alphas_cumprod
        return abar / (1.0 - abar)

    @cached_property
    def posterior_variance(self) -> torch.Tensor:
        """β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), the variance of q(x_{t−1} | x_t, x_0)."""
        return self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @cached_property
    def posterior_log_variance_clipped(self) -> torch.Tensor:
        """log β̃_t with entry 0 (where β̃ = 0) replaced by entry 1, as guided-diffusion does."""
        var = self.posterior_variance
        if len(var) == 1:
            return torch.log(self.betas)
        return torch.log(torch.cat([var[1:2], var[1:]]))

    @cached_property
    def posterior_mean_coef_x0(self) -> torch.Tensor:
        """Coefficient of x_0 in the posterior mean: β_t √ᾱ_{t−1} / (1 − ᾱ_t)."""
        return self.betas * torch.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @cached_property
    def posterior_mean_coef_xt(self) -> torch.Tensor:
        """Coefficient of x_t in the posterior mean: (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t)."""
        return (1.0 - self.alphas_cumprod_prev) * torch.sqrt(self.alphas) / (1.0 - self.alphas_cumprod)

    def to(self, device: torch.device | str) -> "Schedule":
        """This schedule with every table of :data:`TABLES` computed here (float64, on the CPU) and kept on
        ``device``. ``extract`` then indexes them where the timesteps live: no host-to-device copy per call, and
        on a GPU no wait (a blocking copy from host memory synchronises the stream), so a sampling or training
        step can run ahead of the GPU or be captured in a CUDA graph. The values are the CPU tables', bit for bit."""
        moved = Schedule(self.betas.to(device), self.timesteps.to(device), self.num_train_steps)
        for name in TABLES:   # cached_property reads the instance dict first: fill it with the moved tables
            moved.__dict__[name] = getattr(self, name).to(device)
        return moved


# the derived tables ``Schedule.to`` moves along
TABLES = ("alphas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next", "snr", "posterior_variance",
          "posterior_log_variance_clipped", "posterior_mean_coef_x0", "posterior_mean_coef_xt")


def beta_schedule(name: str, num_steps: int = 1000) -> torch.Tensor:
    """β_1..β_T as guided-diffusion defines them ("linear" or "cosine"); float64 [T]."""
    if name == "linear":
        scale = 1000 / num_steps
        return torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=torch.float64)
    if name == "cosine":
        def abar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = [min(1 - abar((i + 1) / num_steps) / abar(i / num_steps), 0.999) for i in range(num_steps)]
        return torch.tensor(betas, dtype=torch.float64)
    raise ValueError(f"unknown beta schedule {name!r}; use 'linear' or 'cosine'")


def make_schedule(name: str = "linear", num_steps: int = 1000) -> Schedule:
    """The full (un-respaced) schedule of ``num_steps`` steps."""
    return Schedule(beta_schedule(name, num_steps), torch.arange(num_steps), num_steps)


def space_timesteps(num_steps: int, spec: str | int) -> list[int]:
    """Original timesteps kept by a respacing spec.

    "ddimN": the smallest integer stride giving exactly N steps (ddim40 → 0, 25, ..., 975).
    "N" or "N1,N2,...": split [0, T) into equal sections and take N_i evenly spaced (rounded) steps in each
    ("40" → 0, 26, 51, ..., 973, 999).
    """
    spec = str(spec)
    if spec.startswith("ddim"):
        wanted = int(spec[len("ddim"):])
        for stride in range(1, num_steps):
            kept = list(range(0, num_steps, stride))
            if len(kept) == wanted:
                return kept
        raise ValueError(f"cannot take exactly {wanted} steps from {num_steps} with an integer stride")
    counts = [int(c) for c in spec.split(",")]
    size, extra = divmod(num_steps, len(counts))
    kept, start = [], 0
    for i, count in enumerate(counts):
        section = size + (1 if i < extra else 0)
        if count > section:
            raise ValueError(f"cannot take {count} steps from a section of {section}")
        stride = 1 if count <= 1 else (section - 1) / (count - 1)
        kept += [start + round(stride * j) for j in range(count)]
        start += section
    return kept


def respace(schedule: Schedule, spec: str | int) -> Schedule:
    """A schedule over a subset of steps with the same ᾱ at the kept steps (β'_k = 1 − ᾱ_{s_k}/ᾱ_{s_{k−1}})."""
    kept = torch.tensor(space_timesteps(len(schedule), spec), dtype=torch.long)
    abar = schedule.alphas_cumprod[kept]
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    return Schedule(1.0 - abar / abar_prev, schedule.timesteps[kept], schedule.num_train_steps)


def extract(values: torch.Tensor, index: torch.Tensor, like: torch.Tensor | int) -> torch.Tensor:
    """Gather values[index] on index's device, shaped [B, 1, ..., 1] to broadcast against ``like``.

    The result is float64 when ``like`` is a float64 tensor and float32 otherwise (also for half-precision
    inputs: the schedule's constants span 1e-4..157 and lose too much in fp16/bf16). ``like`` may also be an
    int, the number of dimensions.
    """
    ndim = like if isinstance(like, int) else like.ndim
    dtype = torch.float64 if isinstance(like, torch.Tensor) and like.dtype == torch.float64 else torch.float32
    out = values.to(index.device)[index].to(dtype)
    return out.reshape(-1, *([1] * (ndim - 1)))
