"""The Table 2 analogue (``experiments.editing_table``) and the trainer's compile switch, on tiny CPU models."""
import dataclasses

import numpy as np
import pytest
import torch

from sdft_lite.editing import AsyrpConfig
from sdft_lite.experiments.editing_table import EditBenchConfig, asyrp_table_row, edit_scores
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


class FixedEncoders:
    """A differentiable stand-in for SynthCLIP: the image embedding is (lower-half mean, upper-half mean, 1), the
    text "a smiling face" points along the first axis, anything else along the third."""

    name = "synthclip"

    def encode_image(self, x):
        lower, upper = x[:, :, x.shape[2] // 2:].mean(dim=(1, 2, 3)), x[:, :, :x.shape[2] // 2].mean(dim=(1, 2, 3))
        return torch.stack([lower, upper, torch.ones_like(lower)], dim=1)

    def encode_text(self, texts):
        return torch.tensor([[1.0, 0.0, 0.1] if "smiling" in t else [0.0, 0.0, 1.0] for t in texts])


def fixed_instruments():
    from sdft_lite.experiments.editing_table import EditInstruments
    return EditInstruments(FixedClassifier(), FixedEncoders(), realism=lambda x: x.flatten(1)[:, :4].float())


def test_edit_scores_count_smiles_and_kept_attributes_as_the_judge_reads_them():
    from sdft_lite.experiments.editing_table import ClassifierJudge
    instruments = fixed_instruments()
    inputs = torch.full((4, 3, 8, 8), -0.5)
    outputs = inputs + 0.05             # every output differs a little (finite PSNR)
    outputs[:2, :, 4:] = 0.5            # two faces' lower halves brighten: "smiling", upper halves unchanged
    reference = instruments.realism(torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0)))
    judge = ClassifierJudge(FixedClassifier())
    scores = edit_scores(judge, instruments, inputs, outputs, reference)
    assert scores["smiling"] == 0.5
    assert scores["kept_skin"] == 1.0 and scores["kept_mean"] == 1.0
    assert scores["s_dir_synthclip"] > 0          # the two brightened mouths move along "smiling"
    nearly_same = edit_scores(judge, instruments, inputs, inputs + 0.05, reference)
    assert nearly_same["smiling"] == 0.0 and nearly_same["psnr_db"] > scores["psnr_db"]


def test_the_judge_is_never_the_instrument_that_trained_the_edit():
    from sdft_lite.experiments.editing_table import ClassifierJudge, SynthClipJudge
    instruments = fixed_instruments()
    assert instruments.direction("synthclip").name == "synthclip:a face→a smiling face"
    assert isinstance(instruments.judge_for("synthclip"), ClassifierJudge)
    assert instruments.direction("classifier").name.startswith("classifier:expression")
    assert isinstance(instruments.judge_for("classifier"), SynthClipJudge)


def test_asyrp_table_row_runs_end_to_end_on_a_tiny_model(monkeypatch):
    from sdft_lite.experiments import editing_table
    monkeypatch.setattr(editing_table, "zero_shot_predict",    # the stand-in encoders read like the classifier
                        lambda model, images: vars(FixedClassifier().predict(images)))
    torch.manual_seed(0)
    unet = UNetModel(UNetConfig.tiny().replace(image_size=16))
    config = EditBenchConfig(n_train=2, n_test=3, size=16, num_reference=8, direction="synthclip",
                             asyrp=AsyrpConfig(steps="10", inversion_steps="10", epochs=1, batch=2))
    row = asyrp_table_row(unet, fixed_instruments(), config, "cpu")
    assert row["n_test"] == 3 and row["sgd_steps"] > 0
    assert row["direction"].startswith("synthclip:") and row["judge"] == "attribute classifier"
    assert "smiling_by_trainer" in row["edit"]     # SynthCLIP's own reading, reported beside the judge's
    for kind in ("edit", "reconstruction"):
        assert 0.0 <= row[kind]["smiling"] <= 1.0 and 0.0 <= row[kind]["kept_mean"] <= 1.0
    assert all(not p.requires_grad for p in unet.parameters())   # the U-Net stays frozen


