"""bench/asyrp_editing.py's choice of edit windows for the Table 2 analogue."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import asyrp_editing  # noqa: E402

from sdft_lite.experiments.editing_table import edit_window  # noqa: E402

# the H200 curves of results/synthfaces_editing (two of them): the source decides the mouth later than naive
SURVIVAL = {"source": {"0": 1.0, "100": 0.998, "200": 0.968, "300": 0.918, "400": 0.814, "500": 0.744, "600": 0.7,
                       "800": 0.65},
            "naive": {"0": 1.0, "100": 0.838, "200": 0.33, "300": 0.092, "400": 0.04, "500": 0.024, "600": 0.02,
                      "800": 0.014}}


def test_each_model_gets_the_window_of_its_own_survival_curve():
    windows = asyrp_editing.own_windows(SURVIVAL, ["source", "naive"])
    assert windows == {"source": (200, 600), "naive": (100, 300)}
    assert windows["naive"] == edit_window({int(t): v for t, v in SURVIVAL["naive"].items()})


def test_a_missing_curve_is_one_clear_line():
    with pytest.raises(SystemExit, match="needs the smile-survival curves of SDFT λ=3"):
        asyrp_editing.own_windows(SURVIVAL, ["naive", "SDFT λ=3"])
