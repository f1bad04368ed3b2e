"""The SynthFaces source model: a U-Net trained from scratch on the photo domain (the stand-in for P2's FFHQ model).

It is trained once on a GPU with the package's own trainer (``sdft-lite synthfaces train-source``) and shipped as a
compact fp16 checkpoint, so that the demo and the chapters can fine-tune it on a CPU.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..checkpoint import save_atomic
from ..train import TrainConfig, Trainer
from ..unet import UNetConfig
from ..synthfaces.domains import DomainSpec, render_domain


def export_compact(trainer_checkpoint: str | Path, out: str | Path, info: dict, which: str = "model") -> Path:
    """Write a small, weights-only checkpoint: fp16 weights + the U-Net flags + how it was made."""
    state = torch.load(trainer_checkpoint, map_location="cpu", weights_only=True)
    weights = {k: v.half() if v.is_floating_point() else v for k, v in state[which].items()}
    return save_atomic({"model": weights, "unet_config": state["unet_config"], "info": info}, out)


def train_source(out: str | Path, unet: UNetConfig, steps: int, batch: int, lr: float = 2e-4,
                 num_images: int = 50_000, seed: int = 0, device: str | None = None,
                 work_dir: str | Path | None = None, compile: bool = False, save_every: int = 0) -> dict:
    """Train the source model on ``num_images`` photo faces and export it to ``out``; returns the run's summary.

    The run's checkpoints go to ``work_dir`` (default: ``out`` with the suffix ``.run``), every ``save_every`` steps
    (default: a quarter of the run); called again with the same arguments it continues from the newest one, so a
    run stopped by a time limit is finished by a second call, bit for bit as if it had not stopped. A run stopped by
    SIGTERM or SIGINT saves its checkpoint, exports nothing and returns ``stopped_at_step``. ``compile``:
    torch.compile on a GPU."""
    start = time.perf_counter()
    data = render_domain(DomainSpec.source(), num_images, unet.image_size, seed)
    render_seconds = time.perf_counter() - start
    work_dir = Path(work_dir or Path(out).with_suffix(".run"))
    config = TrainConfig(mode="scratch", out_dir=str(work_dir), unet=unet, steps=steps, batch_size=batch, lr=lr,
                         warmup_steps=200, ema_rate=0.999, save_every=save_every or max(steps // 4, 1), keep_last=1,
                         sample_every=0, log_every=50, seed=seed, progress=False, compile=compile)
    trainer = Trainer(config, device=device, data=data)
    resumed = trainer.resume(if_present=True)
    resumed_from = trainer.step if resumed else None
    result = trainer.run()
    if result["stopped_early"]:   # SIGTERM/SIGINT (a time limit): the checkpoint is saved, nothing is exported
        return {"stopped_at_step": trainer.step, "steps": steps, "resumed_from_step": resumed_from,
                "checkpoints": str(work_dir), "to_continue": "run the same command again"}
    info = {"what": "SynthFaces source model (photo domain)", "unet_preset_flags": unet.to_flags(),
            "steps": steps, "batch": batch, "lr": lr, "num_images": num_images, "seed": seed,
            "final_loss": result.get("loss"), "render_seconds": round(render_seconds, 1),
            "train_seconds": round(time.perf_counter() - start - render_seconds, 1),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "weights": "EMA (rate 0.999)", "resumed_from_step": resumed_from, "compiled": compile}
    export_compact(work_dir / f"ckpt_{steps:07d}.pt", out, info, which="ema")
    (Path(out).with_suffix(".json")).write_text(json.dumps(info, indent=2))
    return info