def test_edit_window_spans_where_the_model_decides_the_mouth():
    from sdft_lite.experiments.editing_table import edit_window
    curve = {0: 1.0, 100: 0.97, 200: 0.9, 300: 0.82, 400: 0.6, 500: 0.15, 600: 0.05, 800: 0.0}   # base 0
    assert edit_window(curve) == (300, 500)
    assert edit_window(curve, kept=0.95, lost=0.1) == (100, 600)
    # a model that draws smiles on its own (base 0.6): decided share (s − 0.6)/0.4
    source_like = {0: 1.0, 200: 0.96, 300: 0.94, 400: 0.7, 500: 0.62, 800: 0.6}
    assert edit_window(source_like) == (300, 500)
    assert edit_window({0: 0.4, 100: 0.2}) == (0, 100)   # nothing kept: the earliest window


def test_source_bar_criteria():
    from sdft_lite.experiments.editing_table import passes_source_bar
    row = {"edit": {"smiling": 0.85, "kept_mean": 0.96, "psnr_db": 28.0}, "reconstruction": {"smiling": 0.0}}
    assert all(passes_source_bar(row).values())
    row["reconstruction"]["smiling"] = 0.05
    assert passes_source_bar(row) == {"smiling ≥ 0.8": True, "reconstruction smiling ≤ 0.02": False,
                                      "kept ≥ 0.95": True, "PSNR ≥ 27 dB": True}


def test_one_source_bar_names_and_judges_every_criterion():
    """The stored results key their criteria by these names, and the book's reading takes the thresholds from the
    same object: a stricter bar renames its criteria and fails a row the default passes."""
    from sdft_lite.experiments.editing_table import SOURCE_BAR, SourceBar
    row = {"edit": {"smiling": 0.85, "kept_mean": 0.96, "psnr_db": 28.0}, "reconstruction": {"smiling": 0.0}}
    assert SOURCE_BAR.criteria == ("smiling ≥ 0.8", "reconstruction smiling ≤ 0.02", "kept ≥ 0.95", "PSNR ≥ 27 dB")
    stricter = SourceBar(kept=0.97, psnr_db=28.5)
    assert stricter.passes(row) == {"smiling ≥ 0.8": True, "reconstruction smiling ≤ 0.02": True,
                                    "kept ≥ 0.97": False, "PSNR ≥ 28.5 dB": False}
    assert [stricter.name(t) for t in ("smiling", "kept", "psnr_db")] == ["smiling ≥ 0.8", "kept ≥ 0.97",
                                                                         "PSNR ≥ 28.5 dB"]
    with pytest.raises(KeyError, match="no threshold 'smile'"):
        SOURCE_BAR.name("smile")


def test_synthfaces_smile_preset_closes_the_window_and_the_official_one_does_not():
    smile, official = AsyrpConfig.synthfaces_smile(), AsyrpConfig.official()
    assert (smile.t_edit, smile.t_edit_upper, smile.t_boost) == (200, 500, 100)
    assert (official.t_edit, official.t_edit_upper, official.t_boost) == (500, 999, 200)


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
    assert TrainConfig.metfaces().aux_samples == TrainConfig.aahq().aux_samples == 4   # the unbiased estimator
    assert not TrainConfig.tiny().compile and TrainConfig.tiny().aux_samples == 0


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


