"""Bad checkpoints and mistyped flags through the command line: one line ``sdft-lite CMD: error: ...`` naming the
file, a non-zero exit, no traceback, no pickled code run, nothing deleted, and no run that silently starts over.

Every file here is small: 32-px images, the tiny U-Net, runs of 1-3 steps on the CPU.
"""
import json
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sdft_lite import cli
from sdft_lite.checkpoint import save_atomic
from sdft_lite.synthfaces.classifier import AttributeClassifier, ClassifierConfig, save_classifier
from sdft_lite.unet import UNetConfig, UNetModel
from tests.test_train import write_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # fixture in conftest.py

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO)}


class RunsCode:
    """Unpickling this runs Python code that creates ``marker``: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    marker = root / "pickled_code_ran"
    torch.manual_seed(0)
    state = UNetModel(UNetConfig.tiny()).state_dict()
    paths = {"random": root / "random.pt", "code_zip": root / "code_zip.pt", "code_raw": root / "code_raw.pt",
             "missing_key": root / "missing_key.pt", "source": root / "source.pt"}
    paths["random"].write_bytes(random.Random(0).randbytes(4096))
    torch.save({"model": {"w": torch.zeros(2)}, "payload": RunsCode(marker)}, paths["code_zip"])
    paths["code_raw"].write_bytes(pickle.dumps({"model": RunsCode(marker)}, protocol=2))
    torch.save({k: v for k, v in state.items() if k != "middle_block.0.emb_layers.1.weight"}, paths["missing_key"])
    torch.save(state, paths["source"])
    # the two pickles really run code when loaded unsafely
    torch.load(paths["code_zip"], weights_only=False)
    assert marker.exists()
    marker.unlink()
    pickle.loads(paths["code_raw"].read_bytes())
    assert marker.exists()
    marker.unlink()
    data = write_images(root / "images", n=4)
    pairs = root / "pairs"
    write_images(pairs / "input", n=1)
    write_images(pairs / "output", n=1)
    return {**paths, "root": root, "marker": marker, "data": data, "pairs": pairs}


def one_line_error(capsys, command: str, argv: list[str], *named: str) -> str:
    """Run the CLI in-process; it must exit 1 with exactly one line on stderr naming every string in ``named``."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"sdft-lite {command}: error: "), err
    assert all(text in lines[0] for text in named), err
    return lines[0]


def train_argv(files, out_dir, *extra, source: Path | None = None) -> list[str]:
    """A 2-step naive run of the tiny U-Net saving every step; ``extra`` flags override."""
    return ["train", "--preset", "tiny", "--mode", "naive", "--data-dir", str(files["data"]),
            "--out-dir", str(out_dir), "--source-checkpoint", str(source or files["source"]), "--steps", "2",
            "--save-every", "1", "--keep-last", "5", "--progress", "false", *extra]


def command_argv(command: str, checkpoint: Path, files, tmp_path) -> list[str]:
    """Each command that reads a checkpoint or weight file from the user, reading ``checkpoint``."""
    out = str(tmp_path / "out")
    return {
        "train": train_argv(files, out, "--steps", "1", source=checkpoint),
        "sample": ["sample", str(checkpoint), "--out", out, "--num", "1", "--steps", "ddim2"],
        "translate": ["translate", "--method", "sdedit", "--model", str(checkpoint), "--input", str(files["data"]),
                      "--out", out, "--n", "1"],
        "edit": ["edit", "--model", str(checkpoint), "--direction", "classifier:expression:0:1",
                 "--classifier", str(checkpoint), "--input", str(files["data"]), "--out", out],
        "evaluate": ["evaluate", "--pairs", str(files["pairs"]), "--metrics", "id", "--arcface-weights",
                     str(checkpoint), "--device", "cpu"],
    }[command]


@pytest.mark.parametrize("kind", ["random", "code_zip", "code_raw"])
@pytest.mark.parametrize("command", ["train", "sample", "translate", "edit", "evaluate"])
def test_unreadable_or_code_carrying_files_are_one_line_errors(files, tmp_path, capsys, command, kind):
    path = files[kind]
    before = path.read_bytes()
    line = one_line_error(capsys, command, command_argv(command, path, files, tmp_path), str(path),
                          "not a checkpoint sdft-lite can load safely")
    assert ("pickled code" in line) if kind.startswith("code") else ("truncated or corrupt" in line)
    assert not files["marker"].exists() and path.read_bytes() == before


