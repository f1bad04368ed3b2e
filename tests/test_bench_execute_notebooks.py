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