def test_each_instrument_is_fooled_by_a_perturbation_aimed_at_it_and_hardly_the_other():
    """Why the judge is the other instrument: ±0.04 per pixel (5/255) of projected gradient ascent on one
    instrument's smile margin makes it read "smiling" on many neutral photos, while the other instrument reads
    (almost) none of them as smiling (measured: 0.58 vs 0.08 against the classifier, 0.34 vs 0.06 against
    SynthCLIP, shipped instruments, 64 faces)."""
    from sdft_lite.assets import asset_path
    from sdft_lite.experiments.editing_table import (ClassifierJudge, SynthClipJudge, adversarial_smile,
                                                     classifier_smile_margin, neutral_faces, smiling_share,
                                                     synthclip_smile_margin)
    from sdft_lite.synthfaces.classifier import load_classifier
    from sdft_lite.synthfaces.synthclip import load_synthclip
    classifier = load_classifier(asset_path("synthfaces/classifier.pt")).requires_grad_(False)
    synthclip = load_synthclip().requires_grad_(False)
    judges = {"classifier": ClassifierJudge(classifier), "synthclip": SynthClipJudge(synthclip)}
    photos = neutral_faces("source", 64, 32, "test", "cpu")
    assert all(smiling_share(judge.labels(photos)) == 0 for judge in judges.values())
    attacks = {"classifier": classifier_smile_margin(classifier), "synthclip": synthclip_smile_margin(synthclip)}
    for target, margin in attacks.items():
        fooled = adversarial_smile(photos, margin, epsilon=0.04, steps=60)
        assert (fooled - photos).abs().max() <= 0.04 + 1e-6
        other = "synthclip" if target == "classifier" else "classifier"
        attacked, bystander = smiling_share(judges[target].labels(fooled)), smiling_share(judges[other].labels(fooled))
        assert attacked >= 0.25 and bystander <= 0.15 and attacked >= 3 * bystander, (target, attacked, bystander)


def test_the_renderers_perfect_edit_changes_the_expression_only():
    from sdft_lite.experiments.editing_table import neutral_faces, renderer_twins
    faces, twins = renderer_twins("source", 12, 32)
    assert torch.equal(faces, neutral_faces("source", 12, 32, "test", "cpu"))
    changed = (faces - twins).abs().amax(dim=1) > 1e-6                   # [N, H, W]: pixels the smile moved
    assert changed.any(dim=(1, 2)).all()                                  # every face got its smile
    rows = changed.any(dim=2).float().mean(dim=0)                         # share of faces changed, per image row
    assert rows[:10].max() == 0                                           # nothing above the mouth moved
    portraits, smiling = renderer_twins("limited", 4, 32, level=2)
    assert not torch.equal(portraits, smiling)


def test_the_classifier_reads_a_64_px_image_as_its_32_px_area_average():
    import torch.nn.functional as F
    from sdft_lite.assets import asset_path
    from sdft_lite.experiments.editing_table import neutral_faces
    from sdft_lite.synthfaces import load_classifier
    classifier = load_classifier(asset_path("synthfaces/classifier.pt"), "cpu")
    x = neutral_faces("source", 4, 64, "test", "cpu").requires_grad_(True)
    logits = classifier(x)
    reference = classifier(F.interpolate(x.detach(), size=32, mode="area"))
    for name in logits:
        torch.testing.assert_close(logits[name], reference[name], rtol=0, atol=0)
    logits["expression"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0      # Asyrp's direction trains through it


def test_a_64_px_source_is_edited_and_judged_with_the_32_px_instruments():
    from sdft_lite.assets import asset_path
    from sdft_lite.experiments.editing_table import EditInstruments
    from sdft_lite.synthfaces import load_classifier
    from sdft_lite.synthfaces.realism import load_feature_extractor
    from sdft_lite.synthfaces.synthclip import load_synthclip
    instruments = EditInstruments(load_classifier(asset_path("synthfaces/classifier.pt"), "cpu").requires_grad_(False),
                                  load_synthclip(device="cpu").requires_grad_(False),
                                  load_feature_extractor(asset_path("synthfaces/realism.pt"), "cpu"))
    torch.manual_seed(0)
    unet = UNetModel(UNetConfig.tiny().replace(image_size=64, attention_resolutions="32"))
    config = EditBenchConfig(n_train=2, n_test=2, size=64, faces="source", num_reference=8, direction="classifier",
                             asyrp=AsyrpConfig(steps="10", inversion_steps="10", epochs=1, batch=2))
    row = asyrp_table_row(unet, instruments, config, "cpu")
    assert row["judge"] == "SynthCLIP zero-shot" and row["sgd_steps"] > 0
    assert row["reconstruction"]["psnr_db"] > 0 and 0.0 <= row["edit"]["kept_mean"] <= 1.0