@pytest.mark.parametrize("command", ["train", "sample", "translate"])
def test_a_state_dict_missing_a_key_is_named(files, tmp_path, capsys, command):
    """sample / translate infer the flags from the keys (the key is named); train builds the U-Net from its
    config and lists what differs (CheckpointMismatchError, as before)."""
    path = files["missing_key"]
    code = cli.main(command_argv(command, path, files, tmp_path))
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and err.startswith(f"sdft-lite {command}: error: {path}")
    assert "middle_block.0.emb_layers.1.weight" in err


def test_a_damaged_dse_classifier_or_delta_is_a_one_line_error(files, tmp_path, capsys):
    source, broken, code = str(files["source"]), str(files["random"]), str(files["code_zip"])
    one_line_error(capsys, "translate", ["translate", "--method", "egsde", "--model", source, "--dse", broken,
                                         "--input", str(files["data"]), "--out", str(tmp_path), "--n", "1"], broken)
    edit = ["edit", "--model", source, "--direction", "classifier:expression:0:1", "--input", str(files["data"]),
            "--out", str(tmp_path)]
    one_line_error(capsys, "edit", edit + ["--classifier", code], code, "pickled code")
    classifier = save_classifier(AttributeClassifier(ClassifierConfig(size=16, width=8)), tmp_path / "cls.pt")
    one_line_error(capsys, "edit", edit + ["--classifier", str(classifier), "--delta", broken], broken)
    one_line_error(capsys, "edit", edit + ["--classifier", str(classifier), "--delta", str(files["source"])],
                   str(files["source"]), "not an Asyrp")
    assert not files["marker"].exists()


def test_metric_weights_that_carry_code_or_garbage_are_one_line_errors(files, metric_caches, capsys):
    """torchvision reads the LPIPS trunk with weights_only=False: the file must still never run code."""
    trunk = metric_caches["torch"] / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    trunk.parent.mkdir(parents=True)
    trunk.write_bytes(files["code_zip"].read_bytes())
    pairs = ["evaluate", "--pairs", str(files["pairs"]), "--device", "cpu"]
    one_line_error(capsys, "evaluate", pairs + ["--metrics", "lpips", "--lpips-net", "alex"], str(trunk),
                   "pickled code")
    one_line_error(capsys, "evaluate", pairs + ["--metrics", "sdir", "--source-text", "face", "--target-text",
                                                "smiling face", "--clip-weights", str(files["code_raw"])],
                   str(files["code_raw"]), "pickled code")
    assert not files["marker"].exists()
    inception = metric_caches["cleanfid"] / "inception-2015-12-05.pt"
    inception.parent.mkdir()
    inception.write_bytes(files["random"].read_bytes())
    one_line_error(capsys, "evaluate", ["evaluate", "--samples", str(files["data"]), "--ref", str(files["data"]),
                                        "--metrics", "fid", "--device", "cpu"], str(inception))


def test_cli_subprocess_prints_no_traceback(files, tmp_path):
    """The same through ``python -m sdft_lite.cli``: what a user sees in a terminal."""
    result = subprocess.run([sys.executable, "-m", "sdft_lite.cli", "sample", str(files["code_zip"]),
                             "--out", str(tmp_path / "s")], env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"sdft-lite sample: error: {files['code_zip']} ")
    assert not files["marker"].exists() and not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------------------------------------------
# --resume, --resume-from, --keep-last


def test_resume_of_a_missing_or_empty_run_folder_fails(files, tmp_path, capsys):
    typo = tmp_path / "runs" / "typo"
    one_line_error(capsys, "train", train_argv(files, typo, "--resume"), str(typo), "does not exist",
                   "--resume auto")
    assert not typo.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(capsys, "train", train_argv(files, empty, "--resume"), str(empty), "holds no checkpoint")
    assert list(empty.iterdir()) == []


