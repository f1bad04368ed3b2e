"""SDFT among its rivals on SynthFaces (GPU): every method of ``experiments.frontier`` over its knob, the full
benchmark's budget and shared noises, seeds fine-tuned in parallel (CUDA MPS helps), then one table and figure.

    python bench/synthfaces_frontier.py --seeds 0 --out OUT/seed0 --workers 12        # one call per seed (GPU)
    python bench/synthfaces_frontier.py --merge OUT/seed0 OUT/seed1 OUT/seed2 --out results/synthfaces_frontier
    python bench/synthfaces_frontier.py --quick --out /tmp/frontier                   # the machinery on a CPU
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdft_lite import figures  # noqa: E402
from sdft_lite.experiments.frontier import (FrontierConfig, format_frontier, frontier_figure,  # noqa: E402
                                            merge_results, run_frontier, write_result)
from provenance import commit  # noqa: E402  (bench/ is this script's folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="the CPU-sized check (one seed, quick budget)")
    parser.add_argument("--merge", nargs="+", help="folders of per-seed runs to merge into --out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        result = merge_results([json.loads((Path(f) / "frontier.json").read_text()) for f in args.merge])
        result["command"], result["commit"] = " ".join(sys.argv), commit()   # each part keeps its own
        write_result(out, result)
        figures.save(frontier_figure(result), out / "frontier.png")
    else:
        config = FrontierConfig.quick() if args.quick else FrontierConfig.full()
        seeds = tuple(int(s) for s in args.seeds.split(","))
        config = dataclasses.replace(config, benchmark=dataclasses.replace(config.benchmark, seeds=seeds))
        result = run_frontier(config, out, workers=args.workers)
        result["command"], result["commit"] = " ".join(sys.argv), commit()
        write_result(out, result)
    table = format_frontier(result)
    (out / "frontier.txt").write_text(table + "\n")
    print(table)
    print(f"{out / 'frontier.json'}, {out / 'frontier.png'}; {result['wall_seconds']:.0f} s on {result['hardware']}")
    return 0


if __name__ == "__main__":   # the fine-tuning workers are spawned: this guard is required
    raise SystemExit(main())
