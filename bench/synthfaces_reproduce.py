"""The paper's experiments on SynthFaces, on one GPU, with seeds: Tables 1, 3, 4, Fig. 8, the λ frontier and the
step at which naive fine-tuning forgets. Not run in CI (a GPU job of about ten minutes).

    python bench/synthfaces_reproduce.py --out $OUT/repro --workers 8            # everything, 3 seeds
    python bench/synthfaces_reproduce.py --out /tmp/r --smoke                    # a CPU smoke run, tiny settings
    python bench/synthfaces_reproduce.py --out $OUT/scarce --limited-smile-share 0.02   # 2% smiles in the target

Every fine-tuning run is ``sdft_lite.experiments.zoo.finetuned(spec)``; ``finetune_many`` runs ``--workers`` of
them at once (a 1.4M-parameter model leaves an H100 mostly idle). Then:

1. ``run_benchmark`` (the same code as ``sdft-lite synthfaces benchmark``): scratch, naive, SDFT over the λ sweep,
   the weighting ablation (constant, min-SNR, P2-form) and SDFT without the auxiliary term, every seed, from the
   same shared noises (Table 3, Table 4, Fig. 8, the frontier) → ``benchmark/``.
2. Forgetting: naive and SDFT (λ = 1) after 100, 200, 400 and 800 steps, retention from the same noises.
3. Table 1 analogue: SDEdit and EGSDE (one domain-specific extractor, trained here) from held-out photos with
   scratch, naive and SDFT at λ = 0.1 and λ = 1, every seed: PSNR / SSIM to the input, attributes kept,
   portrait-style rate, realism.
4. Table 3's distance: source vs fine-tuned samples from the same noise, in pixels and in the realism net's
   feature space (the "LPIPS-style" distance; LPIPS' own weights cannot be downloaded here).
The Table 2 analogue (Asyrp editing, judged by the instrument that did not train the edit) has its own script,
``bench/asyrp_editing.py``.

Each part writes its JSON (command, commit, device, wall time) as soon as it ends.

``--limited-smile-share p`` fine-tunes on a limited target in which a share p of the portraits smiles
(``DomainSpec.limited_target(smile_share=p)``: the same faces, a few of them smiling; MetFaces has smiles scarcely,
not never), through ``TrainConfig.target_smile_share``, so its models are zoo entries of their own; "keep smile"
then measures a scarce attribute rather than an absent one.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdft_lite.config import hardware, pick_device  # noqa: E402
from sdft_lite.editing import EGSDEConfig, LowPass, egsde_ddim, sdedit_ddim, train_dse  # noqa: E402
from sdft_lite.metrics.fidelity import compute_fidelity  # noqa: E402
from sdft_lite.synthfaces import DomainSpec, write_domain  # noqa: E402
from sdft_lite.experiments.benchmark import (ABSENT, BenchmarkConfig, Evaluator, Instruments,  # noqa: E402
                                            prepare_data, retention, run_benchmark, sdft_label, summarize)
from sdft_lite.experiments.zoo import finetune_many, finetuned, source_model  # noqa: E402
from sdft_lite.sdft import SDFTConfig  # noqa: E402
from sdft_lite.train import TrainConfig  # noqa: E402
from sdft_lite.unet import UNetConfig  # noqa: E402
from provenance import commit  # noqa: E402  (bench/ is this script's folder)

FORGET_FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1)   # of the full budget: 100, 200, 400, 800 steps
TRANSLATION_LAMS = (0.1, 1.0)


def provenance(started: float) -> dict:
    return {"command": " ".join(sys.argv), "commit": commit(), "device": hardware(),
            "wall_seconds": round(time.perf_counter() - started, 1)}


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, default=float, allow_nan=True))
    print(f"wrote {path}", flush=True)


def forget_steps(config: BenchmarkConfig) -> list[int]:
    return sorted({max(1, round(f * config.finetune.steps)) for f in FORGET_FRACTIONS})


def forgetting_specs(config: BenchmarkConfig) -> dict[tuple[str, int, int], TrainConfig]:
    """(mode label, steps, seed) → spec: naive and SDFT λ = 1, stopped early."""
    out = {}
    for seed in config.seeds:
        for steps in forget_steps(config):
            base = dataclasses.replace(config.finetune, seed=seed, steps=steps)
            out["naive", steps, seed] = dataclasses.replace(base, mode="naive", loss=SDFTConfig.naive())
            out[sdft_label(1.0), steps, seed] = dataclasses.replace(base, mode="sdft", loss=SDFTConfig.symmetric(1.0))
    return out


def translation_specs(config: BenchmarkConfig) -> dict[tuple[str, int], TrainConfig]:
    out = {}
    for seed in config.seeds:
        base = dataclasses.replace(config.finetune, seed=seed)
        out["scratch", seed] = dataclasses.replace(base, mode="scratch", loss=SDFTConfig.naive())
        out["naive", seed] = dataclasses.replace(base, mode="naive", loss=SDFTConfig.naive())
        for lam in TRANSLATION_LAMS:
            out[sdft_label(lam), seed] = dataclasses.replace(base, mode="sdft", loss=SDFTConfig.symmetric(lam))
    return out


def feature_distance(instruments: Instruments, a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean squared distance of unit-normalised realism-net features of pairs (a_i, b_i): [N, 3, S, S] each."""
    fa = torch.nn.functional.normalize(instruments.realism(a).double(), dim=1)
    fb = torch.nn.functional.normalize(instruments.realism(b).double(), dim=1)
    return float((fa - fb).square().sum(dim=1).mean())


