"""SynthFaces attributes: names, levels and the label record that comes back with every render.

Every rendered face carries exact integer labels for five attributes. Four describe the face (what the
fine-tuned model should keep); ``style`` says which domain rendered it (photo source or portrait target).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping, Sequence

import numpy as np

SKIN_LEVELS = ("very light", "light", "medium", "brown", "dark")
EXPRESSION_LEVELS = ("neutral", "smile", "open smile")
EYEWEAR_LEVELS = ("none", "glasses", "sunglasses")
HAIR_LEVELS = ("black", "brown", "blonde", "red")
STYLE_LEVELS = ("photo", "portrait")

FACE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "skin": SKIN_LEVELS,
    "expression": EXPRESSION_LEVELS,
    "eyewear": EYEWEAR_LEVELS,
    "hair": HAIR_LEVELS,
}
ATTRIBUTES: dict[str, tuple[str, ...]] = {**FACE_ATTRIBUTES, "style": STYLE_LEVELS}
NUM_LEVELS: dict[str, int] = {name: len(levels) for name, levels in ATTRIBUTES.items()}

AllowedLevels = Mapping[str, Sequence[int]]   # e.g. {"eyewear": (0,), "skin": (0, 1)}
FixedLevels = Mapping[str, "int | np.ndarray"]  # e.g. {"eyewear": 2} or {"skin": np.array([...])}


@dataclass(frozen=True)
class FaceLabels:
    """Exact labels of N rendered faces: one int64 array of shape [N] per attribute (level indices)."""

    skin: np.ndarray
    expression: np.ndarray
    eyewear: np.ndarray
    hair: np.ndarray
    style: np.ndarray

    def __len__(self) -> int:
        return len(self.skin)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def stack(self) -> np.ndarray:
        """All labels as one int64 array [N, 5], columns in the order of ``ATTRIBUTES``."""
        return np.stack([getattr(self, name) for name in ATTRIBUTES], axis=1)

    def __getitem__(self, index) -> "FaceLabels":
        return FaceLabels(**{name: np.atleast_1d(arr[index]) for name, arr in self.as_dict().items()})

    @staticmethod
    def concat(parts: Sequence["FaceLabels"]) -> "FaceLabels":
        return FaceLabels(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in ATTRIBUTES})

    @staticmethod
    def from_stacked(table: np.ndarray) -> "FaceLabels":
        """Inverse of :meth:`stack`: table [N, 5] → labels."""
        return FaceLabels(**{name: np.asarray(table[:, i], dtype=np.int64) for i, name in enumerate(ATTRIBUTES)})


def check_levels(allowed: AllowedLevels | None, fixed: FixedLevels | None) -> None:
    """Raise ValueError for an unknown attribute name or an out-of-range level."""
    for mapping in (allowed or {}), (fixed or {}):
        for name, levels in mapping.items():
            if name not in FACE_ATTRIBUTES:
                raise ValueError(f"unknown face attribute {name!r}; expected one of {list(FACE_ATTRIBUTES)}")
            levels = np.atleast_1d(np.asarray(levels))
            if levels.size == 0 or levels.min() < 0 or levels.max() >= NUM_LEVELS[name]:
                raise ValueError(f"levels {levels.tolist()} out of range for {name!r} ({NUM_LEVELS[name]} levels)")


def pick_levels(uniforms: np.ndarray, allowed: AllowedLevels | None,
                fixed: FixedLevels | None) -> dict[str, np.ndarray]:
    """Turn uniforms [N, 4] (one column per face attribute) into level indices, uniform over the allowed levels.

    ``fixed`` overrides the draw (a scalar or an array [N] per attribute); the uniforms are consumed either
    way, so fixing one attribute leaves every other attribute and the nuisance of each face unchanged.
    """
    check_levels(allowed, fixed)
    n = uniforms.shape[0]
    levels = {}
    for column, name in enumerate(FACE_ATTRIBUTES):
        choices = np.asarray((allowed or {}).get(name, range(NUM_LEVELS[name])), dtype=np.int64)
        levels[name] = choices[np.minimum((uniforms[:, column] * len(choices)).astype(np.int64), len(choices) - 1)]
        if fixed and name in fixed:
            levels[name] = np.broadcast_to(np.asarray(fixed[name], dtype=np.int64), (n,)).copy()
    return levels
