"""Image folders -> tensors for the metrics: files as ``x: [N, 3, H, W] in [-1, 1]`` (uint8 k -> k / 127.5 − 1).

Files are listed and decoded by :mod:`sdft_lite.data` (the same listing training uses, recursive). Writing goes
through ``sdft_lite.sample.save_images`` (round((x + 1) · 127.5)), so a tensor saved and loaded back is exact for
8-bit images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .. import data
from ..data import list_images


def load_image(path: str | Path) -> torch.Tensor:
    """One file as [3, H, W] float32 in [-1, 1] (RGB)."""
    array = data.load_image(Path(path)).astype(np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1


def relative_names(folder: Path) -> set[str]:
    """The images under ``folder`` (recursively) by their path relative to it."""
    return {p.relative_to(folder).as_posix() for p in list_images(folder)}


def load_images(paths: list[Path]) -> torch.Tensor:
    """Files of one size as [N, 3, H, W] float32 in [-1, 1]."""
    if not paths:
        raise ValueError("no images to load")
    return torch.stack([load_image(p) for p in paths])


def load_images_at(paths: list[Path], size: int) -> torch.Tensor:
    """Files as training reads them (``data.load_image``: centre crop, resized to ``size``): [N, 3, size, size]
    in [-1, 1]. A file already at ``size`` × ``size`` is read unchanged."""
    if not paths:
        raise ValueError("no images to load")
    arrays = np.stack([data.load_image(Path(p), size) for p in paths]).astype(np.float32)
    return torch.from_numpy(arrays).permute(0, 3, 1, 2) / 127.5 - 1


def pair_names(pairs_dir: str | Path) -> list[str]:
    """File names shared by ``pairs_dir/input/`` and ``pairs_dir/output/`` (sorted).

    Every input needs an output of the same name and vice versa; a mismatch is an error, not a silent subset.
    """
    pairs_dir = Path(pairs_dir)
    inputs, outputs = relative_names(pairs_dir / "input"), relative_names(pairs_dir / "output")
    if inputs != outputs:
        only_in, only_out = sorted(inputs - outputs)[:5], sorted(outputs - inputs)[:5]
        raise ValueError(f"{pairs_dir}: input/ and output/ must hold the same file names; "
                         f"only in input/: {only_in}, only in output/: {only_out}")
    if not inputs:
        raise ValueError(f"{pairs_dir}: no images in input/ and output/")
    return sorted(inputs)


def iter_pair_batches(pairs_dir: str | Path, batch_size: int = 32) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (inputs, outputs), each [b, 3, H, W] in [-1, 1], over the pairs of :func:`pair_names` in order."""
    pairs_dir = Path(pairs_dir)
    names = pair_names(pairs_dir)
    for start in range(0, len(names), batch_size):
        chunk = names[start:start + batch_size]
        yield (load_images([pairs_dir / "input" / n for n in chunk]),
               load_images([pairs_dir / "output" / n for n in chunk]))
