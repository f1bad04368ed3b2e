"""Dual Diffusion Implicit Bridges (Su et al. 2023) and the shared-noise pairing of SDFT's Sec. 4.4.

DDIB translation is two ODE solves: encode the source image to a latent with the *source* model (DDIM
inversion, ``clip_denoised=False``), then decode that latent with the *target* model (DDIM η = 0,
``clip_denoised=True``). Each solve is invertible up to discretisation error, so the bridge is
cycle-consistent. By default the latent sits at the last kept step (t = 975 for "ddim40") and decoding starts
there: the exact inverse pair. DDIB's and guided-diffusion's loops run one inversion step more, onto ᾱ = 0
(the latent is then the predicted noise), and still decode from the last kept step;
``encode_to_zero_snr=True`` reproduces that.

The same argument makes x_T a shared latent code: sampling two models with identical x_T and deterministic
DDIM gives *pairs* of images (paper Fig. 7, Table 3's LPIPS). ``paired_samples`` draws image i's x_T from
seed (seed, i) exactly as ``sdft-lite sample`` does, so pairs never depend on the batch size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..sample import initial_noise, make_grid, save_images
from ..sampling import ddim_invert, ddim_sample
from ..schedule import Schedule

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ddib_encode(source_model: Model, x0: torch.Tensor, schedule: Schedule,
                encode_to_zero_snr: bool = False) -> torch.Tensor:
    """x0: [B, C, H, W] → the latent x_T of the source model's DDIM ODE (unclipped x̂_0)."""
    stop = len(schedule) if encode_to_zero_snr else len(schedule) - 1
    return ddim_invert(source_model, x0, schedule, stop=stop, clip_denoised=False)


def ddib_decode(target_model: Model, latent: torch.Tensor, schedule: Schedule,
                clip_denoised: bool = True) -> torch.Tensor:
    """Latent → image with the target model's deterministic DDIM, from the last kept step."""
    return ddim_sample(target_model, latent, schedule, eta=0.0, clip_denoised=clip_denoised,
                       start=len(schedule) - 1)


def ddib_translate(source_model: Model, target_model: Model, x0: torch.Tensor, schedule: Schedule,
                   encode_to_zero_snr: bool = False) -> torch.Tensor:
    """DDIB: decode_target(encode_source(x0)). x0: [B, C, H, W] in [−1, 1] → translated [B, C, H, W]."""
    return ddib_decode(target_model, ddib_encode(source_model, x0, schedule, encode_to_zero_snr), schedule)


@torch.no_grad()
def paired_samples(models: Mapping[str, Model], n: int, shape: tuple[int, int, int], schedule: Schedule,
                   seed: int = 0, batch: int = 64, device: torch.device | str = "cpu",
                   clip_denoised: bool = True) -> dict[str, torch.Tensor]:
    """Deterministic DDIM samples of every model from the SAME x_T: {name: [n, C, H, W] in [−1, 1] on CPU}.

    shape = (C, H, W) with H = W. Image i of every model starts from x_T seeded by (seed, i).
    """
    channels, height, width = shape
    if height != width:
        raise ValueError(f"square images only, got {height}x{width}")
    out: dict[str, list[torch.Tensor]] = {name: [] for name in models}
    for first in range(0, n, batch):
        x_T = initial_noise(range(first, min(first + batch, n)), channels, height, seed).to(device)
        for name, model in models.items():
            out[name].append(ddim_sample(model, x_T, schedule, eta=0.0, clip_denoised=clip_denoised)
                             .clamp(-1, 1).cpu())
    return {name: torch.cat(parts) for name, parts in out.items()}


def _header(names: list[str], cell: int, pad: int, width: int) -> np.ndarray:
    """A white strip naming each column (PIL's built-in bitmap font)."""
    strip = Image.new("RGB", (width, 12), "white")
    draw = ImageDraw.Draw(strip)
    for col, name in enumerate(names):
        draw.text((pad + col * (cell + pad), 0), name[: max(1, cell // 6)], fill="black")
    return np.asarray(strip)


def save_pair_grid(samples: Mapping[str, torch.Tensor], path: str | Path, rows: int | None = None,
                   label: bool = True) -> Path:
    """One PNG: row i = image i of every model (same x_T); columns = models, named in a header strip."""
    names = list(samples)
    count = min(len(v) for v in samples.values())
    rows = count if rows is None else min(rows, count)
    tiles = torch.stack([samples[name][i] for i in range(rows) for name in names])
    grid = make_grid(tiles, columns=len(names))
    if label:
        grid = np.concatenate([_header(names, tiles.shape[-1], 2, grid.shape[1]), grid], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path


def save_pairs(samples: Mapping[str, torch.Tensor], out_dir: str | Path, reference: str | None = None
               ) -> dict[str, Path]:
    """Write the evaluate command's layout for every model against ``reference`` (default: the first model).

    ``out_dir/<reference>_vs_<name>/input/NNNNNN.png`` holds the reference model's samples and ``.../output/``
    the other model's, same file names; ``out_dir/samples/<name>/`` holds each model's samples (for FID/KID).
    Returns {name: pairs folder}.
    """
    out_dir = Path(out_dir)
    names = list(samples)
    reference = names[0] if reference is None else reference
    if reference not in samples:
        raise KeyError(f"reference model {reference!r} is not one of {names}")
    for name in names:
        save_images(samples[name], out_dir / "samples" / name)
    folders = {}
    for name in names:
        if name == reference:
            continue
        folder = out_dir / f"{reference}_vs_{name}"
        save_images(samples[reference], folder / "input")
        save_images(samples[name], folder / "output")
        folders[name] = folder
    return folders
