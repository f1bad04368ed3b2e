"""The run folder: which checkpoint to resume, which to prune, and the temp files a killed save leaves behind.
Only the trainer's own file names are ever touched; the newest checkpoint is never deleted."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sdft_lite import run_folder
from sdft_lite.checkpoint import UnreadableCheckpointError
from sdft_lite.run_folder import (NothingToResumeError, checkpoint_paths, checkpoint_to_resume, prune_checkpoints,
                                  read_resume_state, read_training_state, remove_stale_temp_files)

REPO = Path(__file__).resolve().parents[1]


def trainer_state(step: int) -> dict:
    """The keys the trainer writes, with tiny values."""
    return {"model": {"w": torch.full((2,), float(step))}, "ema": {"w": torch.zeros(2)}, "optimizer": {},
            "scaler": {}, "step": step}


def write_checkpoints(folder: Path, steps) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"ckpt_{s:07d}.pt" for s in steps]
    for step, path in zip(steps, paths):
        torch.save(trainer_state(step), path)
    return paths


def test_only_the_trainers_checkpoints_count_in_step_order(tmp_path):
    paths = write_checkpoints(tmp_path, [10, 9, 12345678])
    for other in ("ckpt_best.pt", "ckpt_0000011_backup.pt", "model.pt", ".ckpt_0000013.pt.abcd1234.tmp"):
        (tmp_path / other).write_bytes(b"not the trainer's")
    assert checkpoint_paths(tmp_path) == [paths[1], paths[0], paths[2]]
    assert checkpoint_paths(tmp_path / "missing") == []


def test_prune_keeps_the_newest_and_the_one_just_written(tmp_path):
    paths = write_checkpoints(tmp_path, [2, 4, 6, 8])
    (tmp_path / "ckpt_best.pt").write_bytes(b"a user's copy")
    assert prune_checkpoints(tmp_path, keep_last=2) == paths[:2]
    assert checkpoint_paths(tmp_path) == paths[2:] and (tmp_path / "ckpt_best.pt").exists()
    # resumed from step 6 while a (damaged) step-8 file is still there: step 7, just written, stays
    just_written = write_checkpoints(tmp_path, [7])[0]
    assert prune_checkpoints(tmp_path, keep_last=1, keep=[just_written]) == [paths[2]]
    assert checkpoint_paths(tmp_path) == [just_written, paths[3]]


@pytest.mark.parametrize("keep_last", [0, -1])
def test_keep_last_below_one_is_refused_and_deletes_nothing(tmp_path, keep_last):
    paths = write_checkpoints(tmp_path, [1, 2])
    with pytest.raises(ValueError, match="at least 1"):
        prune_checkpoints(tmp_path, keep_last)
    assert checkpoint_paths(tmp_path) == paths


def test_stale_temp_files_of_the_writer_only_are_removed(tmp_path):
    write_checkpoints(tmp_path, [4])
    stale = [tmp_path / ".ckpt_0000006.pt.k3_q9zz1.tmp", tmp_path / ".ckpt_0000008.pt.abcdefgh.tmp"]
    others = [tmp_path / n for n in (".ckpt_0000006.pt.tmp", ".notes.pt.abcdefgh.tmp", "ckpt_0000006.pt.abcdefgh.tmp",
                                     ".ckpt_0000006.pt.ABCDEFGH.tmp", "x.tmp", ".config.json.abcdefgh.tmp")]
    for path in stale + others:
        path.write_bytes(b"half a checkpoint")
    assert remove_stale_temp_files(tmp_path) == sorted(stale)
    assert all(p.exists() for p in others) and not any(p.exists() for p in stale)
    assert remove_stale_temp_files(tmp_path / "missing") == []


KILLED_SAVE = """
import os, signal, sys, torch
from sdft_lite.checkpoint import save_atomic
real_save = torch.save
def save_then_die(obj, f, *args, **kwargs):
    real_save(obj, f, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)   # killed before the flush, fsync and rename
torch.save = save_then_die
save_atomic({"w": torch.zeros(3)}, sys.argv[1])
"""


def test_a_save_killed_by_sigkill_leaves_a_temp_file_that_is_removed(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(tmp_path / "ckpt_0000006.pt")], env=env,
                            capture_output=True, timeout=120)
    assert result.returncode == -9
    leftover = sorted(tmp_path.iterdir())
    assert len(leftover) == 1 and run_folder.STALE_TEMP.fullmatch(leftover[0].name), leftover
    assert checkpoint_paths(tmp_path) == []   # never mistaken for a checkpoint
    assert remove_stale_temp_files(tmp_path) == leftover and not any(tmp_path.iterdir())


def test_resume_needs_a_folder_with_a_checkpoint_unless_if_present(tmp_path):
    with pytest.raises(NothingToResumeError, match="does not exist"):
        checkpoint_to_resume(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()
    with pytest.raises(NothingToResumeError, match="holds no checkpoint"):
        checkpoint_to_resume(tmp_path)
    assert checkpoint_to_resume(tmp_path / "typo", if_present=True) is None
    assert checkpoint_to_resume(tmp_path, if_present=True) is None
    paths = write_checkpoints(tmp_path, [9, 10])
    assert checkpoint_to_resume(tmp_path) == paths[-1] == checkpoint_to_resume(tmp_path, if_present=True)


def test_an_unreadable_newest_checkpoint_names_the_older_one_that_reads(tmp_path):
    good, older_bad, newest = write_checkpoints(tmp_path, [2, 4, 6])
    older_bad.write_bytes(os.urandom(256))
    newest.write_bytes(newest.read_bytes()[:100])   # torn
    with pytest.raises(UnreadableCheckpointError) as info:
        read_resume_state(newest)
    message = str(info.value)
    assert str(newest) in message and "truncated" in message and f"--resume-from {good}" in message
    assert read_resume_state(good)["step"] == 2
    good.write_bytes(b"")
    with pytest.raises(UnreadableCheckpointError, match="No older checkpoint .* reads either"):
        read_resume_state(newest)
    assert [p.exists() for p in (good, older_bad, newest)] == [True, True, True]


def test_a_file_that_is_not_a_training_checkpoint_points_to_source_checkpoint(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "bare.pt")
    with pytest.raises(UnreadableCheckpointError, match="not a training checkpoint.*--source-checkpoint"):
        read_training_state(tmp_path / "bare.pt")
