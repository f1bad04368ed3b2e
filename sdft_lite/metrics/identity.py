"""Identity similarity with ArcFace IR-SE50 (Deng et al. 2019; backbone of TreB1eN/InsightFace_Pytorch).

The face-editing lineage SDFT follows (DiffusionCLIP / Asyrp ``losses/id_loss.py``) measures how much of a
person survives an edit as the cosine of two ArcFace embeddings:

  crop x[:, :, 35:223, 32:220] of the 256-px image (the face region) -> adaptive-avg-pool to 112 x 112
  -> IR-SE50 -> 512-d embedding, L2-normalised -> ID = <e(x_src), e(x_edit)>

Which identity model SDFT used is UNVERIFIED (the paper does not name it). The network below is written from the
published architecture so that ``model_ir_se50.pth`` loads with ``strict=True``:

  input_layer   Conv3x3(3->64, no bias), BN, PReLU(64)                           keys input_layer.{0,1,2}.*
  body          24 bottleneck_IR_SE units, stages of [3, 4, 14, 3] units with depths [64, 128, 256, 512];
                the first unit of each stage has stride 2                          keys body.{0..23}.*
    unit        res_layer: BN(in), Conv3x3(in->d), PReLU(d), Conv3x3(d->d, stride), BN(d), SE(d, reduction 16)
                shortcut_layer: MaxPool(1, stride) if in == d, else Conv1x1(in->d, stride) + BN(d)
    SE          global avg-pool, Conv1x1(d->d/16, no bias) 'fc1', ReLU, Conv1x1(d/16->d, no bias) 'fc2', sigmoid
  output_layer  BN2d(512), Dropout(0.6), Flatten, Linear(512·7·7 -> 512), BN1d(512)  keys output_layer.{0,3,4}.*

Key names follow TreB1eN's ``model.py`` as read in its source; they were not checked against the published file
itself (not available here). Inputs are RGB in [-1, 1], the range the id losses feed it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sdft_lite.config import pick_device
from sdft_lite.metrics.weights import ARCFACE, find_weights, reading

IRSE50_STAGES = ((64, 3), (128, 4), (256, 14), (512, 3))  # (depth, units) per stage
FACE_CROP = (slice(35, 223), slice(32, 220))  # rows, columns of a 256-px aligned face
ARCFACE_INPUT = 112


class SqueezeExcite(nn.Module):
    """Channel gating: x · sigmoid(fc2(relu(fc1(avgpool(x))))). x: [B, C, H, W]."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(gate)


class BottleneckIRSE(nn.Module):
    """Improved-residual unit with squeeze-excitation: res_layer(x) + shortcut_layer(x)."""

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(kernel_size=1, stride=stride)  # identity, subsampled
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, kernel_size=3, stride=1, padding=1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(depth),
            SqueezeExcite(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRSE50(nn.Module):
    """ArcFace IR-SE50 backbone. x: [B, 3, 112, 112] in [-1, 1] -> unit embeddings [B, 512]."""

    def __init__(self, drop_ratio: float = 0.6):
        super().__init__()
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units, in_channels = [], 64
        for depth, num_units in IRSE50_STAGES:
            for i in range(num_units):
                units.append(BottleneckIRSE(in_channels, depth, stride=2 if i == 0 else 1))
                in_channels = depth
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512), nn.Dropout(drop_ratio), nn.Flatten(),
            nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(self.input_layer(x))  # [B, 512, 7, 7]
        return F.normalize(self.output_layer(features), dim=1)


def face_crop(x: torch.Tensor) -> torch.Tensor:
    """x: [B, 3, H, W] in [-1, 1] -> the ArcFace input [B, 3, 112, 112] (resize to 256 if needed, crop, pool)."""
    if x.shape[-2:] != (256, 256):
        x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
    rows, cols = FACE_CROP
    return F.adaptive_avg_pool2d(x[:, :, rows, cols], ARCFACE_INPUT)


def load_arcface(path: str | Path | None = None, device: str | torch.device | None = None) -> IRSE50:
    """IR-SE50 with ``model_ir_se50.pth`` loaded strictly (explicit path, else $SDFT_LITE_HOME); eval mode."""
    checkpoint = find_weights(ARCFACE, explicit=path)
    model = IRSE50()
    with reading(checkpoint, f"Pass model_ir_se50.pth ({ARCFACE.source})"):
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
    model.sdft_name = f"arcface-ir-se50 ({checkpoint.name})"  # names every result computed with it
    return model.to(pick_device(str(device) if device is not None else None)).eval()


@torch.no_grad()
def identity_similarities(model: IRSE50, x: torch.Tensor, y: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Per-pair cosine of ArcFace embeddings of x, y: [N, 3, H, W] in [-1, 1] -> [N] float64 (CPU)."""
    if x.shape != y.shape:
        raise ValueError(f"identity similarity needs pairs of equal shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(x), batch_size):
        ex = model(face_crop(x[start:start + batch_size].to(device, torch.float32)))
        ey = model(face_crop(y[start:start + batch_size].to(device, torch.float32)))
        out.append((ex * ey).sum(dim=1).double().cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class IdentityResult:
    """Mean ArcFace cosine similarity over N pairs."""

    identity: float
    model: str
    n: int

    @property
    def value(self) -> float:
        return self.identity

    def comparable_with(self, other: object) -> bool:
        return isinstance(other, IdentityResult) and other.model == self.model


def compute_identity(x: torch.Tensor, y: torch.Tensor, weights: str | Path | None = None,
                     device: str | torch.device | None = None, model: IRSE50 | None = None) -> IdentityResult:
    """Mean identity similarity between x and y: [N, 3, H, W] in [-1, 1] (loads the weights unless ``model``)."""
    model = model if model is not None else load_arcface(weights, device)
    scores = identity_similarities(model, x, y)
    name = getattr(model, "sdft_name", "arcface-ir-se50 (weights of unknown origin)")
    return IdentityResult(float(scores.mean()), name, len(scores))
