"""``sdft-lite synthfaces render | train-instruments | train-synthclip | preview``: the SynthFaces dataset and its
instruments.

    sdft-lite synthfaces render --domain limited --n 1300 --size 32 --seed 0 data/limited32
    sdft-lite synthfaces train-instruments --size 32 --steps 3000 --out ~/.cache/sdft_lite/synthfaces
    sdft-lite synthfaces train-synthclip --out sdft_lite/assets/synthfaces/synthclip.pt
    sdft-lite synthfaces preview --size 64 --out synthfaces.png
    sdft-lite synthfaces benchmark --preset quick --lams 1,3 --seeds 0,1 --out runs/benchmark
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import home, pick_device


def add_parser(subparsers) -> None:
    synthfaces = subparsers.add_parser("synthfaces", help="render the SynthFaces dataset, train its instruments",
                                       description="SynthFaces: rendered faces with exact attribute labels, a "
                                                   "photo source and a painted-portrait target (FFHQ → MetFaces).")
    commands = synthfaces.add_subparsers(dest="synthfaces_command", metavar="SUBCOMMAND", required=True)

    render = commands.add_parser("render", help="write a domain as PNGs + labels.csv + manifest.json")
    render.add_argument("out_dir")
    render.add_argument("--domain", choices=["source", "limited", "full"], required=True,
                        help="source: photos, all attributes; limited: ~1,300 portraits without smiles, eyewear "
                             "or dark skin; full: portraits with every attribute (evaluation)")
    render.add_argument("--n", type=int, default=None, help="number of images (default: the domain's count)")
    render.add_argument("--size", type=int, default=32)
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--split", default="train", help="train | test | any name: each split is its own stream")
    render.set_defaults(func=run_render)

    train = commands.add_parser("train-instruments", help="train the attribute classifier and the realism net")
    train.add_argument("--out", default=str(home() / "synthfaces"),
                       help="folder for classifier.pt, realism.pt and instruments.json")
    train.add_argument("--size", type=int, default=32)
    train.add_argument("--steps", type=int, default=None, help="steps per instrument (default: 3000 GPU, 300 CPU)")
    train.add_argument("--batch", type=int, default=None, help="default: 256 GPU, 64 CPU")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default=None)
    train.add_argument("--eval-images", type=int, default=2000, help="held-out images per set for the report")
    train.set_defaults(func=run_train_instruments)

    synthclip = commands.add_parser("train-synthclip", help="train SynthCLIP, the SynthFaces image–text model",
                                    description="Train SynthCLIP on captioned renders (a share replaced by the source "
                                                "model's x̂_0); write PATH, PATH.json, print the zero-shot accuracy "
                                                "and the smile-direction check.")
    synthclip.add_argument("--out", required=True, help="the .pt to write (its report goes beside it as .json)")
    synthclip.add_argument("--quick", action="store_true",
                           help="the CPU preset (default: full on a GPU, quick on a CPU or with SDFT_QUICK=1)")
    synthclip.add_argument("--steps", type=int, default=None, help="default: the preset's (3000 full, 300 quick)")
    synthclip.add_argument("--batch", type=int, default=None, help="default: the preset's (512 full, 64 quick)")
    synthclip.add_argument("--no-denoiser", action="store_true",
                           help="train on renders only, without the shipped source model's x̂_0")
    synthclip.add_argument("--seed", type=int, default=0)
    synthclip.add_argument("--device", default=None)
    synthclip.add_argument("--workers", type=int, default=None, help="rendering processes (default: most cores "
                                                                     "on a GPU, none on a CPU)")
    synthclip.add_argument("--eval-images", type=int, default=2000, help="held-out images per set for the report")
    synthclip.add_argument("--pairs", type=int, default=200, help="face pairs per kind for the direction check")
    synthclip.set_defaults(func=run_train_synthclip)

    source = commands.add_parser("train-source", help="train the source model on photo faces (use a GPU)")
    source.add_argument("--out", required=True, help="the compact checkpoint to write (fp16 EMA weights)")
    source.add_argument("--unet-preset", default="demo32", help="demo32 | small32 | small64 | tiny")
    source.add_argument("--steps", type=int, default=4000)
    source.add_argument("--batch", type=int, default=256)
    source.add_argument("--lr", type=float, default=2e-4)
    source.add_argument("--num-images", type=int, default=50_000)
    source.add_argument("--seed", type=int, default=0)
    source.add_argument("--device", default=None)
    source.add_argument("--compile", action="store_true", help="torch.compile the U-Net (GPU)")
    source.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps in OUT's .run folder "
                        "(default: a quarter of the run); run the same command again to continue from the newest")
    source.set_defaults(func=run_train_source)

    preview = commands.add_parser("preview", help="a PNG grid: photo source, limited target, full portraits")
    preview.add_argument("--out", required=True)
    preview.add_argument("--size", type=int, default=64)
    preview.add_argument("--count", type=int, default=12)
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--zoom", type=int, default=1, help="nearest-neighbour enlargement")
    preview.set_defaults(func=run_preview)

    bench = commands.add_parser("benchmark", help="scratch / naive / SDFT: retention, style, realism, SDEdit",
                                description="Fine-tune (or load from the cache) and evaluate every model from the "
                                            "same noises; writes results.json, records.json, grid.png, "
                                            "sdedit_grid.png and frontier.png.")
    bench.add_argument("--out", default="runs/benchmark")
    bench.add_argument("--preset", choices=["quick", "full"], default=None,
                       help="default: full on a GPU, quick on a CPU or with SDFT_QUICK=1")
    bench.add_argument("--lams", type=float_list, default=None, help="SDFT λ sweep, e.g. 0.1,1,3,10")
    bench.add_argument("--seeds", type=int_list, default=None, help="fine-tuning seeds, e.g. 0,1,2")
    bench.add_argument("--steps", type=int, default=None, help="fine-tuning steps of every model")
    bench.add_argument("--num-noises", type=int, default=None, help="shared noises per model")
    bench.add_argument("--sample-steps", default=None, help="DDIM respacing for sampling, e.g. ddim40")
    bench.add_argument("--num-sdedit", type=int, default=None, help="held-out photos translated per model")
    bench.add_argument("--sdedit-steps", default=None, help="DDIM respacing for SDEdit, e.g. ddim40")
    bench.add_argument("--scratch", action=argparse.BooleanOptionalAction, default=None)
    bench.add_argument("--weightings", type=str_list, default=None,
                       help="extra weighting ablations at --ablation-lam: constant,min_snr")
    bench.add_argument("--ablate-aux", action=argparse.BooleanOptionalAction, default=None,
                       help="also SDFT without the auxiliary term, at --ablation-lam")
    bench.add_argument("--ablation-lam", type=float, default=None)
    bench.add_argument("--device", default=None)
    bench.add_argument("--workers", type=int, default=None,
                       help="models fine-tuned at once, each in its own process (default: 8 on a GPU, 1 on a CPU)")
    bench.set_defaults(func=run_benchmark_command)


def float_list(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def int_list(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def str_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def run_render(args: argparse.Namespace) -> int:
    from ..synthfaces.domains import DomainSpec, write_domain
    spec = DomainSpec.named(args.domain)
    out = write_domain(spec, args.out_dir, args.n, args.size, args.seed, args.split)
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"wrote {manifest['count']} {spec.style} images ({args.domain}/{args.split}, {args.size} px) to {out}")
    return 0


def run_train_instruments(args: argparse.Namespace) -> int:
    from ..synthfaces.classifier import save_classifier, train_classifier
    from ..synthfaces.realism import REALISM_FILE, make_feature_extractor, save_realism, train_realism, validate_realism
    out, device = Path(args.out).expanduser(), pick_device(args.device)
    classifier, classifier_report = train_classifier(args.size, args.steps, args.batch, device, args.seed,
                                                     eval_images=args.eval_images)
    realism, realism_report = train_realism(args.size, args.steps, args.batch, device, args.seed,
                                            validation_images=args.eval_images)
    # The study's failure, for contrast: the same validation on the attribute classifier's features.
    contrast = validate_realism(make_feature_extractor(classifier), args.size, args.eval_images, args.seed + 1)
    save_classifier(classifier, out / "classifier.pt")
    save_realism(realism, out / REALISM_FILE)
    report = {"classifier": classifier_report, "realism": realism_report,
              "classifier_features_as_realism": contrast}
    (out / "instruments.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({"classifier_accuracy": classifier_report["accuracy"],
                      "realism_passed": realism_report["validation"]["passed"],
                      "classifier_features_passed": contrast["passed"]}, indent=2))
    print(f"saved {out / 'classifier.pt'}, {out / REALISM_FILE}, {out / 'instruments.json'}")
    return 0 if realism_report["validation"]["passed_all"] else 3


def run_train_synthclip(args: argparse.Namespace) -> int:
    import dataclasses

    from ..config import quick_mode
    from ..synthfaces.synthclip import SynthClipConfig, format_report, save_synthclip, train_synthclip
    device = pick_device(args.device)
    quick = args.quick or device.type != "cuda" or quick_mode()
    config = SynthClipConfig.quick() if quick else SynthClipConfig.full()
    changes = {"steps": args.steps, "batch": args.batch, "seed": args.seed}
    config = dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
    unet = None
    if not args.no_denoiser:
        from ..experiments.zoo import source_model
        unet = source_model()
    model, report = train_synthclip(config, device, unet, args.eval_images, args.pairs, args.workers)
    out = save_synthclip(model, Path(args.out).expanduser())
    report["preset"] = "quick" if quick else "full"
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    print(format_report(report))
    print(f"saved {out} and {out.with_suffix('.json')}")
    return 0


def run_train_source(args: argparse.Namespace) -> int:
    from ..experiments.source_model import train_source
    from ..unet import UNET_PRESETS
    info = train_source(args.out, UNET_PRESETS[args.unet_preset](), args.steps, args.batch, args.lr,
                        args.num_images, args.seed, args.device, compile=args.compile, save_every=args.save_every)
    print(json.dumps(info, indent=2))
    return 0


def run_preview(args: argparse.Namespace) -> int:
    from ..synthfaces.preview import save_preview
    print(save_preview(args.out, args.size, args.count, args.seed, args.zoom))
    return 0


def run_benchmark_command(args: argparse.Namespace) -> int:
    import dataclasses

    from ..config import quick_mode
    from ..experiments.benchmark import BenchmarkConfig, default_workers, report, run_benchmark
    device = pick_device(args.device)
    preset = args.preset or ("full" if device.type == "cuda" and not quick_mode() else "quick")
    config = BenchmarkConfig.full() if preset == "full" else BenchmarkConfig.quick()
    changes = {"lams": args.lams, "seeds": args.seeds, "num_noises": args.num_noises,
               "sample_steps": args.sample_steps, "num_sdedit": args.num_sdedit, "sdedit_steps": args.sdedit_steps,
               "scratch": args.scratch, "ablation_weightings": args.weightings, "ablate_aux": args.ablate_aux,
               "ablation_lam": args.ablation_lam}
    changes = {k: v for k, v in changes.items() if v is not None}
    if args.steps is not None:
        changes["finetune"] = dataclasses.replace(config.finetune, steps=args.steps)
    if changes:
        config = dataclasses.replace(config, name=f"{preset}+changes", **changes)
    workers = args.workers or default_workers(device)
    result = run_benchmark(config, args.out, device=str(device), workers=workers)
    print(report(result))
    return 0