def test_resume_auto_starts_a_new_run_when_there_is_nothing_to_resume(files, tmp_path, capsys):
    out = tmp_path / "new"
    assert cli.main(train_argv(files, out, "--resume", "auto", "--keep-last", "1", "--steps", "3")) == 0
    stdout = capsys.readouterr().out
    assert "no checkpoint" in stdout and json.loads(stdout.splitlines()[-1])["step"] == 3
    assert sorted(p.name for p in out.glob("ckpt_*.pt")) == ["ckpt_0000003.pt"]   # --keep-last 1: the final one


def test_an_unreadable_newest_checkpoint_stops_resume_and_offers_the_older_one(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(train_argv(files, out)) == 0
    capsys.readouterr()
    older, newest = out / "ckpt_0000001.pt", out / "ckpt_0000002.pt"
    newest.write_bytes(files["code_zip"].read_bytes())
    for resume in (["--resume"], ["--resume", "auto"]):   # never silently starts over either
        one_line_error(capsys, "train", train_argv(files, out, *resume, "--steps", "3"), str(newest),
                       "pickled code", f"--resume-from {older}")
    assert not files["marker"].exists()
    assert sorted(p.name for p in out.glob("ckpt_*.pt")) == [older.name, newest.name]
    assert newest.read_bytes() == files["code_zip"].read_bytes()

    assert cli.main(train_argv(files, out, "--resume-from", str(older), "--steps", "3")) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["step"] == 3
    assert torch.load(out / "ckpt_0000003.pt", weights_only=True)["step"] == 3


def test_resume_from_a_file_that_is_not_a_training_checkpoint(files, tmp_path, capsys):
    one_line_error(capsys, "train", train_argv(files, tmp_path, "--resume-from", str(files["source"])),
                   str(files["source"]), "not a training checkpoint", "--source-checkpoint")


KILL_THE_SECOND_SAVE = """
import os, signal, sys, torch
from sdft_lite import cli
real_save, saves = torch.save, []
def save(obj, f, *args, **kwargs):
    real_save(obj, f, *args, **kwargs)
    saves.append(1)
    if len(saves) == 2:
        os.kill(os.getpid(), signal.SIGKILL)   # inside save_atomic: written, not yet renamed
torch.save = save
cli.main(sys.argv[1:])
"""


def test_a_save_killed_mid_write_leaves_a_temp_file_that_resume_removes(files, tmp_path, capsys):
    out = tmp_path / "killed"
    result = subprocess.run([sys.executable, "-c", KILL_THE_SECOND_SAVE, *train_argv(files, out, "--steps", "3")],
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr[-2000:]
    stale = list(out.glob(".ckpt_0000002.pt.*.tmp"))
    assert len(stale) == 1 and sorted(p.name for p in out.glob("ckpt_*.pt")) == ["ckpt_0000001.pt"]
    (out / ".notes.tmp").write_text("not the writer's: kept")
    assert cli.main(train_argv(files, out, "--resume", "--steps", "3")) == 0
    assert not stale[0].exists() and (out / ".notes.tmp").exists()
    assert sorted(p.name for p in out.glob("ckpt_*.pt")) == [f"ckpt_000000{s}.pt" for s in (1, 2, 3)]


@pytest.mark.parametrize("argv, message", [
    (["--keep-last", "0"], "argument --keep-last: keep_last must be at least 1"),
    (["--keep-last", "-2"], "argument --keep-last: keep_last must be at least 1"),
    (["--resume", "--resume-from", "x.pt"], "argument --resume-from: not allowed with argument --resume"),
    (["--resume", "maybe"], "argument --resume: invalid choice: 'maybe'"),
])
def test_mistyped_flags_are_refused_before_anything_runs(files, tmp_path, capsys, argv, message):
    kept = tmp_path / "ckpt_0000001.pt"
    save_atomic({"step": 1}, kept)
    with pytest.raises(SystemExit) as info:
        cli.main(train_argv(files, tmp_path, *argv))
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [kept.name]


def test_help_documents_resume_and_keep_last(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--resume [auto]" in text and "--resume-from PATH" in text and "--keep-last N" in text
    assert "an error when the folder does not exist or holds no checkpoint" in text
    assert "at least 1, as the newest is never deleted" in text
