"""``sdft-lite demo``: SDFT's claim in one command, on SynthFaces (Hur et al., WACV 2024, Fig. 1 on rendered faces).

The shipped photo-domain model is fine-tuned on the limited portrait target (no dark skin, no eyewear, no smiles)
naively and with SDFT, with equal budgets; both are sampled from the same noises as the source model and the
attribute classifier counts what each kept. On a CPU (or with SDFT_QUICK=1) this is the quick benchmark,
``BenchmarkConfig.quick()``: naive vs SDFT λ = 3, 120 steps each, one seed, 128 shared noises and 48 SDEdit
translations per model, under 10 minutes on two idle cores with an empty cache. On a GPU (or with ``--full``)
it is the full one: scratch, naive, a λ sweep, the weighting and aux ablations, three seeds.

    sdft-lite demo                      # quick on a CPU, full on a GPU
    sdft-lite demo --out runs/demo --full
"""
from __future__ import annotations

import argparse
import time

from ..config import hardware, pick_device, quick_mode


def add_parser(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="naive fine-tuning vs SDFT on SynthFaces: table, grid, frontier",
                                 description="Fine-tune the shipped SynthFaces source model on the limited "
                                             "portrait target naively and with SDFT, sample all from the same "
                                             "noises and measure which attributes each kept.")
    demo.add_argument("--out", default="runs/demo", help="folder for results.json, grid.png, frontier.png")
    demo.add_argument("--full", action="store_true",
                      help="the full benchmark (λ sweep, ablations, 3 seeds): GPU-sized, hours on a CPU")
    demo.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    demo.add_argument("--workers", type=int, default=None,
                      help="models fine-tuned at once, each in its own process (default: 8 on a GPU, 1 on a CPU)")
    demo.set_defaults(func=run_demo)


def wants_full(full_flag: bool, device_type: str) -> bool:
    """--full, or a GPU outside quick mode."""
    return full_flag or (device_type == "cuda" and not quick_mode())


def run_demo(args: argparse.Namespace) -> int:
    from ..experiments.benchmark import BenchmarkConfig, default_workers, report, run_benchmark
    started = time.perf_counter()
    device = pick_device(args.device)
    full = wants_full(args.full, device.type)
    config = BenchmarkConfig.full() if full else BenchmarkConfig.quick()
    print(f"preset={config.name} device={device} hardware={hardware()}")
    print(f"SynthFaces benchmark, {config.name} preset: {', '.join(dict.fromkeys(l for l, _ in config.runs()))}; "
          f"{len(config.seeds)} seed(s), {config.finetune.steps} fine-tuning steps × batch {config.finetune.batch_size}, "
          f"{config.num_noises} shared noises ({config.sample_steps}), {config.num_sdedit} SDEdit translations")
    if full and device.type != "cuda":
        print("warning: the full benchmark on a CPU takes hours; drop --full for the quick one")
    workers = args.workers or default_workers(device)
    result = run_benchmark(config, args.out, device=str(device), workers=workers)
    print()
    print(report(result))
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0
