"""``sdft-lite train``, ``sdft-lite sample`` and ``sdft-lite prepare-data``."""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from ..adapters import LoRAConfig
from ..rivals import RivalConfig
from ..sampling import SAMPLERS
from ..sdft import SDFTConfig
from ..train import TrainConfig
from ..unet import UNET_PRESETS, UNetConfig
from ..weighting import WEIGHTINGS, parse_weighting, weighting_spec
from .flags import add_dataclass_flags, overrides_from

PRESETS = {"metfaces": TrainConfig.metfaces, "aahq": TrainConfig.aahq, "tiny": TrainConfig.tiny,
           "none": TrainConfig}

WEIGHTING_FIELDS = {"distill_weighting", "aux_weighting", "mse_weighting"}
LOSS_HELP = {
    "lambda_distill": "λ_d, weight of the distillation term",
    "lambda_aux": "λ_aux, weight of the auxiliary (pure-noise input) term; 0 turns it off",
    "distill_weighting": f"w_d(t), NAME[:γ[:k]] with NAME in {' | '.join(WEIGHTINGS)} (e.g. p2:3, min_snr:5)",
    "aux_weighting": "w_a(t), as --distill-weighting", "mse_weighting": "weight of L_simple, as --distill-weighting",
}
LORA_HELP = {
    "rank": "adapter rank r (0 = off: every weight trains); checkpoints then hold the adapters only (small), and "
            "sample / merge-lora add them to --source-checkpoint",
    "alpha": "scaling α/r of the update (default α = r)", "dropout": "dropout on the adapters' input",
    "targets": "layer kinds with adapters: conv, attention, linear (comma-separated)",
}
RIVAL_HELP = {
    "method": "none | prior (DreamBooth's prior preservation) | l2sp (L2-SP) | ewc (EWC, diagonal Fisher) | "
              "pairwise (DDPM-PA's pairwise similarity loss); --mode naive or sdft",
    "weight": "the rival's one knob: w (prior), α (l2sp), λ (ewc) or the pairwise loss's weight",
    "num_prior": "prior: images the source model samples once (deterministic DDIM from fixed seeds)",
    "fisher_samples": "ewc: source samples the diagonal Fisher averages over",
    "source_steps": "prior, ewc: the DDIM respacing the source samples are drawn with",
    "pair_size": "pairwise: images of each micro-batch compared pairwise (0 = all of them)",
}
TRAIN_HELP = {
    "mode": "scratch | naive | sdft",
    "data_dir": "folder of target images (searched recursively)",
    "out_dir": "where checkpoints, log.jsonl, samples/ and loss.png go",
    "source_checkpoint": "source model: guided-diffusion .pt (e.g. ffhq_p2.pt) or an sdft-lite checkpoint",
    "num_images": "use the first N images of --data-dir (0 = all)",
    "batch_size": "global batch over all GPUs and accumulation steps", "grad_accum": "gradient accumulation steps",
    "precision": "auto (bf16 on recent GPUs, fp16 on T4, fp32 on CPU) | fp32 | bf16 | fp16",
    "ema_rate": "EMA decay; samples and checkpoints keep raw and EMA weights (the authors evaluated raw)",
    "aux_skip_below": "skip auxiliary samples whose λ_aux·w_a(t) is below this (speed; 0 = exact; eager only)",
    "aux_bucket": "round the kept auxiliary samples up to a multiple of this (fewer batch shapes)",
    "aux_samples": "compute this many auxiliary samples per micro-batch, drawn by weight and reweighted (an "
                   "unbiased estimate of the aux term with one batch shape, so it compiles; 0 = every sample)",
    "teacher_stream": "CUDA: run the teacher's forward on a side stream, beside the student's (same values; "
                      "bench/bench_speed.py measures whether it is faster)",
    "fused_norm": "CUDA: each ResBlock's GroupNorm, scale-shift and SiLU as one Triton kernel (the same function; "
                  "on an H200 1.9x the eager ops but 0.83x inductor's own fusion, bench/bench_fused_norm.py)",
    "compile_channels_last": "with --compile: every convolution of the training graph in channels-last "
                             "(inductor's layout optimisation, which it declines by itself for the ADM U-Net)",
    "data_on_device": "CUDA: hold the decoded uint8 images on the GPU when they take under a tenth of its free "
                      "memory, so each batch is gathered there (the same batches; no host copy per step)",
    "compile": "torch.compile on CUDA (on in the metfaces / aahq presets): ~3.5 min to compile; one static "
               "batch shape, so --aux-skip-below is ignored (use --aux-samples, or 0 for every auxiliary sample)",
    "save_every": "checkpoint every N steps (and at the end)",
    "sample_every": "DDIM sample grid from fixed noise every N steps (0 = never)",
}


