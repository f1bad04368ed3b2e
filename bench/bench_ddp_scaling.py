"""Data-parallel scaling of the SDFT training step under torchrun (DistributedDataParallel), at a fixed per-GPU batch.

    for n in 1 2 4 8; do
      torchrun --standalone --nproc_per_node $n bench/bench_ddp_scaling.py --out bench/results/ddp_scaling
    done
    python bench/bench_ddp_scaling.py --summarize bench/results/ddp_scaling      # efficiency table from the JSONs

Each run trains the 256-px FFHQ-P2 U-Net (93.6M parameters; ``--unet-preset tiny`` for a CPU smoke test with gloo)
in SDFT mode from a random-init "source" checkpoint on generated images, times ``--steps`` steps after
``--warmup``, and writes ``<out>/world<N>.json``: global images/s, per-GPU peak memory, and whether every rank
holds bit-identical weights at the end. Scaling efficiency at N GPUs = (img/s at N) / (N × img/s at 1).
Not run in CI.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdft_lite.checkpoint import save_atomic  # noqa: E402
from sdft_lite.config import hardware  # noqa: E402
from sdft_lite.data import ImageSet  # noqa: E402
from sdft_lite.distributed import init_distributed  # noqa: E402
from sdft_lite.train import TrainConfig, Trainer  # noqa: E402
from sdft_lite.unet import UNetConfig, UNetModel  # noqa: E402

PRESETS = {"ffhq256": UNetConfig.ffhq256, "tiny": UNetConfig.tiny}


def source_checkpoint(config: UNetConfig, folder: Path, rank: int) -> Path:
    """A random-init source model, written once by rank 0 (seeded, so every rank would make the same one)."""
    path = folder / "source.pt"
    if rank == 0:
        torch.manual_seed(0)
        save_atomic({"model": UNetModel(config).state_dict(), "unet_config": config.to_flags()}, path)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    return path


def generated_images(size: int, n: int = 64) -> ImageSet:
    generator = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8), files=[])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> int:
    dist = init_distributed()
    unet = PRESETS[args.unet_preset]().replace(use_checkpoint=args.checkpointing)
    shared = Path(args.workdir)
    shared.mkdir(parents=True, exist_ok=True)
    source = source_checkpoint(unet, shared, dist.rank)
    config = TrainConfig(mode="sdft", source_checkpoint=str(source), unet=unet, out_dir=str(shared / "run"),
                         steps=args.warmup + args.steps, batch_size=args.batch_per_gpu * dist.world,
                         save_every=0, sample_every=0, progress=False,
                         log_every=10 ** 9)
    trainer = Trainer(config, data=generated_images(unet.image_size))
    device = trainer.device
    for _ in range(args.warmup):
        trainer.train_step()
        trainer.step += 1
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
        trainer.step += 1
    synchronize(device)
    seconds = time.perf_counter() - started
    identical = trainer.replicas_identical() if dist.world > 1 else True
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    peaks = [peak]
    if dist.world > 1 and peak is not None:
        peaks = [None] * dist.world
        torch.distributed.all_gather_object(peaks, peak)
    if dist.main:
        result = {"world_size": dist.world, "hardware": hardware(), "unet_preset": args.unet_preset,
                  "batch_per_gpu": args.batch_per_gpu, "global_batch": config.batch_size,
                  "gradient_checkpointing": args.checkpointing, "warmup_steps": args.warmup, "steps": args.steps,
                  "seconds": round(seconds, 3), "images_per_s": round(args.steps * config.batch_size / seconds, 2),
                  "peak_memory_gib_per_gpu": peaks, "replicas_identical": identical,
                  "command": " ".join(sys.argv)}
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"world{dist.world}.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2), flush=True)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0 if identical else 1


def summarize(folder: Path) -> int:
    runs = sorted((json.loads(p.read_text()) for p in folder.glob("world*.json")), key=lambda r: r["world_size"])
    base = next((r for r in runs if r["world_size"] == 1), None)
    for r in runs:
        efficiency = r["images_per_s"] / (r["world_size"] * base["images_per_s"]) if base else float("nan")
        print(f"{r['world_size']} GPU(s): {r['images_per_s']:8.2f} img/s  efficiency {efficiency:6.1%}  "
              f"identical weights {r['replicas_identical']}  peak {r['peak_memory_gib_per_gpu']}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/ddp_scaling")
    parser.add_argument("--unet-preset", choices=sorted(PRESETS), default="ffhq256")
    parser.add_argument("--batch-per-gpu", type=int, default=8)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing in the U-Net")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "sdft_ddp_bench"))
    parser.add_argument("--summarize", type=Path, default=None, help="print the efficiency table of a folder")
    args = parser.parse_args()
    return summarize(args.summarize) if args.summarize else run(args)


if __name__ == "__main__":
    raise SystemExit(main())
