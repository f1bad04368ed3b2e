"""PSNR and SSIM on luma, as SDFT computes them for image-to-image translation (the authors' evaluation notebooks).

The authors' ``MetricI2I`` (notebooks/psnrssim.py) works on 8-bit BT.601 luma of images in [0, 1]:

  R, G, B = round(255 · x_c)                 Y = round(0.257 R + 0.504 G + 0.098 B + 16) / 255
  PSNR    = 10 log10(1 / MSE(Y1, Y2))
  SSIM    = mean over the map of ((2 μ1μ2 + C1)(2 σ12 + C2)) / ((μ1² + μ2² + C1)(σ1² + σ2² + C2)),
            local statistics from an 11×11 Gaussian window (σ = 1.5) with zero padding, C1 = 0.01², C2 = 0.03².

Our inputs are ``[B, 3, H, W] in [-1, 1]`` and are mapped to [0, 1] first. The authors' notebooks skipped that
step and fed [-1, 1] tensors to the [0, 1] formula; ``authors_scaling=True`` reproduces it. The luma differences
then double, the MSE grows about 4×, and PSNR drops by ≈ 10 log10 4 ≈ 6 dB. SSIM changes too, by an amount that
depends on the images: C1, C2 no longer match the doubled range, and luma near 0 makes the luminance term
(2μ1μ2 + C1)/(μ1² + μ2² + C1) unstable. Values are per image (the authors averaged per ``update`` call, which equals
the per-image mean with batches of one image).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def luma(x: torch.Tensor, authors_scaling: bool = False) -> torch.Tensor:
    """x: [B, 3, H, W] in [-1, 1] -> 8-bit-rounded BT.601 luma Y: [B, 1, H, W] float64 (in [16/255, 235/255])."""
    x = x.double()
    x01 = x if authors_scaling else ((x + 1) / 2).clamp(0, 1)
    r, g, b = torch.round(255 * x01).unbind(dim=1)
    y = torch.round(0.257 * r + 0.504 * g + 0.098 * b + 16) / 255
    return y.unsqueeze(1)


def psnr_luma(y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image of luma y1, y2: [B, 1, H, W] with peak 1 -> [B] (inf for identical images)."""
    mse = (y1 - y2).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 2-D Gaussian [1, 1, size, size] float64."""
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-offsets**2 / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_map(y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """SSIM map of luma y1, y2: [B, 1, H, W] -> [B, 1, H, W]; Gaussian statistics with zero padding."""
    window = gaussian_window().to(y1.device)
    pad = SSIM_WINDOW // 2

    def local_mean(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, window, padding=pad)

    mu1, mu2 = local_mean(y1), local_mean(y2)
    var1 = local_mean(y1 * y1) - mu1**2
    var2 = local_mean(y2 * y2) - mu2**2
    cov12 = local_mean(y1 * y2) - mu1 * mu2
    numerator = (2 * mu1 * mu2 + SSIM_C1) * (2 * cov12 + SSIM_C2)
    denominator = (mu1**2 + mu2**2 + SSIM_C1) * (var1 + var2 + SSIM_C2)
    return numerator / denominator


def psnr(x: torch.Tensor, y: torch.Tensor, authors_scaling: bool = False) -> torch.Tensor:
    """PSNR (dB) per image between x, y: [B, 3, H, W] in [-1, 1], on luma -> [B] float64."""
    return psnr_luma(luma(x, authors_scaling), luma(y, authors_scaling))


def ssim(x: torch.Tensor, y: torch.Tensor, authors_scaling: bool = False) -> torch.Tensor:
    """SSIM per image between x, y: [B, 3, H, W] in [-1, 1], on luma, mean over the full map -> [B] float64."""
    return ssim_map(luma(x, authors_scaling), luma(y, authors_scaling)).flatten(1).mean(dim=1)


@dataclass(frozen=True)
class FidelityResult:
    """Mean PSNR (dB) and SSIM over N pairs, and which input scaling produced them."""

    psnr_db: float
    ssim: float
    n: int
    scaling: str  # "[0,1] (correct)" or "[-1,1] (authors' notebooks)"

    def comparable_with(self, other: object) -> bool:
        return isinstance(other, FidelityResult) and other.scaling == self.scaling


def compute_fidelity(x: torch.Tensor, y: torch.Tensor, authors_scaling: bool = False,
             batch_size: int = 64) -> FidelityResult:
    """Mean per-image PSNR and SSIM between inputs x and outputs y: [N, 3, H, W] in [-1, 1]."""
    if x.shape != y.shape:
        raise ValueError(f"PSNR/SSIM need pairs of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    psnrs, ssims = [], []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        psnrs.append(psnr(xb, yb, authors_scaling))
        ssims.append(ssim(xb, yb, authors_scaling))
    psnr_all, ssim_all = torch.cat(psnrs), torch.cat(ssims)
    scaling = "[-1,1] (authors' notebooks)" if authors_scaling else "[0,1] (correct)"
    psnr_mean = float(psnr_all.mean()) if torch.isfinite(psnr_all).all() else math.inf
    return FidelityResult(psnr_mean, float(ssim_all.mean()), len(x), scaling)
