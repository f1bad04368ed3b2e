"""``sdft-lite evaluate``: the command-line face of :func:`sdft_lite.metrics.evaluate.evaluate` (its docstring
lists the inputs and the metrics)."""
from __future__ import annotations

import argparse

from ..metrics import fid, perceptual
from ..metrics.evaluate import ALL_METRICS, PairedSettings, evaluate
from ..metrics import evaluate as evaluate_module


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand (its handler is :func:`main`)."""
    p = subparsers.add_parser("evaluate", help="FID, KID, LPIPS, PSNR, SSIM, S_dir, ID on image folders",
                              description=evaluate_module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", help="folder of generated images (FID/KID)")
    p.add_argument("--ref", help="folder of reference images (FID/KID)")
    p.add_argument("--pairs", help="folder with input/ and output/ subfolders of same-named images")
    p.add_argument("--metrics", nargs="+", choices=ALL_METRICS,
                   help="default: fid kid (with --samples/--ref) and lpips psnr ssim (with --pairs)")
    p.add_argument("--extractor", help="FID/KID feature extractor other than clean-fid's Inception "
                   f"(registered: {', '.join(fid.available_extractors())}; or 'module:factory')")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--lpips-net", default="vgg", choices=sorted(perceptual.LPIPS_BACKBONES))
    p.add_argument("--lpips-backbone", default="imagenet", choices=perceptual.BACKBONES,
                   help="'random' = untrained trunk, for tests only (labelled as such)")
    p.add_argument("--authors-scaling", action="store_true",
                   help="PSNR/SSIM as the authors' notebooks computed them ([-1,1] fed to the [0,1] formula)")
    p.add_argument("--source-text", help="S_dir source prompt, e.g. 'face'")
    p.add_argument("--target-text", help="S_dir target prompt, e.g. 'smiling face'")
    p.add_argument("--clip-model", default="ViT-B/32", help="OpenAI CLIP model for S_dir")
    p.add_argument("--clip-weights", help="path of the OpenAI CLIP checkpoint (default: ~/.cache/clip/)")
    p.add_argument("--arcface-weights", help="path of model_ir_se50.pth (default: $SDFT_LITE_HOME)")
    p.add_argument("--device", help="cuda, cpu, ... (default: CUDA when available)")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Run ``sdft-lite evaluate``; exit status 2 when a requested metric was unavailable."""
    paired = PairedSettings(args.lpips_net, args.lpips_backbone, args.authors_scaling, args.source_text,
                            args.target_text, args.clip_model, args.clip_weights, args.arcface_weights)
    report = evaluate(args.samples, args.ref, args.pairs, args.metrics, args.extractor, args.out,
                      paired=paired, device=args.device, batch_size=args.batch_size)
    return 2 if report.unavailable else 0
