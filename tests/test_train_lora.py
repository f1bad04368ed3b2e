"""LoRA through the trainer and the command line: only the adapters train, checkpoints hold only them (small), the
EMA covers them, a killed run resumes, and `sample` / `merge-lora` turn a run into a plain U-Net.

Tolerances: merged vs adapted outputs 1e-5 (float32; measured ≈ 2e-6 in test_adapters.py)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import write_training_files
from sdft_lite.adapters import LoRAConfig, has_lora
from sdft_lite.checkpoint import load_unet
from sdft_lite.train import TrainConfig, Trainer, load_trained
from sdft_lite.unet import UNetConfig, UNetModel

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "sdft_lite.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO)}

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_training_files(tmp_path_factory.mktemp("lora"), images=6)


def lora_config(files, out, **changes) -> TrainConfig:
    settings = dict(mode="sdft", data_dir=str(files / "images"), out_dir=str(out), unet=UNetConfig.tiny(),
                    source_checkpoint=str(files / "source.pt"), steps=3, save_every=3, progress=False, lr=1e-3,
                    lora=LoRAConfig(rank=2))
    return TrainConfig.tiny(**{**settings, **changes})


def test_only_the_adapters_train_and_the_checkpoint_holds_only_them(files, tmp_path):
    trainer = Trainer(lora_config(files, tmp_path), device="cpu")
    assert has_lora(trainer.model) and not has_lora(trainer.teacher.model)
    base_before = {k: v.clone() for k, v in trainer.model.state_dict().items() if "lora" not in k}
    trainer.run()
    after = trainer.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base_before.items())          # base weights frozen
    state = torch.load(tmp_path / "ckpt_0000003.pt", weights_only=True)
    assert state["model"] and all(k.endswith((".lora_down", ".lora_up")) for k in state["model"])
    assert set(state["ema"]) == set(state["model"]) and state["config"]["lora"]["rank"] == 2
    adapter = sum(v.numel() for v in state["model"].values())
    full = sum(p.numel() for p in UNetModel(UNetConfig.tiny()).parameters())
    assert adapter < 0.1 * full, (adapter, full)
    merged = load_trained(tmp_path / "ckpt_0000003.pt")
    assert not has_lora(merged)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 900])
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(x, t), trainer.model(x, t), rtol=0, atol=1e-5)


def test_a_lora_run_resumes_and_scratch_with_lora_is_refused(files, tmp_path):
    Trainer(lora_config(files, tmp_path / "a", steps=4, save_every=2), device="cpu").run()
    Trainer(lora_config(files, tmp_path / "b", steps=2, save_every=2), device="cpu").run()
    resumed = Trainer(lora_config(files, tmp_path / "b", steps=4, save_every=2), device="cpu")
    resumed.run(resume=True)
    a, b = (torch.load(p / "ckpt_0000004.pt", weights_only=True) for p in (tmp_path / "a", tmp_path / "b"))
    for key in ("model", "ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    with pytest.raises(ValueError, match="LoRA adapts a pretrained model"):
        Trainer(lora_config(files, tmp_path / "c", mode="scratch"), device="cpu")


def test_cli_trains_lora_then_samples_and_merges(files, tmp_path):
    run = tmp_path / "run"
    subprocess.run(CLI + ["train", "--preset", "tiny", "--mode", "naive", "--data-dir", str(files / "images"),
                          "--source-checkpoint", str(files / "source.pt"), "--out-dir", str(run), "--steps", "2",
                          "--save-every", "2", "--lora-rank", "2", "--lora-targets", "conv,attention",
                          "--dropout", "0"], env=ENV, check=True, capture_output=True)
    checkpoint = run / "ckpt_0000002.pt"
    assert torch.load(checkpoint, weights_only=True)["config"]["lora"]["targets"] == ["conv", "attention"]
    subprocess.run(CLI + ["sample", str(checkpoint), "--out", str(tmp_path / "s"), "--num", "2", "--steps",
                          "ddim3"], env=ENV, check=True, capture_output=True)
    assert len(list((tmp_path / "s" / "images").glob("*.png"))) == 2
    subprocess.run(CLI + ["merge-lora", str(checkpoint), "--out", str(tmp_path / "merged.pt")], env=ENV,
                   check=True, capture_output=True)
    merged = load_unet(tmp_path / "merged.pt")
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([500])
    with torch.no_grad():
        torch.testing.assert_close(merged(x, t), load_trained(checkpoint)(x, t), rtol=0, atol=0)
