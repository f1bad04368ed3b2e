"""Loss weightings: small callables from the signal-to-noise ratio to a weight.

A weighting maps SNR(t) (a float64 tensor of any shape) to a weight of the same shape. With k = 1,
1/(k + SNR) = 1 − ᾱ_t, so every P2-family weight is (1 − ᾱ_t)^γ: near 0 at small t (clean images, where
fine detail is learned) and near 1 at large t (noisy images, where coarse content is decided).

- :class:`Constant`: w = 1 (L_simple of DDPM).
- :class:`P2`: w = 1/(k + SNR)^γ (P2 weighting, Choi et al. 2022); SDFT's distillation weight w_d uses γ_d = 3 and
  its auxiliary weight w_a uses γ_aux = 50 (Hur et al. 2024, Eq. 6–8).
- :class:`MinSNR`: w = min(SNR, γ)/SNR for ε-prediction (Hang et al. 2023), the paper's Table 4 ablation.

Any callable ``snr → weight`` works where a weighting is expected (a user's own, e.g. ``lambda snr: snr.sqrt()``);
:data:`WEIGHTINGS` names the built-in ones for the command line (``--distill-weighting p2:3``).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import torch

WeightingFn = Callable[[torch.Tensor], torch.Tensor]


def constant(snr: torch.Tensor) -> torch.Tensor:
    """w(t) = 1."""
    return torch.ones_like(snr)


def p2(snr: torch.Tensor, gamma: float, k: float = 1.0) -> torch.Tensor:
    """w(t) = 1 / (k + SNR(t))^γ (P2 weighting, Choi et al. 2022, Eq. 8)."""
    return (k + snr).pow(-gamma)


def min_snr(snr: torch.Tensor, gamma: float = 5.0) -> torch.Tensor:
    """w(t) = min(SNR(t), γ) / SNR(t): the min-SNR-γ weight for an ε-prediction loss (Hang et al. 2023)."""
    return torch.clamp(snr, max=gamma) / snr


@dataclass(frozen=True)
class Constant:
    """w = 1."""

    def __call__(self, snr: torch.Tensor) -> torch.Tensor:
        return constant(snr)

    def __str__(self) -> str:
        return "constant"


@dataclass(frozen=True)
class P2:
    """w = 1/(k + SNR)^γ; γ = 0 is the constant weight."""

    gamma: float = 0.0
    k: float = 1.0

    def __call__(self, snr: torch.Tensor) -> torch.Tensor:
        return p2(snr, self.gamma, self.k)

    def __str__(self) -> str:
        return f"P2(γ={self.gamma:g}, k={self.k:g})"


@dataclass(frozen=True)
class MinSNR:
    """w = min(SNR, γ)/SNR."""

    gamma: float = 5.0

    def __call__(self, snr: torch.Tensor) -> torch.Tensor:
        return min_snr(snr, self.gamma)

    def __str__(self) -> str:
        return f"min-SNR-{self.gamma:g}"


WEIGHTINGS: dict[str, type] = {"constant": Constant, "p2": P2, "min_snr": MinSNR}   # the command line's names


def parse_weighting(text: str) -> WeightingFn:
    """'p2:3' → P2(3.0); 'p2:3:1' → P2(3.0, 1.0); 'min_snr:5' → MinSNR(5.0); 'constant' → Constant().
    The numbers fill the dataclass's fields in order."""
    name, *numbers = text.strip().split(":")
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {name!r}; use one of {', '.join(WEIGHTINGS)} (e.g. p2:3, min_snr:5)")
    return WEIGHTINGS[name](*(float(n) for n in numbers))


def weighting_spec(weighting: WeightingFn) -> str:
    """The inverse of :func:`parse_weighting` for the built-in weightings ('p2:3:1'); for a user's own callable its
    qualified name (configs record it, the command line cannot rebuild it)."""
    for name, cls in WEIGHTINGS.items():
        if type(weighting) is cls:
            return ":".join([name, *(f"{getattr(weighting, f.name):g}" for f in fields(cls))])
    return getattr(weighting, "__qualname__", repr(weighting))


def weights_at(weighting: WeightingFn, schedule, t: torch.Tensor) -> torch.Tensor:
    """Weights at schedule positions t: [B] long → [B] float32 on t's device (computed in float64 over the
    schedule's SNR, then gathered)."""
    return weighting(schedule.snr).to(t.device)[t].float()
