"""Smoke tests of ``sdft-lite translate``, ``edit`` and ``train-dse`` on micro checkpoints written in tmp_path.

Each command must write its grid, its JSON record and ``pairs/input`` + ``pairs/output`` with the same file
names, and name its method or direction in what it prints and writes.
"""
import argparse
import json

import numpy as np
import pytest
import torch
from PIL import Image

from sdft_lite.checkpoint import MissingWeightsError
from sdft_lite.cli import editing as cli
from sdft_lite.synthfaces.classifier import AttributeClassifier, ClassifierConfig, save_classifier
from sdft_lite.unet import UNetConfig, UNetModel


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py


MICRO = UNetConfig(image_size=16, num_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_resolutions="",
                   learn_sigma=True, use_scale_shift_norm=True, resblock_updown=True)


def run(argv):
    parser = argparse.ArgumentParser(prog="sdft-lite")
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def write_checkpoint(path, seed):
    torch.manual_seed(seed)
    model = UNetModel(MICRO)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    torch.save({"model": model.state_dict(), "unet_config": MICRO.to_flags()}, path)
    return str(path)


def write_images(folder, n, seed, size=20):
    """n RGB PNGs of size 20 (the commands resize them to the model's 16 px), one in a sub-folder."""
    rng = np.random.default_rng(seed)
    (folder / "sub").mkdir(parents=True)
    for i in range(n):
        where = folder / "sub" if i == 0 else folder
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(where / f"face{i}.png")
    return str(folder)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("editing_cli")
    return {"root": root, "target": write_checkpoint(root / "target.pt", 0),
            "source": write_checkpoint(root / "source.pt", 1),
            "photos": write_images(root / "photos", 3, 0), "portraits": write_images(root / "portraits", 3, 1)}


def check_pairs(out, n):
    names = sorted(p.name for p in (out / "pairs" / "input").glob("*.png"))
    assert len(names) == n and names == sorted(p.name for p in (out / "pairs" / "output").glob("*.png"))
    assert all(Image.open(out / "pairs" / "output" / name).size == (16, 16) for name in names)
    return names


def test_train_dse_then_translate_with_every_method(files, capsys):
    root = files["root"]
    run(["train-dse", files["photos"], files["portraits"], "--out", str(root / "dse.pt"), "--size", "16",
         "--preset", "tiny", "--steps", "3", "--batch", "4"])
    assert "train-dse wrote" in capsys.readouterr().out
    common = ["--model", files["target"], "--input", files["photos"], "--batch", "2"]
    cases = {
        "sdedit": ["--method", "sdedit"],
        "egsde": ["--method", "egsde", "--dse", str(root / "dse.pt")],
        "ddib": ["--method", "ddib", "--source-model", files["source"], "--steps", "ddim10"],
        "sdedit-ancestral": ["--method", "sdedit", "--variant", "ancestral", "--t0", "40", "--repeats", "2"],
        "egsde-ancestral": ["--method", "egsde", "--variant", "ancestral", "--t0", "30", "--steps", "100",
                            "--dse", str(root / "dse.pt")],
    }
    for name, flags in cases.items():
        out = root / name
        assert run(["translate", *flags, *common, "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        info = json.loads((out / "translate.json").read_text())
        assert f"[{info['method']}/{info['variant']}]" in printed
        assert check_pairs(out, 3) == ["000000_face1.png", "000001_face2.png", "000002_face0.png"]
        assert Image.open(out / "grid.png").size == (2 + 3 * 18, 2 + 2 * 18)  # input row and output row
    assert json.loads((root / "egsde-ancestral" / "translate.json").read_text())["steps"] == "100"
    with pytest.raises(SystemExit, match="source-model"):
        run(["translate", "--method", "ddib", *common, "--out", str(root / "x")])
    with pytest.raises(SystemExit, match="--dse"):
        run(["translate", "--method", "egsde", *common, "--out", str(root / "x")])


def test_edit_with_a_classifier_direction(files, capsys):
    root, out = files["root"], files["root"] / "edit"
    torch.manual_seed(0)
    classifier = save_classifier(AttributeClassifier(ClassifierConfig(size=16, width=8)).eval(), root / "cls.pt")
    flags = ["--model", files["target"], "--direction", "classifier:expression:neutral:smile",
             "--classifier", str(classifier), "--input", files["photos"], "--steps", "10", "--inversion-steps", "10",
             "--epochs", "1", "--lr", "0.05", "--n-train", "2", "--batch", "2"]
    assert run(["edit", *flags, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    tag = "classifier-expression-neutral-smile"
    assert "edit [classifier:expression neutral→smile]" in printed
    info = json.loads((out / f"edit_{tag}.json").read_text())
    assert info["direction"] == "classifier:expression neutral→smile"
    assert len((out / f"train_log_{tag}.jsonl").read_text().splitlines()) == 2 * 5  # 2 images x 5 steps ≥ t_edit
    assert Image.open(out / f"grid_{tag}.png").size == (2 + 3 * 18, 2 + 3 * 18)  # input, reconstruction, edited
    check_pairs(out, 3)

    again = root / "edit_again"
    assert run(["edit", *flags, "--delta", str(out / f"delta_{tag}.pt"), "--out", str(again)]) == 0
    assert torch.equal(torch.from_numpy(np.array(Image.open(again / f"grid_{tag}.png"))),
                       torch.from_numpy(np.array(Image.open(out / f"grid_{tag}.png"))))  # same Δh, same seeds
    other = [f if f != "classifier:expression:neutral:smile" else "classifier:expression:0:2" for f in flags]
    with pytest.raises(SystemExit, match="was trained for"):
        run(["edit", *other, "--delta", str(out / f"delta_{tag}.pt"), "--out", str(root / "x")])


def test_edit_with_clip_needs_its_weights(files, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/clip here
    monkeypatch.setenv("SDFT_LITE_HOME", str(tmp_path / "sdft"))
    with pytest.raises(MissingWeightsError):
        run(["edit", "--model", files["target"], "--direction", "clip:face:smiling face",
             "--input", files["photos"], "--out", str(tmp_path / "out")])


def test_edit_guided_by_text_with_synthclip(files, capsys):
    """`--text` trains Δh on SynthCLIP's "a face" → "a smiling face" (the shipped model) and names it so."""
    out = files["root"] / "edit_text"
    flags = ["--model", files["target"], "--text", "a smiling face", "--input", files["photos"], "--steps", "10",
             "--inversion-steps", "10", "--epochs", "1", "--lr", "0.05", "--n-train", "2", "--batch", "2",
             "--t-edit", "300", "--t-edit-upper", "500", "--t-boost", "100"]
    assert run(["edit", *flags, "--out", str(out)]) == 0
    assert "edit [synthclip:a face→a smiling face]" in capsys.readouterr().out
    info = json.loads((out / "edit_synthclip-a-face-a-smiling-face.json").read_text())
    assert info["direction"] == "synthclip:a face→a smiling face"
    assert (info["config"]["t_edit"], info["config"]["t_edit_upper"]) == (300, 500)
    check_pairs(out, 3)


def test_edit_text_outside_synthclips_vocabulary_is_one_clear_error(files, tmp_path):
    with pytest.raises(SystemExit, match="SynthCLIP does not know the words: astronaut"):
        run(["edit", "--model", files["target"], "--text", "a smiling astronaut", "--input", files["photos"],
             "--out", str(tmp_path / "out")])


def test_edit_needs_a_text_or_a_direction(files, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(["edit", "--model", files["target"], "--input", files["photos"], "--out", str(tmp_path / "out")])
    assert "one of the arguments --text --direction is required" in capsys.readouterr().err
