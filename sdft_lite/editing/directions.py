"""Edit directions for Asyrp: what "moving from source to target" means, as a loss L_dir ∈ [0, 2] per pair.

Every direction has the same form as DiffusionCLIP's directional CLIP loss (Kim et al. 2022; Gal et al. 2022, StyleGAN-NADA): an embedding
E, a fixed target direction ΔT in E's space, and, per image pair, the unit change ΔI of the embedding from
the source image to the edited one:

  L_dir(x_src, x_edit) = 1 − cos(ΔI, ΔT),   ΔI = n(n(E(x_edit)) − n(E(x_src)))   (n = L2 normalisation)

* :class:`ClipDirection`: E = CLIP's image encoder (or SynthCLIP's, ``sdft_lite.synthfaces.synthclip``, whose
  directions are named "synthclip:…", never "clip:…"), ΔT = the template-averaged text direction (the formula of
  :mod:`sdft_lite.metrics.clip_direction`, reused here with gradients). ``l1_factor`` = cos(E_T(src), E_T(trg)),
  the factor Asyrp multiplies λ_L1 by.
* :class:`ClassifierDirection`: E = one head's *centred* logits (logits minus their mean, which removes the
  softmax's free additive constant), ΔT = n(e_trg − e_src). It needs a head with at least 3 classes: with 2,
  the centred logits live on a line, ΔI is ±ΔT and L_dir jumps between 0 and 2 with no gradient.
  ``l1_factor`` = 1. With ``all_heads=True`` E is every head's centred logits side by side and ΔT is nonzero
  only in the edited head's block, so a change of another attribute (skin, hair) turns ΔI away from ΔT and
  costs what it should; with one head such a change is invisible to the loss.

Each direction has a ``name`` ("clip:face→smiling face", "classifier:expression neutral→smile") that every
result, file and printed line of the editing code carries.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Mapping, Protocol, Sequence

import torch
import torch.nn.functional as F

from ..checkpoint import MissingWeightsError
from ..metrics.clip_direction import IMAGENET_TEMPLATES, image_direction, text_direction


class Direction(ABC):
    """An edit direction: ``loss(x_src, x_edit) -> [B]`` (L_dir ∈ [0, 2]), a ``name`` and Asyrp's ``l1_factor``."""

    name: str
    l1_factor: float = 1.0

    @abstractmethod
    def loss(self, x_src: torch.Tensor, x_edit: torch.Tensor) -> torch.Tensor:
        """x_src, x_edit: [B, 3, H, W] in [−1, 1] (x_edit may be unclipped) → L_dir: [B]."""

    def similarity(self, x_src: torch.Tensor, x_edit: torch.Tensor) -> torch.Tensor:
        """S_dir = 1 − L_dir: [B] (the DiffusionCLIP metric for a CLIP direction)."""
        return 1 - self.loss(x_src, x_edit)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def unit_change(embed_src: torch.Tensor, embed_edit: torch.Tensor) -> torch.Tensor:
    """ΔI: [B, D] = n(n(E_edit) − n(E_src)) (zero where the two embeddings coincide)."""
    return F.normalize(F.normalize(embed_edit, dim=-1) - F.normalize(embed_src, dim=-1), dim=-1)


# ---------------------------------------------------------------------------------------------------------------
# CLIP


class ClipEncodersLike(Protocol):
    def encode_image(self, x: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, texts: list[str]) -> torch.Tensor: ...


class ClipDirection(Direction):
    """DiffusionCLIP's directional CLIP loss between ``src_text`` and ``trg_text``.

    ``clip_model``: any object with ``encode_image(x: [B, 3, H, W] in [−1, 1]) -> [B, D]`` (differentiable, for
    training) and ``encode_text(list[str]) -> [N, D]``; see :class:`DifferentiableClip` for OpenAI CLIP.
    """

    def __init__(self, src_text: str, trg_text: str, clip_model: ClipEncodersLike | None = None,
                 templates: Sequence[str] = IMAGENET_TEMPLATES):
        if clip_model is None:
            raise MissingWeightsError(
                "CLIP image and text encoders for the directional loss",
                "OpenAI CLIP ViT-B/32 or ViT-B/16 (https://github.com/openai/CLIP); load them with "
                "sdft_lite.editing.directions.DifferentiableClip(ClipEncoders.from_file('ViT-B/32'))",
                "~/.cache/clip/ViT-B-32.pt (OpenAI clip's cache), or pass any object with encode_image/encode_text")
        self.clip_model, self.src_text, self.trg_text = clip_model, src_text, trg_text
        self.name = f"{encoder_kind(clip_model)}:{src_text}→{trg_text}"
        with torch.no_grad():
            self.text_direction = text_direction(clip_model.encode_text, src_text, trg_text, templates).float()
            plain = F.normalize(clip_model.encode_text([src_text, trg_text]).double(), dim=-1)
        self.l1_factor = float(plain[0] @ plain[1])

    def loss(self, x_src: torch.Tensor, x_edit: torch.Tensor) -> torch.Tensor:
        delta_i = image_direction(self.clip_model.encode_image, x_src, x_edit)
        result = 1 - delta_i @ self.text_direction.to(delta_i)
        if x_edit.requires_grad and not result.requires_grad:
            raise RuntimeError(f"{self.name}: the image encoder returned no gradient (is encode_image under "
                               "torch.no_grad?); Asyrp training needs a differentiable encoder, e.g. "
                               "DifferentiableClip(ClipEncoders.from_file(...))")
        return result.to(x_edit.dtype)


