"""Does the unbiased aux estimator (``aux_samples=m``) keep what the exact aux term keeps? SynthFaces SDFT λ = 3
fine-tunings with the exact term against m drawn aux samples, several seeds each, naive for reference, every model
evaluated for retention as the benchmark does it (``experiments.benchmark``: DDIM from the shared noises, the
shipped classifier, retention against the source's samples). Fine-tunings run in parallel worker processes
(``zoo.finetune_many``; start CUDA MPS first on a GPU: ``nvidia-cuda-mps-control -d``).

    python3 bench/aux_estimator_retention.py --out OUT/aux_retention --workers 9      # GPU: 9 fine-tunings
    python3 bench/aux_estimator_retention.py --out /tmp/aux_retention --smoke         # the machinery on a CPU

"Exact" is the benchmark's own SDFT λ = 3 run (``TrainConfig.synthfaces_full``: aux samples of weight < 1e-6
skipped, exact to that threshold; ``--exact-skip 0`` computes every one). OUT/aux_retention.json is rewritten after
every evaluated model: per-seed retention (dark skin, eyewear, smile, mean), mean ± sd per method, and a verdict per
estimator: within the exact runs' band when |Δ mean retention| ≤ 2 sd of the exact runs (the combined standard
error of the difference is reported beside it).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RETENTION = ("retain_dark_skin", "retain_eyewear", "retain_expression", "retain_mean")
LAMBDA = 3.0


def methods(base, exact_skip: float, samples: tuple[int, ...]) -> dict:
    """label → function of the seed giving that run's TrainConfig."""
    from sdft_lite.sdft import SDFTConfig
    sdft = dataclasses.replace(base, mode="sdft", loss=SDFTConfig.symmetric(LAMBDA), aux_skip_below=exact_skip)
    out = {"naive": dataclasses.replace(base, mode="naive", loss=SDFTConfig.naive()), f"SDFT λ={LAMBDA:g} exact": sdft}
    out.update({f"SDFT λ={LAMBDA:g} aux_samples={m}": dataclasses.replace(sdft, aux_skip_below=0.0, aux_samples=m)
                for m in samples})
    return out


def settings(smoke: bool):
    """(fine-tuning base, BenchmarkConfig for evaluation): the full benchmark's, or CPU-tiny ones."""
    from sdft_lite.experiments.benchmark import BenchmarkConfig
    from sdft_lite.train import TrainConfig
    if not smoke:
        return TrainConfig.synthfaces_full(), BenchmarkConfig.full()
    base = TrainConfig.synthfaces_quick(steps=3, batch_size=8)
    return base, BenchmarkConfig.quick(finetune=base, num_noises=24, sample_steps="ddim5", num_sdedit=4,
                                       num_reference=32, batch_size=24)


def summary_of(records: list[dict], labels: list[str]) -> dict:
    """{label: {metric: {mean, sd, n}}} over seeds."""
    from sdft_lite.experiments.benchmark import summarize
    out = {}
    for label in labels:
        rows = [{k: r["metrics"][k] for k in RETENTION} for r in records if r["method"] == label]
        if rows:
            out[label] = summarize(rows)
    return out


def verdicts(summary: dict, exact: str) -> list[str]:
    """One line per estimator: its mean retention against the exact runs' band (2 sd) and the combined SE."""
    if exact not in summary:
        return []
    x = summary[exact]["retain_mean"]
    lines = []
    for label, stats in summary.items():
        if "aux_samples" not in label:
            continue
        e = stats["retain_mean"]
        delta = e["mean"] - x["mean"]
        se = math.sqrt((e["sd"] ** 2 / e["n"] if e["n"] > 1 else 0) + (x["sd"] ** 2 / x["n"] if x["n"] > 1 else 0))
        band = 2 * x["sd"] if x["n"] > 1 else math.nan
        within = abs(delta) <= band if not math.isnan(band) else None
        judged = {True: "WITHIN", False: "OUTSIDE", None: "cannot judge (one exact seed)"}[within]
        lines.append(f"{label}: mean retention {e['mean']:.3f} vs exact {x['mean']:.3f} (Δ {delta:+.3f}; 2 sd of "
                     f"the exact runs {band:.3f}, combined SE {se:.3f}, |Δ|/SE {abs(delta) / se if se else math.nan:.1f}"
                     f"): {judged} the exact loss's band")
    return lines


