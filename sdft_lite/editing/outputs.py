"""What the translate and edit commands write: comparison grids and the ``pairs/`` layout of the evaluate command.

``pairs/input/NAME.png`` and ``pairs/output/NAME.png`` share file names (NAME = ``{index:06d}_{stem}`` of the
input file), so faithfulness metrics (PSNR, SSIM, LPIPS, ID) can pair them by name; images are quantised as
the samplers' PNGs are (round((x + 1)·127.5), clamped).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ..sample import make_grid, to_uint8


def pair_names(files: Sequence[Path]) -> list[str]:
    """``{index:06d}_{stem}.png`` for each input file (unique even when a recursive listing repeats a stem)."""
    return [f"{i:06d}_{Path(f).stem}.png" for i, f in enumerate(files)]


def slug(text: str) -> str:
    """A file-name-safe form of a direction or method name: 'classifier:expression neutral→smile' →
    'classifier-expression-neutral-smile'."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def save_named(images: torch.Tensor, folder: str | Path, names: Sequence[str]) -> list[Path]:
    """Write images [N, C, H, W] in [−1, 1] as PNGs under the given file names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for array, name in zip(to_uint8(images), names):
        Image.fromarray(array).save(folder / name)
        paths.append(folder / name)
    return paths


def save_pairs_folder(inputs: torch.Tensor, outputs: torch.Tensor, out_dir: str | Path,
                      names: Sequence[str]) -> Path:
    """``out_dir/pairs/input/NAME`` and ``out_dir/pairs/output/NAME``; returns ``out_dir/pairs``."""
    if inputs.shape != outputs.shape or len(names) != len(inputs):
        raise ValueError(f"pairs need equal shapes and one name each: {tuple(inputs.shape)}, "
                         f"{tuple(outputs.shape)}, {len(names)} names")
    pairs = Path(out_dir) / "pairs"
    save_named(inputs, pairs / "input", names)
    save_named(outputs, pairs / "output", names)
    return pairs


def save_rows_grid(rows: Sequence[torch.Tensor], path: str | Path, columns: int = 8) -> Path:
    """One PNG with a row per tensor (e.g. input / output), the first ``columns`` images of each."""
    columns = min(columns, *(len(r) for r in rows))
    tiles = torch.cat([r[:columns].detach().cpu().float() for r in rows])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_grid(tiles, columns=columns)).save(path)
    return path
