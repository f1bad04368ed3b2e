"""How noisy is the importance-sampled auxiliary term (``sdft.ImportanceAux``) at each m? On SynthFaces, with the
shipped source as teacher and the chapters' quick SDFT λ = 3 model as student, for batches of the full preset's
size: the exact aux term of each batch, and the spread of its estimate from m drawn inputs (the closed form
(A²/m)·Var_p(g), from the exact per-sample gaps, checked against repeated draws), beside the spread of the whole
loss over batches. Statistics, not speed: runs on a CPU.

    python bench/aux_estimator_variance.py --out bench/results/aux_estimator_variance_cpu.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdft_lite.config import hardware  # noqa: E402
from sdft_lite.experiments.zoo import finetuned, limited_target, source_model  # noqa: E402
from sdft_lite.schedule import make_schedule  # noqa: E402
from sdft_lite.sdft import ImportanceAux, SDFTConfig, sdft_losses  # noqa: E402
from sdft_lite.train import TrainConfig  # noqa: E402
from sdft_lite.weighting import weights_at  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = SDFTConfig.symmetric(3.0)
    schedule = make_schedule("linear")
    teacher = source_model()
    student = finetuned(TrainConfig.synthfaces_quick(loss=config)).eval()
    images = limited_target(32, 1300).images.float() / 127.5 - 1
    generator = torch.Generator().manual_seed(0)
    rows, losses = [], []
    for b in range(args.batches):
        index = torch.randint(0, len(images), (args.batch_size,), generator=generator)
        t = torch.randint(0, 1000, (args.batch_size,), generator=generator)
        noise = torch.randn(args.batch_size, 3, 32, 32, generator=generator)
        with torch.no_grad():
            terms = sdft_losses(student, teacher, schedule, images[index], t, noise, config)
        a = config.lambda_aux * weights_at(config.aux_weighting, schedule, t).double()
        exact = terms["aux"].double().mean()                    # the batch's aux term as the loss sees it
        gaps, total = terms["aux"].double() / a.clamp_min(1e-300), a.sum()
        p = a / total
        var_p = float((p * (gaps - (p * gaps).sum()) ** 2).sum())
        losses.append(float(terms["loss"].double().mean()))
        row = {"batch": b, "aux_exact": float(exact), "loss": losses[-1],
               "weight_below_1e-6": float((a < 1e-6).double().mean()),
               "effective_samples": float(total ** 2 / (a ** 2).sum())}
        for m in (1, 2, 4, 8, 16):
            sd = (float(total) ** 2 / m * var_p) ** 0.5 / args.batch_size   # of the estimate of the mean term
            draws = []
            selector, g = ImportanceAux(m), torch.Generator().manual_seed(b)
            for _ in range(args.draws):
                i, scale = selector(config, schedule, t, g)
                draws.append(float((a[i] * scale.double() * gaps[i]).sum()) / args.batch_size)
            draws = torch.tensor(draws, dtype=torch.float64)
            row[f"m{m}"] = {"sd_closed_form": sd, "sd_of_draws": float(draws.std()),
                            "mean_of_draws": float(draws.mean()), "relative_sd": sd / float(exact)}
        rows.append(row)
        print(f"batch {b}: aux {float(exact):.3g} (loss {losses[-1]:.3g}); relative sd of the estimate "
              + ", ".join(f"m={m}: {row[f'm{m}']['relative_sd']:.2f}" for m in (1, 2, 4, 8, 16)), flush=True)
    spread = torch.tensor(losses).std().item()
    summary = {f"m{m}": {"median_relative_sd": float(torch.tensor([r[f"m{m}"]["relative_sd"] for r in rows]).median()),
                         "median_sd_over_loss_sd_between_batches": float(torch.tensor(
                             [r[f"m{m}"]["sd_closed_form"] for r in rows]).median()) / spread}
               for m in (1, 2, 4, 8, 16)}
    result = {"what": "spread of the importance-sampled aux term (sdft.ImportanceAux), SDFT λ=3, SynthFaces",
              "hardware": hardware(), "batch_size": args.batch_size, "batches": args.batches,
              "draws": args.draws, "loss_sd_between_batches": spread, "summary": summary, "rows": rows,
              "command": " ".join(sys.argv)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
