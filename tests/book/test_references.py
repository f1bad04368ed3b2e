"""Every repository path the book's text names (in backticks, with a folder and a file suffix) exists, so that no
page points a reader at a file this repository does not have."""
from __future__ import annotations

import json
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PATH = re.compile(r"`([A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+\.(?:py|md|json|ipynb|sh|yml|yaml|txt|png|cfg|toml))`")


def texts() -> dict[str, str]:
    found = {str(p.relative_to(REPO_ROOT)): p.read_text(encoding="utf-8")
             for p in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "book").glob("*.md"))]}
    for path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        found[str(path.relative_to(REPO_ROOT))] = "\n".join("".join(c["source"]) for c in cells
                                                            if c["cell_type"] == "markdown")
    return found


def missing_paths(text: str, root: Path = REPO_ROOT) -> list[str]:
    return sorted({path for path in PATH.findall(text) if not (root / path).exists()})


def test_every_named_repository_file_exists():
    stale = {name: missing for name, text in texts().items() if (missing := missing_paths(text))}
    assert not stale, stale


def test_a_reference_to_a_file_not_in_the_repository_is_caught():
    assert missing_paths("see `docs/method-spec.md` and `bench/bench_speed.py`") == ["docs/method-spec.md"]
