"""SynthFaces renderer: cartoon faces with exact attribute labels, drawn analytically at any resolution.

Image ``i`` of a stream is a pure function of ``(seed, stream, i)``: its random draws come from a NumPy
generator seeded by ``SeedSequence(seed, spawn_key=(crc32(stream), i))``. So a face is the same whether it is
rendered in a batch of 1,000 or alone, and two streams (domains, splits) never share draws. Fixing an
attribute (``fixed=``) still consumes its draw, so everything else about each face stays the same: the
tests use this to compare a face with and without sunglasses.

Layers, back to front: background, clothes, neck, hair, face, fringe, brows, eyes, nose, mouth, eyewear.
The ``style`` (photo source or painted portrait target) is applied afterwards by :mod:`.styles`.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from typing import Iterable, Sequence

import numpy as np
import torch

from . import shapes
from .attributes import FACE_ATTRIBUTES, STYLE_LEVELS, AllowedLevels, FaceLabels, FixedLevels, pick_levels
from .styles import apply_style

# Palettes (RGB in [0, 1]); index = attribute level.
SKIN_COLORS = np.array([[0.98, 0.87, 0.78], [0.92, 0.74, 0.60], [0.77, 0.56, 0.40],
                        [0.56, 0.37, 0.24], [0.33, 0.21, 0.14]], dtype=np.float32)
HAIR_COLORS = np.array([[0.09, 0.07, 0.07], [0.40, 0.24, 0.12], [0.92, 0.78, 0.45],
                        [0.78, 0.30, 0.10]], dtype=np.float32)
EYE_WHITE, IRIS, PUPIL = (0.97, 0.97, 0.96), (0.30, 0.20, 0.13), (0.04, 0.03, 0.03)
LIP_LINE, LIP_SMILE, MOUTH_INSIDE, TEETH = (0.50, 0.20, 0.20), (0.70, 0.08, 0.12), (0.22, 0.02, 0.05), (1.0, 1.0, 0.98)
FRAME, LENS = (0.05, 0.05, 0.06), (0.03, 0.03, 0.06)

OFFSET_X_RANGE, OFFSET_Y_RANGE = (-0.08, 0.08), (-0.06, 0.08)   # face offset, image units
SCALE_RANGE = (0.98, 1.14)
MAX_ANGLE = 12.0                                                  # degrees
NUM_DRAWS = 19  # uniforms per face: 4 attributes + 15 nuisance (see sample_faces)


@dataclass(frozen=True)
class FaceParams:
    """Everything that defines N faces. Per-face arrays are [N] or [N, 3]; noise is [N, 3, H, W] float32."""

    levels: dict[str, np.ndarray]
    center: np.ndarray        # [N, 2] face offset in image units (image spans [-1, 1])
    scale: np.ndarray         # [N]
    angle: np.ndarray         # [N] radians, within ±12°
    background: np.ndarray    # [N, 3]
    gradient: np.ndarray      # [N] top-to-bottom background shading
    clothes: np.ndarray       # [N, 3]
    skin_shade: np.ndarray    # [N] small brightness jitter of the skin palette
    hair_shade: np.ndarray    # [N]
    hair_length: np.ndarray   # [N] where the bob ends (local y)
    fringe: np.ndarray        # [N] fringe height (local y)
    noise: np.ndarray         # [N, 3, H, W] standard normal, used by the style (sensor noise / paint grain)


def stream_key(stream: str | int) -> int:
    """A stable integer for a stream name (CRC-32), so 'source/train' and 'full/test' never collide by accident."""
    return zlib.crc32(stream.encode()) if isinstance(stream, str) else int(stream)


def face_generators(indices: Iterable[int], seed: int, stream: str | int) -> list[np.random.Generator]:
    key = stream_key(stream)
    return [np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key, int(i)))) for i in indices]


def sample_faces(indices: Sequence[int], seed: int, stream: str | int, size: int,
                 allowed: AllowedLevels | None = None, fixed: FixedLevels | None = None) -> FaceParams:
    """Draw the attributes and nuisance of faces ``indices`` of a stream. Returns FaceParams of N = len(indices)."""
    draws, noise = [], []
    for rng in face_generators(indices, seed, stream):
        draws.append(rng.random(NUM_DRAWS))
        noise.append(rng.standard_normal((3, size, size), dtype=np.float32))
    u = np.asarray(draws, dtype=np.float32).reshape(-1, NUM_DRAWS)

    def span(column, low, high):
        return low + (high - low) * u[:, column]

    return FaceParams(
        levels=pick_levels(u[:, :4], allowed, fixed),
        center=np.stack([span(4, *OFFSET_X_RANGE), span(5, *OFFSET_Y_RANGE)], axis=1),
        scale=span(6, *SCALE_RANGE),
        angle=np.deg2rad(span(7, -MAX_ANGLE, MAX_ANGLE)),
        background=0.18 + 0.70 * u[:, 8:11],
        gradient=span(11, -0.12, 0.12),
        clothes=0.08 + 0.84 * u[:, 12:15],
        skin_shade=span(15, -0.03, 0.03),
        hair_shade=span(16, -0.05, 0.05),
        hair_length=span(17, 0.12, 0.34),
        fringe=span(18, -0.33, -0.24),
        noise=np.stack(noise) if noise else np.zeros((0, 3, size, size), np.float32),
    )


def local_coordinates(params: FaceParams, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel centres mapped into each face's frame (undo offset, rotation, scale).

    Returns x, y: [N, H, W] and pixel: [N, 1, 1], one pixel's width in local units.
    """
    grid = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    u = grid[None, None, :] - params.center[:, 0, None, None]
    v = grid[None, :, None] - params.center[:, 1, None, None]
    cos, sin = np.cos(params.angle)[:, None, None], np.sin(params.angle)[:, None, None]
    scale = params.scale[:, None, None]
    x = (cos * u + sin * v) / scale
    y = (-sin * u + cos * v) / scale
    return x.astype(np.float32), y.astype(np.float32), (2.0 / size) / scale


