"""One place for the book's public home: `_config.yml`'s `repository.url`. Every link that depends on it (the
launch links at the top of each chapter, the install cell, the clone commands in the pages and the README) is
written from it by this script; `tests/book/test_colab_cell.py` checks that they agree.

    python book/tools/set_home.py                  # rewrite the launch links from _config.yml
    python book/tools/set_home.py OWNER/REPO       # move the book: rewrite the URL everywhere, then the links

The launch links (Colab, Kaggle, SageMaker Studio Lab) open a chapter straight from the public repository; they
work once the repository at that URL is public.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
FILES = ("_config.yml", "README.md", "book/*.md", "notebooks/*.ipynb")
LAUNCH_TAG = "remove-cell"          # the launch cell shows on GitHub and in Colab, not on the built site


def home(root: Path = REPO_ROOT) -> tuple[str, str]:
    """(owner/repo, branch) from _config.yml."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    url = config["repository"]["url"]
    if not url.startswith("https://github.com/"):
        raise ValueError(f"repository.url must be a https://github.com/OWNER/REPO address, got {url!r}")
    return url.removeprefix("https://github.com/").strip("/"), config["repository"]["branch"]


def launch_links(slug: str, branch: str, notebook: str) -> str:
    """The Markdown of a chapter's first cell: Colab's badge, then Kaggle and SageMaker Studio Lab, same path."""
    path = f"{slug}/blob/{branch}/notebooks/{notebook}"
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}) · "
            f"[Open in Kaggle](https://kaggle.com/kernels/welcome?src=https://github.com/{path}) · "
            f"[Open in SageMaker Studio Lab](https://studiolab.sagemaker.aws/import/github/{path})")


def files(root: Path) -> list[Path]:
    return sorted(path for pattern in FILES for path in root.glob(pattern))


def move(root: Path, old: str, new: str) -> list[Path]:
    """Replace the owner/repo ``old`` by ``new`` in every file that carries the home; returns those changed."""
    pattern = re.compile(rf"(?<=github\.com/){re.escape(old)}\b|(?<=/github/){re.escape(old)}\b")
    changed = []
    for path in files(root):
        text = path.read_text(encoding="utf-8")
        replaced = pattern.sub(new, text)
        if replaced != text:
            path.write_text(replaced, encoding="utf-8")
            changed.append(path)
    return changed


def write_launch_cells(root: Path) -> list[Path]:
    """Rewrite each chapter's first cell (its launch links) from the home; returns the notebooks changed."""
    slug, branch = home(root)
    changed = []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cell = notebook["cells"][0]
        if cell["cell_type"] != "markdown" or LAUNCH_TAG not in cell.get("metadata", {}).get("tags", []):
            raise ValueError(f"{path.name}: the first cell must be the launch links (markdown, tagged {LAUNCH_TAG})")
        text = launch_links(slug, branch, path.name)
        if "".join(cell["source"]) != text:
            cell["source"] = [text]
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        new = argv[0].removeprefix("https://github.com/").strip("/")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", new):
            print(f"set_home: expected OWNER/REPO, got {argv[0]!r}", file=sys.stderr)
            return 2
        old, _ = home()
        moved = move(REPO_ROOT, old, new)
        print(f"{old} → {new} in {len(moved)} files")
    launched = write_launch_cells(REPO_ROOT)
    print(f"launch links rewritten in {len(launched)} chapters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
