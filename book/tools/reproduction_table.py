"""Write `book/generated/reproduction_table.md`: the paper's Tables 1-4 beside this book's measured results.

The paper's numbers are typed in below from the paper's text (Hur et al., WACV 2024), as printed there.
Measured numbers come from JSON files in `results/` and `bench/results/`; each file holds one record or a
list of records of this form (other JSON files there are ignored):

    {
      "paper_item": "Table 3",            # "Table 1".."Table 4" to sit beside a paper row; anything else
                                          # (e.g. "SynthFaces") is listed with the book's own experiments
      "dataset": "MetFaces",              # as the paper names it ("MetFaces", "AAHQ"), or "SynthFaces"
      "task": null,                       # Table 1: "SDEdit" or "EGSDE"; otherwise null or absent
      "model": "SDFT",                    # "Scratch" | "Naive Fine-Tune" | "SDFT";
                                          # Table 4: "Constant" | "Min-SNR-5" | "SDFT"
      "metrics": {"FID": 35.2, "KID_x1e3": 17.0, "LPIPS": 0.46},   # names as in METRICS below
      "mode": "full",                     # "quick" or "full"
      "hardware": "NVIDIA H100 80GB HBM3",
      "chapter": "notebooks/07_shared_noise.ipynb",
      "notes": "10k samples, DDIM-40"     # optional
    }

    python book/tools/reproduction_table.py
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULT_DIRS = (REPO_ROOT / "results", REPO_ROOT / "bench" / "results")
OUTPUT = REPO_ROOT / "book" / "generated" / "reproduction_table.md"

METRICS = {  # name in records -> column header
    "PSNR": "PSNR ↑", "SSIM": "SSIM ↑", "LPIPS": "LPIPS ↓", "FID": "FID ↓", "KID_x1e3": "KID ×10³ ↓",
    "S_dir": "S_dir ↑", "ID": "ID ↑",
}


@dataclass(frozen=True)
class PaperTable:
    """One table of the paper: its caption, the metrics it reports and its rows (keys + printed values)."""

    name: str
    caption: str
    metrics: tuple[str, ...]
    rows: tuple[tuple[str, str | None, str, tuple[str, ...]], ...]  # (dataset, task, model, values)


def _rows(dataset: str, task: str | None, table: dict[str, str]) -> tuple:
    return tuple((dataset, task, model, tuple(values.split())) for model, values in table.items())


PAPER_TABLES = (
    PaperTable(
        "Table 1", "Domain translation (FFHQ → target), faithfulness and realism",
        ("PSNR", "SSIM", "LPIPS", "FID", "KID_x1e3"),
        _rows("MetFaces", "SDEdit", {"Scratch": "13.8 0.31 0.579 74.63 52.45",
                                     "Naive Fine-Tune": "14.95 0.309 0.533 56.42 37.00",
                                     "SDFT": "16.44 0.353 0.481 65.18 40.95"})
        + _rows("MetFaces", "EGSDE", {"Scratch": "15.15 0.31 0.539 89.67 71.14",
                                      "Naive Fine-Tune": "16.03 0.333 0.509 70.02 50.52",
                                      "SDFT": "17.42 0.392 0.440 70.78 43.84"})
        + _rows("AAHQ", "SDEdit", {"Scratch": "14.26 0.362 0.521 65.54 63.42",
                                   "Naive Fine-Tune": "14.60 0.374 0.489 54.75 48.69",
                                   "SDFT": "14.59 0.369 0.486 51.12 44.46"})
        + _rows("AAHQ", "EGSDE", {"Scratch": "15.91 0.407 0.464 82.00 78.26",
                                  "Naive Fine-Tune": "16.18 0.422 0.430 65.14 57.30",
                                  "SDFT": "16.13 0.421 0.423 60.49 52.24"}),
    ),
    PaperTable(
        "Table 2", "Text-guided manipulation with Asyrp (5 prompts)",
        ("S_dir", "ID"),
        _rows("MetFaces", None, {"Naive Fine-Tune": "0.060 0.760", "SDFT": "0.081 0.765"})
        + _rows("AAHQ", None, {"Naive Fine-Tune": "0.133 0.318", "SDFT": "0.143 0.452"}),
    ),
    PaperTable(
        "Table 3",
        "Unconditional generation (FID, KID: 10K samples; LPIPS: 2K source/target pairs from the same noise)",
        ("FID", "KID_x1e3", "LPIPS"),
        _rows("MetFaces", None, {"Scratch": "65.91 44.79 0.488", "Naive Fine-Tune": "43.45 22.81 0.474",
                                 "SDFT": "35.11 17.14 0.46"})
        + _rows("AAHQ", None, {"Scratch": "62.48 48.67 0.575", "Naive Fine-Tune": "64.08 56.70 0.562",
                               "SDFT": "42.54 33.75 0.469"}),
    ),
    PaperTable(
        "Table 4", "Distillation weighting ablation (MetFaces, unconditional generation)",
        ("FID", "KID_x1e3", "LPIPS"),
        _rows("MetFaces", None, {"Constant": "45.21 28.42 0.494", "Min-SNR-5": "44.75 27.96 0.476",
                                 "SDFT": "35.11 17.14 0.46"}),
    ),
)


@dataclass(frozen=True)
class Result:
    """One measured result record (see the module docstring)."""

    paper_item: str
    dataset: str
    task: str | None
    model: str
    metrics: dict[str, float]
    mode: str
    hardware: str
    chapter: str
    notes: str = ""
    source: str = field(default="", compare=False)

    def key(self) -> tuple[str, str, str | None, str]:
        return (self.paper_item, self.dataset, self.task, self.model)


def display_path(path: Path) -> str:
    """`path` relative to the repository when inside it (as the page shows it), else as given."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def is_result_record(record: object) -> bool:
    return isinstance(record, dict) and {"paper_item", "dataset", "model", "metrics"} <= record.keys()


