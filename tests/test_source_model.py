"""The SynthFaces source model's training (``experiments.source_model.train_source``): a run stopped part-way is
finished by calling it again, to the same exported weights bit for bit."""
import pytest
import torch

from sdft_lite.experiments.source_model import train_source
from sdft_lite.train import Trainer
from sdft_lite.unet import UNetConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


def exported_weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_a_stopped_source_run_is_finished_by_a_second_call_bit_for_bit(tmp_path):
    settings = dict(unet=UNetConfig.tiny(), batch=4, lr=1e-3, num_images=8, device="cpu")
    whole = train_source(tmp_path / "whole.pt", steps=4, **settings)
    first = train_source(tmp_path / "split.pt", steps=2, **settings)   # the run a time limit stopped at step 2
    rest = train_source(tmp_path / "split.pt", steps=4, **settings)
    assert whole["resumed_from_step"] is None and first["resumed_from_step"] is None
    assert rest["resumed_from_step"] == 2
    a, b = exported_weights(tmp_path / "whole.pt"), exported_weights(tmp_path / "split.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_stopped_by_a_signal_exports_nothing_and_says_where_it_stopped(tmp_path, monkeypatch):
    one_step = Trainer.train_step

    def step_then_stop(self):
        self.request_stop()   # what SIGTERM does: the step finishes, then the run saves and returns
        return one_step(self)
    monkeypatch.setattr(Trainer, "train_step", step_then_stop)
    info = train_source(tmp_path / "cut.pt", UNetConfig.tiny(), steps=4, batch=4, num_images=8, device="cpu")
    assert info["stopped_at_step"] == 1 and not (tmp_path / "cut.pt").exists()
    assert (tmp_path / "cut.run" / "ckpt_0000001.pt").exists()
