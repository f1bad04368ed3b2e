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
# every other chapter stores its full-mode (GPU) run
STORED_MODE = {"00_setup_check": "quick"}
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


def live_widget(cell) -> bool:
    """An ipywidgets slider cell: the full run sets it aside (bench/execute_notebooks.py), so it has no output."""
    return "live-widget" in cell.metadata.get("tags", [])


def test_outputs_of_one_complete_run_in_the_promised_mode(chapter, request):
    path, notebook = chapter
    code = [cell for cell in notebook.cells if cell.cell_type == "code" and not live_widget(cell)]
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
    if path.stem == "00_setup_check":   # it teaches nothing to practise
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


# a cell that draws: pyplot, a displayed figure or image grid, the package's figure helpers; a widget cell is not one
# (its static version is the figure above it, and a widget has no output on the static page)
DRAWS = re.compile(r"plt\.show\(|display\(|\.imshow\(|plt\.subplots\(|figures\.\w+\(")
WIDGET = re.compile(r"import ipywidgets")
IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg", "text/html")


def drawing_cells_without_a_figure(notebook) -> list[int]:
    return [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
            and DRAWS.search(cell.source) and not WIDGET.search(cell.source)
            and not any(kind in output.get("data", {}) for output in cell.outputs for kind in IMAGE_TYPES)]


def test_every_cell_that_draws_stores_its_figure(chapter, request):
    path, notebook = chapter
    missing = drawing_cells_without_a_figure(notebook)
    assert not missing, f"cells {missing} draw but their stored outputs hold no figure"


def test_no_numpy_scalar_reprs_in_outputs(chapter):
    path, notebook = chapter
    text = "\n".join(stdout(cell) + "".join(output.get("data", {}).get("text/plain", "") for output in cell.outputs)
                     for cell in notebook.cells if cell.cell_type == "code")
    assert not re.search(r"np\.(float|int)\d+\(", text), "format numbers before printing them"


def test_the_figure_check_catches_a_removed_figure():
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("fig, ax = plt.subplots()\nplt.show()", outputs=[
            nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"})]),
        nbformat.v4.new_code_cell("display(grid)", outputs=[]),
        nbformat.v4.new_code_cell("import ipywidgets as widgets\ndisplay(slider)", outputs=[])])
    assert drawing_cells_without_a_figure(notebook) == [1]


def test_every_figure_has_a_numbered_caption(chapter):
    """Each stored figure is followed by its caption: a Markdown cell "*Figure <chapter>.<k>. ...*", numbered in
    order, so the text can point at "Figure 4.2" and the site shows what each figure is."""
    path, notebook = chapter
    number, k = int(path.stem[:2]), 0
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and any("image/png" in o.get("data", {}) for o in cell.outputs):
            k += 1
            following = next((c for c in notebook.cells[index + 1:] if c.cell_type == "markdown"), None)
            assert following is not None and following.source.startswith(f"*Figure {number}.{k}. "), \
                f"cell {index}: figure {number}.{k} has no caption"


def test_a_solution_and_what_it_prints_stay_folded_until_the_reader_opens_them(chapter):
    """The code cell under a collapsed "Solution" dropdown is folded whole (`hide-cell`: code and output), so the
    answer it prints or draws is not on the page beside the exercise before the reader asks for it."""
    path, notebook = chapter
    solutions = [cell for previous, cell in zip(notebook.cells, notebook.cells[1:])
                 if cell.cell_type == "code" and previous.cell_type == "markdown"
                 and previous.source.lstrip().startswith("```{dropdown} Solution")]
    unfolded = [cell.source.splitlines()[0] for cell in solutions if "hide-cell" not in cell.metadata.get("tags", [])]
    assert not unfolded, f"{path.name}: solution cells shown unfolded: {unfolded}"


def test_every_live_widget_cell_is_tagged_so_the_full_run_sets_it_aside(chapter):
    path, notebook = chapter
    untagged = [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
                and WIDGET.search(cell.source) and "live-widget" not in cell.metadata.get("tags", [])]
    assert not untagged, f"cells {untagged} build an ipywidgets slider without the live-widget tag"
