"""Is a fast sampler's image the eager loop's? DDIM-40 under bf16 autocast, compiled (``generate(...,
compile="default")``) against eager, beside eager bf16 against eager fp32 — the difference that bf16 rounding
alone makes — for the shipped 32-px SynthFaces source model and for the same network with random weights (as
``bench_speed.py`` samples). A random network's x̂_0 is clipped almost everywhere and amplifies any rounding
difference over the steps, so there the two fast paths disagree with eager as much as bf16 disagrees with fp32;
a trained model says whether compiling changes samples more than bf16 does. Runs on a CPU (inductor's CPU code);
on a GPU add ``--device cuda``.

    python bench/sampling_agreement.py --out bench/results/sampling_agreement_cpu.json
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_speed import randomise_weights  # noqa: E402  (bench/ is this script's folder)
from provenance import commit  # noqa: E402
from sdft_lite.checkpoint import load_unet  # noqa: E402
from sdft_lite.config import hardware  # noqa: E402
from sdft_lite.sample import generate  # noqa: E402

SOURCE = Path(__file__).resolve().parents[1] / "sdft_lite/assets/synthfaces/source_demo32.pt"


def with_random_weights(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A copy with bench_speed's random weights (every matrix and kernel N(0, 0.02²), drawn after ``seed``)."""
    model = copy.deepcopy(model)
    torch.manual_seed(seed)
    return randomise_weights(model)


def difference(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Max and mean |a − b| in [−1, 1] units, and the share of pixels off by more than one uint8 level."""
    d = (a - b).abs()
    return {"max": round(float(d.max()), 4), "mean": round(float(d.mean()), 5),
            "share_off_by_more_than_one_level": round(float((d > 2 / 255).float().mean()), 4)}


def compare(model: torch.nn.Module, num: int, device: str) -> dict:
    def run(**options):
        return generate(model, num, model.config.image_size, "ddim40", batch_size=num, device=device, **options)
    fp32, bf16 = run(), run(precision=torch.bfloat16)
    compiled = run(precision=torch.bfloat16, compile="default")
    torch._dynamo.reset()
    return {"eager_bf16_vs_eager_fp32": difference(bf16, fp32),
            "compiled_bf16_vs_eager_bf16": difference(compiled, bf16)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    trained = load_unet(SOURCE).to(args.device)
    result = {"what": __doc__.split("\n\n")[0], "device": hardware(), "commit": commit(), "images": args.num,
              "trained_source_demo32": compare(trained, args.num, args.device),
              "random_weights": compare(with_random_weights(trained), args.num, args.device)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
