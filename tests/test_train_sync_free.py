"""The training step reads nothing back from the device: its loss terms stay tensors until a log or save step reads
them, and the NaN stop happens there, still naming the first bad step. The values logged are bit-identical to those
of the trainer that read every term back each step (commit 1b56d5f, run from a copy of its package)."""
import json

import pytest
import torch

from helpers import train_with_the_package_at, write_training_files
from sdft_lite.train import TrainConfig, Trainer

READ_EVERY_STEP = "1b56d5f"   # main before the step stopped reading its losses back
pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_training_files(tmp_path_factory.mktemp("syncfree"))


def settings(files) -> dict:
    return dict(mode="sdft", data_dir=str(files / "images"), source_checkpoint=str(files / "source.pt"), steps=4,
                save_every=4, log_every=1, progress=False, lr=1e-3, grad_accum=2, grad_clip=1.0)


class HostRead(AssertionError):
    pass


def test_the_step_reads_nothing_back_from_the_device(files, tmp_path, monkeypatch):
    trainer = Trainer(TrainConfig.tiny(out_dir=str(tmp_path), **settings(files)), device="cpu")
    names = ("item", "__float__", "__int__", "__bool__", "tolist")
    original = {name: getattr(torch.Tensor, name) for name in names}
    inside_optimizer = []

    def guarded(name):
        def read(self, *args, **kwargs):
            if not inside_optimizer:
                raise HostRead(f"the step called Tensor.{name}")
            return original[name](self, *args, **kwargs)
        return read

    step = trainer.optimizer.step

    def optimizer_step(*args, **kwargs):   # torch's unfused CPU AdamW reads its step counter; CUDA's fused one does not
        inside_optimizer.append(True)
        try:
            return step(*args, **kwargs)
        finally:
            inside_optimizer.pop()
    trainer.optimizer.step = optimizer_step
    with monkeypatch.context() as m:
        for name in names:
            m.setattr(torch.Tensor, name, guarded(name))
        terms = trainer.train_step()
    assert {"loss", "mse", "distill", "aux", "grad_norm"} <= terms.keys()
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in terms.values())


def test_logged_losses_are_bit_identical_to_the_trainer_that_read_them_every_step(files, tmp_path):
    train_with_the_package_at(READ_EVERY_STEP, settings(files), tmp_path / "before", tmp_path)
    Trainer(TrainConfig.tiny(out_dir=str(tmp_path / "now"), **settings(files)), device="cpu").run()
    logs = [[{k: v for k, v in json.loads(line).items() if k != "img_per_s"}
             for line in (tmp_path / d / "log.jsonl").read_text().splitlines()] for d in ("before", "now")]
    assert len(logs[1]) == 4 and logs[0] == logs[1]
    before, now = (torch.load(tmp_path / d / "ckpt_0000004.pt", weights_only=True) for d in ("before", "now"))
    assert all(torch.equal(before["model"][k], now["model"][k]) for k in before["model"])
