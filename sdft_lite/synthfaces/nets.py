"""The small CNN behind both SynthFaces instruments, and the plumbing to feed it rendered batches.

ConvNet: a stem and three stride-2 stages (32 px → 4 px), global average pooling → a feature vector.
Batches are rendered on the fly: on a GPU, DataLoader workers render in parallel; on a CPU, in-process.
"""
from __future__ import annotations

import os
import zlib
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ConvNet(nn.Module):
    """x: [B, 3, H, W] in [-1, 1] → features [B, 4·width]. Works at any H, W (global pooling)."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.stem = conv_block(3, width)
        stages, c = [], width
        for c_out in (width, 2 * width, 4 * width):
            stages += [conv_block(c, c_out, stride=2), conv_block(c_out, c_out)]
            c = c_out
        self.stages = nn.Sequential(*stages)
        self.feature_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))


INPUT_RANGES = ("auto", "-1..1", "0..255")


def as_model_input(images, size: int, device: torch.device | str, input_range: str = "auto") -> torch.Tensor:
    """Any image batch → float [B, 3, size, size] in [-1, 1] on ``device``.

    Accepts torch or numpy, channels first or last. uint8 is read as 0…255. Floats are read as ``input_range``:
    "-1..1" (the package's convention), "0..255" (what clean-fid hands a custom extractor), or "auto"
    (0…255 when the batch's maximum exceeds 1.5). Other resolutions are resized (area down, bilinear up).
    """
    if input_range not in INPUT_RANGES:
        raise ValueError(f"input_range must be one of {INPUT_RANGES}, got {input_range!r}")
    x = torch.as_tensor(images)
    if x.ndim == 4 and x.shape[1] != 3 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        x = x.float() / 127.5 - 1.0
    else:
        x = x.float()
        wide = input_range == "0..255" or (input_range == "auto" and x.numel() and float(x.max()) > 1.5)
        x = x / 127.5 - 1.0 if wide else x
    x = x.to(device)
    if x.shape[-1] != size or x.shape[-2] != size:
        mode = "area" if x.shape[-1] > size else "bilinear"
        x = F.interpolate(x, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))
    return x


class BatchStream(torch.utils.data.IterableDataset):
    """Yields make_batch(step) for step = 0 … steps−1, split across DataLoader workers in step order.

    make_batch must be picklable (a module-level function or a functools.partial of one) and deterministic in step.
    """

    def __init__(self, make_batch: Callable[[int], tuple], steps: int):
        self.make_batch, self.steps = make_batch, steps

    def __iter__(self) -> Iterator[tuple]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for step in range(worker, self.steps, workers):
            yield self.make_batch(step)


def rendered_batches(make_batch: Callable[[int], tuple], steps: int, workers: int = 0) -> Iterator[tuple]:
    """Iterate over make_batch(0 … steps−1); with workers > 0, rendered in parallel processes (same order)."""
    if workers == 0:
        return (make_batch(step) for step in range(steps))
    loader = torch.utils.data.DataLoader(BatchStream(make_batch, steps), batch_size=None, num_workers=workers,
                                         persistent_workers=False, prefetch_factor=4, worker_init_fn=_one_thread)
    return iter(loader)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def default_workers(device: torch.device) -> int:
    """Rendering processes: none on a CPU (training shares the cores), most cores on a GPU machine."""
    if device.type != "cuda":
        return 0
    return max(1, min(16, (os.cpu_count() or 2) - 2))


def step_rng(seed: int, step: int, purpose: str) -> np.random.Generator:
    """A generator for one training step's augmentation draws, independent of the face draws."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(purpose.encode()), step)))
