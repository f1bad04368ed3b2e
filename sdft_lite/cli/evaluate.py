"""``sdft-lite evaluate``: the command-line face of :func:`sdft_lite.metrics.evaluate.evaluate` (its docstring
lists the inputs and the metrics)."""
from __future__ import annotations

import argparse

from ..metrics import fid, perceptual
from ..metrics.distances import FEATURE_METRICS
from ..metrics.diversity import PAPER_CLUSTER_SIZE
from ..metrics.evaluate import ALL_METRICS, DISTANCES, PairedSettings, SetSettings, evaluate
from ..metrics import evaluate as evaluate_module
from ..metrics.memorisation import NEAR_DUPLICATE_RATIO


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand (its handler is :func:`main`)."""
    p = subparsers.add_parser("evaluate", help="FID, KID, LPIPS, PSNR, SSIM, S_dir, ID, diversity, memorisation "
                              "on image folders",
                              description=evaluate_module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", help="folder of generated images (FID/KID)")
    p.add_argument("--ref", help="folder of reference images (FID/KID)")
    p.add_argument("--pairs", help="folder with input/ and output/ subfolders of same-named images")
    p.add_argument("--train", help="the training images of the model behind --samples (diversity, memorisation)")
    p.add_argument("--metrics", nargs="+", choices=ALL_METRICS,
                   help="default: fid kid (with --samples/--ref), lpips psnr ssim (with --pairs) and "
                   "diversity memorisation (with --samples/--train)")
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
    p.add_argument("--distance", default="auto", choices=DISTANCES,
                   help="diversity/memorisation distance: auto = LPIPS (--lpips-net) when its trunk file is present, "
                   "else the SynthFaces realism net's features (named as such); lpips; features")
    p.add_argument("--feature-metric", default="cosine", choices=sorted(FEATURE_METRICS),
                   help="how realism features are compared")
    p.add_argument("--realism-weights", help="a realism.pt to use instead of the one shipped with the package")
    p.add_argument("--cluster-size", type=int, default=PAPER_CLUSTER_SIZE,
                   help="at most this many samples per cluster enter the pairwise mean (0 = all)")
    p.add_argument("--near-duplicate-ratio", type=float, default=NEAR_DUPLICATE_RATIO,
                   help="a sample is a near-duplicate when nearest/second-nearest training distance < this")
    p.add_argument("--histogram", help="write the memorisation histograms (PNG, PDF, ...) here")
    p.add_argument("--device", help="cuda, cpu, ... (default: CUDA when available)")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Run ``sdft-lite evaluate``; exit status 2 when a requested metric was unavailable."""
    paired = PairedSettings(args.lpips_net, args.lpips_backbone, args.authors_scaling, args.source_text,
                            args.target_text, args.clip_model, args.clip_weights, args.arcface_weights)
    sets = SetSettings(args.distance, _realism_features(args.realism_weights), args.feature_metric,
                       args.cluster_size or None, args.near_duplicate_ratio, histogram=args.histogram)
    report = evaluate(args.samples, args.ref, args.pairs, args.metrics, args.extractor, args.out,
                      paired=paired, device=args.device, batch_size=args.batch_size, train_dir=args.train, sets=sets)
    return 2 if report.unavailable else 0


def _realism_features(path: str | None):
    """The stand-in feature distance: the SynthFaces realism net (shipped, or ``path``), built only when needed."""
    def build(device, metric):
        from ..synthfaces.realism import realism_distance
        return realism_distance(path, metric, device)
    return build
