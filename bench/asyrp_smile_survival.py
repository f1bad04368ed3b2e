"""How long does each model keep a smile it is handed? The curve Asyrp's edit interval is chosen from
(``experiments.editing_table.smile_survival``): smiling renders in the model's own style, SDEdit from each t with the
model (DDIM, the same noise for every t), the share still read as smiling. An edit acting only above the t where
this falls is undone below it.

    python bench/asyrp_smile_survival.py --n 500 --out bench/results/smile_survival_h200.json        # GPU, full models
    python bench/asyrp_smile_survival.py --quick --n 32 --out /tmp/smile_survival_cpu.json           # CPU, quick models
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdft_lite.assets import asset_path  # noqa: E402
from sdft_lite.config import hardware, pick_device  # noqa: E402
from sdft_lite.experiments.editing_table import smile_survival, smiling_faces  # noqa: E402
from sdft_lite.experiments.zoo import finetuned, source_model  # noqa: E402
from sdft_lite.sdft import SDFTConfig  # noqa: E402
from sdft_lite.synthfaces.classifier import load_classifier  # noqa: E402
from sdft_lite.train import TrainConfig  # noqa: E402

TIMESTEPS = (0, 100, 200, 300, 400, 500, 600, 800)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--steps", default="40")
    parser.add_argument("--quick", action="store_true", help="the chapters' quick models (shipped)")
    args = parser.parse_args()
    device = pick_device()
    preset = TrainConfig.synthfaces_quick if args.quick else TrainConfig.synthfaces_full
    models = {"source (photos)": (source_model, "photo")}
    lams = (1.0, 3.0) if args.quick else (1.0, 3.0, 10.0)     # quick: the models the package ships
    for name, loss in [("naive", SDFTConfig.naive())] + [(f"SDFT λ={lam:g}", SDFTConfig.symmetric(lam)) for lam in lams]:
        mode = "naive" if name == "naive" else "sdft"
        models[name] = (lambda mode=mode, loss=loss: finetuned(preset(mode=mode, loss=loss), device=str(device)),
                        "portrait")
    classifier = load_classifier(asset_path("synthfaces/classifier.pt"), device)
    curves, started = {}, time.perf_counter()
    for name, (load, style) in models.items():
        faces = smiling_faces(args.n, 32, style).to(device)
        curves[name] = smile_survival(load().to(device).eval(), classifier, faces, TIMESTEPS, args.steps)
        print(name, curves[name], flush=True)
    result = {"what": "share of smiling renders still smiling after SDEdit from t", "n": args.n,
              "steps": args.steps, "quick_models": args.quick, "hardware": hardware(), "curves": curves,
              "seconds": round(time.perf_counter() - started, 1), "command": " ".join(sys.argv)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
