"""Redraw the stored figures after a change to ``sdft_lite.figures`` (CPU, seconds): the numbers and images are the
stored ones, only the drawing is new. The frontiers are drawn from their result files; the full benchmark's sample
grid from its images (``grid_images.npz``, which the benchmark writes beside ``grid.png``). A benchmark stored
before it wrote them has its images read back exactly from the old figure (models in columns), once: they are
then written to ``grid_images.npz`` for every later redraw.

    python bench/redraw_figures.py   # results/synthfaces_full/{frontier,grid}.png, results/synthfaces_frontier/frontier.png
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdft_lite import figures  # noqa: E402
from sdft_lite.experiments import benchmark, frontier, zoo  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"


def benchmark_config(stored: dict) -> benchmark.BenchmarkConfig:
    """The preset a stored benchmark ran with, checked against what it recorded (the figure's title reads it)."""
    config = getattr(benchmark.BenchmarkConfig, stored["name"])(seeds=tuple(stored["seeds"]))
    for field in ("num_noises", "sample_steps", "lams"):
        value = getattr(config, field)
        if (list(value) if isinstance(value, tuple) else value) != stored[field]:
            raise SystemExit(f"the stored benchmark's {field} ({stored[field]}) is not the {stored['name']} preset's")
    return config


def runs(mask: np.ndarray, min_length: int) -> list[tuple[int, int]]:
    """(start, length) of every run of True in a 1-D mask at least ``min_length`` long."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_length]


def grid_images(png: str | Path, size: int) -> torch.Tensor:
    """[rows, columns, 3, size, size] in [-1, 1]: the images a stored grid figure shows, read back exactly.

    The grid was drawn with nearest-neighbour scaling, so each image pixel is a uniform block of screen pixels. The
    tiles are the runs of mostly non-white rows and columns (text and frame lines are shorter than a tile); each
    block's centre is that pixel's value. A block that is not uniform around its centre stops the redraw."""
    image = np.asarray(Image.open(png).convert("RGB"))
    ink = (image < 245).any(-1)
    row_runs = runs(ink.mean(1) > 0.5, 2 * size)
    band = ink[row_runs[0][0]:row_runs[-1][0] + row_runs[-1][1]]
    column_runs = runs(band.mean(0) > 0.5, 2 * size)
    tiles = np.empty((len(row_runs), len(column_runs), size, size, 3), dtype=np.uint8)
    centre, off = (np.arange(size) + 0.5) / size, 0.25 / size    # of each pixel's block, as a share of the tile
    for r, (y, h) in enumerate(row_runs):
        for c, (x, w) in enumerate(column_runs):
            ys, xs = y + centre * h, x + centre * w
            sample = image[np.ix_(ys.astype(int), xs.astype(int))]
            for dy, dx in ((off, off), (-off, -off)):    # a quarter pixel off the centre reads the same block
                near = image[np.ix_((ys + dy * h).astype(int), (xs + dx * w).astype(int))]
                if not np.array_equal(near, sample):
                    raise SystemExit(f"{png}: tile ({r}, {c}) is not a nearest-neighbour image of {size} px")
            tiles[r, c] = sample
    return torch.from_numpy(tiles).permute(0, 1, 4, 2, 3).float() / 127.5 - 1


def stored_grid(grid_png: Path, config: benchmark.BenchmarkConfig) -> dict[str, torch.Tensor]:
    """{model: its grid images} of a stored benchmark: from grid_images.npz beside the figure, else read back from
    the figure as the benchmark drew it before it stored them (and then stored)."""
    stored = grid_png.with_name(benchmark.GRID_IMAGES)
    if stored.is_file():
        return benchmark.load_grid_images(stored)
    labels = [benchmark.SOURCE_LABEL, *dict.fromkeys(label for label, _ in config.runs())]
    images = grid_images(grid_png, zoo.source_model().config.image_size)   # the benchmark samples at its size
    if images.shape[1] != len(labels):
        raise SystemExit(f"{grid_png} shows {images.shape[1]} models, the stored benchmark has {len(labels)}")
    grid = dict(zip(labels, images.transpose(0, 1)))
    benchmark.save_grid_images(grid, stored)
    print(f"read {len(labels)} models x {images.shape[0]} images back from {grid_png}; stored them in {stored}")
    return grid


def main() -> int:
    stored = json.loads((RESULTS / "synthfaces_full" / "benchmark.json").read_text())
    config = benchmark_config(stored["config"])
    path = figures.save(benchmark.frontier_figure(stored["summary"], config),
                        RESULTS / "synthfaces_full" / "frontier.png")
    print(f"redrew {path}")
    grid_png = RESULTS / "synthfaces_full" / "grid.png"
    grid = stored_grid(grid_png, config)
    path = figures.save(figures.row_grid(grid, benchmark.GRID_TITLE), grid_png)
    print(f"redrew {path} ({len(grid)} models x {len(next(iter(grid.values())))} images)")
    rivals = json.loads((RESULTS / "synthfaces_frontier" / "frontier.json").read_text())
    path = figures.save(frontier.frontier_figure(rivals), RESULTS / "synthfaces_frontier" / "frontier.png")
    print(f"redrew {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
