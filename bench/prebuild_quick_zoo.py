"""Make the quick-mode SynthFaces models that the package ships for chapters 4–8 (``zoo.chapter_configs()``).

    SDFT_LITE_HOME=/tmp/prebuild python bench/prebuild_quick_zoo.py              # fine-tune each (CPU: ~15 min)
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


def export(spec) -> Path:
    state = torch.load(zoo.cached_path(spec), map_location="cpu", weights_only=True)
    state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    return save_atomic(state, ASSET_DIR / zoo.prebuilt_name(spec))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from-cache", action="store_true", help="export models already in $SDFT_LITE_HOME's cache")
    args = parser.parse_args()
    for spec in zoo.chapter_configs():
        if not (args.from_cache and zoo.cached_path(spec).exists()):
            os.environ["FORCE_TRAIN"] = "1"   # train, even where a shipped copy exists
            zoo.finetuned(spec)
        path = export(spec)
        print(f'    "{zoo.prebuilt_name(spec)}": (\n        "{sha256_of(path)}",\n'
              f'        "quick-mode model of the chapters: {spec.mode}, λ_d {spec.loss.lambda_distill:g}, '
              f'λ_aux {spec.loss.lambda_aux:g}, w_d {spec.loss.distill_weighting}, {spec.steps} steps × '
              f'{spec.batch_size}, fp16"),')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