def load_results(dirs: tuple[Path, ...] = RESULT_DIRS) -> list[Result]:
    """Every result record in `dirs/*.json`; files of other shapes are skipped with a note on stderr."""
    results = []
    for directory in dirs:
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            data = json.loads(path.read_text(encoding="utf-8"))
            records = data if isinstance(data, list) else [data]
            if not all(is_result_record(record) for record in records):
                print(f"skipped {display_path(path)}: not a list of result records", file=sys.stderr)
                continue
            for record in records:
                results.append(Result(
                    paper_item=record["paper_item"], dataset=record["dataset"], task=record.get("task"),
                    model=record["model"], metrics={k: float(v) for k, v in record["metrics"].items()},
                    mode=record.get("mode", "unknown"), hardware=record.get("hardware", "unknown"),
                    chapter=record.get("chapter", ""), notes=record.get("notes", ""),
                    source=display_path(path),
                ))
    return results


def format_value(value: float) -> str:
    """A measured value at the paper's usual precision: 2 decimals above 1, 3 below."""
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def paper_table_markdown(table: PaperTable, measured: dict[tuple, Result]) -> str:
    """One paper table: each metric cell 'paper' or 'paper → ours', and a column naming our run."""
    has_task = any(task for _, task, _, _ in table.rows)
    ids = ["Dataset"] + (["Method"] if has_task else []) + ["Model"]
    header = ids + [METRICS[m] for m in table.metrics] + ["This book's run"]
    lines = [f"**{table.name}.** {table.caption}. Each cell: the paper's value, then ours after → when measured.",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for dataset, task, model, values in table.rows:
        ours = measured.get((table.name, dataset, task, model))
        cells = [dataset] + ([task or ""] if has_task else []) + [model]
        for metric, paper_value in zip(table.metrics, values):
            if ours and metric in ours.metrics:
                cells.append(f"{paper_value} → {format_value(ours.metrics[metric])}")
            else:
                cells.append(paper_value)
        cells.append(f"{ours.mode} mode, {ours.hardware} ({ours.source})" if ours else "not yet run")
        lines.append("| " + " | ".join(escape(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def own_results_markdown(results: list[Result]) -> str:
    """The book's own experiments (records that match no paper row), or a line saying there are none."""
    if not results:
        return "No result of the book's own experiments is recorded yet: not yet run.\n"
    header = ["Experiment", "Dataset", "Task", "Model", "Metrics", "Mode", "Hardware", "Chapter", "Notes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        metrics = ", ".join(f"{name} {format_value(value)}" for name, value in r.metrics.items())
        cells = [r.paper_item, r.dataset, r.task or "", r.model, metrics, r.mode, r.hardware, r.chapter, r.notes]
        lines.append("| " + " | ".join(escape(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render(results: list[Result]) -> str:
    paper_keys = {(t.name, d, task, m) for t in PAPER_TABLES for d, task, m, _ in t.rows}
    measured = {r.key(): r for r in results if r.key() in paper_keys}  # the last record of a key wins
    own = [r for r in results if r.key() not in paper_keys]
    parts = ["% GENERATED by book/tools/reproduction_table.py from the paper's text and results/*.json: do not edit.\n"]
    parts += [paper_table_markdown(table, measured) for table in PAPER_TABLES]
    parts += ["**The book's own experiments** (SynthFaces and other settings the paper does not report).\n",
              own_results_markdown(own)]
    return "\n".join(parts)


def main() -> int:
    results = load_results()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render(results), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(REPO_ROOT)}: {len(results)} measured result records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
