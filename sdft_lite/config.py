"""Run-time settings read from the environment: quick mode, device, precision, seeds.

``SDFT_QUICK=1`` switches every chapter and the demo to a CPU-sized run (tiny resolution, few steps, few
images); CI always sets it. Unset, it is quick on a CPU and full on a GPU; ``SDFT_QUICK=0`` forces full mode.
``SDFT_LITE_HOME`` is where weights and shipped assets are looked up (default ``~/.cache/sdft_lite``).
"""
from __future__ import annotations

import os
import platform
import random
from pathlib import Path

import numpy as np
import torch


def quick_mode() -> bool:
    """The CPU-sized quick mode of the book and the demo: as ``SDFT_QUICK`` says when it is set (1/true/yes/on or
    0/false/no/off), else exactly when no CUDA GPU is available, so that a chapter opened on a CPU (a laptop,
    Colab's default runtime) runs its quick version unless ``SDFT_QUICK=0`` asks for the full one."""
    value = os.environ.get("SDFT_QUICK", "").strip().lower()
    if value:
        return value in {"1", "true", "yes", "on"}
    return not torch.cuda.is_available()


def home() -> Path:
    """Directory for weights and caches: ``$SDFT_LITE_HOME`` or ``~/.cache/sdft_lite``."""
    return Path(os.environ.get("SDFT_LITE_HOME", Path.home() / ".cache" / "sdft_lite"))


def pick_device(preferred: str | None = None) -> torch.device:
    """``preferred`` if given, else CUDA when available, else CPU."""
    if preferred:
        return torch.device(preferred)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_precision(device: torch.device) -> torch.dtype:
    """Autocast dtype for training: bf16 where the GPU supports it, fp16 on older GPUs (T4), fp32 on CPU."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA). Bit-exact results across CPU and GPU are not promised."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def hardware() -> str:
    """One line naming the hardware: the GPU model or the CPU and its core count."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    return f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()} (torch {torch.__version__})"


def mode_banner() -> str:
    """What a chapter prints first: the mode and the hardware."""
    return f"mode={'quick' if quick_mode() else 'full'} hardware={hardware()}"
