"""bench/execute_notebooks.py: per-cell wall times read from nbclient's timestamps before they are dropped."""
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import execute_notebooks  # noqa: E402


def test_cell_seconds_come_from_the_execution_timestamps_and_are_then_dropped():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("text"),
                                               nbformat.v4.new_code_cell("slow()"),
                                               nbformat.v4.new_code_cell("never_ran()")])
    notebook.cells[1].metadata["execution"] = {"iopub.execute_input": "2026-12-03T02:00:00.250000Z",
                                               "shell.execute_reply": "2026-12-03T02:01:30.750000Z"}
    assert execute_notebooks.cell_seconds(notebook) == [{"cell": 1, "seconds": 90.5}]
    execute_notebooks.strip_volatile(notebook)
    assert all("execution" not in cell.metadata for cell in notebook.cells)


def test_a_deadline_stops_the_running_cell_and_keeps_the_notebook_so_far(tmp_path):
    import json
    import subprocess
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('first')"),
                                               nbformat.v4.new_code_cell("import time\ntime.sleep(60)"),
                                               nbformat.v4.new_code_cell("print('never')")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "slow.ipynb"
    nbformat.write(notebook, source)
    out = tmp_path / "out"
    script = Path(__file__).resolve().parents[1] / "bench" / "execute_notebooks.py"
    done = subprocess.run([sys.executable, str(script), str(source), str(tmp_path / "absent.ipynb"), "--out", str(out),
                           "--deadline", "8"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    kept = nbformat.read(out / "slow.ipynb", as_version=4)
    assert kept.cells[0].outputs[0].text == "first\n"
    assert not kept.cells[2].get("outputs")
    runs = json.loads((out / "executed.json").read_text())["runs"]
    assert runs[0]["status"].startswith("failed") and [c["cell"] for c in runs[0]["cells"]] == [0]
    assert runs[1] == {"notebook": "absent.ipynb", "status": "not run: deadline", "seconds": 0.0, "cells": []}


def test_the_cell_time_limit_is_what_is_left_before_the_deadline():
    import time
    assert execute_notebooks.cell_timeout(900, None)(None) == 900
    assert 40 <= execute_notebooks.cell_timeout(900, time.monotonic() + 41)(None) <= 41
    assert execute_notebooks.cell_timeout(30, time.monotonic() + 500)(None) == 30
    assert execute_notebooks.cell_timeout(900, time.monotonic() - 5)(None) == 1


def test_a_live_widget_cell_is_set_aside_and_the_cells_after_it_run(tmp_path):
    import subprocess
    widget = nbformat.v4.new_code_cell("raise SystemExit('a live widget cell ran')", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="stale\n")], metadata={"tags": ["live-widget"]})
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), widget,
                                               nbformat.v4.new_code_cell("print(x + 1)")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "live.ipynb")
    script = Path(__file__).resolve().parents[1] / "bench" / "execute_notebooks.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "live.ipynb"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    kept = nbformat.read(tmp_path / "out" / "live.ipynb", as_version=4)
    assert kept.cells[1].cell_type == "code" and kept.cells[1].source == widget.source
    assert kept.cells[1].outputs == [] and kept.cells[1].execution_count is None
    assert kept.cells[2].outputs[0].text == "2\n"
    nbformat.validate(kept)
