"""Where each metric's pretrained weights live, and the one clear error when a file is missing.

No function in ``sdft_lite.metrics`` downloads anything: each metric first looks for its file with
:func:`find_weights`, and a missing file raises :class:`MissingWeightsError` naming the file, where it is
published and where to put it. Only then is the third-party loader called, and it finds the file in its
own cache, so it never reaches for the network either. It runs inside :func:`reading`: every ``torch.load``
in it is ``weights_only=True`` (torchvision's own loader is not), and a file it cannot load raises
:class:`UnreadableCheckpointError`, one line naming the file.

| metric        | file                         | looked up in (the first is where to put it)                 |
|---------------|------------------------------|-------------------------------------------------------------|
| FID / KID     | ``inception-2015-12-05.pt``  | clean-fid's cache (``/tmp``, ``./`` on Windows), SDFT home  |
| LPIPS (VGG)   | ``vgg16-397923af.pth``       | ``$TORCH_HOME/hub/checkpoints`` (torchvision's cache)       |
| LPIPS (Alex)  | ``alexnet-owt-7be5be79.pth`` | ``$TORCH_HOME/hub/checkpoints``                             |
| S_dir (CLIP)  | ``ViT-B-32.pt`` (OpenAI)     | ``~/.cache/clip`` (OpenAI ``clip``'s cache), SDFT home      |
| ID (ArcFace)  | ``model_ir_se50.pth``        | SDFT home                                                   |

SDFT home is ``$SDFT_LITE_HOME`` (default ``~/.cache/sdft_lite``, see ``sdft_lite.config.home``).

LPIPS's own linear layers ship inside the ``lpips`` wheel and need nothing.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

# the package-wide errors and loader guard, re-exported for the metrics
from sdft_lite.checkpoint import MissingWeightsError, UnreadableCheckpointError, reading  # noqa: F401
from sdft_lite.config import home


def cleanfid_cache_dir() -> Path:
    """clean-fid 0.1.35 hard-codes its Inception cache: ``/tmp`` (``./`` on Windows), not ``$TMPDIR``."""
    return Path("./") if platform.system() == "Windows" else Path("/tmp")


def torch_hub_checkpoints_dir() -> Path:
    """torchvision's weight cache, ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def openai_clip_cache_dir() -> Path:
    """Where OpenAI's ``clip`` package keeps its downloads: ``~/.cache/clip``."""
    return Path(os.path.expanduser("~/.cache/clip"))


@dataclass(frozen=True)
class WeightFile:
    """One pretrained file: what needs it, where it is published, and the folders searched (first = where to put it)."""

    what: str
    filename: str
    source: str
    search_dirs: Callable[[], tuple[Path, ...]]

    def missing_error(self, searched: tuple[Path, ...] | None = None) -> MissingWeightsError:
        """The error naming this file, its source and ``search_dirs()[0]`` as the place to put it."""
        dirs = self.search_dirs()
        searched = searched if searched is not None else tuple(d / self.filename for d in dirs)
        return MissingWeightsError(
            what=f"{self.filename}, needed by {self.what}",
            where_to_get=self.source,
            where_to_put=f"{dirs[0] / self.filename} (nothing is downloaded: sdft_lite never fetches weights)",
            searched=searched,
        )


INCEPTION = WeightFile(
    what="FID/KID (clean-fid 'clean' mode, NVIDIA's TorchScript Inception-v3)",
    filename="inception-2015-12-05.pt",
    source="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
    search_dirs=lambda: (cleanfid_cache_dir(), home()),
)

LPIPS_BACKBONES = {
    "vgg": WeightFile(
        what="LPIPS (VGG-16 trunk, as SDFT uses)",
        filename="vgg16-397923af.pth",
        source="https://download.pytorch.org/models/vgg16-397923af.pth (torchvision's ImageNet VGG-16)",
        search_dirs=lambda: (torch_hub_checkpoints_dir(),),
    ),
    "alex": WeightFile(
        what="LPIPS (AlexNet trunk)",
        filename="alexnet-owt-7be5be79.pth",
        source="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth (torchvision's ImageNet AlexNet)",
        search_dirs=lambda: (torch_hub_checkpoints_dir(),),
    ),
}


def clip_weight_file(model_name: str = "ViT-B/32") -> WeightFile:
    """OpenAI's CLIP checkpoint for ``model_name`` ('ViT-B/32' -> 'ViT-B-32.pt'), the file ``clip.load`` caches."""
    stem = model_name.replace("/", "-")
    return WeightFile(
        what=f"S_dir (OpenAI CLIP {model_name})",
        filename=stem + ".pt",
        source=_openai_clip_url(stem),
        search_dirs=lambda: (openai_clip_cache_dir(), home()),
    )


def _openai_clip_url(stem: str) -> str:
    """The published URL of OpenAI's ``stem``.pt, read from open_clip's table (no network), if it knows it."""
    fallback = f"the URL listed for '{stem}' in github.com/openai/CLIP clip/clip.py (_MODELS)"
    try:
        import open_clip
    except ImportError:
        return fallback
    return open_clip.get_pretrained_url(stem, "openai") or fallback


ARCFACE = WeightFile(
    what="identity similarity (ArcFace IR-SE50)",
    filename="model_ir_se50.pth",
    source="TreB1eN/InsightFace_Pytorch README, 'IR-SE50 @ Onedrive' (also linked from the DiffusionCLIP README)",
    search_dirs=lambda: (home(),),
)


def find_weights(weight: WeightFile, explicit: str | os.PathLike | None = None) -> Path:
    """Path of ``weight`` if present (``explicit`` first, then its search folders), else raise MissingWeightsError."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_file():
            return path
        raise weight.missing_error(searched=(path,))
    for folder in weight.search_dirs():
        candidate = folder / weight.filename
        if candidate.is_file():
            return candidate
    raise weight.missing_error()
