"""Preview grids of SynthFaces: one row per domain, to check by eye that faces read as faces."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .domains import DomainSpec
from .renderer import to_uint8


def image_grid(rows: Sequence[np.ndarray], gap: int = 2) -> np.ndarray:
    """Tile rows of uint8 images [K, H, W, 3] (all the same K, H, W) into one [R·(H+gap), K·(W+gap), 3] image."""
    count, size = rows[0].shape[0], rows[0].shape[1]
    grid = np.full((len(rows) * (size + gap) - gap, count * (size + gap) - gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for k, image in enumerate(row):
            top, left = r * (size + gap), k * (size + gap)
            grid[top:top + size, left:left + size] = image
    return grid


def domain_rows(size: int = 32, count: int = 12, seed: int = 0, split: str = "preview") -> list[np.ndarray]:
    """Rows of uint8 images [count, size, size, 3]: photo source, limited target, full portrait domain."""
    specs = (DomainSpec.source(), DomainSpec.limited_target(), DomainSpec.full_target())
    return [to_uint8(spec.render(range(count), size, seed, split)[0]) for spec in specs]


def save_preview(path: str | Path, size: int = 32, count: int = 12, seed: int = 0, zoom: int = 1) -> Path:
    """Save the three-row domain grid as a PNG, enlarged ``zoom`` times with nearest-neighbour (pixels stay visible)."""
    grid = image_grid(domain_rows(size, count, seed))
    image = Image.fromarray(grid)
    if zoom > 1:
        image = image.resize((grid.shape[1] * zoom, grid.shape[0] * zoom), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
