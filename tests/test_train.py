"""The trainer on CPU with the tiny U-Net: each mode learns, kill-and-resume is exact, bad data and NaN losses
are handled, two gloo processes stay in sync, and the CLI works end to end."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdft_lite.checkpoint import MissingWeightsError, save_atomic
from sdft_lite.data import DataError, batch_indices, load_image_folder, prepare_data
from sdft_lite.diffusion import training_losses
from sdft_lite.schedule import make_schedule
from sdft_lite.train import TrainConfig, Trainer, TrainingDiverged
from sdft_lite.unet import UNetConfig, UNetModel

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "sdft_lite.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO)}


def write_images(folder: Path, n: int = 8, size: int = 40) -> Path:
    """Smooth coloured blobs: easy to overfit, varied enough to need a model."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        rng = np.random.default_rng(i)
        cx, cy, r = rng.uniform(0.3, 0.7, 3)
        blob = ((xx - cx) ** 2 + (yy - cy) ** 2 < (r / 2) ** 2)[..., None]
        colour = rng.uniform(0, 255, 3)
        image = np.where(blob, colour, 255 - colour).astype(np.uint8)
        Image.fromarray(image).save(folder / f"img_{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("data") / "images")


@pytest.fixture(scope="module")
def source_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = UNetModel(UNetConfig.tiny())
    for p in model.parameters():   # a "pretrained" source: no zero-initialised layers
        torch.nn.init.normal_(p, std=0.02) if p.ndim > 1 and p.abs().sum() == 0 else None
    path = tmp_path_factory.mktemp("source") / "source.pt"
    save_atomic(model.state_dict(), path)   # the bare guided-diffusion format
    return path


def fixed_loss(model, data_dir) -> float:
    """The diffusion loss on the training images at fixed (t, ε): comparable before and after training."""
    images = load_image_folder(data_dir, 32)
    g = torch.Generator().manual_seed(123)
    x0 = images.batch(torch.arange(len(images)))
    x0 = torch.cat([x0] * 4)
    t = torch.randint(0, 1000, (x0.shape[0],), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    model.eval()
    with torch.no_grad():
        return float(training_losses(model, make_schedule(), x0, t, noise)["mse"].mean())


@pytest.mark.parametrize("mode", ["scratch", "naive", "sdft"])
def test_each_mode_learns_the_training_images(mode, data_dir, source_ckpt, tmp_path):
    config = TrainConfig.tiny(mode=mode, data_dir=str(data_dir), out_dir=str(tmp_path), steps=30, lr=2e-3,
                              source_checkpoint=str(source_ckpt), save_every=0, progress=False,
                              unet=UNetConfig.tiny())
    trainer = Trainer(config, device="cpu")
    before = fixed_loss(trainer.model, data_dir)
    result = trainer.run()
    after = fixed_loss(trainer.model, data_dir)
    assert result["step"] == 30 and after < 0.8 * before, (before, after)
    assert (tmp_path / "ckpt_0000030.pt").exists() and (tmp_path / "loss.png").exists()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(records) == 30 and all(np.isfinite(r["loss"]) for r in records)
    if mode == "sdft":   # the student starts as the teacher, then drifts away from it
        assert records[0]["distill"] < 1e-4 and max(r["distill"] for r in records) > records[0]["distill"]


def test_sdft_teacher_is_the_frozen_source(data_dir, source_ckpt, tmp_path):
    config = TrainConfig.tiny(data_dir=str(data_dir), out_dir=str(tmp_path), source_checkpoint=str(source_ckpt),
                              steps=3, progress=False)
    trainer = Trainer(config, device="cpu")
    source = torch.load(source_ckpt, weights_only=True)
    trainer.run()
    teacher_state = trainer.teacher.model.state_dict()
    assert all(torch.equal(teacher_state[k], source[k]) for k in source)
    assert not all(torch.equal(trainer.model.state_dict()[k], source[k]) for k in source)
    assert not any(p.requires_grad for p in trainer.teacher.parameters())


def train_cmd(data_dir, out_dir, source_ckpt, steps=16, extra=()):
    return CLI + ["train", "--preset", "tiny", "--data-dir", str(data_dir), "--out-dir", str(out_dir),
                  "--source-checkpoint", str(source_ckpt), "--steps", str(steps), "--save-every", "4",
                  "--keep-last", "10", "--dropout", "0.1", *extra]


def final_state(out_dir, step):
    return torch.load(Path(out_dir) / f"ckpt_{step:07d}.pt", weights_only=True)


def test_sigkill_then_resume_ends_with_the_same_weights(data_dir, source_ckpt, tmp_path):
    reference = tmp_path / "uninterrupted"
    subprocess.run(train_cmd(data_dir, reference, source_ckpt), env=ENV, check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(data_dir, killed, source_ckpt), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "ckpt_0000008.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "ckpt_0000016.pt").exists(), "the run finished before it could be killed"
    subprocess.run(train_cmd(data_dir, killed, source_ckpt, extra=["--resume"]), env=ENV, check=True,
                   capture_output=True)
    assert not list(killed.glob(".*.tmp"))   # a save's torn temporary file, if the kill left one, is removed
    a, b = final_state(reference, 16), final_state(killed, 16)
    for key in ("model", "ema"):
        diff = max(float((a[key][k] - b[key][k]).abs().max()) for k in a[key])
        assert diff == 0.0, f"{key} differs by {diff}"


def test_sigterm_saves_and_exits(data_dir, source_ckpt, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(data_dir, out, source_ckpt, steps=100000), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "ckpt_0000004.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    last = sorted(out.glob("ckpt_*.pt"))[-1]
    assert int(last.stem.split("_")[1]) >= 4 and torch.load(last, weights_only=True)["step"] >= 4


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, source_ckpt, tmp_path):
    config = TrainConfig.tiny(mode="naive", data_dir=str(data_dir), out_dir=str(tmp_path), steps=10,
                              source_checkpoint=str(source_ckpt), save_every=5, progress=False)
    trainer = Trainer(config, device="cpu")
    trainer.run()
    good = (tmp_path / "ckpt_0000010.pt").read_bytes()
    trainer.config = TrainConfig.tiny(**{**config.__dict__, "steps": 20})
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"at step 10.*ckpt_0000010\.pt"):
        trainer.run()
    assert (tmp_path / "ckpt_0000010.pt").read_bytes() == good
    assert sorted(p.name for p in tmp_path.glob("ckpt_*.pt")) == ["ckpt_0000005.pt", "ckpt_0000010.pt"]


def test_bad_files_are_skipped_and_counted(tmp_path):
    folder = write_images(tmp_path / "imgs", n=3)
    (folder / "junk.png").write_bytes(b"not an image at all")
    good = (folder / "img_00.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "notes.txt").write_text("ignored: not an image extension")
    (folder / "sub").mkdir()
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(folder / "sub" / "small.jpg")   # smaller than 32 px
    with pytest.warns(UserWarning, match="skipped 2 of 6 files"):
        images = load_image_folder(folder, 32)
    assert len(images) == 4 and len(images.skipped) == 2 and images.upscaled == 1
    assert images.images.shape == (4, 3, 32, 32) and images.images.dtype == torch.uint8
    assert [p.name for p in images.files] == ["img_00.png", "img_01.png", "img_02.png", "small.jpg"]


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "nope", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_image_folder(tmp_path / "empty", 32)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"zzz")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="none of the 1"):
        load_image_folder(tmp_path / "bad", 32)


def test_batches_are_a_pure_function_of_seed_and_step():
    first = [batch_indices(10, 4, s, seed=3) for s in range(5)]
    assert all(torch.equal(a, batch_indices(10, 4, s, seed=3)) for s, a in enumerate(first))
    epoch0 = torch.cat(first)[:10]
    assert sorted(epoch0.tolist()) == list(range(10))   # without replacement within an epoch


def test_prepare_data_writes_a_manifest(tmp_path):
    folder = write_images(tmp_path / "raw", n=3, size=70)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    manifest = prepare_data(folder, tmp_path / "out", size=32)
    assert (manifest["found"], manifest["written"], manifest["skipped"]) == (4, 3, 1)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["written"] == 3
    assert Image.open(next((tmp_path / "out").glob("*.png"))).size == (32, 32)


def test_missing_source_checkpoint_names_the_p2_release(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SDFT_LITE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    config = TrainConfig.metfaces(data_dir=str(data_dir), out_dir=str(tmp_path / "run"))
    with pytest.raises(MissingWeightsError, match="P2-weighting") as info:
        Trainer(config, device="cpu")
    assert "ffhq_p2.pt" in str(info.value)


def test_cli_reports_user_errors_in_one_line(tmp_path):
    result = subprocess.run(CLI + ["train", "--preset", "tiny", "--mode", "scratch", "--data-dir",
                                   str(tmp_path / "missing"), "--out-dir", str(tmp_path / "o")],
                            env=ENV, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "does not exist" in result.stderr


def test_cli_help_documents_every_flag():
    """Every field of TrainConfig, SDFTConfig, LoRAConfig (as --lora-*) and UNetConfig is a flag with its default
    shown, plus the command's own options."""
    import dataclasses
    from sdft_lite.sdft import SDFTConfig
    result = subprocess.run(CLI + ["train", "--help"], env=ENV, capture_output=True, text=True, check=True)
    help_text = " ".join(result.stdout.split())
    from sdft_lite.adapters import LoRAConfig
    fields = [f.name for cls in (TrainConfig, SDFTConfig, UNetConfig) for f in dataclasses.fields(cls)
              if f.name not in ("unet", "loss", "lora")]
    fields += [f"lora_{f.name}" for f in dataclasses.fields(LoRAConfig)]
    for name in fields:
        assert f"--{name.replace('_', '-')} " in help_text, name
    for flag in ("--resume", "--preset", "--unet-preset", "--device"):
        assert flag in help_text
    assert help_text.count("(default:") >= len(fields)


def test_cli_sample_writes_pngs_and_a_grid(data_dir, source_ckpt, tmp_path):
    out = tmp_path / "samples"
    subprocess.run(CLI + ["sample", str(source_ckpt), "--out", str(out), "--num", "3", "--batch", "2",
                          "--steps", "ddim5", "--compile"], env=ENV, check=True, capture_output=True)
    assert sorted(p.name for p in (out / "images").glob("*.png")) == ["000000.png", "000001.png", "000002.png"]
    info = json.loads((out / "sampling.json").read_text())
    assert (out / "grid.png").exists() and info["weights"] == "raw"
    assert info["compiled"] is False   # asked for, but on a CPU the network runs eagerly (compiling is for CUDA)


def test_two_gloo_processes_hold_identical_weights(data_dir, source_ckpt, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sdft_lite.cli", "train", "--preset", "tiny", "--data-dir", str(data_dir), "--out-dir", str(out),
           "--source-checkpoint", str(source_ckpt), "--steps", "4", "--save-every", "0", "--batch-size", "4"]
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2 and all(s["replicas_identical"] for s in summaries)
    assert final_state(out, 4)["step"] == 4
