"""The Table 2 analogue (``synthfaces.editing_eval``) and the trainer's compile switch, on tiny CPU models."""
import dataclasses

import numpy as np
import pytest
import torch

from sdft_lite.editing import AsyrpConfig
from sdft_lite.experiments.editing_table import EditBenchConfig, asyrp_table_row, edit_scores, smile_direction
from sdft_lite.unet import UNetConfig, UNetModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FixedClassifier(torch.nn.Module):
    """Expression from the mean brightness of the lower half (>0: smiling), skin from the upper half."""

    def forward(self, x):
        lower, upper = x[:, :, x.shape[2] // 2:].mean(dim=(1, 2, 3)), x[:, :, :x.shape[2] // 2].mean(dim=(1, 2, 3))
        zeros = torch.zeros_like(lower)
        return {"expression": torch.stack([-lower, lower, zeros], dim=1),
                "skin": torch.stack([-upper, upper, zeros], dim=1)}

    def predict(self, images):
        from types import SimpleNamespace
        with torch.no_grad():
            logits = self(images)
        level = {name: value.argmax(dim=1).numpy() for name, value in logits.items()}
        blank = np.zeros(len(images), dtype=np.int64)
        return SimpleNamespace(expression=level["expression"], skin=level["skin"], eyewear=blank, hair=blank,
                               style=blank)


def test_edit_scores_count_smiles_and_kept_attributes():
    classifier = FixedClassifier()
    inputs = torch.full((4, 3, 8, 8), -0.5)
    outputs = inputs + 0.05             # every output differs a little (finite PSNR)
    outputs[:2, :, 4:] = 0.5            # two faces' lower halves brighten: "smiling", upper halves unchanged
    scores = edit_scores(classifier, smile_direction(classifier), inputs, outputs)
    assert scores["smiling"] == 0.5
    assert scores["kept_skin"] == 1.0 and scores["kept_mean"] == 1.0
    nearly_same = edit_scores(classifier, smile_direction(classifier), inputs, inputs + 0.05)
    assert nearly_same["smiling"] == 0.0 and nearly_same["psnr_db"] > scores["psnr_db"]


def test_asyrp_table_row_runs_end_to_end_on_a_tiny_model():
    torch.manual_seed(0)
    unet = UNetModel(UNetConfig.tiny().replace(image_size=16))
    config = EditBenchConfig(n_train=2, n_test=3, size=16,
                             asyrp=AsyrpConfig(steps="10", inversion_steps="10", epochs=1, batch=2))
    row = asyrp_table_row(unet, FixedClassifier(), config, "cpu")
    assert row["n_test"] == 3 and row["sgd_steps"] > 0
    for kind in ("edit", "reconstruction"):
        assert 0.0 <= row[kind]["smiling"] <= 1.0 and 0.0 <= row[kind]["kept_mean"] <= 1.0
    assert all(not p.requires_grad for p in unet.parameters())   # the U-Net stays frozen


def test_compile_is_cuda_only_and_makes_one_static_batch_shape(tmp_path):
    from pathlib import Path

    from sdft_lite.data import ImageSet
    from sdft_lite.sdft import SkipLightAux, every_aux
    from sdft_lite.train import TrainConfig, Trainer
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    data = ImageSet(images, [Path(f"{i}.png") for i in range(4)])
    config = TrainConfig.tiny(mode="scratch", out_dir=str(tmp_path), compile=True, aux_skip_below=1e-6)
    trainer = Trainer(config, device="cpu", data=data)
    assert trainer.ddp_model is trainer.model                   # on a CPU: not compiled
    assert isinstance(trainer.select_aux, SkipLightAux)        # eager: negligible aux samples skipped
    trainer._compile()                                         # what a CUDA run does
    assert trainer.select_aux is every_aux                     # every aux sample: one batch shape
    assert trainer.ddp_model is not trainer.model


def test_presets_compile_on_gpus():
    from sdft_lite.train import TrainConfig
    assert TrainConfig.metfaces().compile and TrainConfig.aahq().compile
    assert not TrainConfig.tiny().compile


def test_smile_survival_counts_smiles_kept_after_sdedit_from_each_t():
    """From t = 0 SDEdit returns its input, so every smiling render is still read as smiling (the classifier is
    right on clean renders); the renders all smile, and the curve has one entry per t."""
    from sdft_lite.assets import asset_path
    from sdft_lite.experiments.editing_table import smile_survival, smiling_faces
    from sdft_lite.experiments.zoo import source_model
    from sdft_lite.synthfaces.classifier import load_classifier
    classifier = load_classifier(asset_path("synthfaces/classifier.pt"), "cpu")
    faces = smiling_faces(6, 32, "photo")
    assert faces.shape == (6, 3, 32, 32) and float(faces.min()) >= -1 and float(faces.max()) <= 1
    curve = smile_survival(source_model(), classifier, faces, (0, 950), steps="10")
    assert list(curve) == [0, 950] and curve[0] == 1.0 and 0.0 <= curve[950] <= 1.0
