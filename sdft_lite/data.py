"""Image folders as guided-diffusion reads them (its image_datasets.py), made robust and fast.

Preprocessing: RGB; halve with BOX filtering while the short side ≥ 2·size; BICUBIC resize so the short side
is ``size``; centre crop; scale to [−1, 1]. Images *smaller* than ``size`` are upscaled by the same bicubic
resize (as guided-diffusion does) and counted in ``ImageSet.upscaled``. Random horizontal flips are applied
per batch by the trainer.

Small datasets (MetFaces: 1,336 images) are decoded once and kept in memory as uint8 — decoding is then
never the bottleneck. Corrupt, truncated or non-image files are skipped, counted and reported in one
warning; a missing or empty folder raises :class:`DataError`.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


class DataError(RuntimeError):
    """A data folder that cannot be used: missing, empty, or without one readable image."""


def list_images(root: str | Path) -> list[Path]:
    """Image files under ``root``, recursively, in sorted order: the one listing that training, data preparation
    and the metrics share, so a folder that trains is a folder that can be evaluated."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist (or is not a folder)")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"data folder {root} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """guided-diffusion's preprocessing: BOX-halve while short side ≥ 2·size, BICUBIC to ``size``, centre crop."""
    image = image.convert("RGB")
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(s // 2 for s in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(s * scale) for s in image.size), resample=Image.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


def load_image(path: Path, size: int | None = None) -> np.ndarray:
    """One image as uint8 [H, W, 3] (RGB), preprocessed to [size, size, 3] when ``size`` is given; raises
    OSError/ValueError on a bad file."""
    with Image.open(path) as image:
        image.load()
        return np.asarray(center_crop_resize(image, size) if size else image.convert("RGB"), dtype=np.uint8)


@dataclass
class ImageSet:
    """A decoded image folder. images: [N, 3, S, S] uint8; files: the N files kept; skipped: (file, reason)."""

    images: torch.Tensor
    files: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    upscaled: int = 0

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, index: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """Images at ``index`` as float [B, 3, S, S] in [−1, 1] on ``device``. The images may live on the GPU (a
        set held there for speed): the index follows them without waiting for the device."""
        index = index.to(self.images.device, non_blocking=True)
        return self.images[index].to(device, non_blocking=True).float() / 127.5 - 1.0


def held_on(data: ImageSet, device: torch.device | str, free_bytes: int | None = None,
            share: float = 0.1) -> ImageSet:
    """``data`` with its uint8 images moved to ``device`` (a GPU) when they take at most ``share`` of its free
    memory (``free_bytes``, read from the device when not given); otherwise ``data`` itself. A set held on the GPU
    is gathered there: no host-side gather and copy per step, the same batches bit for bit."""
    device = torch.device(device)
    if device.type != "cuda" or data.images.device == device:
        return data
    free = torch.cuda.mem_get_info(device)[0] if free_bytes is None else free_bytes
    if data.images.numel() * data.images.element_size() > share * free:
        return data
    return replace(data, images=data.images.to(device))


def load_image_folder(root: str | Path, size: int, limit: int | None = None) -> ImageSet:
    """Decode every readable image under ``root`` at ``size`` px; bad files are skipped and counted."""
    files = list_images(root)[:limit]
    kept, arrays, skipped, upscaled = [], [], [], 0
    for path in files:
        try:
            with Image.open(path) as probe:
                upscaled += min(probe.size) < size
            arrays.append(load_image(path, size))
            kept.append(path)
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            skipped.append((path, f"{type(error).__name__}: {error}"))
    if skipped:
        examples = "; ".join(f"{p.name} ({why.split(':')[0]})" for p, why in skipped[:3])
        warnings.warn(f"skipped {len(skipped)} of {len(files)} files in {root} that are not readable images: "
                      f"{examples}{' ...' if len(skipped) > 3 else ''}", stacklevel=2)
    if not arrays:
        raise DataError(f"none of the {len(files)} image files in {root} could be read")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, kept, skipped, upscaled)


def batch_indices(num_images: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """The image indices of global batch ``step``: a fresh random permutation per epoch, sampled without
    replacement, as a pure function of (seed, step) so that a resumed run sees exactly the same batches."""
    start = step * batch_size
    chunks, position = [], start
    while position < start + batch_size:
        epoch, offset = divmod(position, num_images)
        perm = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        take = min(num_images - offset, start + batch_size - position)
        chunks.append(perm[offset:offset + take])
        position += take
    return torch.cat(chunks)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image of x: [B, C, H, W] horizontally with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5
    return torch.where(flip.to(x.device).reshape(-1, 1, 1, 1), x.flip(-1), x)


def prepare_data(src: str | Path, dst: str | Path, size: int = 256) -> dict:
    """Pre-resize a folder (MetFaces, AAHQ) into ``dst`` as PNGs and write ``manifest.json`` with counts."""
    src, dst = Path(src), Path(dst)
    files = list_images(src)
    dst.mkdir(parents=True, exist_ok=True)
    written, skipped, upscaled = [], [], 0
    for i, path in enumerate(files):
        try:
            with Image.open(path) as probe:
                upscaled += min(probe.size) < size
            array = load_image(path, size)
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            skipped.append({"file": str(path.relative_to(src)), "reason": f"{type(error).__name__}: {error}"})
            continue
        name = f"{i:06d}_{path.stem}.png"
        Image.fromarray(array).save(dst / name)
        written.append(name)
    manifest = {"source": str(src), "size": size, "found": len(files), "written": len(written),
                "skipped": len(skipped), "upscaled": upscaled, "skipped_files": skipped}
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if not written:
        raise DataError(f"none of the {len(files)} image files in {src} could be read")
    return manifest
