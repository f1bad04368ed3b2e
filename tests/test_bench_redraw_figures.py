"""bench/redraw_figures.py: the stored benchmark's preset is rebuilt and checked before its frontier is redrawn."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import redraw_figures  # noqa: E402


def stored_config():
    return json.loads((redraw_figures.RESULTS / "synthfaces_full" / "benchmark.json").read_text())["config"]


def test_the_stored_benchmark_is_the_full_preset_with_its_seeds():
    config = redraw_figures.benchmark_config(stored_config())
    assert config.name == "full" and config.seeds == (0, 1, 2) and config.num_noises == 1000


def test_a_result_that_is_not_its_preset_is_refused():
    changed = dict(stored_config(), num_noises=64)
    with pytest.raises(SystemExit, match="num_noises"):
        redraw_figures.benchmark_config(changed)


def test_a_summary_read_back_from_json_draws_points_without_a_spread():
    from sdft_lite.experiments import benchmark
    summary = json.loads((redraw_figures.RESULTS / "synthfaces_full" / "benchmark.json").read_text())["summary"]
    assert any(s["fd_full"]["sd"] is None for s in summary.values())     # the source model: one value
    figure = benchmark.frontier_figure(summary, redraw_figures.benchmark_config(stored_config()))
    assert len(figure.axes) == 2