def forgetting(config, evaluator, instruments, specs, out_dir: Path, started: float) -> dict:
    per_run = {}
    for (label, steps, seed), spec in specs.items():
        metrics, _, _ = evaluator.evaluate(finetuned(spec), translate=False)
        per_run.setdefault(label, {}).setdefault(steps, []).append(
            {k: metrics[k] for k in ("retain_mean", "retain_dark_skin", "retain_eyewear", "retain_expression",
                                     "style_rate", "fd_full")})
    curves = {label: {steps: summarize(runs) for steps, runs in by_steps.items()}
              for label, by_steps in per_run.items()}
    payload = {"experiment": "forgetting: retention of absent attributes vs fine-tuning steps",
               "steps": forget_steps(config), "curves": curves, "per_run": per_run, **provenance(started)}
    write_json(out_dir / "forgetting.json", payload)
    plot_forgetting(curves, out_dir / "forgetting.png", len(config.seeds))
    return payload


def plot_forgetting(curves: dict, path: Path, seeds: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for label, by_steps in curves.items():
        steps = sorted(by_steps)
        for ax, key in zip(axes, ("retain_mean", "style_rate")):
            ys = [by_steps[s][key]["mean"] for s in steps]
            sds = [0 if math.isnan(by_steps[s][key]["sd"]) else by_steps[s][key]["sd"] for s in steps]
            ax.errorbar(steps, ys, yerr=sds, marker="o", capsize=3, label=label)
    axes[0].set_ylabel("retention of absent attributes")
    axes[1].set_ylabel("portrait-style rate")
    for ax in axes:
        ax.set_xlabel("fine-tuning steps")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(f"When does fine-tuning forget? ({seeds} seeds, mean ± sd)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def translation_table(config, evaluator, instruments, specs, dse_steps: int, device, out_dir: Path,
                      started: float) -> dict:
    """SDEdit and EGSDE from the evaluator's held-out photos with every model of ``specs``."""
    size = evaluator.size
    with tempfile.TemporaryDirectory() as folder:
        source_dir = write_domain(DomainSpec.source(), f"{folder}/source", n=1300, size=size)
        target_dir = write_domain(DomainSpec.limited_target(), f"{folder}/limited", n=1300, size=size)
        dse = train_dse(source_dir, target_dir, UNetConfig.demo32().replace(image_size=size), steps=dse_steps,
                        batch=32, device=device).requires_grad_(False).eval()
    egsde = EGSDEConfig(lambda_s=500.0, lambda_i=2.0, lowpass=LowPass())
    photos, noise, schedule = evaluator.photos, evaluator.sdedit_noise, evaluator.sdedit_schedule
    methods = {"SDEdit": lambda m, x, e: sdedit_ddim(m, x, schedule, config.sdedit_t0, noise=e),
               "EGSDE": lambda m, x, e: egsde_ddim(m, dse, x, schedule, t0=config.sdedit_t0, config=egsde,
                                                   noise=e)}
    per_run = {}
    for (label, seed), spec in specs.items():
        model = finetuned(spec).to(device).eval()
        for method, translate in methods.items():
            out = torch.cat([translate(model, photos[i:i + config.batch_size].to(device),
                                       noise[i:i + config.batch_size].to(device)).clamp(-1, 1).cpu()
                             for i in range(0, len(photos), config.batch_size)])
            fidelity = compute_fidelity(photos, out)
            labels = instruments.classifier.predict(out)
            metrics = {"PSNR": fidelity.psnr_db, "SSIM": fidelity.ssim,
                       "keep_mean": float(np.mean([(getattr(labels, a) == getattr(evaluator.photo_labels, a)).mean()
                                                   for a in ("skin", "expression", "eyewear", "hair")])),
                       **{f"retain_{a.key}": retention(evaluator.photo_labels, labels, a) for a in ABSENT},
                       "style_rate": float((labels.style == 1).mean()),
                       **instruments.realism_scores(out)}
            per_run.setdefault((method, label), []).append(metrics)
        model.cpu()
    summary = {f"{method} · {label}": summarize(runs) for (method, label), runs in per_run.items()}
    payload = {"experiment": "Table 1 analogue: translation of held-out photos to portraits",
               "n_photos": len(photos), "t0": config.sdedit_t0, "steps": config.sdedit_steps,
               "egsde": {"lambda_s": egsde.lambda_s, "lambda_i": egsde.lambda_i, "dse_steps": dse_steps},
               "summary": summary, "per_run": {f"{m} · {label}": runs for (m, label), runs in per_run.items()},
               **provenance(started)}
    write_json(out_dir / "translation.json", payload)
    return payload


def pair_distances(evaluator, instruments, source: torch.Tensor, specs, out_dir: Path, started: float) -> dict:
    """source: the source model's samples from the evaluator's shared noises [N, 3, S, S]."""
    per_run = {}
    for (label, seed), spec in specs.items():
        samples = evaluator.samples(finetuned(spec))
        per_run.setdefault(label, []).append({
            "pixel_l2": float((samples - source).square().mean(dim=(1, 2, 3)).sqrt().mean()),
            "realism_feature_distance": feature_distance(instruments, samples, source)})
    payload = {"experiment": "Table 3 distance: source vs fine-tuned samples from the same noise",
               "definitions": {"pixel_l2": "mean over pairs of the RMS pixel difference in [-1, 1]",
                               "realism_feature_distance": "mean over pairs of the squared distance of "
                               "unit-normalised realism-net features (an LPIPS-style distance; LPIPS' "
                               "AlexNet weights are not available here)"},
               "summary": {label: summarize(runs) for label, runs in per_run.items()}, "per_run": per_run,
               **provenance(started)}
    write_json(out_dir / "pair_distance.json", payload)
    return payload


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--dse-steps", type=int, default=3000)
    parser.add_argument("--parts", default="benchmark,forgetting,translation,distance")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, for a CPU check of this script")
    parser.add_argument("--limited-smile-share", type=float, default=0.0,
                        help="a share of smiling portraits in the limited target (e.g. 0.02: MetFaces has smiles "
                             "scarcely, not never); its models are new zoo entries")
    args = parser.parse_args()
    started, out_dir, device = time.perf_counter(), Path(args.out), pick_device()
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    share = args.limited_smile_share
    config = BenchmarkConfig.full(seeds=seeds, finetune=TrainConfig.synthfaces_full(target_smile_share=share))
    if args.smoke:
        config = dataclasses.replace(config, finetune=TrainConfig.synthfaces_full(steps=8, batch_size=4,
                                                                                  target_smile_share=share),
                                     lams=(0.1, 1.0),
                                     num_noises=16, num_sdedit=8, num_reference=64, batch_size=16,
                                     sample_steps="ddim5", sdedit_steps="ddim10")
        args.dse_steps = 2
    parts = set(args.parts.split(","))
    training = {"workers": args.workers, "runs": {}}

    def train(name: str, specs: list[TrainConfig]) -> None:   # parts train in turn: a time-out keeps what ended
        timer = time.perf_counter()
        trained = finetune_many(specs, workers=args.workers, device=str(device))
        training["runs"][name] = {"trained": len(trained), "total": len(set(specs)),
                                  "wall_seconds": round(time.perf_counter() - timer, 1)}
        print(f"{name}: fine-tuned {len(trained)} models in {time.perf_counter() - timer:.0f} s", flush=True)
        write_json(out_dir / "training.json", {**training, **provenance(started)})

    if "benchmark" in parts:
        train("benchmark", [spec for _, spec in config.runs()])
        result = run_benchmark(config, out_dir / "benchmark", device=str(device))
        print(f"benchmark evaluated in {result['wall_seconds']['total']:.0f} s", flush=True)
    source = source_model()
    size = source.config.image_size
    data = prepare_data(config, Path(tempfile.mkdtemp()), size)
    instruments = Instruments.load(data, device)
    evaluator = Evaluator(config, data, instruments, device, size)
    _, source_samples, _ = evaluator.evaluate(source, translate=False)   # sets the source's shared-noise labels
    translate = translation_specs(config)
    if "forgetting" in parts:
        forget = forgetting_specs(config)
        train("forgetting", list(forget.values()))
        forgetting(config, evaluator, instruments, forget, out_dir, started)
    if "translation" in parts:
        train("translation", list(translate.values()))
        translation_table(config, evaluator, instruments, translate, args.dse_steps, device, out_dir, started)
    if "distance" in parts:
        train("distance", list(translate.values()))
        pair_distances(evaluator, instruments, source_samples, translate, out_dir, started)
    print(f"all parts done in {time.perf_counter() - started:.0f} s on {hardware()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
