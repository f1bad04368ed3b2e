"""SynthFaces domains: the FFHQ → MetFaces situation with exact labels.

source()          photo faces, every attribute uniform                 (the FFHQ stand-in, 50,000 by default)
limited_target()  ~1,300 portraits: neutral, no eyewear, two lightest skin tones (MetFaces' gaps)
full_target()     portraits with every attribute, for evaluation only   (what the target domain really holds)

A domain is rendered on the fly (:class:`FaceDataset`, deterministic per index) or written once as an image
folder of PNGs + ``labels.csv`` + ``manifest.json`` (:func:`write_domain`), the same path real data takes.
Each (domain, split) is its own random stream, so held-out sets never share a face with training sets.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..data import ImageSet
from .attributes import ATTRIBUTES, FACE_ATTRIBUTES, FaceLabels
from .renderer import face_generators, render_floats, to_tensor, to_uint8

LABELS_FILE, MANIFEST_FILE = "labels.csv", "manifest.json"


@dataclass(frozen=True)
class DomainSpec:
    """A rendering style plus the attribute levels the domain contains (absent name = all levels), and levels it
    holds only scarcely: ``rare`` entries (attribute, levels, share) give about ``share`` of the faces one of
    ``levels`` (uniformly) in place of their ``allowed`` draw."""

    name: str
    style: str
    allowed: tuple[tuple[str, tuple[int, ...]], ...] = ()
    default_count: int = 1000
    rare: tuple[tuple[str, tuple[int, ...], float], ...] = ()

    def __post_init__(self):
        for name, levels, share in self.rare:
            if name not in FACE_ATTRIBUTES or not levels or not set(levels) <= set(range(len(FACE_ATTRIBUTES[name]))):
                raise ValueError(f"rare levels {levels} of {name!r} are not levels of a face attribute")
            if set(levels) & set(dict(self.allowed).get(name, range(len(FACE_ATTRIBUTES[name])))):
                raise ValueError(f"rare levels {levels} of {name!r} overlap the allowed ones (rare: otherwise absent)")
            if not 0.0 < share < 1.0:
                raise ValueError(f"the share of faces with a rare {name} must be in (0, 1), got {share}")

    @classmethod
    def source(cls) -> "DomainSpec":
        return cls("source", "photo", (), 50_000)

    @classmethod
    def limited_target(cls, smile_share: float = 0.0) -> "DomainSpec":
        """MetFaces' gaps: neutral expression only, no eyewear, the two lightest skin tones. ``smile_share`` > 0:
        that share of the portraits smiles instead (smile or open smile), as MetFaces has smiles scarcely rather
        than never; every other face, and every other attribute of a smiling one, is the same as without it."""
        rare = (("expression", (1, 2), smile_share),) if smile_share else ()
        return cls("limited", "portrait", (("expression", (0,)), ("eyewear", (0,)), ("skin", (0, 1))), 1_300, rare)

    @classmethod
    def full_target(cls) -> "DomainSpec":
        return cls("full", "portrait", (), 5_000)

    @classmethod
    def named(cls, name: str) -> "DomainSpec":
        """'source', 'limited' or 'full'."""
        presets = {"source": cls.source, "limited": cls.limited_target, "full": cls.full_target}
        if name not in presets:
            raise ValueError(f"unknown domain {name!r}; expected one of {list(presets)}")
        return presets[name]()

    def allowed_levels(self) -> dict[str, tuple[int, ...]]:
        """Levels present in the domain, for every face attribute."""
        levels = {name: tuple(range(len(names))) for name, names in FACE_ATTRIBUTES.items()}
        levels.update(dict(self.allowed))
        return levels

    def stream(self, split: str) -> str:
        return f"{self.name}/{split}"

    def render(self, indices: Sequence[int], size: int = 32, seed: int = 0,
               split: str = "train") -> tuple[np.ndarray, FaceLabels]:
        """Faces ``indices`` of this domain's split. Returns float32 [N, 3, H, W] in [0, 1] and labels."""
        if not self.rare:
            return render_floats(indices, self.style, size, seed, self.stream(split), dict(self.allowed))
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        rare = self.rare_levels(indices, seed, split)
        images = np.zeros((len(indices), 3, size, size), np.float32)
        table = np.zeros((len(indices), len(ATTRIBUTES)), np.int64)
        for shows in {tuple(level >= 0 for level in row) for row in zip(*rare.values())}:   # faces alike in rarity
            group = np.all([(levels >= 0) == flag for levels, flag in zip(rare.values(), shows)], axis=0)
            fixed = {name: levels[group] for (name, levels), flag in zip(rare.items(), shows) if flag}
            images[group], labels = render_floats(indices[group], self.style, size, seed, self.stream(split),
                                                  dict(self.allowed), fixed)
            table[group] = labels.stack()
        return images, FaceLabels.from_stacked(table)

    def rare_levels(self, indices: np.ndarray, seed: int = 0, split: str = "train") -> dict[str, np.ndarray]:
        """Per face, the rare level it shows instead of its allowed draw, or −1: two uniforms of its own stream
        per rare attribute, so whether face i is rare moves no other face and no other draw of face i."""
        out = {}
        for name, levels, share in self.rare:
            draws = np.array([rng.random(2) for rng in
                              face_generators(indices, seed, f"{self.stream(split)}/rare/{name}")]).reshape(-1, 2)
            pick = np.asarray(levels)[np.minimum((draws[:, 1] * len(levels)).astype(np.int64), len(levels) - 1)]
            out[name] = np.where(draws[:, 0] < share, pick, -1)
        return out


