"""The Colab path: every chapter opens with a badge to its own notebook in the book's repository, and its first
code cell installs sdft_lite only when it is missing, from that repository, with the torch already there pinned,
so that pip never replaces Colab's torch. The last test hands pip the cell's own constraints and proves it."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((REPO_ROOT / "_config.yml").read_text(encoding="utf-8"))
CHAPTERS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
REPOSITORY = CONFIG["repository"]["url"]


def cells(path: Path, kind: str) -> list[str]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == kind]


def install_cell(path: Path) -> str:
    return cells(path, "code")[0]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_badge_opens_this_chapter_from_the_books_repository(chapter):
    github = REPOSITORY.removeprefix("https://github.com/")
    url = (f"{CONFIG['launch_buttons']['colab_url']}/github/{github}/blob/{CONFIG['repository']['branch']}/"
           f"notebooks/{chapter.name}")
    assert f"]({url})" in cells(chapter, "markdown")[0]


def test_every_chapter_has_the_same_install_cell_from_the_books_repository():
    first = install_cell(CHAPTERS[0])
    assert all(install_cell(chapter) == first for chapter in CHAPTERS[1:])
    assert f'"sdft-lite @ git+{REPOSITORY}"' in first


def run_install_cell(monkeypatch) -> list[list[str]]:
    """Execute the cell as on a fresh Colab runtime: sdft_lite missing, torch present. Returns pip's commands."""
    commands = []

    def fake_run(command, check):
        commands.append(command)
        monkeypatch.delitem(sys.modules, "sdft_lite.config")   # "installed": the import after pip now works
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setitem(sys.modules, "sdft_lite.config", None)   # import sdft_lite.config -> ImportError
    monkeypatch.setattr(subprocess, "run", fake_run)
    exec(compile(install_cell(CHAPTERS[0]), "install-cell", "exec"), {})
    return commands


def test_the_cell_installs_only_when_sdft_lite_is_missing(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip ran although sdft_lite imports"))
    exec(compile(install_cell(CHAPTERS[0]), "install-cell", "exec"), {})


def test_the_cell_pins_the_torch_it_finds(monkeypatch):
    (command,) = run_install_cell(monkeypatch)
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    assert command[-1] == f"sdft-lite @ git+{REPOSITORY}"
    constraints = Path(command[command.index("-c") + 1]).read_text().split()
    # the distributions' versions, which pip compares: torch.__version__ may carry a local tag ("+cu130") that
    # the installed distribution's metadata lacks, and a pin on it would make pip refuse to resolve
    assert constraints == [f"torch=={version('torch')}", f"torchvision=={version('torchvision')}"]


def test_pip_keeps_the_installed_torch_under_the_cells_constraints(monkeypatch, tmp_path):
    """pip's own resolver, offline, on this checkout in place of the git URL: it plans no torch install."""
    (command,) = run_install_cell(monkeypatch)
    constraints = command[command.index("-c") + 1]
    report = tmp_path / "report.json"
    monkeypatch.undo()   # the real subprocess.run and sdft_lite.config again
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation", "-q",
         "--report", str(report), "-c", constraints, f"sdft-lite @ {REPO_ROOT.as_uri()}"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    planned = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert planned == {"sdft-lite"}, planned


# ---------------------------------------------------------------- one place for the home: book/tools/set_home.py

def test_launch_links_colab_kaggle_studio_lab_come_from_the_config():
    from tests.helpers import load_tool
    set_home = load_tool("set_home")
    slug, branch = set_home.home()
    for chapter in CHAPTERS:
        assert cells(chapter, "markdown")[0] == set_home.launch_links(slug, branch, chapter.name)
    assert "kaggle.com/kernels/welcome?src=https://github.com/" in set_home.launch_links(slug, branch, "x.ipynb")


def test_every_page_names_the_same_home():
    """No file that carries the home names another GitHub repository of the book."""
    from tests.helpers import load_tool
    set_home = load_tool("set_home")
    slug, _ = set_home.home()
    for path in set_home.files(REPO_ROOT):
        text = path.read_text(encoding="utf-8")
        others = {m for m in re.findall(r"(?:github\.com/|/github/)([\w.-]+/sdft[\w.-]*)", text)} - {slug}
        assert not others, f"{path.relative_to(REPO_ROOT)} names {others}"


def test_moving_the_home_rewrites_every_reference(tmp_path):
    import shutil
    from tests.helpers import load_tool
    set_home = load_tool("set_home")
    for path in set_home.files(REPO_ROOT):
        target = tmp_path / path.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    old, _ = set_home.home(tmp_path)
    changed = set_home.move(tmp_path, old, "someone/new-home")
    assert set_home.home(tmp_path)[0] == "someone/new-home" and len(changed) >= len(CHAPTERS) + 1
    assert not any(old in path.read_text(encoding="utf-8") for path in set_home.files(tmp_path))
    set_home.write_launch_cells(tmp_path)   # idempotent after a move: the links already say the new home
    first = json.loads((tmp_path / "notebooks" / CHAPTERS[0].name).read_text(encoding="utf-8"))["cells"][0]
    assert "".join(first["source"]) == set_home.launch_links("someone/new-home", "main", CHAPTERS[0].name)
