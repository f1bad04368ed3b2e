"""Loss weightings as plain functions of the signal-to-noise ratio.

Each function maps SNR(t) (a float64 tensor of any shape) to a weight of the same shape. With k = 1,
1/(k + SNR) = 1 − ᾱ_t, so every P2-family weight is (1 − ᾱ_t)^γ: near 0 at small t (clean images, where
fine detail is learned) and near 1 at large t (noisy images, where coarse content is decided).

- ``constant``: w = 1 (L_simple of DDPM).
- ``p2``: w = 1/(k + SNR)^γ (P2 weighting, Choi et al. 2022); SDFT's distillation weight w_d uses γ_d = 3 and
  its auxiliary weight w_a uses γ_aux = 50 (Hur et al. 2024, method-spec §1.2).
- ``min_snr``: w = min(SNR, γ)/SNR for ε-prediction (Hang et al. 2023), the paper's Table 4 ablation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


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
class Weighting:
    """A named weighting scheme: ``kind`` in {"constant", "p2", "min_snr"} with its γ (and k for P2)."""

    kind: str = "p2"
    gamma: float = 0.0
    k: float = 1.0

    def __call__(self, snr: torch.Tensor) -> torch.Tensor:
        if self.kind == "constant":
            return constant(snr)
        if self.kind == "p2":
            return p2(snr, self.gamma, self.k)
        if self.kind == "min_snr":
            return min_snr(snr, self.gamma)
        raise ValueError(f"unknown weighting {self.kind!r}; use 'constant', 'p2' or 'min_snr'")

    def of_timesteps(self, schedule, t: torch.Tensor) -> torch.Tensor:
        """Weights for schedule positions t: [B] long → [B] float32 on t's device."""
        return self(schedule.snr).to(t.device)[t].float()

    def __str__(self) -> str:
        if self.kind == "constant":
            return "constant"
        if self.kind == "p2":
            return f"P2(γ={self.gamma:g}, k={self.k:g})"
        return f"min-SNR-{self.gamma:g}"
