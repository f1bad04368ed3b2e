"""Worker processes that stop with their parent: the process pool behind the parallel SynthFaces sweeps
(``zoo.finetune_many``, ``bench/asyrp_editing.py``).

A plain ``ProcessPoolExecutor`` outlives a stopped parent. Killed by a time limit's SIGTERM, the parent dies at
once and its workers stay behind, holding the GPU (and the parent's stdout, so a pipe reading it never ends);
stopped with Ctrl-C, the parent waits in ``shutdown`` while the workers run every job already handed to them.
:func:`worker_pool` turns SIGTERM into ``KeyboardInterrupt`` in the parent; on any interrupt it cancels the jobs
not yet started and sends SIGTERM to the workers. A worker that is fine-tuning lets its ``Trainer`` stop at the
end of the step and save a checkpoint (the next call resumes from it); a worker stopped once starts no other job.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Callable, Iterator

from ..train import stop_on_signals

_stopping = False   # in a worker process: it was interrupted and must start no other job


def _interrupt(signum, frame):
    global _stopping
    _stopping = True
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def _install_stop_handlers() -> None:
    """A worker's initializer: SIGTERM and SIGINT interrupt the job it runs and mark the worker as stopping (a
    ``Trainer`` routes them to its own graceful stop while it trains; ``_unless_stopping`` marks that case)."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def _unless_stopping(fn: Callable, *args, **kwargs):
    """Run ``fn`` in a worker, unless an interrupt reached this worker before (then the job is refused)."""
    global _stopping
    if _stopping:
        raise KeyboardInterrupt("not started: the pool is stopping")
    try:
        return fn(*args, **kwargs)
    except KeyboardInterrupt:   # also a Trainer stopped by a signal (the zoo raises it then)
        _stopping = True
        raise


class WorkerPool(ProcessPoolExecutor):
    """Spawned worker processes (CUDA needs spawn, not fork) in which an interrupt ends the current job and every
    later one; see :func:`worker_pool`."""

    def __init__(self, workers: int):
        super().__init__(workers, mp_context=multiprocessing.get_context("spawn"),
                         initializer=_install_stop_handlers)

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        return super().submit(_unless_stopping, fn, *args, **kwargs)

    def stop(self) -> None:
        """Cancel the jobs not yet handed to a worker, send SIGTERM to every live worker, wait until they exit."""
        for process in list((self._processes or {}).values()):   # public only from Python 3.14 (terminate_workers)
            if process.is_alive():
                process.terminate()
        self.shutdown(wait=True, cancel_futures=True)


def sigterm_as_interrupt() -> contextlib.AbstractContextManager:
    """A block in which SIGTERM raises ``KeyboardInterrupt`` as Ctrl-C does (the Trainer's ``stop_on_signals`` with
    Python's own SIGINT handler), so ``finally`` blocks and context managers run; the previous handlers come back
    afterwards. Outside the main thread, where no handler can be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    return stop_on_signals(signal.default_int_handler)


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[WorkerPool]:
    """A :class:`WorkerPool` of ``workers`` processes that ends with the block: normally after every job, and on an
    interrupt of the parent (Ctrl-C, or SIGTERM from a time limit) by :meth:`WorkerPool.stop` before the interrupt
    propagates, so no worker outlives the parent."""
    with sigterm_as_interrupt():
        pool = WorkerPool(workers)
        try:
            yield pool
        except BaseException:
            pool.stop()
            raise
        pool.shutdown(wait=True)
