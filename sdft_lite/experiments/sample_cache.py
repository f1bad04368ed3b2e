"""Computed images on disk, keyed by everything that determines them: the model's weights, the sampler's
settings, the device type and the torch version.

Chapters 4, 7 and 8 sample the same source, scratch, naive and SDFT models from the same shared noises; the first
chapter to run computes the samples and the others load them. The key holds a digest of the weights themselves,
not the model's name, so a retrained model (``FORCE_TRAIN=1``, another seed) can never be handed the samples of
another. ``SDFT_SAMPLE_CACHE=0`` turns the cache off.

    images = cached_images("samples", model, {"num": 128, "steps": "ddim20", "seed": 1234}, device,
                           compute=lambda: generate(model, 128, 32, "ddim20", seed=1234))
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import torch

from ..checkpoint import save_atomic
from .zoo import cache_dir


def cache_enabled() -> bool:
    """False when ``SDFT_SAMPLE_CACHE`` is 0/false/no/off."""
    return os.environ.get("SDFT_SAMPLE_CACHE", "1").strip().lower() not in {"0", "false", "no", "off"}


def tensor_digest(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes."""
    return _digest_tensors({"": tensor})


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of the state dict: every name, dtype, shape and byte."""
    return _digest_tensors(model.state_dict())


def _digest_tensors(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name, tensor in tensors.items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)   # 0-dim tensors too
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_path(kind: str, model: torch.nn.Module, settings: dict, device: torch.device | str) -> Path:
    """Where ``cached_images`` keeps the images of this model, these settings and this kind of device."""
    key = json.dumps({"kind": kind, "weights": weights_digest(model), "settings": settings,
                      "device": torch.device(device).type, "torch": torch.__version__}, sort_keys=True)
    return cache_dir() / "samples" / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.pt"


def cached_images(kind: str, model: torch.nn.Module, settings: dict, device: torch.device | str,
                  compute: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, bool]:
    """(images, loaded): ``compute()`` the first time, the file written then on later calls.

    ``settings`` must name every input of ``compute`` other than the model (JSON-serialisable). Files are written
    atomically; one that cannot be read back as a tensor is recomputed and replaced.
    """
    if not cache_enabled():
        return compute(), False
    path = cache_path(kind, model, settings, device)
    if path.exists():
        try:
            images = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(images, torch.Tensor):
                return images, True
        except Exception:   # unreadable: recompute below
            pass
    images = compute()
    save_atomic(images.cpu(), path)
    return images, False