def add_parser(subparsers) -> None:
    train = subparsers.add_parser("train", help="fine-tune (sdft, naive) or train from scratch",
                                  description="Train a diffusion model. Start from a preset and override any field. "
                                              "The paper's MetFaces run: sdft-lite train --preset metfaces "
                                              "--data-dir data/metfaces256 --source-checkpoint models/ffhq_p2.pt")
    train.add_argument("--preset", choices=sorted(PRESETS), default="none",
                       help="metfaces / aahq: the paper's hyper-parameters and the 256-px FFHQ-P2 U-Net; "
                            "tiny: a CPU-sized run")
    resume = train.add_mutually_exclusive_group()
    resume.add_argument("--resume", nargs="?", const=True, default=False, choices=["auto"], metavar="auto",
                        help="continue the run in --out-dir from its newest checkpoint; an error when the folder "
                             "does not exist or holds no checkpoint. --resume auto: continue when a checkpoint is "
                             "there, else start a new run")
    resume.add_argument("--resume-from", metavar="PATH",
                        help="continue from this checkpoint (e.g. an older one when the newest is damaged), "
                             "writing to --out-dir")
    train.add_argument("--keep-last", type=_keep_last, default=None, metavar="N",
                       help=f"checkpoints kept, newest first; at least 1, as the newest is never deleted "
                            f"(default: {TrainConfig().keep_last})")
    train.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    train.add_argument("--unet-preset", choices=sorted(UNET_PRESETS), default=None,
                       help="U-Net architecture preset (default: the training preset's)")
    add_dataclass_flags(train, TrainConfig, skip=("unet", "loss", "lora", "rival", "keep_last"), help_text=TRAIN_HELP,
                        group_title="training")
    add_dataclass_flags(train, SDFTConfig, help_text=LOSS_HELP, group_title="the SDFT loss (Eq. 6; ignored by "
                        "scratch / naive)", formats={f: weighting_spec for f in WEIGHTING_FIELDS})
    add_dataclass_flags(train, LoRAConfig, help_text=LORA_HELP, prefix="lora_",
                        group_title="LoRA (Hu et al. 2022): train low-rank adapters only, with --mode naive or sdft")
    add_dataclass_flags(train, RivalConfig, help_text=RIVAL_HELP, prefix="rival_",
                        group_title="a rival regulariser (sdft_lite.rivals), added to the loss of naive or sdft")
    add_dataclass_flags(train, UNetConfig, group_title="U-Net (guided-diffusion flag names)")
    train.set_defaults(func=run_train)

    sample = subparsers.add_parser("sample", help="DDIM samples from a checkpoint, from fixed seeds")
    sample.add_argument("checkpoint", help="an sdft-lite checkpoint or a guided-diffusion .pt")
    sample.add_argument("--out", required=True, help="output folder: images/*.png, grid.png, sampling.json")
    sample.add_argument("--num", type=int, default=64)
    sample.add_argument("--batch", type=int, default=64)
    sample.add_argument("--steps", default="ddim40", help="respacing, e.g. ddim40, ddim100, 250")
    sample.add_argument("--sampler", choices=list(SAMPLERS), default="ddim",
                        help="ddim (deterministic for --eta 0) or ancestral (DDPM) on the --steps respacing")
    sample.add_argument("--eta", type=float, default=0.0)
    sample.add_argument("--seed", type=int, default=0, help="image i starts from x_T seeded by (seed, i)")
    sample.add_argument("--weights", choices=["raw", "ema"], default="raw",
                        help="raw (as the authors evaluated) or EMA weights of an sdft-lite checkpoint")
    sample.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                        help="network precision (the DDIM update is always fp32)")
    sample.add_argument("--compile", action="store_true",
                        help="torch.compile the network (CUDA): ~1 min to compile, then 2.4x faster DDIM-40 at "
                             "256 px on an H100; pays from about a thousand samples (FID sets)")
    sample.add_argument("--device", default=None)
    sample.set_defaults(func=run_sample)

    merge = subparsers.add_parser("merge-lora", help="merge a LoRA run's adapters into full U-Net weights",
                                  description="Write the U-Net of a training checkpoint as one guided-diffusion "
                                              "state dict: a LoRA run's adapters added to its source model and "
                                              "merged (W + α/r·BA), loadable by any tool that reads the source.")
    merge.add_argument("checkpoint", help="a checkpoint of sdft-lite train (with --lora-rank)")
    merge.add_argument("--out", required=True, help="the .pt file to write")
    merge.add_argument("--weights", choices=["raw", "ema"], default="raw")
    merge.set_defaults(func=run_merge)

    prep = subparsers.add_parser("prepare-data", help="pre-resize an image folder (MetFaces, AAHQ) with a manifest")
    prep.add_argument("src")
    prep.add_argument("dst")
    prep.add_argument("--size", type=int, default=256)
    prep.set_defaults(func=run_prepare)


