"""Write `book/generated/chapter_times.md`: each chapter's wall time and hardware, read from stored outputs.

Convention (every chapter follows it): the last code cell prints one line

    WALL_TIME mode=<quick|full> hardware=<free text, no newline> seconds=<float>

where `seconds` is the wall time from the chapter's first code cell to its last. This script reads the chapter
notebooks listed in `book/tools/toc_full.yml` (their committed outputs), then the recorded runs in
`book/generated/recorded_runs.json` (the mode the committed outputs are not in: a quick-mode run on the CPU
for the chapters whose outputs are a GPU run), then any executed copies given with `--extra`; it keeps the last
WALL_TIME line per chapter and mode and writes a Markdown table that `book/how-to-run.md` includes. A chapter and
mode with no such line reads "not yet run".

    python book/tools/chapter_times.py [--extra DIR_OR_NOTEBOOK ...]
    python book/tools/chapter_times.py --record DIR   # keep DIR's WALL_TIME lines in recorded_runs.json
    python book/tools/chapter_times.py --banners      # also write each chapter's "needs / time" line

`--record` takes executed notebooks (e.g. `SDFT_QUICK=1 python bench/execute_notebooks.py notebooks/*.ipynb
--out DIR` on a CPU) and merges their lines into the record, replacing earlier ones of the same chapter and mode.
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
RECORD = REPO_ROOT / "book" / "generated" / "recorded_runs.json"
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
        page = REPO_ROOT / "notebooks" / f"{name}.ipynb"     # linked as book/how-to-run.md sees it, when it exists
        cells = [f"[`{name}`](../notebooks/{name}.ipynb) {title}" if page.is_file() else f"`{name}` {title}"]
        for mode in MODES:
            run = times.get(mode)
            cells.append(f"{format_seconds(run.seconds)} on {run.hardware}" if run else "not yet run")
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    totals = ["**all chapters, one after another**"]
    for mode in MODES:
        runs = [times.get(mode) for _, _, times in rows]
        totals.append(f"**{format_seconds(sum(run.seconds for run in runs))}**" if rows and all(runs) else "—")
    lines.append("| " + " | ".join(totals) + " |")
    return "\n".join(lines) + "\n"


def read_record(path: Path) -> dict[str, dict[str, WallTime]]:
    """{chapter stem: {mode: WallTime}} from a recorded-runs file (empty if there is none)."""
    if not path.is_file():
        return {}
    runs = json.loads(path.read_text(encoding="utf-8"))["runs"]
    return {stem: {mode: WallTime(mode, run["hardware"], float(run["seconds"])) for mode, run in modes.items()}
            for stem, modes in runs.items()}


def record_runs(executed: list[Path], path: Path) -> dict[str, dict[str, WallTime]]:
    """Merge the WALL_TIME lines of executed notebooks into the recorded-runs file; returns what was added."""
    record = read_record(path)
    added: dict[str, dict[str, WallTime]] = {}
    for notebook_path in executed:
        times = wall_times(json.loads(notebook_path.read_text(encoding="utf-8")))
        if times:
            added[notebook_path.stem] = times
            record.setdefault(notebook_path.stem, {}).update(times)
    runs = {stem: {mode: {"hardware": run.hardware, "seconds": run.seconds} for mode, run in sorted(modes.items())}
            for stem, modes in sorted(record.items())}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"written_by": "book/tools/chapter_times.py --record", "runs": runs}, indent=1)
                    + "\n", encoding="utf-8")
    return added


def collect(chapters: list[Path], extras: list[Path],
            recorded: dict[str, dict[str, WallTime]] | None = None) -> list[tuple[str, str, dict[str, WallTime]]]:
    """Rows for `table`: committed outputs first, then recorded runs, then executed copies (matched by file
    name) override."""
    extra_by_name: dict[str, list[Path]] = {}
    for path in extras:
        extra_by_name.setdefault(path.name, []).append(path)
    rows = []
    for chapter in chapters:
        notebooks = [json.loads(path.read_text(encoding="utf-8")) for path in [chapter] if path.is_file()]
        extra = [json.loads(path.read_text(encoding="utf-8")) for path in extra_by_name.get(chapter.name, [])]
        title = chapter_title((notebooks + extra)[0], chapter.stem) if notebooks + extra else "not yet written"
        times: dict[str, WallTime] = {}
        for notebook in notebooks:
            times.update(wall_times(notebook))
        times.update((recorded or {}).get(chapter.stem, {}))
        for notebook in extra:
            times.update(wall_times(notebook))
        rows.append((chapter.stem, title, times))
    return rows


BANNER_TAG = "chapter-banner"


def short_hardware(hardware: str) -> str:
    """'NVIDIA H200 (CUDA 13.0, torch 2.11.0+cu130)' → 'NVIDIA H200': the banner names the machine only."""
    return re.sub(r"\s*\(.*\)\s*$", "", hardware)


def banner(times: dict[str, WallTime]) -> str:
    """The one line under a chapter's title: what each mode needs and how long it took, from measured runs."""
    parts = []
    for mode, what in (("quick", "Quick mode"), ("full", "Full mode")):
        run = times.get(mode)
        parts.append(f"{what}: {format_seconds(run.seconds)} on {short_hardware(run.hardware)}" if run
                     else f"{what}: not yet run")
    stored = "full" if "full" in times else "quick"
    return (f"**Needs / time** — {parts[0]} · {parts[1]} (measured wall times; the outputs on this page are the "
            f"{stored}-mode run).")


