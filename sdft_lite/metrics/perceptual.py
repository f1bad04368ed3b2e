"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, with the VGG-16 trunk that SDFT uses.

The authors call ``lpips.LPIPS(net='vgg')`` (library default: AlexNet). The calibrated metric needs two parts:
the linear layers, shipped inside the ``lpips`` wheel, and torchvision's ImageNet trunk, which torchvision
fetches into ``$TORCH_HOME/hub/checkpoints`` on first use. Here the trunk file is checked first and a missing
one raises :class:`MissingWeightsError`; torchvision then finds it in its cache and never downloads.

``backbone="random"`` builds the same network with a seeded random trunk (``pnet_rand=True``). That is NOT
the calibrated metric, only a way to exercise the code offline; every result built with it says so in its name.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from sdft_lite.config import pick_device
from sdft_lite.metrics.weights import LPIPS_BACKBONES, find_weights, reading

BACKBONES = ("imagenet", "random")


@dataclass(frozen=True)
class LPIPSResult:
    """Mean LPIPS over N pairs and the network that produced it."""

    lpips: float
    net: str  # "vgg" or "alex"
    backbone: str  # "imagenet" (the metric) or "random" (tests only)
    n: int

    @property
    def value(self) -> float:
        return self.lpips

    @property
    def calibrated(self) -> bool:
        return self.backbone == "imagenet"

    @property
    def model_name(self) -> str:
        return lpips_model_name(self.net, self.backbone)

    def comparable_with(self, other: object) -> bool:
        return isinstance(other, LPIPSResult) and other.model_name == self.model_name


def lpips_model_name(net: str, backbone: str) -> str:
    """The name every LPIPS number carries: ``lpips-vgg``, or with a random trunk, a name that says so."""
    name = f"lpips-{net}"
    return name if backbone == "imagenet" else f"{name}[RANDOM TRUNK: not the calibrated metric]"


def build_lpips(net: str = "vgg", backbone: str = "imagenet", device: str | torch.device | None = None,
                seed: int = 0):
    """An ``lpips.LPIPS`` module in eval mode. ``backbone="imagenet"`` needs torchvision's trunk file on disk."""
    import lpips

    if net not in LPIPS_BACKBONES:
        raise ValueError(f"LPIPS net must be one of {sorted(LPIPS_BACKBONES)}, got '{net}'")
    if backbone not in BACKBONES:
        raise ValueError(f"LPIPS backbone must be one of {BACKBONES}, got '{backbone}'")
    trunk = find_weights(LPIPS_BACKBONES[net]) if backbone == "imagenet" else None  # before torchvision could download
    own = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"  # LPIPS's linear layers, in its wheel
    with reading(trunk or own), warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.filterwarnings("ignore", message=".*(pretrained|weights).*", category=UserWarning)
        torch.manual_seed(seed)  # only matters for the random trunk
        model = lpips.LPIPS(net=net, pnet_rand=(backbone == "random"), verbose=False)
    model.sdft_labels = (net, backbone)  # read back by compute_lpips, so a result always names its trunk
    return model.to(pick_device(str(device) if device is not None else None)).eval()


@torch.no_grad()
def lpips_distances(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Per-pair LPIPS of x, y: [N, 3, H, W] in [-1, 1] -> [N] float32 (CPU)."""
    if x.shape != y.shape:
        raise ValueError(f"LPIPS needs pairs of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device, torch.float32)
        yb = y[start:start + batch_size].to(device, torch.float32)
        out.append(model(xb, yb).flatten().cpu())
    return torch.cat(out)


def compute_lpips(x: torch.Tensor, y: torch.Tensor, net: str = "vgg", backbone: str = "imagenet",
                  device: str | torch.device | None = None, batch_size: int = 16, model=None) -> LPIPSResult:
    """Mean LPIPS between x and y: [N, 3, H, W] in [-1, 1].

    Pass ``model`` (from :func:`build_lpips`) to reuse one network; its own net/backbone then name the result.
    """
    model = model if model is not None else build_lpips(net, backbone, device)
    net, backbone = model.sdft_labels
    distances = lpips_distances(model, x, y, batch_size)
    return LPIPSResult(float(distances.double().mean()), net, backbone, len(distances))
