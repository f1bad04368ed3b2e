"""Captions of SynthFaces written from their exact labels, and SynthCLIP's word tokenizer.

A caption is a template (the style word is a mention: "a photo of {}" says photo, "a portrait of {}" and
"a painting of {}" say portrait, "{}" and "a picture of {}" say nothing) around a subject ("a face", or an
expression phrase such as "a smiling face") and attribute phrases ("with glasses", "with red hair"). Each
attribute is mentioned with probability ``mention_prob`` (random attribute dropout), so the same face is seen
under "a face", "a photo of a face with glasses", "a laughing face with dark skin and red hair", ...

Every caption comes with a record of what it says: one level per attribute of ``ATTRIBUTES``, or UNMENTIONED.
A record never contradicts the face it was written for; :func:`compatibility` says which faces a record is
true of, the multiple positives of the contrastive loss (UniCL, Yang et al. 2022).

The tokenizer's vocabulary is every word of these tables (lower-case, punctuation dropped) plus <pad>, <unk>,
<eos>: SynthCLIP reads no other word, and :meth:`Tokenizer.unknown_words` names the ones it would ignore.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .attributes import ATTRIBUTES, FaceLabels

UNMENTIONED = -1   # in a caption record: the caption says nothing about this attribute
SUBJECT = "a face"

# Templates: index None says no style; 0 and 1 are the levels of STYLE_LEVELS (photo, portrait).
NEUTRAL_TEMPLATES: tuple[str, ...] = ("{}", "a picture of {}", "an image of {}")
STYLE_TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("a photo of {}", "a photograph of {}"),
    ("a portrait of {}", "a painting of {}", "a painted portrait of {}"),
)

# Expression phrases replace the subject; the other attributes add a phrase after it.
EXPRESSION_PHRASES: tuple[tuple[str, ...], ...] = (
    ("a neutral face", "a face with a neutral expression", "a serious face"),
    ("a smiling face", "a face with a smile"),
    ("a face with an open smile", "a laughing face", "a face with a big open smile"),
)
MODIFIER_PHRASES: dict[str, tuple[tuple[str, ...], ...]] = {
    "skin": tuple((f"with {level} skin", f"with a {level} skin tone")
                  for level in ("very light", "light", "medium", "brown", "dark")),
    "eyewear": (("without glasses", "with no glasses", "without eyewear"),
                ("with glasses", "wearing glasses"),
                ("with sunglasses", "wearing sunglasses")),
    "hair": (("with black hair",), ("with brown hair",), ("with blonde hair", "with blond hair"),
             ("with red hair", "with ginger hair")),
}

# The templates SynthCLIP was trained with, for ``metrics.clip_direction.text_direction`` (whose default 79
# ImageNet templates hold words SynthCLIP never saw): one per kind of style mention.
SYNTHCLIP_TEMPLATES: tuple[str, ...] = ("{}.", "a picture of {}.", "a photo of {}.", "a portrait of {}.")

SPECIALS = ("<pad>", "<unk>", "<eos>")
PAD, UNK, EOS = 0, 1, 2
CONTEXT_LENGTH = 32   # the longest caption is 24 words + <eos>


@dataclass(frozen=True)
class Caption:
    """A caption and what it says: ``mentions`` holds one level per attribute of ATTRIBUTES, or UNMENTIONED."""

    text: str
    mentions: tuple[int, ...]

    def as_dict(self) -> dict[str, int]:
        """{attribute: level} for the attributes the caption mentions."""
        return {name: level for name, level in zip(ATTRIBUTES, self.mentions) if level != UNMENTIONED}


def join_phrases(subject: str, modifiers: Sequence[str]) -> str:
    """'a face' + ['with glasses', 'with red hair', 'with dark skin'] → 'a face with glasses, with red hair and
    with dark skin'."""
    if not modifiers:
        return subject
    tail = modifiers[0] if len(modifiers) == 1 else ", ".join(modifiers[:-1]) + " and " + modifiers[-1]
    return f"{subject} {tail}"


def pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def caption_of(levels: Sequence[int], rng: np.random.Generator, mention_prob: float = 0.5) -> Caption:
    """One caption of a face whose levels (in the order of ATTRIBUTES) are ``levels``; each attribute is mentioned
    with probability ``mention_prob``. Deterministic given ``rng``."""
    by_name = dict(zip(ATTRIBUTES, (int(v) for v in levels)))
    mentioned = rng.random(len(ATTRIBUTES)) < mention_prob
    said = {name: by_name[name] for name, hit in zip(ATTRIBUTES, mentioned) if hit}
    subject = pick(EXPRESSION_PHRASES[said["expression"]], rng) if "expression" in said else SUBJECT
    modifiers = [pick(MODIFIER_PHRASES[name][said[name]], rng) for name in MODIFIER_PHRASES if name in said]
    modifiers = [modifiers[i] for i in rng.permutation(len(modifiers))]
    templates = STYLE_TEMPLATES[said["style"]] if "style" in said else NEUTRAL_TEMPLATES
    text = pick(templates, rng).format(join_phrases(subject, modifiers))
    return Caption(text, tuple(said.get(name, UNMENTIONED) for name in ATTRIBUTES))


