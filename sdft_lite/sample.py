"""Sampling a trained model from fixed per-image seeds (any sampler of ``sampling.SAMPLERS``), written as PNGs.

Image ``i`` always starts from the same x_T (seeded by ``seed`` and ``i``, whatever the batch size), so two
models sampled with the same seed form shared-noise pairs (the paper's Fig. 1 and Table 3 comparisons). With
deterministic DDIM (η = 0) that is the whole randomness; the ancestral sampler (and DDIM with η > 0) also draws
noise at every step, from one generator per batch seeded by ``seed`` and the batch's first index.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .diffusion import prediction_of
from .sampling import SAMPLERS
from .schedule import make_schedule, respace


def initial_noise(indices: range, channels: int, size: int, seed: int) -> torch.Tensor:
    """x_T for images ``indices``: [len, C, size, size], image i drawn from its own generator (seed, i)."""
    return torch.stack([torch.randn(channels, size, size, generator=torch.Generator().manual_seed(seed * 1_000_003 + i))
                        for i in indices])


@torch.no_grad()
def generate(model, num: int, image_size: int, steps: str = "ddim40", seed: int = 0, batch_size: int = 64,
             device: torch.device | str = "cpu", schedule_name: str = "linear", eta: float = 0.0,
             precision: torch.dtype = torch.float32, rederive_eps: bool = False, start: int = 0,
             channels: int = 3, sampler: str = "ddim", compile: str | None = None,
             cuda_graph: bool = False) -> torch.Tensor:
    """``num`` samples as float [num, C, H, W] in [−1, 1] (on CPU), by ``sampler`` ("ddim" or "ancestral") on the
    ``steps`` respacing. The network may run under bf16/fp16 autocast (``precision``); the update itself is
    always fp32. ``eta`` and ``rederive_eps`` are DDIM's.

    The fast path (deterministic DDIM): ``compile`` = a torch.compile mode ("default", "reduce-overhead", ...)
    compiles each step, network and update together; ``cuda_graph=True`` (CUDA) replays each step from a CUDA
    graph (see ``sampling.ddim_sample``). Every batch size is its own compile and capture: keep ``num`` a
    multiple of ``batch_size``."""
    model.eval()
    schedule = respace(make_schedule(schedule_name), steps).to(device)
    device_type, autocast = torch.device(device).type, precision != torch.float32
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    if (compile or cuda_graph) and sampler != "ddim":
        raise ValueError(f"compile and cuda_graph are for the ddim sampler, not {sampler!r}")
    options = {"eta": eta, "rederive_eps": rederive_eps} if sampler == "ddim" else {}
    if compile or cuda_graph:
        options.update(compile=compile, cuda_graph=cuda_graph)

    def network(x, t):   # made of constants and the model: a compiled step is reused by the next call
        with torch.autocast(device_type, dtype=precision, enabled=autocast, cache_enabled=False):
            return model(x, t).float()   # no autocast cache: a weight is cast once per forward anyway
    network.prediction = prediction_of(model)

    out = []
    for first in range(start, start + num, batch_size):
        idx = range(first, min(first + batch_size, start + num))
        x = initial_noise(idx, channels, image_size, seed).to(device)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + first + 500_009)
        out.append(SAMPLERS[sampler](network, x, schedule, generator=generator, **options).clamp(-1, 1).cpu())
    return torch.cat(out)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [−1, 1] → uint8 [N, H, W, C], rounding as guided-diffusion saves samples."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_images(images: torch.Tensor, out_dir: str | Path, prefix: str = "", start: int = 0) -> list[Path]:
    """Write each image as ``{prefix}{index:06d}.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, array in enumerate(to_uint8(images), start=start):
        path = out_dir / f"{prefix}{i:06d}.png"
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


def make_grid(images: torch.Tensor, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile [N, C, H, W] in [−1, 1] into one uint8 [H', W', C] image, row by row."""
    arrays = to_uint8(images)
    n, h, w, c = arrays.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, array in enumerate(arrays):
        r, col = divmod(i, columns)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = array
    return grid


def save_grid(images: torch.Tensor, path: str | Path, columns: int | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_grid(images, columns)).save(path)
    return path
