"""Train-or-load: the SynthFaces models every chapter and the demo share.

``source_model()`` is the shipped photo-domain model (the stand-in for P2's FFHQ model). ``finetuned(config)``
fine-tunes it on the limited portrait target (the MetFaces stand-in) — scratch, naive or SDFT — or loads the
result from the cache (``$SDFT_LITE_HOME/cache/synthfaces``), keyed by every setting of the config, so chapters
4–8 train each model once. The quick-mode models the chapters use ship with the package (fp16 weights and
their training logs, made by this same code with ``bench/prebuild_quick_zoo.py``): a cache miss installs the
shipped copy instead of training, which keeps the quick book short on a CPU. ``FORCE_TRAIN=1`` ignores both and
trains.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

try:
    import fcntl   # POSIX; elsewhere two processes must not fine-tune one key at once (see training_lock)
except ImportError:   # pragma: no cover
    fcntl = None

import torch

from ..assets import REGISTRY, asset_path
from ..adapters import merge_lora
from ..checkpoint import load_unet, save_atomic, sha256_of
from ..config import home, quick_mode
from ..sdft import SDFTConfig
from ..train import SYNTHFACES_SOURCE, TrainConfig, Trainer
from ..unet import UNetModel
from ..weighting import Constant
from ..synthfaces.domains import DomainSpec, render_domain
from .workers import worker_pool

PREBUILT = "synthfaces/zoo"   # shipped quick-mode models: PREBUILT/<config key>.pt
# settings added after models were cached and shipped: at their default they leave every key as it was
LATER_FIELDS = ("aux_samples", "target_smile_share", "fused_norm")
RUN_FIELDS = ("out_dir", "data_dir", "source_checkpoint", "progress", "log_every", "save_every", "keep_last",
              "sample_every", "sample_num", "sample_steps", "teacher_stream", "data_on_device",
              "compile_channels_last")   # where and how a run reports or computes: not what it trains


def default_config(**overrides) -> TrainConfig:
    """``TrainConfig.synthfaces_quick`` in quick mode (``config.quick_mode``: SDFT_QUICK, else no GPU), else
    ``synthfaces_full``, with ``overrides``: the chapters' models."""
    preset = TrainConfig.synthfaces_quick if quick_mode() else TrainConfig.synthfaces_full
    return preset(**overrides)


def key(config: TrainConfig) -> str:
    """The cache key of a fine-tuning run: its mode and λ_d, then a hash of every setting that changes the weights
    (the config's dict without :data:`RUN_FIELDS`, and without the :data:`LATER_FIELDS` at their defaults). The
    source model enters by its content's hash, and only when it is not the shipped one (``on_source``), so the
    shipped models' keys stay as they were (a missing source file is left to the trainer to report)."""
    defaults = TrainConfig().to_dict()
    identity = {k: v for k, v in config.to_dict().items()
                if k not in RUN_FIELDS and not (k in LATER_FIELDS and v == defaults[k])}
    source = config.source_checkpoint
    source_sha256 = sha256_of(source) if source and Path(source).is_file() else None
    if source_sha256 and source_sha256 != REGISTRY[SYNTHFACES_SOURCE][0]:
        identity["source_sha256"] = source_sha256
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    return f"{config.mode}-lam{config.loss.lambda_distill:g}-{digest}"


def on_source(config: TrainConfig, checkpoint: str | Path) -> TrainConfig:
    """``config`` fine-tuning another source model (e.g. a 64-px one from ``sdft-lite synthfaces train-source``):
    its U-Net layout, with the config's dropout; the limited target is then rendered at its image size."""
    layout = load_unet(checkpoint).config
    return dataclasses.replace(config, unet=layout.replace(dropout=config.unet.dropout),
                               source_checkpoint=str(checkpoint))


def source_model() -> UNetModel:
    """The shipped SynthFaces source model (eval mode, CPU)."""
    return load_unet(asset_path(SYNTHFACES_SOURCE))


def cache_dir() -> Path:
    return home() / "cache" / "synthfaces"


def limited_target(size: int = 32, n: int = 1300, seed: int = 0, smile_share: float = 0.0):
    """The limited portrait target as an in-memory ImageSet (neutral, no eyewear, two lightest skin tones; with
    ``smile_share`` > 0 that share of the portraits smiles, ``DomainSpec.limited_target``)."""
    return render_domain(DomainSpec.limited_target(smile_share), n, size, seed)


def cached_path(config: TrainConfig) -> Path:
    """Where ``finetuned(config)`` keeps its model."""
    return cache_dir() / f"{key(config)}.pt"


def chapter_configs() -> list[TrainConfig]:
    """The quick-mode models chapters 4–8 use (the ones the package ships)."""
    quick = TrainConfig.synthfaces_quick
    return [quick(mode="scratch"), quick(mode="naive"), quick(mode="sdft"),
            quick(mode="sdft", loss=SDFTConfig.symmetric(1.0, lambda_aux=0.0)),
            quick(mode="sdft", loss=SDFTConfig.symmetric(1.0, distill_weighting=Constant(), aux_weighting=Constant())),
            quick(mode="sdft", loss=SDFTConfig.symmetric(3.0))]


