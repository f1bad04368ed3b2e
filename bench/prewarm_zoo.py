"""Fine-tune, in parallel, every SynthFaces model the full-mode chapters use (seed 0 of the full benchmark), so that
the chapters then load them from the zoo's cache. GPU only; not run in CI.

    python bench/prewarm_zoo.py --workers 10
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdft_lite.experiments.benchmark import BenchmarkConfig  # noqa: E402
from sdft_lite.experiments.zoo import finetune_many  # noqa: E402
from sdft_lite.train import TrainConfig  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--modes", default="", help="only these modes, e.g. naive,sdft (SDFT at λ = 1)")
    parser.add_argument("--labels", default="",
                        help="only these benchmark runs, ';'-separated labels, e.g. 'scratch;SDFT λ=1, no aux'")
    args = parser.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    runs = BenchmarkConfig.full(seeds=seeds).runs()
    labels = set(filter(None, args.labels.split(";")))
    if labels - {label for label, _ in runs}:
        parser.error(f"no benchmark run {', '.join(sorted(labels - {label for label, _ in runs}))}; "
                     f"the full benchmark has {', '.join(dict(runs))}")
    specs = [spec for label, spec in runs if not labels or label in labels]
    if args.modes:   # the chapter-6 pair: naive and the default SDFT spec
        specs = [TrainConfig.synthfaces_full(mode=mode, seed=seed) for mode in args.modes.split(",") for seed in seeds]
    trained = finetune_many(specs, workers=args.workers)
    print(f"{len(trained)} models fine-tuned, {len(set(specs))} needed")
    return 0


if __name__ == "__main__":   # the worker processes are spawned: this guard is required
    raise SystemExit(main())
