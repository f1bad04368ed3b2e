"""The low-pass filter of EGSDE's faithfulness energy (Zhao et al. 2022, Eq. 8; ILVR's φ_N = up(down(·))).

LPF(x) = up(down(x)): shrink the image to a coarse grid with an antialiased resize, then resize it back.
EGSDE uses Shocher's ``Resizer`` with down_N = 32 at 256 px, so the coarse grid is 8 × 8. We keep that
coarse grid — ``resolution = 8`` — at every image size, so the filter keeps the same share of the picture's
content whether a face is drawn on 256 or 32 pixels (at 32 px the factor is 4). The resize is
``torch.nn.functional.interpolate`` with ``antialias=True`` (bicubic by default; EGSDE's own Resizer defaults
to a linear kernel, SDFT's copy to cubic). Shocher's Resizer is NOT reproduced bit for bit: its kernels and
border handling differ slightly, so outputs agree only approximately.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

EGSDE_DOWN_FACTOR_AT_256 = 32
DEFAULT_RESOLUTION = 256 // EGSDE_DOWN_FACTOR_AT_256  # the 8 x 8 grid EGSDE low-passes through


@dataclass(frozen=True)
class LowPass:
    """x: [B, C, H, W] → [B, C, H, W], the content of an antialiased ``resolution`` × ``resolution`` thumbnail.

    mode: "bicubic" or "bilinear" (both antialiased when shrinking). An image no larger than the grid passes
    unchanged.
    """

    resolution: int = DEFAULT_RESOLUTION
    mode: str = "bicubic"

    def __post_init__(self):
        if self.resolution < 1:
            raise ValueError(f"the low-pass resolution must be at least 1, got {self.resolution}")
        if self.mode not in ("bicubic", "bilinear"):
            raise ValueError(f"mode must be 'bicubic' or 'bilinear', got {self.mode!r}")

    @classmethod
    def from_down_factor(cls, image_size: int, down_factor: int = EGSDE_DOWN_FACTOR_AT_256,
                         mode: str = "bicubic") -> "LowPass":
        """EGSDE's parametrisation: shrink by ``down_factor`` (32 at 256 px gives the 8 x 8 grid)."""
        return cls(max(1, image_size // down_factor), mode)

    def down(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] → [B, C, r, r] (antialiased)."""
        return F.interpolate(x, size=(self.resolution, self.resolution), mode=self.mode, antialias=True,
                             align_corners=False)

    def up(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """[B, C, r, r] → [B, C, H, W]."""
        return F.interpolate(x, size=size, mode=self.mode, align_corners=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if max(x.shape[-2:]) <= self.resolution:
            return x
        return self.up(self.down(x), tuple(x.shape[-2:]))
