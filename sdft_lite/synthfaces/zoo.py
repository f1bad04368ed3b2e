"""Train-or-load: the SynthFaces models every chapter and the demo share.

``source_model()`` is the shipped photo-domain model (the stand-in for P2's FFHQ model). ``finetuned(spec)``
fine-tunes it on the limited portrait target (the MetFaces stand-in) — scratch, naive or SDFT — or loads the
result from the cache (``$SDFT_LITE_HOME/cache/synthfaces``), keyed by every setting of the spec, so chapters
4–8 train each model once. The quick-mode models the chapters use ship with the package (fp16 weights and
their training logs, made by this same code with ``bench/prebuild_quick_zoo.py``): a cache miss installs the
shipped copy instead of training, which keeps the quick book short on a CPU. ``FORCE_TRAIN=1`` ignores both and
trains.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..assets import REGISTRY, asset_path
from ..checkpoint import load_unet, save_atomic
from ..config import home, quick_mode
from ..train import TrainConfig, Trainer
from ..unet import UNetConfig, UNetModel
from .domains import DomainSpec
from .source import render_domain

SOURCE = "synthfaces/source_demo32.pt"
PREBUILT = "synthfaces/zoo"   # shipped quick-mode models: PREBUILT/<spec key>.pt


@dataclass(frozen=True)
class FinetuneSpec:
    """One fine-tuning run on the limited target. λ means λ_d = λ_aux (the study's convention)."""

    mode: str = "sdft"                 # scratch | naive | sdft
    lam: float = 1.0
    gamma_distill: float = 3.0
    gamma_aux: float = 50.0
    weighting: str = "p2"              # p2 | constant | min_snr (Table 4 ablation)
    aux: bool = True                   # the auxiliary pure-noise term (Fig. 8 ablation)
    steps: int = 800
    batch: int = 128
    lr: float = 1e-4
    num_target: int = 1300
    seed: int = 0

    def __post_init__(self):
        if self.mode != "sdft":   # the SDFT settings mean nothing for scratch / naive: one cache entry each
            for name in ("lam", "gamma_distill", "gamma_aux", "weighting", "aux"):
                object.__setattr__(self, name, FinetuneSpec.__dataclass_fields__[name].default)
            object.__setattr__(self, "lam", 0.0)

    @classmethod
    def quick(cls, **changes) -> "FinetuneSpec":
        """CPU-sized: 150 steps of batch 32 at lr 3e-4 (about 1 and 4 minutes for naive and SDFT on 2 cores)."""
        return cls(**{"steps": 150, "batch": 32, "lr": 3e-4, **changes})

    @classmethod
    def full(cls, **changes) -> "FinetuneSpec":
        """GPU-sized: 800 steps of batch 128 at lr 1e-4 (the feasibility study's setting)."""
        return cls(**changes)

    @classmethod
    def default(cls, **changes) -> "FinetuneSpec":
        """quick() in quick mode (``config.quick_mode``: SDFT_QUICK, else no GPU), else full()."""
        return cls.quick(**changes) if quick_mode() else cls.full(**changes)

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return f"{self.mode}-lam{self.lam:g}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"

    def train_config(self, unet: UNetConfig, out_dir: Path) -> TrainConfig:
        return TrainConfig(mode=self.mode, out_dir=str(out_dir), source_checkpoint=str(asset_path(SOURCE)),
                           unet=unet.replace(dropout=0.1), steps=self.steps, batch_size=self.batch, lr=self.lr,
                           lambda_distill=self.lam, lambda_aux=self.lam if self.aux else 0.0,
                           gamma_distill=self.gamma_distill, gamma_aux=self.gamma_aux,
                           distill_weighting=self.weighting, aux_skip_below=1e-6 if self.aux else 0.0,
                           ema_rate=0.999, save_every=0, sample_every=0, log_every=10, seed=self.seed,
                           progress=False)


def source_model() -> UNetModel:
    """The shipped SynthFaces source model (eval mode, CPU)."""
    return load_unet(asset_path(SOURCE))


def cache_dir() -> Path:
    return home() / "cache" / "synthfaces"


def limited_target(size: int = 32, n: int = 1300, seed: int = 0):
    """The limited portrait target as an in-memory ImageSet (neutral, no eyewear, two lightest skin tones)."""
    return render_domain(DomainSpec.limited_target(), n, size, seed)


def cached_path(spec: FinetuneSpec) -> Path:
    """Where ``finetuned(spec)`` keeps its model."""
    return cache_dir() / f"{spec.key()}.pt"


def chapter_specs() -> list[FinetuneSpec]:
    """The quick-mode models chapters 4–8 use (the ones the package ships)."""
    quick = FinetuneSpec.quick
    return [quick(mode="scratch"), quick(mode="naive"), quick(mode="sdft"), quick(mode="sdft", aux=False),
            quick(mode="sdft", weighting="constant"), quick(mode="sdft", lam=3.0)]


def prebuilt_name(spec: FinetuneSpec) -> str:
    return f"{PREBUILT}/{spec.key()}.pt"


def has_prebuilt(spec: FinetuneSpec) -> bool:
    """True when the package ships this model (the quick-mode models of the chapters)."""
    return prebuilt_name(spec) in REGISTRY


def _cached_file(spec: FinetuneSpec) -> Path:
    """The cache file of ``spec``; a shipped model is first copied there, its weights back in float32."""
    path = cached_path(spec)
    if not path.exists() and has_prebuilt(spec):
        state = torch.load(asset_path(prebuilt_name(spec)), map_location="cpu", weights_only=True)
        state["model"] = {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}
        save_atomic(state, path)
    return path


def is_cached(spec: FinetuneSpec) -> bool:
    """True when ``finetuned(spec)`` will load instead of train: the cache has it or the package ships it, and
    FORCE_TRAIN is not 1."""
    if os.environ.get("FORCE_TRAIN", "") == "1":
        return False
    return cached_path(spec).exists() or has_prebuilt(spec)


def finetuned(spec: FinetuneSpec | None = None, device: str | None = None) -> UNetModel:
    """The source model fine-tuned as ``spec`` says (default: SDFT, quick or full by mode); cached on disk."""
    spec = spec or FinetuneSpec.default()
    path = cached_path(spec)
    if is_cached(spec):
        return load_unet(_cached_file(spec))
    unet = source_model().config
    run_dir = cache_dir() / "runs" / spec.key()
    shutil.rmtree(run_dir, ignore_errors=True)     # a retrain (FORCE_TRAIN=1) starts a fresh log
    trainer = Trainer(spec.train_config(unet, run_dir), device=device, data=limited_target(unet.image_size,
                                                                                             spec.num_target))
    if trainer.run().get("stopped_early"):   # SIGINT/SIGTERM: never cache a half-trained model
        raise KeyboardInterrupt(f"fine-tuning {spec.key()} was stopped at step {trainer.step} of {spec.steps}")
    model = trainer.model.cpu().eval()
    save_atomic({"model": model.state_dict(), "unet_config": unet.to_flags(), "spec": dataclasses.asdict(spec),
                 "log": (run_dir / "log.jsonl").read_text()}, path)
    for trainer_checkpoint in run_dir.glob("ckpt_*.pt"):   # optimizer state etc.: not needed once exported
        trainer_checkpoint.unlink()
    return model


def training_log(spec: FinetuneSpec) -> list[dict]:
    """The per-step loss terms of a cached (or shipped) run (for loss-curve figures)."""
    state = torch.load(_cached_file(spec), map_location="cpu", weights_only=True)
    return [json.loads(line) for line in state["log"].splitlines() if line.strip()]


def _finetune_worker(spec: FinetuneSpec, device: str | None, threads: int) -> str:
    torch.set_num_threads(threads)
    finetuned(spec, device=device)
    return spec.key()


def finetune_many(specs: list[FinetuneSpec], workers: int = 1, device: str | None = None,
                  log=print) -> list[str]:
    """Fine-tune every spec not yet cached, ``workers`` runs at a time, each in its own process; returns the keys
    trained. A SynthFaces model is so small that one run leaves a GPU mostly idle (its steps are bound by
    per-step overhead), so several concurrent runs finish a seed × λ sweep several times sooner. Every run
    is the same as ``finetuned(spec)`` alone: its own seed, data and cache entry."""
    todo = list(dict.fromkeys(spec for spec in specs if not is_cached(spec)))
    if workers <= 1 or len(todo) <= 1:
        for spec in todo:
            finetuned(spec, device=device)
        return [spec.key() for spec in todo]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    threads = max(1, (os.cpu_count() or 1) // workers)
    done = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_finetune_worker, spec, device, threads): spec for spec in todo}
        for future in as_completed(futures):
            done.append(future.result())
            log(f"fine-tuned {done[-1]} ({len(done)}/{len(todo)})")
    return done
