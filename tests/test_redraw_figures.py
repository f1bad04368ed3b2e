"""bench/redraw_figures.py redraws a benchmark's sample grid from its stored images; a benchmark stored before it
kept them has them read back exactly from its old figure, once."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import redraw_figures  # noqa: E402

from sdft_lite.sample import make_grid, to_uint8  # noqa: E402


def old_style_grid(images: torch.Tensor, path: Path, interpolation: str) -> None:
    """images: [rows, columns, 3, H, W] in [-1, 1], drawn as the benchmark drew its grid: titled columns, a frame."""
    rows, columns = images.shape[:2]
    figure = Figure(figsize=(1.15 * columns + 0.4, 1.15 * rows + 0.8), layout="tight")
    ax = figure.subplots()
    ax.imshow(make_grid(images.flatten(0, 1), columns=columns), interpolation=interpolation)
    ax.set_xticks(range(columns), [f"model {i}" for i in range(columns)], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    figure.suptitle("rows: the same noise", fontsize=9)
    figure.savefig(path, dpi=110)


def test_a_grid_figures_images_are_read_back_exactly(tmp_path):
    images = torch.rand(3, 5, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    old_style_grid(images, tmp_path / "grid.png", "nearest")
    read = redraw_figures.grid_images(tmp_path / "grid.png", 32)
    assert read.shape == images.shape
    assert np.array_equal(to_uint8(read.flatten(0, 1)), to_uint8(images.flatten(0, 1)))   # every pixel, exactly


def test_a_smoothed_figure_is_refused(tmp_path):
    images = torch.rand(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    old_style_grid(images, tmp_path / "grid.png", "bilinear")
    with pytest.raises(SystemExit, match="not a nearest-neighbour image"):
        redraw_figures.grid_images(tmp_path / "grid.png", 32)


class TwoRunConfig:
    """Stands in for a stored benchmark's preset: the labels of its runs, in order."""

    def runs(self):
        return [("naive", None), ("SDFT", None), ("SDFT", None)]   # seeds repeat a label


def test_the_old_figure_is_read_once_then_the_stored_images_are_used(tmp_path, monkeypatch):
    images = torch.rand(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1   # 2 noises, 3 models
    old_style_grid(images, tmp_path / "grid.png", "nearest")
    grid = redraw_figures.stored_grid(tmp_path / "grid.png", TwoRunConfig())
    assert list(grid) == ["source", "naive", "SDFT"] and (tmp_path / "grid_images.npz").is_file()
    assert np.array_equal(to_uint8(grid["naive"]), to_uint8(images[:, 1]))
    (tmp_path / "grid.png").write_bytes(b"not a figure any more")   # a redrawn figure is never read back
    again = redraw_figures.stored_grid(tmp_path / "grid.png", TwoRunConfig())
    assert all(torch.equal(again[k], grid[k]) for k in grid)


def test_stored_grid_images_round_trip_at_uint8_precision(tmp_path):
    from sdft_lite.experiments.benchmark import load_grid_images, save_grid_images
    grid = {"source": torch.rand(4, 3, 8, 8) * 2 - 1, "SDFT λ=1": torch.rand(4, 3, 8, 8) * 2 - 1}
    back = load_grid_images(save_grid_images(grid, tmp_path / "g.npz"))
    assert list(back) == list(grid)
    assert all(np.array_equal(to_uint8(back[k]), to_uint8(grid[k])) for k in grid)
