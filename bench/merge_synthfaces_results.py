"""Combine ``synthfaces_reproduce.py`` outputs of several GPU calls (e.g. seed 0 in one, seeds 1-2 in the next)
into one folder of results: every number over all seeds, the frontier and forgetting plots redrawn.

    python bench/merge_synthfaces_results.py run_seed0/ run_seed12/ --out results/synthfaces_full

The benchmark's per-run metrics are merged and summarised again. Parts that stored only per-call summaries
(mean, sd, n) are combined exactly with the pooled-variance formula:
    mean = Σ n_i m_i / N,   sd² = (Σ (n_i − 1) s_i² + Σ n_i (m_i − mean)²) / (N − 1).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdft_lite import figures  # noqa: E402
from sdft_lite.train import TrainConfig  # noqa: E402
from sdft_lite.experiments.benchmark import (BenchmarkConfig, reproduction_records,  # noqa: E402
                                            frontier_figure, summarize, without_nan)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthfaces_reproduce import plot_forgetting  # noqa: E402


def pooled(parts: list[dict]) -> dict:
    """Combine {"mean", "sd", "n"} summaries of disjoint groups into one."""
    parts = [p for p in parts if p["n"]]
    n = sum(p["n"] for p in parts)
    if not n:
        return {"mean": math.nan, "sd": math.nan, "n": 0}
    mean = sum(p["n"] * p["mean"] for p in parts) / n
    if n < 2:
        return {"mean": mean, "sd": math.nan, "n": n}
    within = sum((p["n"] - 1) * (p["sd"] if p["sd"] is not None and p["n"] > 1 else 0.0) ** 2 for p in parts)
    between = sum(p["n"] * (p["mean"] - mean) ** 2 for p in parts)
    return {"mean": mean, "sd": math.sqrt((within + between) / (n - 1)), "n": n}


def pooled_tree(trees: list[dict]) -> dict:
    """Pool nested {key: ... {metric: {"mean", "sd", "n"}}} dicts with the same keys."""
    first = trees[0]
    if set(first) == {"mean", "sd", "n"}:
        return pooled(trees)
    return {key: pooled_tree([t[key] for t in trees if key in t]) for key in first}


def load(folder: Path, name: str) -> dict | None:
    path = folder / name
    return json.loads(path.read_text()) if path.exists() else None


def finetune_config(raw: dict) -> TrainConfig:
    """The fine-tuning budget of a results file: a TrainConfig dict, or the FinetuneSpec dict of files written
    before the configs were unified (steps, batch, lr, num_target, seed)."""
    if "batch_size" in raw:
        return TrainConfig.synthfaces_full(steps=raw["steps"], batch_size=raw["batch_size"], lr=raw["lr"],
                                           num_images=raw["num_images"], seed=raw["seed"],
                                           target_smile_share=raw.get("target_smile_share", 0.0))
    return TrainConfig.synthfaces_full(steps=raw["steps"], batch_size=raw["batch"], lr=raw["lr"],
                                       num_images=raw["num_target"], seed=raw["seed"])


def config_from(result: dict, seeds: tuple[int, ...]) -> BenchmarkConfig:
    raw = dict(result["config"])
    raw["finetune"] = finetune_config(raw["finetune"])
    raw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return BenchmarkConfig(**{**raw, "seeds": seeds})


def merge_benchmark(folders: list[Path], out: Path) -> dict:
    results = [r for r in (load(f / "benchmark", "results.json") for f in folders) if r]
    if any(r["source"] != results[0]["source"] for r in results):
        raise ValueError("the calls evaluated different source samples: they cannot be merged")
    runs = [run for r in results for run in r["runs"]]
    seeds = tuple(sorted({run["seed"] for run in runs}))
    config = config_from(results[0], seeds)
    summary = {"source": summarize([results[0]["source"]]),
               **{label: summarize([run["metrics"] for run in runs if run["label"] == label])
                  for label in dict.fromkeys(run["label"] for run in runs)}}
    merged = {**results[0], "config": config.to_dict(), "runs": runs, "summary": summary,
              "calls": [{"seeds": r["config"]["seeds"], "hardware": r["hardware"], "wall_seconds": r["wall_seconds"]}
                        for r in results]}
    merged["records"] = reproduction_records(summary, config, results[0]["hardware"])
    for name in ("files", "load_average", "cpu_seconds", "wall_seconds"):
        merged.pop(name, None)
    (out / "benchmark.json").write_text(json.dumps(without_nan(merged), indent=2, ensure_ascii=False))
    figures.save(frontier_figure(summary, config), out / "frontier.png")
    seed0 = next(f for f, r in zip(folders, results) if 0 in r["config"]["seeds"])
    for image in ("grid.png", "sdedit_grid.png"):
        if (seed0 / "benchmark" / image).is_file():
            shutil.copy(seed0 / "benchmark" / image, out / image)
        else:   # e.g. a file the device did not return: the numbers merge without it
            print(f"{seed0 / 'benchmark' / image} is missing: not copied")
    return merged


def merge_part(folders: list[Path], name: str, key: str, out: Path) -> dict | None:
    parts = [p for p in (load(f, name) for f in folders) if p]
    if not parts:
        return None
    merged = {k: v for k, v in parts[0].items() if k not in (key, "per_run", "command", "wall_seconds")}
    merged[key] = pooled_tree([p[key] for p in parts])
    merged["calls"] = [{k: p.get(k) for k in ("command", "commit", "device", "wall_seconds")} for p in parts]
    (out / name).write_text(json.dumps(without_nan(merged), indent=2, ensure_ascii=False))
    return merged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    merge_benchmark(args.folders, args.out)
    forgetting = merge_part(args.folders, "forgetting.json", "curves", args.out)
    if forgetting:
        curves = {label: {int(steps): stats for steps, stats in by_steps.items()}
                  for label, by_steps in forgetting["curves"].items()}
        seeds = max(s["retain_mean"]["n"] for by_steps in curves.values() for s in by_steps.values())
        plot_forgetting(curves, args.out / "forgetting.png", seeds)
    merge_part(args.folders, "translation.json", "summary", args.out)
    merge_part(args.folders, "pair_distance.json", "summary", args.out)
    print(f"merged {len(args.folders)} folders into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
