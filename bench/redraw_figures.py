"""Redraw the stored frontier figures from their result files, after a change to ``sdft_lite.figures`` (CPU, seconds):
the numbers are the stored ones, only the drawing is new.

    python bench/redraw_figures.py        # results/synthfaces_full/frontier.png, results/synthfaces_frontier/frontier.png
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdft_lite import figures  # noqa: E402
from sdft_lite.experiments import benchmark, frontier  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"


def benchmark_config(stored: dict) -> benchmark.BenchmarkConfig:
    """The preset a stored benchmark ran with, checked against what it recorded (the figure's title reads it)."""
    config = getattr(benchmark.BenchmarkConfig, stored["name"])(seeds=tuple(stored["seeds"]))
    for field in ("num_noises", "sample_steps", "lams"):
        value = getattr(config, field)
        if (list(value) if isinstance(value, tuple) else value) != stored[field]:
            raise SystemExit(f"the stored benchmark's {field} ({stored[field]}) is not the {stored['name']} preset's")
    return config


def main() -> int:
    stored = json.loads((RESULTS / "synthfaces_full" / "benchmark.json").read_text())
    path = figures.save(benchmark.frontier_figure(stored["summary"], benchmark_config(stored["config"])),
                        RESULTS / "synthfaces_full" / "frontier.png")
    print(f"redrew {path}")
    rivals = json.loads((RESULTS / "synthfaces_frontier" / "frontier.json").read_text())
    path = figures.save(frontier.frontier_figure(rivals), RESULTS / "synthfaces_frontier" / "frontier.png")
    print(f"redrew {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