def prebuilt_name(config: TrainConfig) -> str:
    return f"{PREBUILT}/{key(config)}.pt"


def has_prebuilt(config: TrainConfig) -> bool:
    """True when the package ships this model (the quick-mode models of the chapters)."""
    return prebuilt_name(config) in REGISTRY


def _cached_file(config: TrainConfig) -> Path:
    """The cache file of ``config``; a shipped model is first copied there, its weights back in float32."""
    path = cached_path(config)
    if not path.exists() and has_prebuilt(config):
        state = torch.load(asset_path(prebuilt_name(config)), map_location="cpu", weights_only=True)
        state["model"] = {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}
        save_atomic(state, path)
    return path


def is_cached(config: TrainConfig) -> bool:
    """True when ``finetuned(config)`` will load instead of train: the cache has it or the package ships it, and
    FORCE_TRAIN is not 1."""
    if os.environ.get("FORCE_TRAIN", "") == "1":
        return False
    return cached_path(config).exists() or has_prebuilt(config)


def finetuned(config: TrainConfig | None = None, device: str | None = None) -> UNetModel:
    """The source model fine-tuned as ``config`` says (default: SDFT, quick or full by mode); cached on disk.
    With ``config.save_every`` > 0 a run that was stopped (SIGTERM, a time limit) leaves its checkpoints, and the
    next call continues the newest one: the same weights as an uninterrupted run, and the same cache key."""
    config = config or default_config()
    if is_cached(config):
        return load_unet(_cached_file(config))
    with training_lock(config):
        if is_cached(config):   # another process trained it while this one waited
            return load_unet(_cached_file(config))
        return _train_and_cache(config, device)


@contextlib.contextmanager
def training_lock(config: TrainConfig):
    """Hold the key's lock file while fine-tuning it: two processes sharing the cache (the editing bench and the
    benchmark side by side on one GPU) that ask for the same model would otherwise train into one run folder, the
    second wiping the first's log; the second now waits, then loads the first's model."""
    lock = cache_dir() / "runs" / f"{key(config)}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        if fcntl:
            fcntl.flock(handle, fcntl.LOCK_EX)   # released when the file closes
        yield


def _train_and_cache(config: TrainConfig, device: str | None) -> UNetModel:
    path = cached_path(config)
    run_dir = cache_dir() / "runs" / key(config)
    stopped_before = (config.save_every > 0 and os.environ.get("FORCE_TRAIN", "") != "1"
                      and any(run_dir.glob("ckpt_*.pt")))
    if not stopped_before:
        shutil.rmtree(run_dir, ignore_errors=True)   # nothing to continue, or a retrain: a fresh log
    data = limited_target(config.unet.image_size, config.num_images, smile_share=config.target_smile_share)
    trainer = Trainer(dataclasses.replace(config, out_dir=str(run_dir)), device=device, data=data)
    if trainer.run(resume=stopped_before).get("stopped_early"):   # SIGINT/SIGTERM: never cache a half-trained model
        raise KeyboardInterrupt(f"fine-tuning {key(config)} was stopped at step {trainer.step} of {config.steps}")
    model = merge_lora(trainer.model).cpu().eval()   # a LoRA run is cached as its merged, plain U-Net
    save_atomic({"model": model.state_dict(), "unet_config": config.unet.to_flags(), "config": config.to_dict(),
                 "log": (run_dir / "log.jsonl").read_text()}, path)
    for trainer_checkpoint in run_dir.glob("ckpt_*.pt"):   # optimizer state etc.: not needed once exported
        trainer_checkpoint.unlink()
    return model


def training_log(config: TrainConfig) -> list[dict]:
    """The per-step loss terms of a cached (or shipped) run (for loss-curve figures)."""
    state = torch.load(_cached_file(config), map_location="cpu", weights_only=True)
    return [json.loads(line) for line in state["log"].splitlines() if line.strip()]


def _finetune_worker(config: TrainConfig, device: str | None, threads: int) -> str:
    torch.set_num_threads(threads)
    finetuned(config, device=device)
    return key(config)


def finetune_many(configs: list[TrainConfig], workers: int = 1, device: str | None = None,
                  log=print) -> list[str]:
    """Fine-tune every config not yet cached, ``workers`` runs at a time, each in its own process; returns the keys
    trained. A SynthFaces model is so small that one run leaves a GPU mostly idle (its steps are bound by
    per-step overhead), so several concurrent runs finish a seed × λ sweep several times sooner. Every run
    is the same as ``finetuned(config)`` alone: its own seed, data and cache entry."""
    todo = list(dict.fromkeys(config for config in configs if not is_cached(config)))
    if workers <= 1 or len(todo) <= 1:
        for config in todo:
            finetuned(config, device=device)
        return [key(config) for config in todo]
    from concurrent.futures import as_completed
    threads = max(1, (os.cpu_count() or 1) // workers)
    done = []
    with worker_pool(workers) as pool:   # a time limit or Ctrl-C stops the runs at a checkpoint (save_every > 0)
        futures = {pool.submit(_finetune_worker, config, device, threads): config for config in todo}
        for future in as_completed(futures):
            done.append(future.result())
            log(f"fine-tuned {done[-1]} ({len(done)}/{len(todo)})")
    return done
