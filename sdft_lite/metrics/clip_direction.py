"""Directional CLIP similarity S_dir (DiffusionCLIP, Kim et al. CVPR 2022), the metric of SDFT's Asyrp study.

With n(v) = v / ‖v‖, an image encoder E_I and a text encoder E_T (the directional loss of StyleGAN-NADA, Gal et al. 2022):

  ΔT    = n( mean_k [ n(E_T(t_k(target))) − n(E_T(t_k(source))) ] )   t_k: the 79 ImageNet prompt templates
  ΔI    = n( n(E_I(x_edit)) − n(E_I(x_src)) )                           one direction per image pair
  S_dir = cos(ΔI, ΔT), averaged over the pairs (= 1 − L_dir, the directional loss Asyrp trains with).

The formula is written against ANY pair of encoders (``encode_image(x: [B, 3, H, W] in [-1, 1]) -> [B, D]``,
``encode_text(list[str]) -> [N, D]``); :class:`ClipEncoders` supplies OpenAI's CLIP, loaded by ``open_clip``
from the checkpoint file that OpenAI's ``clip.load`` caches (``~/.cache/clip/ViT-B-32.pt``), and only when it is
on disk. Which CLIP SDFT used is UNVERIFIED (Asyrp's main.py defaults to ViT-B/16, SDFT's copy of clip_loss.py to
ViT-B/32); ViT-B/32 is the default here.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch
import torch.nn.functional as F

from sdft_lite.config import pick_device
from sdft_lite.metrics.weights import clip_weight_file, find_weights, reading

# CLIP's 80 ImageNet prompt templates (openai/CLIP notebooks/Prompt_Engineering_for_ImageNet.ipynb) without
# 'a photo of many {}.': the 79-template list that StyleGAN-NADA, DiffusionCLIP and Asyrp (utils/text_templates.py,
# `imagenet_templates`) average over.
IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)

ImageEncoder = Callable[[torch.Tensor], torch.Tensor]  # x: [B, 3, H, W] in [-1, 1] -> [B, D]
TextEncoder = Callable[[list[str]], torch.Tensor]  # N strings -> [N, D]


class Encoders(Protocol):
    """What S_dir needs: a name, an image encoder and a text encoder into one embedding space."""

    name: str

    def encode_image(self, x: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, texts: list[str]) -> torch.Tensor: ...


# ---------------------------------------------------------------------------------------------------------------
# The formula


def text_direction(encode_text: TextEncoder, source_text: str, target_text: str,
                   templates: Sequence[str] = IMAGENET_TEMPLATES) -> torch.Tensor:
    """ΔT: [D], the unit mean of per-template differences of unit text embeddings (target − source)."""
    source = F.normalize(encode_text([t.format(source_text) for t in templates]).double(), dim=-1)
    target = F.normalize(encode_text([t.format(target_text) for t in templates]).double(), dim=-1)
    return F.normalize((target - source).mean(dim=0), dim=0)


def image_direction(encode_image: ImageEncoder, x_src: torch.Tensor, x_edit: torch.Tensor) -> torch.Tensor:
    """ΔI: [B, D], per pair the unit difference of unit image embeddings (edit − source)."""
    source = F.normalize(encode_image(x_src).double(), dim=-1)
    edited = F.normalize(encode_image(x_edit).double(), dim=-1)
    return F.normalize(edited - source, dim=-1)


@torch.no_grad()
def sdir_scores(encoders: Encoders, x_src: torch.Tensor, x_edit: torch.Tensor,
                delta_t: torch.Tensor) -> torch.Tensor:
    """S_dir per pair, cos(ΔI, ΔT), for x_src, x_edit: [B, 3, H, W] in [-1, 1] and ΔT: [D] -> [B] float64."""
    delta_i = image_direction(encoders.encode_image, x_src, x_edit)
    return (delta_i @ delta_t.to(delta_i.device)).cpu()


@torch.no_grad()
def directional_similarity(encoders: Encoders, x_src: torch.Tensor, x_edit: torch.Tensor, source_text: str,
                           target_text: str, templates: Sequence[str] = IMAGENET_TEMPLATES,
                           batch_size: int = 32) -> torch.Tensor:
    """S_dir per pair for x_src, x_edit: [N, 3, H, W] in [-1, 1] -> [N] float64 (ΔT computed once)."""
    delta_t = text_direction(encoders.encode_text, source_text, target_text, templates)
    return torch.cat([sdir_scores(encoders, x_src[i:i + batch_size], x_edit[i:i + batch_size], delta_t)
                      for i in range(0, len(x_src), batch_size)])


@dataclass(frozen=True)
class SdirResult:
    """Mean S_dir over N pairs, the encoder and the text pair behind it."""

    s_dir: float
    encoder: str
    source_text: str
    target_text: str
    n: int

    @property
    def value(self) -> float:
        return self.s_dir

    def comparable_with(self, other: object) -> bool:
        return isinstance(other, SdirResult) and (other.encoder, other.source_text, other.target_text) == (
            self.encoder, self.source_text, self.target_text)


def compute_sdir(x_src: torch.Tensor, x_edit: torch.Tensor, source_text: str, target_text: str,
                 encoders: Encoders | None = None, model_name: str = "ViT-B/32",
                 device: str | torch.device | None = None) -> SdirResult:
    """Mean S_dir; loads OpenAI CLIP ``model_name`` (file must be on disk) unless ``encoders`` is given."""
    if x_src.shape != x_edit.shape:
        raise ValueError(f"S_dir needs pairs of equal shape, got {tuple(x_src.shape)} and {tuple(x_edit.shape)}")
    encoders = encoders if encoders is not None else ClipEncoders.from_file(model_name, device=device)
    scores = directional_similarity(encoders, x_src, x_edit, source_text, target_text)
    return SdirResult(float(scores.mean()), encoders.name, source_text, target_text, len(scores))


# ---------------------------------------------------------------------------------------------------------------
# OpenAI CLIP, loaded offline by open_clip

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipEncoders:
    """OpenAI CLIP as (encode_image, encode_text), with CLIP's preprocessing applied to [-1, 1] tensors.

    Image preprocessing (as DiffusionCLIP/Asyrp do on tensors): [-1, 1] -> [0, 1], bicubic resize of the
    shorter side to the model resolution (antialiased, like CLIP's PIL resize), centre crop, CLIP mean/std.
    """

    def __init__(self, model: torch.nn.Module, name: str):
        self.model = model.eval()
        self.name = name
        size = model.visual.image_size
        self.resolution = size[0] if isinstance(size, (tuple, list)) else int(size)
        self.device = next(model.parameters()).device

    @classmethod
    def from_file(cls, model_name: str = "ViT-B/32", path: str | Path | None = None,
                  device: str | torch.device | None = None) -> "ClipEncoders":
        """Load OpenAI's checkpoint (JIT archive or state dict) for ``model_name`` from disk; never downloads."""
        import open_clip

        checkpoint = find_weights(clip_weight_file(model_name), explicit=path)
        device = pick_device(str(device) if device is not None else None)
        with reading(checkpoint, f"Get it again from {clip_weight_file(model_name).source}"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.load deprecation notice
            model = open_clip.load_openai_model(str(checkpoint), precision="fp32", device=device)
        return cls(model, f"openai-clip-{model_name}")

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] in [-1, 1] -> CLIP input [B, 3, R, R]."""
        x = ((x.float() + 1) / 2).clamp(0, 1)
        h, w = x.shape[-2:]
        scale = self.resolution / min(h, w)
        new_h, new_w = max(self.resolution, round(h * scale)), max(self.resolution, round(w * scale))
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
        top, left = (new_h - self.resolution) // 2, (new_w - self.resolution) // 2
        x = x[..., top:top + self.resolution, left:left + self.resolution]
        mean = torch.tensor(OPENAI_CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(OPENAI_CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(self.preprocess(x.to(self.device)))

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        import open_clip

        return self.model.encode_text(open_clip.tokenize(texts).to(self.device))
