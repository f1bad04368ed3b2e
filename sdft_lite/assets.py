"""Files shipped inside the package, with their sha256 (d2l's DATA_HUB idea, offline).

The SynthFaces models were trained on an H100 with the package's own commands (see each file's JSON and
``bench/synthfaces_assets.sh``); a file that is missing or whose hash differs raises one clear error.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

ASSET_DIR = Path(__file__).resolve().parent / "assets"

REGISTRY: dict[str, tuple[str, str]] = {
    # name: (sha256, what it is)
    "synthfaces/source_demo32.pt": (
        "9ac08d628b9eedfe79719baf426c95d744fa57f0dece2d50dd7c1d1666b3f2f3",
        "SynthFaces source model, demo32 U-Net (1.37M params), 3,500 steps × 256 photo faces on an H100, fp16 EMA"),
    "synthfaces/classifier.pt": (
        "35580ee8fab5c3c2efd4cc17979dd3aa6ab637931a29fb9cbfa6de1f5ca18605",
        "SynthFaces attribute classifier (skin, expression, eyewear, hair, style), 32 px, trained on an H100"),
    "synthfaces/realism.pt": (
        "5f175286fe4ffacefab0c6f0dbd0e0dff7bcc8d42c73ee9c3e8d4d1620070da9",
        "SynthFaces realism feature network, 32 px, trained on an H100 and validated (instruments.json)"),
}


class AssetError(RuntimeError):
    """A shipped asset is missing or corrupt."""


@functools.lru_cache(maxsize=None)
def asset_path(name: str) -> Path:
    """The verified path of a shipped asset (sha256 checked once per process)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown asset {name!r}; known: {sorted(REGISTRY)}")
    expected, what = REGISTRY[name]
    path = ASSET_DIR / name
    if not path.is_file():
        raise AssetError(f"the shipped file {path} ({what}) is missing: reinstall sdft_lite from its repository")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise AssetError(f"{path} ({what}) is corrupt: sha256 {digest} ≠ {expected}; reinstall sdft_lite")
    return path