class FaceDataset(torch.utils.data.Dataset):
    """A domain split rendered on the fly: item i → (image [3, H, W] in [-1, 1], labels [5] int64).

    Item i is the same however it is fetched; DataLoader's batched ``__getitems__`` renders a whole batch at once.
    """

    def __init__(self, spec: DomainSpec, n: int | None = None, size: int = 32, seed: int = 0, split: str = "train"):
        self.spec, self.n, self.size, self.seed, self.split = spec, n or spec.default_count, size, seed, split

    def __len__(self) -> int:
        return self.n

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if any(not 0 <= i < self.n for i in indices):
            raise IndexError(f"index out of range for a dataset of {self.n}")
        images, labels = self.spec.render(indices, self.size, self.seed, self.split)
        images, table = to_tensor(images), torch.from_numpy(labels.stack())
        return [(images[k], table[k]) for k in range(len(indices))]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([index])[0]


def level_counts(labels: FaceLabels) -> dict[str, dict[str, int]]:
    """How many images show each level of each attribute: {"skin": {"very light": 12, ...}, ...}."""
    return {name: {level: int((getattr(labels, name) == i).sum()) for i, level in enumerate(levels)}
            for name, levels in ATTRIBUTES.items()}


def write_domain(spec: DomainSpec, out_dir: str | Path, n: int | None = None, size: int = 32, seed: int = 0,
                 split: str = "train", chunk: int = 1000) -> Path:
    """Write faces 0 … n−1 of a domain split as ``00000.png …``, ``labels.csv`` and ``manifest.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = n or spec.default_count
    all_labels, names = [], []
    for begin in range(0, n, chunk):
        images, labels = spec.render(range(begin, min(begin + chunk, n)), size, seed, split)
        for offset, image in enumerate(to_uint8(images)):
            names.append(f"{begin + offset:05d}.png")
            Image.fromarray(image).save(out_dir / names[-1])
        all_labels.append(labels)
    labels = FaceLabels.concat(all_labels)
    with open(out_dir / LABELS_FILE, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", *ATTRIBUTES])
        writer.writerows([name, *row] for name, row in zip(names, labels.stack().tolist()))
    manifest = {"domain": spec.name, "style": spec.style, "split": split, "seed": seed, "size": size, "count": n,
                "stream": spec.stream(split), "allowed_levels": spec.allowed_levels(),
                "rare_levels": [{"attribute": name, "levels": list(levels), "share": share}
                                for name, levels, share in spec.rare],
                "level_counts": level_counts(labels)}
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return out_dir


def read_labels(folder: str | Path) -> tuple[list[str], FaceLabels]:
    """Read ``labels.csv`` of a written domain: file names and their labels."""
    with open(Path(folder) / LABELS_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    table = np.array([[int(row[name]) for name in ATTRIBUTES] for row in rows], dtype=np.int64)
    return [row["file"] for row in rows], FaceLabels.from_stacked(table.reshape(-1, len(ATTRIBUTES)))


def read_domain(folder: str | Path) -> tuple[np.ndarray, FaceLabels]:
    """Load a written domain back: uint8 images [N, H, W, 3] and labels."""
    files, labels = read_labels(folder)
    images = []
    for name in files:
        with Image.open(Path(folder) / name) as image:
            images.append(np.asarray(image.convert("RGB")))
    return np.stack(images), labels

def render_domain(spec: DomainSpec, n: int, size: int, seed: int = 0, split: str = "train",
                  chunk: int = 5000) -> ImageSet:
    """``n`` faces of a domain as an in-memory uint8 ImageSet (no files), rendered in chunks."""
    parts = []
    for start in range(0, n, chunk):
        floats, _ = spec.render(range(start, min(n, start + chunk)), size, seed, split)
        parts.append(torch.from_numpy(np.round(floats * 255).astype(np.uint8)))
    images = torch.cat(parts)
    return ImageSet(images, [Path(f"{spec.name}/{split}/{i:06d}") for i in range(n)])