def write_banner(path: Path, text: str) -> bool:
    """Put ``text`` in the chapter's banner cell (tagged chapter-banner, right after the title cell), creating
    it if needed; returns whether the notebook changed."""
    import nbformat
    notebook = nbformat.read(path, as_version=4)
    cells = [cell for cell in notebook.cells if BANNER_TAG in cell.metadata.get("tags", [])]
    if cells and cells[0].source == text:
        return False
    def new_cell(source: str, **metadata):
        cell = nbformat.v4.new_markdown_cell(source, metadata=metadata)
        if notebook.nbformat_minor < 5:
            del cell["id"]
        return cell
    if cells:
        cells[0].source = text
    else:   # right under the title line: the title cell's other text moves to a cell after the banner
        title = next(i for i, cell in enumerate(notebook.cells)
                     if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "))
        heading, _, rest = notebook.cells[title].source.lstrip().partition("\n")
        notebook.cells[title].source = heading
        notebook.cells.insert(title + 1, new_cell(text, tags=[BANNER_TAG]))
        if rest.strip():
            notebook.cells.insert(title + 2, new_cell(rest.strip("\n")))
    nbformat.write(notebook, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", type=Path, nargs="*", default=[],
                        help="executed notebooks, or directories of them, whose WALL_TIME lines also count")
    parser.add_argument("--record", type=Path, nargs="*", default=[],
                        help="executed notebooks, or directories of them, to keep in the recorded-runs file")
    parser.add_argument("--record-file", type=Path, default=RECORD)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--banners", action="store_true", help="write each chapter's needs / time line")
    args = parser.parse_args(argv)
    if args.record:
        added = record_runs(extra_notebooks(args.record), args.record_file)
        print(f"recorded {sum(len(modes) for modes in added.values())} runs in {args.record_file}")
    rows = collect(chapter_notebooks(), extra_notebooks(args.extra), read_record(args.record_file))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    header = "% GENERATED by book/tools/chapter_times.py from the chapters' WALL_TIME lines: do not edit.\n\n"
    args.output.write_text(header + table(rows), encoding="utf-8")
    measured = sum(bool(times) for _, _, times in rows)
    print(f"wrote {args.output}: {measured} of {len(rows)} chapters have a measured wall time")
    if args.banners:
        changed = [path.name for path, (_, _, times) in zip(chapter_notebooks(), rows)
                   if path.is_file() and write_banner(path, banner(times))]
        print(f"banners rewritten in {len(changed)} chapters: {', '.join(changed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
