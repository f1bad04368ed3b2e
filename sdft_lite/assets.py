"""Files shipped inside the package, with their sha256 (d2l's DATA_HUB idea, offline).

The SynthFaces models were trained on an H100 with the package's own commands (see each file's JSON and
``bench/synthfaces_assets.sh``); the quick-mode models of the chapters (``synthfaces/zoo/``) on this project's
CPU by ``bench/prebuild_quick_zoo.py``. A file that is missing or whose hash differs raises one clear error.
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
    "synthfaces/synthclip.pt": (
        "33e8a7da543cd4ac99831a0dc78b8ca4f5ddee8efefc61638687f755351423d1",
        "SynthCLIP, the SynthFaces image–text model (32 px, 3,000 steps × 512), trained on an H200 by "
        "`sdft-lite synthfaces train-synthclip` (synthclip.json beside it)"),
    "synthfaces/zoo/scratch-lam0-7dd94d6acd.pt": (
        "e4440fd5043cfa62150de87582287e23d2921e625c40023ccef7945ade065e34",
        "quick-mode model of the chapters: scratch, λ 0, weighting p2, aux True, 150 steps × 32, fp16"),
    "synthfaces/zoo/naive-lam0-07fefa7a54.pt": (
        "fa852dd34e396216fb51e540bbc7836877a1bd514ed7efcd7ebdf07df29488c8",
        "quick-mode model of the chapters: naive, λ 0, weighting p2, aux True, 150 steps × 32, fp16"),
    "synthfaces/zoo/sdft-lam1-31058914e5.pt": (
        "e9fce6cc0f4f51dbed753254f86d07e6842870c28b7a744517f4fb5998b7fa4c",
        "quick-mode model of the chapters: sdft, λ 1, weighting p2, aux True, 150 steps × 32, fp16"),
    "synthfaces/zoo/sdft-lam1-2fb0cc865c.pt": (
        "e26903ca138da4f81159fbfeaac2d9d6d0d44a0d7d0685a36f2b0968467ca453",
        "quick-mode model of the chapters: sdft, λ 1, weighting p2, aux False, 150 steps × 32, fp16"),
    "synthfaces/zoo/sdft-lam1-b1cb8ea308.pt": (
        "de7678aa7e6344ebd9cc1bc871cf4f59a515ea4afc167011d48e0303c2002688",
        "quick-mode model of the chapters: sdft, λ 1, weighting constant, aux True, 150 steps × 32, fp16"),
    "synthfaces/zoo/sdft-lam3-3519ff137a.pt": (
        "3c0ea692cbe9ba48e4f5ec7c6123951e349d9e47fa2c869493a3eb92a943f8bf",
        "quick-mode model of the chapters: sdft, λ 3, weighting p2, aux True, 150 steps × 32, fp16"),
    "synthfaces/zoo/naive-lam0-4fc46b613e.pt": (
        "a82b86df26003253a065d786428d1be81b17fccdaf85cde44cd8be3900d1e08b",
        "quick-mode model of chapter 10's frontier: naive, λ_d 0, λ_aux 0, w_d P2(γ=3, k=1), 150 steps × 32, LoRA rank 4, fp16"),
    "synthfaces/zoo/sdft-lam10-b4b9909c44.pt": (
        "429ad98c96dbfbe5d10fe28b358d342920c678f7c88a8fc8539906dacbd4418e",
        "quick-mode model of chapter 10's frontier: sdft, λ_d 10, λ_aux 10, w_d P2(γ=3, k=1), 150 steps × 32, LoRA rank 4, fp16"),
    "synthfaces/zoo/naive-lam0-18c05b37e9.pt": (
        "fefd478956ff1f6946a7c5aab46d866f2a53290c2b3737791ada657f9890941d",
        "quick-mode model of chapter 10's frontier: naive, λ_d 0, λ_aux 0, w_d P2(γ=3, k=1), 150 steps × 32, prior weight 1, fp16"),
    "synthfaces/zoo/naive-lam0-3bea6c83e4.pt": (
        "c568cd228f56ef71472102ba6751888f444a385650156b2308efc1d3f176ebea",
        "quick-mode model of chapter 10's frontier: naive, λ_d 0, λ_aux 0, w_d P2(γ=3, k=1), 150 steps × 32, l2sp weight 1, fp16"),
    "synthfaces/zoo/naive-lam0-ba8c3b86da.pt": (
        "b1866bea1c136d6c8da9792e39ee0d105362e983e9857d123133f443d909cf3d",
        "quick-mode model of chapter 10's frontier: naive, λ_d 0, λ_aux 0, w_d P2(γ=3, k=1), 150 steps × 32, ewc weight 1e+06, fp16"),
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
