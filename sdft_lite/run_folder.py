"""A training run's folder: its checkpoints, the one to resume, the ones to prune, and what a killed save leaves.

The trainer writes ``ckpt_NNNNNNN.pt`` (the step, seven digits) with ``checkpoint.save_atomic``, which writes
``.ckpt_NNNNNNN.pt.XXXXXXXX.tmp`` first and renames it. Only files of these two patterns are ever deleted here.

Resuming: ``checkpoint_to_resume`` picks the newest checkpoint and fails with one line when the folder is missing
or holds none (unless asked to resume only if present); ``read_resume_state`` reads it through the one safe loader
and, when it is unreadable, names the newest older checkpoint that reads, to pass as ``--resume-from``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Mapping

import torch

from . import checkpoint as ckpt

CHECKPOINT = re.compile(r"ckpt_(\d{7,})\.pt")
STALE_TEMP = re.compile(r"\.ckpt_\d{7,}\.pt\.[a-z0-9_]{8}\.tmp")  # save_atomic's mkstemp(prefix=".NAME.", ".tmp")
TRAINER_KEYS = ("model", "ema", "optimizer", "scaler", "step")


class NothingToResumeError(FileNotFoundError):
    """--resume of a run folder that does not exist or holds no checkpoint."""


def checkpoint_step(path: Path) -> int | None:
    """The step in a trainer checkpoint's name (ckpt_0000040.pt -> 40); None for any other name."""
    match = CHECKPOINT.fullmatch(Path(path).name)
    return int(match[1]) if match else None


def checkpoint_paths(run_dir: str | Path) -> list[Path]:
    """The trainer's checkpoints in ``run_dir``, oldest step first (other .pt files are not the trainer's)."""
    run_dir = Path(run_dir)
    paths = [p for p in run_dir.glob("ckpt_*.pt") if checkpoint_step(p) is not None] if run_dir.is_dir() else []
    return sorted(paths, key=checkpoint_step)


def check_keep_last(keep_last: int) -> int:
    """``keep_last``, or ValueError when below 1: 0 would delete the newest checkpoint, the trained model."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1, got {keep_last}: it counts the checkpoints kept, newest "
                         "first, and the newest (the trained model) is never deleted")
    return keep_last


def prune_checkpoints(run_dir: str | Path, keep_last: int, keep: Iterable[Path] = ()) -> list[Path]:
    """Delete all but the ``keep_last`` newest checkpoints, never one in ``keep`` (the one just written); the
    deleted paths."""
    keep = {Path(p) for p in keep}
    old = [p for p in checkpoint_paths(run_dir)[:-check_keep_last(keep_last)] if p not in keep]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def remove_stale_temp_files(run_dir: str | Path) -> list[Path]:
    """Delete the temp files of saves that were killed before their rename; the deleted paths.

    Only save_atomic's own pattern for a checkpoint, ``.ckpt_NNNNNNN.pt.XXXXXXXX.tmp``, is touched. Call it when no
    other process writes into ``run_dir`` (a run starting or resuming, rank 0).
    """
    run_dir = Path(run_dir)
    stale = [p for p in run_dir.glob(".ckpt_*.tmp") if STALE_TEMP.fullmatch(p.name)] if run_dir.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return sorted(stale)


def checkpoint_to_resume(run_dir: str | Path, if_present: bool = False) -> Path | None:
    """The newest checkpoint in ``run_dir``. When the folder is missing or holds none: None if ``if_present``
    (--resume auto), else NothingToResumeError (--resume), so that a mistyped --out-dir never starts over."""
    run_dir = Path(run_dir)
    paths = checkpoint_paths(run_dir)
    if paths:
        return paths[-1]
    if if_present:
        return None
    if not run_dir.is_dir():
        raise NothingToResumeError(
            f"cannot resume: the run folder {run_dir} does not exist. Check --out-dir; to start a new run drop "
            "--resume, or pass --resume auto to resume only when a checkpoint is there")
    raise NothingToResumeError(
        f"cannot resume: the run folder {run_dir} holds no checkpoint (ckpt_NNNNNNN.pt). To start a new run "
        "there drop --resume, or pass --resume auto; to continue another checkpoint pass --resume-from PATH")


def read_training_state(path: str | Path, model: torch.nn.Module | None = None) -> dict:
    """A checkpoint our trainer wrote, read with the one safe loader (weights_only); its model and EMA weights
    checked against ``model`` when given. UnreadableCheckpointError / CheckpointMismatchError name the file."""
    state = ckpt.read_checkpoint(path)
    missing = [k for k in TRAINER_KEYS if k not in state] if isinstance(state, Mapping) else list(TRAINER_KEYS)
    if missing:
        raise ckpt.UnreadableCheckpointError(
            path, f"it is not a training checkpoint written by sdft-lite (it has no {', '.join(missing)})",
            "To fine-tune its weights in a new run, pass it as --source-checkpoint instead")
    if model is not None:
        for which in ("model", "ema"):
            ckpt.check_state_dict(model, state[which], source=f"{path} ({which} weights)")
    return state


def read_resume_state(path: str | Path, model: torch.nn.Module | None = None) -> dict:
    """:func:`read_training_state`; when ``path`` cannot be read, the error names the newest older checkpoint
    in its folder that reads (to pass as --resume-from), or says that none does."""
    path = Path(path)
    try:
        return read_training_state(path, model)
    except ckpt.UnreadableCheckpointError as err:
        older = [p for p in checkpoint_paths(path.parent) if p != path and
                 (checkpoint_step(path) is None or checkpoint_step(p) < checkpoint_step(path))]
        readable = next((p for p in reversed(older) if _reads(p)), None)
        if readable is not None:
            todo = f"The older {readable.name} reads: continue from it with --resume-from {readable}"
        elif older:
            todo = f"No older checkpoint in {path.parent} reads either; {err.todo}"
        else:
            raise
        raise ckpt.UnreadableCheckpointError(path, err.why, todo) from err


def _reads(path: Path) -> bool:
    try:
        read_training_state(path)
    except ckpt.UnreadableCheckpointError:
        return False
    return True
