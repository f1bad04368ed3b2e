"""figures.slider_player: the static slider's HTML (its behaviour in a browser is tested in tests/book/test_site.py)."""
import html
import json
import re

import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from sdft_lite.figures import slider_player


def frames(n):
    out = []
    for k in range(n):
        figure = Figure(figsize=(2, 1))
        figure.subplots().plot([0, 1], [0, k])
        out.append(figure)
    return out


def test_the_player_embeds_every_frame_and_label_and_starts_at_the_first():
    text = slider_player(frames(3), ["a", "b", "c"], "demo")
    uris = json.loads(html.unescape(re.search(r'data-frames="([^"]*)"', text).group(1)))
    assert len(uris) == 3 and len(set(uris)) == 3 and all(u.startswith("data:image/png;base64,") for u in uris)
    assert json.loads(html.unescape(re.search(r'data-labels="([^"]*)"', text).group(1))) == ["a", "b", "c"]
    assert f'<img src="{uris[0]}"' in text and 'max="2"' in text and "<output>a</output>" in text
    assert "<script" not in text and "src=\"http" not in text   # works offline, without a kernel


def test_one_label_per_frame():
    with pytest.raises(ValueError, match="one label per frame"):
        slider_player(frames(2), ["a"], "demo")


# --- one style: every figure the module builds is readable at the page width, without touching global state ---

import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from sdft_lite import figures  # noqa: E402


def built_figures():
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    points = {panel: {"naive": (0.3, 0.1, 0.02, 0.03), "SDFT 1": (0.5, 0.4, float("nan"), 0.05),
                      "SDFT 10": (0.7, 0.6, 0.01, 0.02)} for panel in ("fd", "style", "keep")}
    groups = {"naive": ("naive", "0"), "SDFT 1": ("SDFT (λ)", "1"), "SDFT 10": ("SDFT (λ)", "10")}
    colours = {"naive": "tab:red", "SDFT 1": "tab:green", "SDFT 10": "tab:green"}
    rng = np.random.default_rng(0)
    yield "loss_curves", figures.loss_curves([{"step": s, "loss": 1 / s, "mse": 0.5 / s, "aux": 0.1 / s}
                                              for s in range(1, 20)])
    yield "row_grid", figures.row_grid({"source": images, "naive, λ = 0": images, "SDFT": images}, "grid")
    yield "frontier", figures.frontier(points, {p: p for p in points}, "retention", "frontier", colours,
                                       line=("naive", "SDFT 1", "SDFT 10"))
    yield "frontier, grouped", figures.frontier(points, {p: p for p in points}, "retention", "frontier", colours,
                                                groups=groups)
    yield "nearest_distances", figures.nearest_distances(
        {"pixel": (rng.random(50), rng.random(50), rng.random(50), 0.1)}, threshold=0.5)


@pytest.mark.parametrize("name, figure", list(built_figures()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_text_is_readable_at_the_page_width(name, figure):
    figure.draw_without_rendering()          # draws tick labels too, as a page would show them
    sizes = {text.get_text(): figures.shown_points(figure, text) for text in figures.visible_texts(figure)}
    assert sizes, name
    small = {text: round(size, 1) for text, size in sizes.items() if size < figures.MIN_POINTS - 1e-6}
    assert not small, f"{name}: text below {figures.MIN_POINTS} pt at the page width: {small}"


def test_the_text_check_catches_tiny_text():
    figure = Figure(figsize=(12, 3))             # wider than the page: shown at 7.5 / 12 of its size
    ax = figure.subplots()
    ax.set_title("tiny", fontsize=9)             # 9 pt drawn, 5.6 pt shown
    assert min(figures.shown_points(figure, t) for t in figures.visible_texts(figure)) < figures.MIN_POINTS
    figures.readable(figure)
    figure.draw_without_rendering()
    assert min(figures.shown_points(figure, t) for t in figures.visible_texts(figure)) >= figures.MIN_POINTS - 1e-6


def test_building_figures_leaves_global_matplotlib_state_alone():
    before = dict(matplotlib.rcParams)
    backend = matplotlib.get_backend()
    list(built_figures())
    slider_player(frames(2), ["a", "b"], "demo")
    assert dict(matplotlib.rcParams) == before and matplotlib.get_backend() == backend
    import sys
    if "matplotlib.pyplot" in sys.modules:      # nothing registered with pyplot's figure manager
        assert not sys.modules["matplotlib.pyplot"].get_fignums()


# --- point labels: moved clear of each other, of the markers and of the axes' edges ---

def label_boxes(figure):
    figure.draw_without_rendering()
    return [(ax, Text.get_window_extent(t)) for ax in figure.axes for t in ax.texts   # the text, not its leader
            if t.get_gid() == figures.POINT_LABEL]


def overlapping_pairs(figure):
    boxes = label_boxes(figure)
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
            if boxes[i][0] is boxes[j][0] and figures.overlap(boxes[i][1], boxes[j][1]) > 0]


def crowded_points(n=9):
    # a λ sweep bunched in one corner, as the benchmark's small-λ runs are: the plain offset piles their labels up
    panel = {f"SDFT λ={lam:g}": (0.10 + 0.004 * k, 0.02 + 0.01 * k, float("nan"), float("nan"))
             for k, lam in enumerate([0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000][:n])}
    panel["naive"] = (0.105, 0.03, float("nan"), float("nan"))
    return {"fd": panel, "style": dict(panel)}


def test_crowded_point_labels_do_not_overlap_and_stay_inside_their_axes():
    points = crowded_points()
    figure = figures.frontier(points, {p: p for p in points}, "retention", "crowded", {}, line=list(points["fd"]))
    assert not overlapping_pairs(figure)
    for ax, box in label_boxes(figure):
        inside = ax.get_window_extent()
        assert figures.overlap(box, inside) > 0.95 * box.width * box.height


def test_the_overlap_check_sees_labels_left_where_they_were_drawn():
    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    for label, (x, y, _, _) in crowded_points()["fd"].items():
        ax.scatter(x, y)
        figures.label_point(ax, label, (x, y))      # not spread: the plain offset
    assert overlapping_pairs(figure)
    figures.spread_labels(figure)
    assert not overlapping_pairs(figure)


def test_a_label_moved_away_from_its_point_gets_a_leader_line():
    figure = figures.spread_labels(Figure(figsize=(4, 3)))   # no labels: nothing to do, no error
    points = crowded_points()
    figure = figures.frontier(points, {p: p for p in points}, "retention", "crowded", {})
    labels = [t for ax in figure.axes for t in ax.texts if t.get_gid() == figures.POINT_LABEL]
    near = figures.label_offsets(1.0, 1.0)[:8]
    moved = [t for t in labels if t.arrow_patch is not None]
    assert moved and all(t.arrow_patch is None for t in labels if t not in moved)
    assert all(max(abs(v) for v in t.xyann) > 4.0 for t in moved) and len(near) == 8
