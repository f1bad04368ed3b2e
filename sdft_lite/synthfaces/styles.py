"""The two SynthFaces styles: "photo" (the source domain, like FFHQ) and "portrait" (the target, like MetFaces).

photo:    the flat render plus mild sensor noise.
portrait: a painting: soft brushwork (Gaussian blur), a muted sepia palette, lower contrast, a fixed canvas
          weave and a vignette, plus a little paint grain.
Every step is defined in image units, so a portrait looks the same at 32, 64 or 256 px.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .degrade import gaussian_blur

PHOTO_NOISE = 0.02           # std of sensor noise, [0, 1] units
PORTRAIT_BLUR = 0.65         # blur std in pixels at 32 px
SEPIA = np.array([[0.393, 0.769, 0.189],
                  [0.349, 0.686, 0.168],
                  [0.272, 0.534, 0.131]], dtype=np.float32)
SEPIA_MIX = 0.55             # fraction of the sepia tone in the muted palette
PORTRAIT_CONTRAST = 0.70     # contrast around mid-grey
PORTRAIT_TINT = np.array([0.03, 0.0, -0.05], dtype=np.float32)  # warm varnish
WEAVE_STRENGTH = 0.06
WEAVE_THREADS = 14           # canvas threads across the image
VIGNETTE_STRENGTH = 0.38
PORTRAIT_GRAIN = 0.012


@lru_cache(maxsize=8)
def canvas_texture(size: int) -> np.ndarray:
    """Multiplicative canvas weave × vignette, fixed for a resolution. Returns [1, H, W] float32."""
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size                        # [0, 1]
    u, v = grid[None, :], grid[:, None]
    phase_u, phase_v = 2 * np.pi * WEAVE_THREADS * u, 2 * np.pi * WEAVE_THREADS * v
    over = (np.floor(WEAVE_THREADS * u) + np.floor(WEAVE_THREADS * v)) % 2 == 0    # basket-weave cells
    pixel_average = np.sinc(WEAVE_THREADS / size)                                  # box-filter the threads
    weave = pixel_average * (np.where(over, np.cos(phase_u), np.cos(phase_v)) * 0.5 + 0.25 * np.cos(phase_u + phase_v))
    radius2 = (2 * u - 1) ** 2 + (2 * v - 1) ** 2                                  # 1 at the edge midpoints
    vignette = 1.0 - VIGNETTE_STRENGTH * np.clip(radius2 / 2.0, 0.0, 1.0) ** 1.2
    return ((1.0 + WEAVE_STRENGTH * weave) * vignette)[None].astype(np.float32)


def photo(base: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Source style. base, noise: [N, 3, H, W] (base in [0, 1], noise standard normal) → [N, 3, H, W]."""
    return np.clip(base + PHOTO_NOISE * noise, 0.0, 1.0)


def portrait(base: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Target style. base, noise: [N, 3, H, W] → [N, 3, H, W] in [0, 1]."""
    painted = gaussian_blur(base, PORTRAIT_BLUR)
    sepia = np.clip(np.einsum('ij,njhw->nihw', SEPIA, painted), 0.0, 1.0)
    muted = (1.0 - SEPIA_MIX) * painted + SEPIA_MIX * sepia
    flat = 0.5 + PORTRAIT_CONTRAST * (muted - 0.5) + PORTRAIT_TINT[:, None, None]
    textured = flat * canvas_texture(base.shape[-1])
    return np.clip(textured + PORTRAIT_GRAIN * noise, 0.0, 1.0)


STYLES = {"photo": photo, "portrait": portrait}


def apply_style(base: np.ndarray, style: str, noise: np.ndarray) -> np.ndarray:
    if style not in STYLES:
        raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
    return STYLES[style](base, noise)
