"""A run's feedback: one JSON record per logged step in ``log.jsonl`` (the loss terms, images/s, learning rate,
peak GPU memory) and a tqdm progress bar, on rank 0 only; :func:`read_log` reads the records back."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch


def peak_memory(device: torch.device) -> dict[str, float]:
    """{"peak_mem_gb": ...}: the most GPU memory this process has held (CUDA only; {} elsewhere)."""
    if device.type != "cuda":
        return {}
    return {"peak_mem_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)}


def read_log(path: str | Path) -> list[dict]:
    """The records of a run's ``log.jsonl``: one dict of loss terms (and speed, lr, memory) per logged step."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class RunLog:
    """Appends to ``out_dir/log.jsonl`` every ``every`` steps (and at ``total``) and moves a progress bar; does
    nothing on ranks other than 0. Use as a context manager: the file and the bar are closed however the run ends."""

    def __init__(self, out_dir: Path, every: int, total: int, start: int, images_per_step: int,
                 device: torch.device, main: bool = True, progress: bool = True, desc: str = ""):
        self.every, self.total, self.images_per_step, self.device = every, total, images_per_step, device
        self.file = open(out_dir / "log.jsonl", "a") if main else None
        self.bar = None
        if main and progress:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True)
        self.last_time, self.last_step = time.perf_counter(), start

    def logs(self, step: int) -> bool:
        """Whether step ``step`` is written to the log (on any rank)."""
        return step % self.every == 0 or step == self.total

    def step(self, step: int, terms: dict[str, torch.Tensor | float], lr: float) -> None:
        """Record step ``step``'s terms when it is a logging step (only then are device tensors read back);
        advance the bar."""
        if self.file and self.logs(step):
            terms = {name: float(value) for name, value in terms.items()}
            now = time.perf_counter()
            rate = (step - self.last_step) * self.images_per_step / max(now - self.last_time, 1e-9)
            self.last_time, self.last_step = now, step
            record = {"step": step, **terms, "img_per_s": round(rate, 2), "lr": lr, **peak_memory(self.device)}
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
            if self.bar is not None:
                self.bar.set_postfix({k: f"{v:.4f}" for k, v in terms.items() if k != "loss"} | {"img/s": f"{rate:.1f}"})
        if self.bar is not None:
            self.bar.update(1)

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file:
            self.file.close()
