"""Make the quick-mode SynthFaces models that the package ships: chapters 4–8's (``zoo.chapter_configs()``) and
the quick rivals frontier's (``FrontierConfig.quick()``, chapter 10).

    SDFT_LITE_HOME=/tmp/prebuild python bench/prebuild_quick_zoo.py              # fine-tune each (CPU: ~30 min)
    SDFT_LITE_HOME=/tmp/prebuild python bench/prebuild_quick_zoo.py --missing    # only those not shipped yet
    SDFT_LITE_HOME=<a home the quick chapters filled> python bench/prebuild_quick_zoo.py --from-cache

Each model is fine-tuned by ``zoo.finetuned`` (the code the chapters run), then written with fp16 weights and its
training log to ``sdft_lite/assets/synthfaces/zoo/<key>.pt``; the script prints the lines for
``sdft_lite.assets.REGISTRY``. ``tests/test_zoo.py`` retrains one of them and compares.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdft_lite.assets import ASSET_DIR  # noqa: E402
from sdft_lite.checkpoint import save_atomic, sha256_of  # noqa: E402
from sdft_lite.experiments import zoo  # noqa: E402
from sdft_lite.experiments.frontier import FrontierConfig  # noqa: E402


def export(spec) -> Path:
    state = torch.load(zoo.cached_path(spec), map_location="cpu", weights_only=True)
    state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    return save_atomic(state, ASSET_DIR / zoo.prebuilt_name(spec))


def describe(spec) -> str:
    """LoRA rank and rival regulariser, where the run has them."""
    parts = [f"LoRA rank {spec.lora.rank}"] if spec.lora.rank else []
    parts += [f"{spec.rival.method} weight {spec.rival.weight:g}"] if spec.rival.method != "none" else []
    return "".join(f"{p}, " for p in parts)


def shipped_configs() -> list:
    """Every quick-mode model the package ships, once each."""
    frontier = [run for *_, run in FrontierConfig.quick().runs()]
    return list(dict.fromkeys(zoo.chapter_configs() + frontier))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from-cache", action="store_true", help="export models already in $SDFT_LITE_HOME's cache")
    parser.add_argument("--missing", action="store_true", help="only the models the package does not ship yet")
    args = parser.parse_args()
    for spec in shipped_configs():
        if args.missing and zoo.has_prebuilt(spec):
            continue
        if not (args.from_cache and zoo.cached_path(spec).exists()):
            os.environ["FORCE_TRAIN"] = "1"   # train, even where a shipped copy exists
            zoo.finetuned(spec)
        path = export(spec)
        print(f'    "{zoo.prebuilt_name(spec)}": (\n        "{sha256_of(path)}",\n'
              f'        "quick-mode model: {spec.mode}, λ_d {spec.loss.lambda_distill:g}, '
              f'λ_aux {spec.loss.lambda_aux:g}, w_d {spec.loss.distill_weighting}, {spec.steps} steps × '
              f'{spec.batch_size}, {describe(spec)}fp16"),')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
