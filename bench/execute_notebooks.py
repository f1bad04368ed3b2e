"""Execute chapter notebooks in place (full mode on a GPU, or quick mode with SDFT_QUICK=1), keeping their outputs.

    python bench/execute_notebooks.py notebooks/0*.ipynb --out $OUT/notebooks

Each notebook runs in a fresh kernel with the notebooks folder as working directory; the executed copy is written
to --out under the same name (the original is left alone), and a failing cell stops that notebook only. Execution
timestamps are dropped (each cell's wall time is kept in the summary) and consecutive pieces of one output stream
joined. A summary (notebook, status, seconds, per-cell seconds, hardware) goes to --out/executed.json, rewritten
after each notebook. ``--deadline S`` ends the whole run S seconds after it starts: the cell running then is
stopped, and that notebook is written as far as it got (with its per-cell times) - unlike a call killed from
outside, which leaves nothing. Needs nbclient and ipykernel.

A cell tagged ``live-widget`` (an ipywidgets slider: it needs a person moving it, and each chapter has a static
version beside it) is not run here: it keeps its source, loses any stale output, and the cells after it run as
usual. Executing ``widgets.interact`` headless left the kernel holding the next cell's request unanswered on the
H200 (ipykernel 7.4, nbclient 0.11: chapters 5 and 6 stopped there, kernel idle, GPU idle, in three calls); CI's
nbval still runs these cells in quick mode.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def strip_volatile(notebook) -> None:
    """Drop nbclient's per-cell execution timestamps: they change on every run and say nothing to a reader."""
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)


def cell_seconds(notebook) -> list[dict]:
    """Each executed code cell's wall time, from nbclient's timestamps (read before they are dropped): where a
    chapter spends its time, so that a run killed at a time limit says which cells to make cheaper."""
    from datetime import datetime
    timings = []
    for index, cell in enumerate(notebook.cells):
        stamps = cell.metadata.get("execution", {})
        start, end = stamps.get("iopub.execute_input"), stamps.get("shell.execute_reply")
        if start and end:
            seconds = (datetime.fromisoformat(end.replace("Z", "+00:00")) -
                       datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
            timings.append({"cell": index, "seconds": round(seconds, 1)})
    return timings


def merge_streams(notebook) -> None:
    """Join consecutive outputs of the same stream (stdout, stderr) of a cell into one: a kernel flushes a long
    print loop in pieces, and each piece would be its own output box on the page."""
    for cell in notebook.cells:
        merged = []
        for output in cell.get("outputs", []):
            previous = merged[-1] if merged else None
            if (output.output_type == "stream" and previous is not None and previous.output_type == "stream"
                    and previous.name == output.name):
                previous.text += output.text
            else:
                merged.append(output)
        if "outputs" in cell:
            cell.outputs = merged


def cell_timeout(timeout: int, deadline: float | None):
    """nbclient's per-cell time limit: ``timeout`` seconds, or what is left before ``deadline`` (a
    ``time.monotonic()`` value) if that is sooner, and at least one second."""
    def seconds_for(_cell) -> int:
        if deadline is None:
            return timeout
        return max(1, min(timeout, int(deadline - time.monotonic())))
    return seconds_for


LIVE_WIDGET = "live-widget"


def set_aside_live_widgets(notebook) -> list[int]:
    """Turn each ``live-widget`` cell into a raw cell for the run (nbclient skips raw cells); returns their
    indices, for :func:`restore_live_widgets`."""
    indices = [i for i, cell in enumerate(notebook.cells)
               if cell.cell_type == "code" and LIVE_WIDGET in cell.metadata.get("tags", [])]
    for index in indices:
        notebook.cells[index].cell_type = "raw"
    return indices


def restore_live_widgets(notebook, indices: list[int]) -> None:
    """The set-aside cells as code again, without outputs (they did not run)."""
    for index in indices:
        cell = notebook.cells[index]
        cell.cell_type, cell.outputs, cell.execution_count = "code", [], None


def execute(path: Path, out_dir: Path, timeout: int, deadline: float | None = None) -> dict:
    notebook = nbformat.read(path, as_version=4)
    live = set_aside_live_widgets(notebook)
    client = NotebookClient(notebook, timeout_func=cell_timeout(timeout, deadline), kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    started, status = time.perf_counter(), "ok"
    try:
        client.execute()
    except CellExecutionError as error:
        status = f"failed: {str(error).strip().splitlines()[-1][:300]}"
    except Exception as error:   # a kernel that died or timed out: keep the outputs so far
        status = f"failed: {type(error).__name__}: {str(error)[:300]}"
    seconds = time.perf_counter() - started
    restore_live_widgets(notebook, live)
    timings = cell_seconds(notebook)
    strip_volatile(notebook)
    merge_streams(notebook)
    nbformat.write(notebook, out_dir / path.name)
    slowest = sorted(timings, key=lambda t: -t["seconds"])[:5]
    print(f"{path.name}: {status} in {seconds:.0f} s; slowest cells: "
          + ", ".join(f"{t['cell']} ({t['seconds']:.0f} s)" for t in slowest), flush=True)
    return {"notebook": path.name, "status": status, "seconds": round(seconds, 1), "cells": timings}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds for the whole run; the cell running then is stopped and its notebook kept")
    args = parser.parse_args()
    deadline = None if args.deadline is None else time.monotonic() + args.deadline
    args.out.mkdir(parents=True, exist_ok=True)
    device, results = device_name(), []
    for path in args.notebooks:
        if deadline is not None and deadline - time.monotonic() < 1:
            results.append({"notebook": path.name, "status": "not run: deadline", "seconds": 0.0, "cells": []})
        else:
            results.append(execute(path, args.out, args.timeout, deadline))
        (args.out / "executed.json").write_text(json.dumps({"device": device, "runs": results}, indent=2))
    return 0 if all(r["status"] == "ok" for r in results) else 1


def device_name() -> str:
    try:
        import torch
        return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
