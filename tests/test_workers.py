"""The sweeps' worker pool stops with its parent: real spawned processes, real signals (POSIX)."""
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from sdft_lite.experiments.workers import sigterm_as_interrupt, worker_pool
from sdft_lite.train import stop_on_signals

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def fine_tuning_stand_in(marker: str) -> str:
    """Stands for ``zoo.finetuned`` in a worker: it notes that it started, runs with the Trainer's signal handler
    until a signal asks it to stop, notes that it stopped cleanly, and raises KeyboardInterrupt as the zoo does for
    a stopped run. Left alone it gives up after 60 s and says so."""
    stop = []
    Path(marker + ".started").touch()
    with stop_on_signals(lambda signum, frame: stop.append(signum)):
        deadline = time.monotonic() + 60
        while not stop and time.monotonic() < deadline:
            time.sleep(0.01)
    if not stop:
        Path(marker + ".gave_up").touch()
        return marker
    Path(marker + ".stopped").touch()
    raise KeyboardInterrupt(f"{marker} stopped")


def quick_job(x: int) -> int:
    return x * x


def wait_for(path: Path, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def started(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.glob("*.started"))


def run_until_interrupted(tmp_path: Path, interrupt) -> list:
    """Three jobs on one worker; once the first runs, ``interrupt()`` stops the parent."""
    futures = []
    with pytest.raises(KeyboardInterrupt):
        with worker_pool(1) as pool:
            futures = [pool.submit(fine_tuning_stand_in, str(tmp_path / f"job{i}")) for i in range(3)]
            wait_for(tmp_path / "job0.started")
            interrupt()
            time.sleep(60)   # a signal interrupts this wait
    return futures


def test_sigterm_to_the_parent_stops_the_running_job_cleanly_and_starts_no_other(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    run_until_interrupted(tmp_path, lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert (tmp_path / "job0.stopped").exists()           # its Trainer-like handler got to checkpoint and stop
    assert started(tmp_path) == ["job0.started"]          # the queued jobs never ran, not even the one handed over
    assert multiprocessing.active_children() == []        # no worker outlives the block
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_in_the_parent_alone_stops_the_workers_too(tmp_path):
    """Only the parent is interrupted (KeyboardInterrupt raised there); the pool sends the workers SIGTERM."""
    def interrupt():
        raise KeyboardInterrupt

    futures = run_until_interrupted(tmp_path, interrupt)
    assert (tmp_path / "job0.stopped").exists() and not (tmp_path / "job0.gave_up").exists()
    assert started(tmp_path) == ["job0.started"]
    assert all(future.done() for future in futures)
    assert multiprocessing.active_children() == []


def test_a_pool_left_alone_runs_every_job():
    with worker_pool(2) as pool:
        assert [f.result() for f in [pool.submit(quick_job, x) for x in range(5)]] == [0, 1, 4, 9, 16]
    assert multiprocessing.active_children() == []


def test_sigterm_raises_keyboard_interrupt_only_inside_the_block():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is before