def write(out: Path, result: dict) -> None:
    from sdft_lite.experiments.benchmark import without_nan
    (out / "aux_retention.json").write_text(json.dumps(without_nan(result), indent=2, ensure_ascii=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--aux-samples", default="4", help="estimators to run, e.g. 4 or 4,16")
    parser.add_argument("--exact-skip", type=float, default=None,
                        help="aux_skip_below of the exact runs (default: the benchmark preset's 1e-6)")
    parser.add_argument("--workers", type=int, default=None, help="fine-tunings at once (default: 9 on a GPU)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny settings on the CPU (and a private cache)")
    parser.add_argument("--data", default=None, help="where the rendered test sets go (default: a temporary folder, "
                                                     "so OUT holds only the results a device run brings back)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:   # the smoke's tiny models stay out of the user's SynthFaces cache
        os.environ.setdefault("SDFT_LITE_HOME", str(out / "home"))
    import torch

    from sdft_lite.config import hardware, pick_device
    from sdft_lite.experiments.benchmark import Evaluator, Instruments, prepare_data
    from sdft_lite.experiments.zoo import finetune_many, finetuned, source_model
    started = time.perf_counter()
    device = pick_device(args.device or ("cpu" if args.smoke else None))
    base, benchmark = settings(args.smoke)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    exact_skip = base.aux_skip_below if args.exact_skip is None else args.exact_skip
    by_label = methods(base, exact_skip, tuple(int(m) for m in args.aux_samples.split(",")))
    runs = [(label, seed, dataclasses.replace(config, seed=seed)) for seed in seeds
            for label, config in by_label.items()]
    workers = args.workers or (9 if device.type == "cuda" else 1)
    finetune_many([config for _, _, config in runs], workers=workers, device=str(device))
    trained = time.perf_counter() - started

    size = source_model().config.image_size
    data = prepare_data(benchmark, Path(args.data or tempfile.mkdtemp(prefix="aux_retention_data_")), size)
    evaluator = Evaluator(benchmark, data, Instruments.load(data, device), device, size)
    source_metrics, _, _ = evaluator.evaluate(source_model(), translate=False)
    labels = list(by_label)
    result = {"experiment": "aux estimator retention", "lambda": LAMBDA, "seeds": list(seeds),
              "exact_aux_skip_below": exact_skip, "hardware": hardware(), "torch": torch.__version__,
              "command": " ".join(sys.argv), "smoke": args.smoke, "workers": workers,
              "finetune": {"steps": base.steps, "batch_size": base.batch_size, "lr": base.lr},
              "evaluation": {"num_noises": benchmark.num_noises, "sample_steps": benchmark.sample_steps,
                             "noise_seed": benchmark.noise_seed},
              "source": {k: source_metrics[k] for k in RETENTION}, "finetune_wall_seconds": round(trained, 1),
              "records": []}
    for label, seed, config in runs:
        metrics, _, _ = evaluator.evaluate(finetuned(config, device=str(device)), translate=False)
        result["records"].append({"method": label, "seed": seed, "metrics": {
            k: metrics[k] for k in (*RETENTION, "style_rate", "fd_full")}})
        result["summary"] = summary_of(result["records"], labels)
        result["verdict"] = verdicts(result["summary"], labels[1])
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        write(out, result)
        print(f"{label} seed {seed}: " + ", ".join(f"{k.removeprefix('retain_')} {metrics[k]:.3f}" for k in RETENTION),
              flush=True)
    for label, stats in result["summary"].items():
        print(f"{label:32s} " + "  ".join(f"{k.removeprefix('retain_')} {s['mean']:.3f}±{s['sd']:.3f}"
                                         for k, s in stats.items()))
    print("\n".join(result["verdict"]))
    print(f"{out / 'aux_retention.json'}; {result['wall_seconds']:.0f} s on {result['hardware']}")
    return 0


if __name__ == "__main__":   # the fine-tuning workers are spawned: this guard is required
    raise SystemExit(main())