def _keep_last(text: str) -> int:
    """--keep-last: an integer of at least 1 (argparse prints the error in one line)."""
    from ..run_folder import check_keep_last
    try:
        return check_keep_last(int(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    config = PRESETS[args.preset]()
    unet = UNET_PRESETS[args.unet_preset]() if args.unet_preset else config.unet
    unet_changes = overrides_from(args, UNetConfig)
    if unet_changes or args.unet_preset:
        unet = unet.replace(**unet_changes)
    loss_changes = overrides_from(args, SDFTConfig)
    for name in WEIGHTING_FIELDS & loss_changes.keys():
        loss_changes[name] = parse_weighting(loss_changes[name])
    loss = dataclasses.replace(config.loss, **loss_changes)
    lora = dataclasses.replace(config.lora, **overrides_from(args, LoRAConfig, prefix="lora_"))
    rival = dataclasses.replace(config.rival, **overrides_from(args, RivalConfig, prefix="rival_"))
    return dataclasses.replace(config, **overrides_from(args, TrainConfig, skip=("unet", "loss", "lora", "rival")),
                               unet=unet, loss=loss, lora=lora, rival=rival)


def run_train(args: argparse.Namespace) -> int:
    from ..train import ConfigError, train
    try:
        config = config_from_args(args)
    except (TypeError, ValueError) as error:   # a flag value the config refuses: one line, not a traceback
        raise ConfigError(f"invalid setting: {error}") from None
    result = train(config, device=args.device, resume=args.resume, resume_from=args.resume_from)
    print(json.dumps(result))
    return 0 if not result["stopped_early"] else 130


def run_sample(args: argparse.Namespace) -> int:
    import torch

    from ..config import pick_device
    from ..sample import generate, save_grid, save_images
    from ..train import load_trained
    device = pick_device(args.device)
    model = load_trained(args.checkpoint, which="model" if args.weights == "raw" else "ema").to(device).eval()
    compiled = args.compile and device.type == "cuda"   # compiling is for GPUs; a CPU runs eagerly
    if compiled:
        model = torch.compile(model)
    precision = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    start = time.perf_counter()
    images = generate(model, args.num, model.config.image_size, args.steps, args.seed, args.batch, device,
                      precision=precision, eta=args.eta, sampler=args.sampler)
    seconds = time.perf_counter() - start
    out = Path(args.out)
    save_images(images, out / "images")
    save_grid(images[:64], out / "grid.png")
    info = {"checkpoint": str(args.checkpoint), "weights": args.weights, "sampler": args.sampler,
            "steps": args.steps, "eta": args.eta,
            "seed": args.seed, "num": args.num, "precision": args.precision, "compiled": compiled,
            "seconds": round(seconds, 2),
            "img_per_s": round(args.num / seconds, 2)}
    (out / "sampling.json").write_text(json.dumps(info, indent=2))
    print(f"wrote {args.num} samples ({args.weights} weights, {args.steps}) to {out / 'images'} — {info['img_per_s']} img/s")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from ..checkpoint import save_atomic
    from ..train import load_trained
    model = load_trained(args.checkpoint, which="model" if args.weights == "raw" else "ema")
    path = save_atomic({"model": model.state_dict(), "unet_config": model.config.to_flags()}, args.out)
    print(f"wrote the merged U-Net ({sum(p.numel() for p in model.parameters()):,} parameters) to {path}")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from ..data import prepare_data
    manifest = prepare_data(args.src, args.dst, args.size)
    print(f"{manifest['written']} of {manifest['found']} images written to {args.dst} at {args.size} px "
          f"({manifest['skipped']} skipped, {manifest['upscaled']} upscaled); manifest.json has the details")
    return 0
