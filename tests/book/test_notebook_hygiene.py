"""The committed chapters are what the book is built from (execute_notebooks: off), so they must be valid
notebooks for the python3 kernel that carry the outputs of one complete run: the mode and hardware line first,
the WALL_TIME line last, in the mode the README promises, no error output and no volatile execution
timestamps; every chapter after the setup check ends with exercises."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tests.helpers import load_tool

chapter_times = load_tool("chapter_times")   # the parser the book's wall-time table uses

CHAPTERS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
STORED_MODE = {"00_setup_check": "quick"}   # every other chapter stores its full-mode (GPU) run
MODE_LINE = re.compile(r"^mode=(quick|full) hardware=\S", re.MULTILINE)


def stdout(cell) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", [])
                   if output.get("output_type") == "stream" and output.get("name") == "stdout")


@pytest.fixture(params=CHAPTERS, ids=lambda path: path.stem)
def chapter(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_a_valid_notebook_for_the_python3_kernel(chapter):
    _, notebook = chapter
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"


def test_outputs_of_one_complete_run_in_the_promised_mode(chapter):
    path, notebook = chapter
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "a cell was not executed"
    assert not [cell for cell in code for output in cell.outputs if output.output_type == "error"]
    text = "\n".join(stdout(cell) for cell in code)
    modes = set(MODE_LINE.findall(text))
    wall_times = chapter_times.wall_times({"cells": [code[-1]]})   # the last cell's WALL_TIME line
    expected = STORED_MODE.get(path.stem, "full")
    assert set(wall_times) == {expected} and modes <= {expected}, (modes, wall_times)


def test_no_volatile_execution_timestamps(chapter):
    _, notebook = chapter
    assert not [cell for cell in notebook.cells if "execution" in cell.metadata]


def test_chapters_end_with_exercises(chapter):
    path, notebook = chapter
    if path.stem in STORED_MODE:   # the setup check teaches nothing to practise
        return
    headings = [line for cell in notebook.cells if cell.cell_type == "markdown"
                for line in cell.source.splitlines() if line.startswith("## ")]
    assert "## Exercises" in headings


def test_no_run_of_output_pieces_of_one_stream(chapter):
    """A kernel flushes a long print loop in pieces; each piece would be its own box on the page
    (bench/execute_notebooks.py joins them)."""
    _, notebook = chapter
    runs = [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
            for before, after in zip(cell.outputs, cell.outputs[1:])
            if before.output_type == after.output_type == "stream" and before.name == after.name]
    assert not runs, f"cells {runs} have consecutive pieces of one stream"