def captions_of(labels: FaceLabels | np.ndarray, rng: np.random.Generator,
                mention_prob: float = 0.5) -> tuple[list[str], np.ndarray]:
    """One caption per face. labels: FaceLabels or [N, 5] → texts (N strings) and mentions [N, 5] int64."""
    table = labels.stack() if isinstance(labels, FaceLabels) else np.asarray(labels)
    captions = [caption_of(row, rng, mention_prob) for row in table]
    mentions = np.asarray([c.mentions for c in captions], dtype=np.int64).reshape(-1, len(ATTRIBUTES))
    return [c.text for c in captions], mentions


def compatibility(labels: np.ndarray | torch.Tensor, mentions: np.ndarray | torch.Tensor) -> torch.Tensor:
    """M: bool [B, N], M_ij = caption j is true of face i (every attribute it mentions has face i's level).

    labels: [B, 5] levels (−1 where a face's level is unknown: it then agrees with any mention);
    mentions: [N, 5] caption records (UNMENTIONED = −1 where the caption says nothing).
    """
    labels, mentions = torch.as_tensor(labels)[:, None, :], torch.as_tensor(mentions)[None, :, :]
    return ((mentions == UNMENTIONED) | (labels == -1) | (mentions == labels)).all(dim=-1)


# ---- prompts for zero-shot reading -------------------------------------------------------------------------

def level_phrases(attribute: str, level: int) -> list[str]:
    """Every phrase the captions use for one level: 'a smiling face', 'a face with glasses', ... ('a face' for
    a style level: the style lives in the templates, see :func:`level_prompts`)."""
    if attribute == "style":
        return [SUBJECT]
    if attribute == "expression":
        return list(EXPRESSION_PHRASES[level])
    return [join_phrases(SUBJECT, [phrase]) for phrase in MODIFIER_PHRASES[attribute][level]]


def level_prompts(attribute: str, level: int, templates: Sequence[str] = SYNTHCLIP_TEMPLATES) -> list[str]:
    """The prompts whose mean embedding stands for one level (CLIP's prompt ensembling, Radford et al. 2021)."""
    if attribute == "style":
        return [t.format(SUBJECT) + "." for t in STYLE_TEMPLATES[level]]
    return [t.format(p) for p in level_phrases(attribute, level) for t in templates]


# ---- tokenizer ---------------------------------------------------------------------------------------------

def words_of(text: str) -> list[str]:
    """Lower-case words, punctuation dropped: 'A photo of a face, smiling.' → ['a', 'photo', 'of', ...]."""
    return re.findall(r"[a-z0-9]+", text.lower())


def caption_words() -> tuple[str, ...]:
    """Every word of the caption tables and prompt templates, sorted."""
    texts = [SUBJECT, "and", *NEUTRAL_TEMPLATES, *SYNTHCLIP_TEMPLATES]
    texts += [t for group in STYLE_TEMPLATES for t in group]
    texts += [p for group in EXPRESSION_PHRASES for p in group]
    texts += [p for table in MODIFIER_PHRASES.values() for group in table for p in group]
    return tuple(sorted({w for text in texts for w in words_of(text)}))


@dataclass(frozen=True)
class Tokenizer:
    """Word-level tokenizer over a fixed vocabulary: <pad> = 0, <unk> = 1, <eos> = 2, then the words."""

    vocabulary: tuple[str, ...]
    length: int = CONTEXT_LENGTH

    @classmethod
    def default(cls, length: int = CONTEXT_LENGTH) -> "Tokenizer":
        """The vocabulary of the caption generator's tables."""
        return cls(SPECIALS + caption_words(), length)

    def __post_init__(self):
        if tuple(self.vocabulary[:3]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}, got {tuple(self.vocabulary[:3])}")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.vocabulary)})

    def __len__(self) -> int:
        return len(self.vocabulary)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """texts: N strings → LongTensor [N, length]: word ids, <eos>, then <pad>; unknown words → <unk>;
        words beyond length − 1 are cut (as CLIP's tokenizer does)."""
        ids = torch.full((len(texts), self.length), PAD, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens = [self._index.get(w, UNK) for w in words_of(text)][:self.length - 1] + [EOS]
            ids[row, :len(tokens)] = torch.tensor(tokens)
        return ids

    def decode(self, ids: torch.Tensor) -> list[str]:
        """LongTensor [N, L] → N strings of the words before <eos> (unknown ones as '<unk>')."""
        texts = []
        for row in ids.tolist():
            words = row[:row.index(EOS)] if EOS in row else row
            texts.append(" ".join(self.vocabulary[i] for i in words if i != PAD))
        return texts

    def unknown_words(self, texts: Sequence[str]) -> list[str]:
        """The words of ``texts`` outside the vocabulary (sorted, once each): they would be read as <unk>."""
        return sorted({w for text in texts for w in words_of(text) if w not in self._index})
