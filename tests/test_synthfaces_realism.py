"""The SynthFaces realism measure (its Fréchet distance is metrics.frechet, tested in test_metrics_fid): a short CPU run
(16 px, 150 steps of 64) passes the validation against both references: held-out real portraits score best, the
photo source, blurred and noised portraits at least 3x worse (observed ≥ 10x at 100 steps)."""
import numpy as np
import pytest
import torch

from sdft_lite.checkpoint import MissingWeightsError
from sdft_lite.synthfaces.realism import (CLEARLY_WORSE, FAKE_SETS, REAL_SETS,
                                          load_feature_extractor, make_feature_extractor, save_realism,
                                          train_realism, validate_realism)
from sdft_lite.synthfaces.renderer import render


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    return train_realism(size=16, steps=150, batch=64, device="cpu", seed=0, validation_images=400, log=None)


def test_short_cpu_run_passes_validation(trained):
    _, report = trained
    validation = report["validation"]
    assert validation["passed"] == {"full": True, "limited": True}
    for reference, scores in validation["scores"].items():
        worst_real = max(scores[name] for name in REAL_SETS)
        assert all(scores[name] >= CLEARLY_WORSE * worst_real for name in FAKE_SETS), (reference, scores)


def test_validation_fails_for_a_measure_that_sees_only_attributes():
    """An extractor that reads nothing but the mean colour of the lower face: blind to blur and noise."""
    def mouth_colour(images):
        x = torch.as_tensor(images)
        return x[:, :, x.shape[2] * 5 // 8: x.shape[2] * 7 // 8, x.shape[3] * 3 // 8: x.shape[3] * 5 // 8].mean((2, 3))

    assert not validate_realism(mouth_colour, size=16, n=200)["passed_all"]


def test_saved_extractor_gives_the_same_features(trained, tmp_path):
    model, _ = trained
    path = save_realism(model, tmp_path / "realism.pt")
    images, _ = render(20, "portrait", 16, seed=3, output="tensor")
    expected = make_feature_extractor(model)(images)
    loaded = load_feature_extractor(path)
    assert torch.allclose(loaded(images), expected, atol=1e-5)
    as_0_255 = load_feature_extractor(path, input_range="0..255")((images + 1) * 127.5)
    assert torch.allclose(as_0_255, expected, atol=1e-4)
    with pytest.raises(MissingWeightsError):
        load_feature_extractor(tmp_path / "absent.pt")
