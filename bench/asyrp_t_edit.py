"""Does a later edit interval make the classifier-direction Asyrp edit work? Quick models, CPU, one seed.

    SDFT_LITE_HOME=... python bench/asyrp_t_edit.py      # uses (or trains) the quick SDFT model of the zoo

Prints, per (t_edit, t_boost, passes): the share of 32 held-out neutral portraits read as smiling after the
edit, S_dir and the share of other attributes kept. Recorded output: bench/results/asyrp_t_edit_cpu.txt.
"""
import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdft_lite.assets import asset_path  # noqa: E402
from sdft_lite.synthfaces import load_classifier  # noqa: E402
from sdft_lite.experiments.editing_table import EditBenchConfig, asyrp_table_row  # noqa: E402
from sdft_lite.experiments.zoo import finetuned  # noqa: E402
from sdft_lite.train import TrainConfig  # noqa: E402

classifier = load_classifier(asset_path("synthfaces/classifier.pt"), "cpu").requires_grad_(False)
model = finetuned(TrainConfig.synthfaces_quick(mode="sdft"))
base = EditBenchConfig.quick()
for t_edit, t_boost, epochs in [(500, 200, 2), (300, 100, 2), (200, 0, 2), (400, 100, 4)]:
    config = dataclasses.replace(base, n_test=32, asyrp=dataclasses.replace(base.asyrp, t_edit=t_edit,
                                                                             t_boost=t_boost, epochs=epochs))
    row = asyrp_table_row(model, classifier, config, "cpu")
    edit = row["edit"]
    print(f"t_edit {t_edit} t_boost {t_boost} passes {epochs}: smiling {edit['smiling']:.3f} "
          f"S_dir {edit['s_dir']:.3f} kept {edit['kept_mean']:.3f} (train {row['train_seconds']} s)", flush=True)
