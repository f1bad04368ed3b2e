"""Image degradations shared by the portrait style, the instruments' augmentation and the realism checks.

All functions work on float images [N, 3, H, W] in [0, 1] (numpy, float32) and scale with resolution:
a blur of ``sigma`` is given in pixels *at 32 px*, so a 128-px image gets 4x the pixel blur and looks the
same.
"""
from __future__ import annotations

import numpy as np


def gaussian_kernels(sigma_px: np.ndarray) -> np.ndarray:
    """Normalised 1-D Gaussian taps for each sigma (in pixels). sigma_px: [N] → kernels [N, 2R+1]."""
    sigma_px = np.asarray(sigma_px, dtype=np.float32).reshape(-1)
    radius = int(np.ceil(3.0 * max(float(sigma_px.max()), 1e-3)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    kernels = np.exp(-0.5 * (offsets[None, :] / np.maximum(sigma_px[:, None], 1e-3)) ** 2)
    return kernels / kernels.sum(axis=1, keepdims=True)


def _blur_axis(images: np.ndarray, kernels: np.ndarray, axis: int) -> np.ndarray:
    """Convolve along one spatial axis (2 = H, 3 = W) with per-image taps, edge-replicate padding."""
    radius = kernels.shape[1] // 2
    pad = [(0, 0)] * 4
    pad[axis] = (radius, radius)
    padded = np.pad(images, pad, mode="edge")
    length = images.shape[axis]
    out = np.zeros_like(images)
    for k in range(kernels.shape[1]):
        window = padded[:, :, k:k + length] if axis == 2 else padded[:, :, :, k:k + length]
        out += kernels[:, k, None, None, None] * window
    return out


def gaussian_blur(images: np.ndarray, sigma32: float | np.ndarray) -> np.ndarray:
    """Separable Gaussian blur. images: [N, 3, H, W] float in [0, 1]; sigma32: scalar or [N], in pixels at 32 px."""
    n, size = images.shape[0], images.shape[-1]
    sigma_px = np.broadcast_to(np.asarray(sigma32, dtype=np.float32), (n,)) * (size / 32.0)
    if float(sigma_px.max()) < 0.05:
        return images
    kernels = gaussian_kernels(sigma_px)
    return _blur_axis(_blur_axis(images, kernels, axis=2), kernels, axis=3)


def add_noise(images: np.ndarray, sigma: float | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise of std ``sigma`` (scalar or [N], in [0, 1] units) and clip to [0, 1]."""
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float32), (images.shape[0],))
    noise = rng.standard_normal(images.shape, dtype=np.float32)
    return np.clip(images + sigma[:, None, None, None] * noise, 0.0, 1.0)


def color_shift(images: np.ndarray, strength: float | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random per-image channel gains and offsets of size ``strength`` (scalar or [N]); clipped to [0, 1]."""
    n = images.shape[0]
    strength = np.broadcast_to(np.asarray(strength, dtype=np.float32), (n,))[:, None]
    gains = 1.0 + strength * rng.uniform(-1.0, 1.0, size=(n, 3)).astype(np.float32)
    offsets = 0.5 * strength * rng.uniform(-1.0, 1.0, size=(n, 3)).astype(np.float32)
    return np.clip(images * gains[:, :, None, None] + offsets[:, :, None, None], 0.0, 1.0)


def random_degradation(images: np.ndarray, rng: np.random.Generator, prob: float = 0.5, max_blur: float = 1.2,
                       max_noise: float = 0.08, max_shift: float = 0.08) -> np.ndarray:
    """Mild random damage, as diffusion samples show: each image, with probability ``prob``, gets a blur,
    noise and a colour shift of random strengths up to the given maxima (blur in pixels at 32 px)."""
    n = images.shape[0]
    hit = rng.random(n) < prob
    blur = np.where(hit, rng.uniform(0.0, max_blur, n), 0.0)
    noise = np.where(hit, rng.uniform(0.0, max_noise, n), 0.0)
    shift = np.where(hit, rng.uniform(0.0, max_shift, n), 0.0)
    return color_shift(add_noise(gaussian_blur(images, blur), noise, rng), shift, rng)


def pixelate(images: np.ndarray, factor: int = 2) -> np.ndarray:
    """Average factor × factor blocks and repeat them (a damage the realism net never trains on). [N, 3, H, W]."""
    n, c, h, w = images.shape
    blocks = images[:, :, :h - h % factor, :w - w % factor].reshape(n, c, h // factor, factor, w // factor, factor)
    coarse = blocks.mean(axis=(3, 5))
    out = images.copy()
    out[:, :, :h - h % factor, :w - w % factor] = coarse.repeat(factor, axis=2).repeat(factor, axis=3)
    return out