@lru_cache(maxsize=64)
def feature_window(size: int, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
    """Pixel rows and columns that a local box [x0, x1] × [y0, y1] can reach under any allowed jitter.

    Small features (eyes, mouth) are then drawn on this window only: 3–5x fewer pixels at the same result.
    """
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
    reach = []
    for angle in np.deg2rad(np.linspace(-MAX_ANGLE, MAX_ANGLE, 25)):
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        for scale in SCALE_RANGE:
            for offset in product(OFFSET_X_RANGE, OFFSET_Y_RANGE):
                reach.append(np.asarray(offset) + scale * corners @ rotation.T)
    reach = np.concatenate(reach)
    low = np.floor((reach.min(axis=0) + 1.0) * size / 2.0 - 2.0).astype(int)     # 2 px margin for the ramp
    high = np.ceil((reach.max(axis=0) + 1.0) * size / 2.0 + 2.0).astype(int)
    low, high = np.clip(low, 0, size), np.clip(high, 0, size)
    return slice(low[1], high[1]), slice(low[0], high[0])


@dataclass(frozen=True)
class Frame:
    """A batch being drawn: canvas [N, 3, h, w] (a view), local coordinates x, y [N, h, w], pixel [N, 1, 1]."""

    canvas: np.ndarray
    x: np.ndarray
    y: np.ndarray
    pixel: np.ndarray

    def window(self, x0: float, x1: float, y0: float, y1: float) -> "Frame":
        """The part of the frame that can hold features inside the local box [x0, x1] × [y0, y1]."""
        rows, cols = feature_window(self.canvas.shape[-1], x0, x1, y0, y1)
        return Frame(self.canvas[:, :, rows, cols], self.x[:, rows, cols], self.y[:, rows, cols], self.pixel)

    def paint(self, sdf: np.ndarray, color, present: np.ndarray | None = None, opacity: float = 1.0) -> None:
        alpha = shapes.coverage(sdf, self.pixel)
        shapes.paint(self.canvas, alpha if opacity == 1.0 else opacity * alpha, color, present)


def draw_background(params: FaceParams, size: int) -> np.ndarray:
    """Flat background with a gentle vertical shading. Returns [N, 3, H, W]."""
    ramp = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    shade = 1.0 + params.gradient[:, None, None, None] * ramp[None, None, :, None]   # [N, 1, H, 1]
    canvas = params.background[:, :, None, None] * shade                             # [N, 3, H, 1]
    return np.ascontiguousarray(np.broadcast_to(canvas, (len(params.scale), 3, size, size)), dtype=np.float32)


def draw_head(frame: Frame, params: FaceParams) -> None:
    """Clothes, neck, hair, face, fringe, eyebrows and nose, in place."""
    skin = SKIN_COLORS[params.levels["skin"]] * (1.0 + params.skin_shade[:, None])
    hair = HAIR_COLORS[params.levels["hair"]] * (1.0 + params.hair_shade[:, None])
    hair_end, fringe = params.hair_length[:, None, None], params.fringe[:, None, None]
    body = frame.window(-0.86, 0.86, 0.30, 1.72)
    body.paint(shapes.ellipse(body.x, body.y, 0.0, 1.16, 0.86, 0.56), params.clothes)
    body.paint(shapes.box(body.x, body.y, 0.0, 0.50, 0.15, 0.20), skin * 0.82)
    x, y = frame.x, frame.y
    frame.paint(np.maximum(shapes.ellipse(x, y, 0.0, -0.10, 0.53, 0.57), y - hair_end), hair)
    face = shapes.ellipse(x, y, 0.0, -0.02, 0.40, 0.50)
    frame.paint(face, skin)
    fringe_area = np.maximum(face - 0.02, y - (fringe + 0.35 * x * x))   # overlaps the face edge: no seam
    frame.paint(fringe_area, hair)                                         # fringe, lower at the temples
    brows = frame.window(-0.28, 0.28, -0.24, -0.10)
    for side in (-1.0, 1.0):
        brows.paint(shapes.parabola_band(brows.x - side * 0.17, brows.y, -0.17, 1.5, 0.085, 0.022), hair * 0.8)
    nose = frame.window(-0.05, 0.05, 0.02, 0.18)
    nose.paint(shapes.ellipse(nose.x, nose.y, 0.0, 0.10, 0.045, 0.075), skin * 0.80)


def draw_eyes(frame: Frame) -> None:
    eyes = frame.window(-0.26, 0.26, -0.10, 0.02)
    x, y = eyes.x, eyes.y
    for cx in (-0.17, 0.17):
        eyes.paint(shapes.ellipse(x, y, cx, -0.04, 0.085, 0.058), EYE_WHITE)
        eyes.paint(shapes.circle(x, y, cx, -0.04, 0.045), IRIS)
        eyes.paint(shapes.circle(x, y, cx, -0.04, 0.020), PUPIL)


def draw_mouth(frame: Frame, expression: np.ndarray) -> None:
    """Neutral: a short thin line. Smile: a wide, thick red arc. Open smile: a big dark D with a row of teeth."""
    mouth = frame.window(-0.30, 0.30, 0.08, 0.46)
    x, y = mouth.x, mouth.y
    mouth.paint(shapes.box(x, y, 0.0, 0.27, 0.12, 0.022), LIP_LINE, expression == 0)
    mouth.paint(shapes.parabola_band(x, y, 0.29, 2.8, 0.23, 0.042), LIP_SMILE, expression == 1)

    top, top_slope = 0.19 - 0.9 * x * x, -1.8 * x                                  # upper lip line
    bottom, bottom_slope = 0.19 + 0.22 - 4.0 * x * x, -8.0 * x                      # lower lip, deep D
    opening = np.maximum(shapes.below_curve(x, y, top, top_slope), -shapes.below_curve(x, y, bottom, bottom_slope))
    teeth = np.maximum(opening, -shapes.below_curve(x, y, top + 0.085, top_slope))
    is_open = expression == 2
    mouth.paint(opening - 0.03, LIP_SMILE, is_open)                                # lips around the opening
    mouth.paint(opening, MOUTH_INSIDE, is_open)
    mouth.paint(teeth, TEETH, is_open)


def draw_eyewear(frame: Frame, eyewear: np.ndarray) -> None:
    """Glasses: dark round frames (the eyes show through). Sunglasses: filled dark lenses."""
    glasses = frame.window(-0.42, 0.42, -0.19, 0.11)
    x, y = glasses.x, glasses.y
    bridge = shapes.segment(x, y, -0.06, -0.06, 0.06, -0.06, 0.022)
    temples = np.minimum(shapes.segment(x, y, -0.29, -0.06, -0.40, -0.08, 0.02),
                         shapes.segment(x, y, 0.29, -0.06, 0.40, -0.08, 0.02))
    glasses.paint(np.minimum(bridge, temples), FRAME, eyewear > 0)
    rims = np.minimum(shapes.ring(x, y, -0.17, -0.04, 0.12, 0.026), shapes.ring(x, y, 0.17, -0.04, 0.12, 0.026))
    glasses.paint(rims, FRAME, eyewear == 1)
    lenses = np.minimum(shapes.circle(x, y, -0.17, -0.04, 0.135), shapes.circle(x, y, 0.17, -0.04, 0.135))
    glasses.paint(lenses, LENS, eyewear == 2)
    glint = shapes.ellipse(x, y, 0.13, -0.09, 0.035, 0.02)                          # a highlight on one lens
    glasses.paint(glint, (0.75, 0.78, 0.85), eyewear == 2, opacity=0.45)


def draw_faces(params: FaceParams, size: int) -> np.ndarray:
    """Flat-colour faces (before any style). Returns float32 [N, 3, H, W] in [0, 1]."""
    x, y, pixel = local_coordinates(params, size)
    frame = Frame(draw_background(params, size), x, y, pixel)
    draw_head(frame, params)
    draw_eyes(frame)
    draw_mouth(frame, params.levels["expression"])
    draw_eyewear(frame, params.levels["eyewear"])
    return np.clip(frame.canvas, 0.0, 1.0)


def labels_of(params: FaceParams, style: str) -> FaceLabels:
    style_level = np.full(len(params.scale), STYLE_LEVELS.index(style), dtype=np.int64)
    return FaceLabels(**{name: params.levels[name] for name in FACE_ATTRIBUTES}, style=style_level)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[N, 3, H, W] float in [0, 1] → uint8 [N, H, W, 3] (the layout of image files)."""
    return np.clip(np.rint(images.transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """float [N, 3, H, W] in [0, 1], or uint8 [N, H, W, 3] → float32 tensor [N, 3, H, W] in [-1, 1]."""
    if images.dtype == np.uint8:
        images = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)) * 2.0 - 1.0


def render_floats(indices: Sequence[int], style: str = "photo", size: int = 32, seed: int = 0,
                  stream: str | int = "default", allowed: AllowedLevels | None = None,
                  fixed: FixedLevels | None = None, chunk: int = 256) -> tuple[np.ndarray, FaceLabels]:
    """Render faces ``indices`` of a stream. Returns float32 images [N, 3, H, W] in [0, 1] and their labels."""
    if size < 16:
        raise ValueError(f"size must be at least 16 px, got {size}")
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    images, labels = [], []
    for begin in range(0, max(len(indices), 1), chunk):
        part = indices[begin:begin + chunk]
        part_fixed = {k: (np.asarray(v)[begin:begin + chunk] if np.ndim(v) else v) for k, v in (fixed or {}).items()}
        params = sample_faces(part, seed, stream, size, allowed, part_fixed)
        images.append(apply_style(draw_faces(params, size), style, params.noise))
        labels.append(labels_of(params, style))
    return np.concatenate(images), FaceLabels.concat(labels)


def render(n: int, style: str = "photo", size: int = 32, seed: int = 0, *, stream: str | int = "default",
           start: int = 0, allowed: AllowedLevels | None = None, fixed: FixedLevels | None = None,
           output: str = "uint8") -> tuple[np.ndarray | torch.Tensor, FaceLabels]:
    """Render faces ``start … start+n−1`` of a stream with their exact labels.

    style: "photo" (source) or "portrait" (target); allowed: levels to sample from per attribute, e.g.
    ``{"eyewear": (0,)}``; fixed: levels to force, a scalar or an [n] array per attribute.
    output: "uint8" → numpy [N, H, W, 3]; "float" → numpy float32 [N, 3, H, W] in [0, 1];
    "tensor" → torch float32 [N, 3, H, W] in [-1, 1].
    """
    images, labels = render_floats(np.arange(start, start + n), style, size, seed, stream, allowed, fixed)
    if output == "uint8":
        return to_uint8(images), labels
    if output == "float":
        return images, labels
    if output == "tensor":
        return to_tensor(images), labels
    raise ValueError(f"output must be 'uint8', 'float' or 'tensor', got {output!r}")
