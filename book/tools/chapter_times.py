"""Write `book/generated/chapter_times.md`: each chapter's wall time and hardware, read from stored outputs.

Convention (every chapter follows it): the last code cell prints one line

    WALL_TIME mode=<quick|full> hardware=<free text, no newline> seconds=<float>

where `seconds` is the wall time from the chapter's first code cell to its last. This script reads the chapter
notebooks listed in `book/tools/toc_full.yml` (their committed outputs) plus any executed copies given with
`--extra` (e.g. the quick-mode run of CI), keeps the last WALL_TIME line per chapter and mode, and writes a
Markdown table that `book/how-to-run.md` includes. A chapter and mode with no such line reads "not yet run".

    python book/tools/chapter_times.py [--extra DIR_OR_NOTEBOOK ...]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
FULL_TOC = REPO_ROOT / "book" / "tools" / "toc_full.yml"
OUTPUT = REPO_ROOT / "book" / "generated" / "chapter_times.md"
MODES = ("quick", "full")
WALL_TIME_LINE = re.compile(
    r"^WALL_TIME mode=(?P<mode>quick|full) hardware=(?P<hardware>.+?) seconds=(?P<seconds>[0-9]+(?:\.[0-9]*)?)\s*$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class WallTime:
    """One chapter run: its mode, the hardware it ran on and its wall time in seconds."""

    mode: str
    hardware: str
    seconds: float


def output_texts(notebook: dict) -> list[str]:
    """The text of every stored output of every code cell, in order (stdout streams and text/plain results)."""
    texts = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                texts.append("".join(output.get("text", "")))
            elif output.get("output_type") in ("execute_result", "display_data"):
                texts.append("".join(output.get("data", {}).get("text/plain", "")))
    return texts


def wall_times(notebook: dict) -> dict[str, WallTime]:
    """The last WALL_TIME line per mode found in the notebook's stored outputs."""
    found: dict[str, WallTime] = {}
    for text in output_texts(notebook):
        for match in WALL_TIME_LINE.finditer(text):
            found[match["mode"]] = WallTime(match["mode"], match["hardware"].strip(), float(match["seconds"]))
    return found


def chapter_title(notebook: dict, fallback: str) -> str:
    """The first Markdown heading of the notebook, or `fallback`."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def chapter_notebooks(toc_path: Path = FULL_TOC) -> list[Path]:
    """The notebooks of the full table of contents, in reading order (whether or not they exist yet)."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    entries = [chapter["file"] for part in toc.get("parts", []) for chapter in part["chapters"]]
    return [REPO_ROOT / f"{entry}.ipynb" for entry in entries if entry.startswith("notebooks/")]


def extra_notebooks(paths: list[Path]) -> list[Path]:
    """Expand --extra arguments (notebooks or directories of notebooks) into notebook paths."""
    found = []
    for path in paths:
        found += sorted(path.glob("*.ipynb")) if path.is_dir() else [path]
    return found


def format_seconds(seconds: float) -> str:
    """`42 s`, `3 min 05 s` or `1 h 02 min`: the wall time at a readable precision."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def table(rows: list[tuple[str, str, dict[str, WallTime]]]) -> str:
    """The Markdown table: one row per chapter; per mode, the wall time and the hardware it ran on."""
    lines = ["| Chapter | Quick mode (`SDFT_QUICK=1`) | Full mode |", "|---|---|---|"]
    for name, title, times in rows:
        cells = [f"`{name}` {title}"]
        for mode in MODES:
            run = times.get(mode)
            cells.append(f"{format_seconds(run.seconds)} on {run.hardware}" if run else "not yet run")
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def collect(chapters: list[Path], extras: list[Path]) -> list[tuple[str, str, dict[str, WallTime]]]:
    """Rows for `table`: committed outputs first, then executed copies (matched by file name) override."""
    extra_by_name: dict[str, list[Path]] = {}
    for path in extras:
        extra_by_name.setdefault(path.name, []).append(path)
    rows = []
    for chapter in chapters:
        existing = [path for path in [chapter] + extra_by_name.get(chapter.name, []) if path.is_file()]
        notebooks = [json.loads(path.read_text(encoding="utf-8")) for path in existing]
        title = chapter_title(notebooks[0], chapter.stem) if notebooks else "not yet written"
        times: dict[str, WallTime] = {}
        for notebook in notebooks:
            times.update(wall_times(notebook))
        rows.append((chapter.stem, title, times))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", type=Path, nargs="*", default=[],
                        help="executed notebooks, or directories of them, whose WALL_TIME lines also count")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    rows = collect(chapter_notebooks(), extra_notebooks(args.extra))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    header = "% GENERATED by book/tools/chapter_times.py from the chapters' WALL_TIME lines: do not edit.\n\n"
    args.output.write_text(header + table(rows), encoding="utf-8")
    measured = sum(bool(times) for _, _, times in rows)
    print(f"wrote {args.output}: {measured} of {len(rows)} chapters have a measured wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