def encoder_kind(encoders) -> str:
    """"synthclip" for the package's SynthFaces image–text model, "clip" for anything else (OpenAI CLIP)."""
    return "synthclip" if getattr(encoders, "name", "") == "synthclip" else "clip"


class DifferentiableClip:
    """Wrap :class:`sdft_lite.metrics.clip_direction.ClipEncoders` so that ``encode_image`` keeps gradients
    (ClipEncoders' own methods run under no_grad, right for the metric, wrong for training)."""

    def __init__(self, encoders):
        self.encoders, self.name = encoders, getattr(encoders, "name", "clip")

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoders.model.encode_image(self.encoders.preprocess(x.to(self.encoders.device)))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.encoders.encode_text(texts)


# ---------------------------------------------------------------------------------------------------------------
# Classifier


Classifier = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]  # x → {head: logits [B, K]}


class ClassifierDirection(Direction):
    """The direction src_class → trg_class in one head's centred-logit space (any callable x → {head: [B, K]}).

    ``class_names``: names of the head's classes for the direction's name (default: their indices).
    """

    def __init__(self, classifier: Classifier, head: str, src_class: int, trg_class: int,
                 class_names: Sequence[str] | None = None, num_classes: int | None = None, all_heads: bool = False):
        if src_class == trg_class:
            raise ValueError("source and target class must differ")
        self.classifier, self.head, self.src_class, self.trg_class = classifier, head, src_class, trg_class
        self.all_heads = all_heads
        names = list(class_names) if class_names is not None else None
        self.num_classes = num_classes or (len(names) if names else None)
        if self.num_classes is not None:
            self._check_classes(self.num_classes)
        src_name = names[src_class] if names else str(src_class)
        trg_name = names[trg_class] if names else str(trg_class)
        self.name = f"classifier:{head} {src_name}→{trg_name}" + (" (all heads)" if all_heads else "")

    def _check_classes(self, num_classes: int) -> None:
        if num_classes < 3:
            raise ValueError(f"head {self.head!r} has {num_classes} classes; a classifier direction needs at least 3 "
                             "(with 2 the centred logits lie on a line and L_dir has no useful gradient)")
        for c in (self.src_class, self.trg_class):
            if not 0 <= c < num_classes:
                raise ValueError(f"class {c} is not one of head {self.head!r}'s {num_classes} classes")

    def heads(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{head: centred logits [B, K_head]}: the edited head alone, or every head in sorted order."""
        logits = self.classifier(x)
        names = sorted(logits) if self.all_heads else [self.head]
        return {name: logits[name] - logits[name].mean(dim=-1, keepdim=True) for name in names}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """E(x): [B, ΣK], the heads' centred logits side by side (one head: [B, K])."""
        return torch.cat(list(self.heads(x).values()), dim=-1)

    def target_direction(self, sizes: Mapping[str, int], like: torch.Tensor) -> torch.Tensor:
        """ΔT: [ΣK], n(e_trg − e_src) in the edited head's block, 0 in the others."""
        blocks = []
        for name, size in sizes.items():
            block = torch.zeros(size, dtype=like.dtype, device=like.device)
            if name == self.head:
                block[self.trg_class], block[self.src_class] = 1.0, -1.0
            blocks.append(block)
        return F.normalize(torch.cat(blocks), dim=0)

    def loss(self, x_src: torch.Tensor, x_edit: torch.Tensor) -> torch.Tensor:
        heads = self.heads(x_src)
        if self.num_classes is None:
            self._check_classes(heads[self.head].shape[-1])
        embed_src, embed_edit = torch.cat(list(heads.values()), dim=-1), self.embed(x_edit)
        sizes = {name: value.shape[-1] for name, value in heads.items()}
        return 1 - unit_change(embed_src, embed_edit) @ self.target_direction(sizes, embed_src)
