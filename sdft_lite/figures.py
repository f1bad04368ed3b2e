"""Figures as functions that return a :class:`matplotlib.figure.Figure`: the one place the package draws.

Each figure is built on a bare ``Figure`` (not through ``pyplot``), so drawing never selects a backend, opens a
window or registers the figure globally: a library call cannot change what a notebook's ``%matplotlib`` set up.
A notebook shows a returned figure with ``display(fig)`` (or as a cell's last value); a script writes it with
:func:`save`.

One style for every figure here: :data:`STYLE` (rc parameters, applied with ``matplotlib.rc_context`` while a
figure is built, never to the global state) and :func:`readable`, which raises any text that would be smaller
than :data:`MIN_POINTS` when the figure is shown scaled to the book's page width (:data:`PAGE_WIDTH_INCHES`).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

from .sample import make_grid

LOSS_TERMS = ("loss", "mse", "vb", "distill", "aux")

# the book's page shows a figure at most ~720 CSS px wide (7.5 in at 96 px/in); a wider figure is scaled down
PAGE_WIDTH_INCHES = 7.5
MIN_POINTS = 9.0
STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 9, "legend.title_fontsize": 9, "figure.titlesize": 11, "axes.grid": False,
}


def shown_points(figure: Figure, text: Text) -> float:
    """The size of ``text`` in points as a reader sees it: its font size, scaled down with the figure when the
    figure is wider than the page."""
    width = figure.get_size_inches()[0]
    return text.get_fontsize() * min(1.0, PAGE_WIDTH_INCHES / width)


def visible_texts(figure: Figure) -> list[Text]:
    """Every non-empty, visible Text artist of ``figure`` (titles, labels, tick labels, legends, annotations)."""
    return [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]


def readable(figure: Figure, min_points: float = MIN_POINTS) -> Figure:
    """Raise every text of ``figure`` to at least ``min_points`` as shown at the page width (in place; the layout
    engine makes room when the figure is drawn). Returns the figure."""
    scale = min(1.0, PAGE_WIDTH_INCHES / figure.get_size_inches()[0])
    for ax in figure.axes:   # tick labels are re-created when drawn: raise them through the axes' tick parameters
        for axis, name in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            for which, ticks in (("major", axis.get_major_ticks()), ("minor", axis.get_minor_ticks())):
                if ticks and ticks[0].label1.get_fontsize() * scale < min_points:
                    ax.tick_params(axis=name, which=which, labelsize=min_points / scale)
    for text in visible_texts(figure):
        if text.get_fontsize() * scale < min_points:
            text.set_fontsize(min_points / scale)
    return figure


POINT_LABEL = "point-label"   # the gid that marks a point's label for :func:`spread_labels`


def label_point(ax, text: str, xy: tuple[float, float]) -> Annotation:
    """Annotate the data point ``xy`` with ``text``; :func:`spread_labels` later moves it clear of the others. The
    label takes no part in the layout (the axes do not shrink or move for it), so moving it moves nothing else."""
    label = ax.annotate(text, xy, textcoords="offset points", xytext=(4, 3), fontsize=8, gid=POINT_LABEL,
                        ha="left", va="bottom", annotation_clip=False)
    label.set_in_layout(False)
    return label


def label_offsets(width: float, height: float, rings: int = 6) -> list[tuple[float, float]]:
    """Where a label may go, nearest first: its lower-left corner's offset in points from the point it names, on
    rings 4, 11, 18, ... points away (right, left, above, below and the four corners) for a ``width`` × ``height``
    (points) label."""
    offsets = []
    for ring in range(rings):
        d = 4.0 + 7.0 * ring
        offsets += [(d, 0.6 * d), (d, -height - 0.6 * d), (-width - d, 0.6 * d), (-width - d, -height - 0.6 * d),
                    (d, -height / 2), (-width - d, -height / 2), (-width / 2, d), (-width / 2, -height - d)]
    return offsets


def overlap(a: Bbox, b: Bbox) -> float:
    """The area two boxes share (display units squared)."""
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def spread_labels(figure: Figure) -> Figure:
    """Move every point label (:func:`label_point`) of ``figure`` to the nearest offset where it covers no other
    label, no marker and stays inside its axes (greedy, in the order drawn; the least-covering offset if none is
    free). A label moved off the first ring gets a thin leader line to its point. In place; returns the figure."""
    figure.draw_without_rendering()   # the layout settles first: the extents below are the drawn ones
    to_display = figure.dpi / 72.0
    for ax in figure.axes:
        labels = [t for t in ax.texts if isinstance(t, Annotation) and t.get_gid() == POINT_LABEL]
        anchors = [ax.transData.transform(label.xy) for label in labels]
        markers = [Bbox.from_extents(x - 4 * to_display, y - 4 * to_display, x + 4 * to_display, y + 4 * to_display)
                   for x, y in anchors]
        inside, placed = ax.get_window_extent(), []
        for label, (x, y) in zip(labels, anchors):
            box = label.get_window_extent()
            width, height = box.width / to_display, box.height / to_display
            candidates = label_offsets(width, height)

            def cost(offset):
                at = Bbox.from_bounds(x + offset[0] * to_display, y + offset[1] * to_display, box.width, box.height)
                outside = box.width * box.height - overlap(at, inside)
                return (10 * sum(overlap(at, other) for other in placed) + 3 * sum(overlap(at, m) for m in markers)
                        + outside)
            best = next((o for o in candidates if cost(o) == 0), None) or min(candidates, key=cost)
            placed.append(Bbox.from_bounds(x + best[0] * to_display, y + best[1] * to_display, box.width, box.height))
            if candidates.index(best) < 8:
                label.xyann = best
            else:   # an annotation's leader line is made with it: draw the label anew, with one
                label.remove()
                ax.annotate(label.get_text(), label.xy, textcoords="offset points", xytext=best, gid=POINT_LABEL,
                            fontsize=label.get_fontsize(), color=label.get_color(), ha="left", va="bottom",
                            annotation_clip=False, in_layout=False,
                            arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6, "shrinkA": 1, "shrinkB": 3})
    return figure


def styled(builder):
    """Build the figure under :data:`STYLE`, make its text :func:`readable` and move its point labels clear of each
    other (:func:`spread_labels`): the decorator of every builder."""
    @functools.wraps(builder)
    def build(*args, **kwargs) -> Figure:
        with matplotlib.rc_context(STYLE):
            figure = builder(*args, **kwargs)
            figure.draw_without_rendering()   # tick labels exist only once the figure has been laid out
            return spread_labels(readable(figure))
    return build


def save(figure: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``figure`` as an image file (format from the suffix) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path


@styled
def loss_curves(records: Sequence[Mapping[str, float]], terms: Sequence[str] = LOSS_TERMS) -> Figure:
    """The loss terms of a training log (one dict per logged step, as in ``log.jsonl``) against the step, log y."""
    figure = Figure(figsize=(6, 3.5), layout="tight")
    ax = figure.subplots()
    steps = [r["step"] for r in records]
    for name in terms:
        values = [r.get(name, 0.0) for r in records]
        if any(v > 0 for v in values):
            ax.plot(steps, values, label=name)
    ax.set(xlabel="step", ylabel="loss (per-sample mean)", yscale="log")
    ax.legend()
    return figure


@styled
def row_grid(rows: Mapping[str, torch.Tensor], title: str) -> Figure:
    """One labelled row per entry; column c of every row comes from the same noise (or the same input), so the
    entries compare down a column. The labels sit on the left, where a long name ("SDFT λ=1, constant w") keeps a
    readable size even with a dozen entries at page width.
    rows: name → [N, C, H, W] in [−1, 1]."""
    names = list(rows)
    columns = min(len(images) for images in rows.values())
    grid = make_grid(torch.cat([rows[name][:columns] for name in names]), columns=columns)
    figure = Figure(figsize=(0.85 * columns + 2.2, 0.85 * len(names) + 0.5), layout="tight")
    ax = figure.subplots()
    ax.imshow(grid, interpolation="nearest")
    cell = grid.shape[0] / len(names)
    ax.set_yticks([cell * (i + 0.5) for i in range(len(names))], names)
    ax.set_xticks([])
    ax.set_title(title)
    return figure


@styled
def frontier(points: Mapping[str, Mapping[str, tuple[float, float, float, float]]],
             xlabels: Mapping[str, str], ylabel: str, title: str, colours: Mapping[str, str],
             line: Sequence[str] = (), log_x: Sequence[str] = (),
             groups: Mapping[str, tuple[str, str]] | None = None) -> Figure:
    """Side-by-side scatter panels of labelled points with error bars: ``points[panel][label] = (x, y, dx, dy)``
    (NaN spreads are not drawn); the labels in ``line`` are joined in order (e.g. a λ sweep).

    ``groups[label] = (group, short)``: points of one group share a colour, a line through them and one legend
    entry, and are annotated with ``short`` only (e.g. the knob value), which keeps a crowded panel legible."""
    grid = groups is not None and len(points) == 3      # 2 × 2, the legend in the fourth cell: legible at page width
    if grid:
        figure = Figure(figsize=(10, 8.4), layout="constrained")
        cells = figure.subplots(2, 2).ravel()
        axes, legend_cell = cells[:3], cells[3]
    else:
        figure = Figure(figsize=(5 * len(points), 4.4 if groups else 4.2), layout="tight")
        axes = figure.subplots(1, len(points), squeeze=False)[0]
    for ax, (panel, panel_points) in zip(axes, points.items()):
        joined = [panel_points[label] for label in line if label in panel_points]
        if joined:
            ax.plot([p[0] for p in joined], [p[1] for p in joined], "-", color="tab:green", alpha=0.6, zorder=1)
        for group in dict.fromkeys(g for g, _ in (groups or {}).values()):
            members = [panel_points[label] for label, (g, _) in groups.items() if g == group and label in panel_points]
            ax.plot([p[0] for p in members], [p[1] for p in members], "-", alpha=0.35, zorder=1,
                    color=next(colours[label] for label, (g, _) in groups.items() if g == group))
        for label, (x, y, dx, dy) in panel_points.items():
            group, text = (groups or {}).get(label, (label, label))
            ax.errorbar(x, y, xerr=None if math.isnan(dx) else dx, yerr=None if math.isnan(dy) else dy, fmt="o",
                        color=colours.get(label, "tab:purple"), capsize=3, zorder=2, markersize=5,
                        label=group if groups else None)
            label_point(ax, text, (x, y))
        ax.set(xlabel=xlabels[panel], ylabel=ylabel, ylim=(-0.05, 1.08), xscale="log" if panel in log_x else "linear")
        ax.grid(alpha=0.3)
    if groups:
        handles, names = axes[0].get_legend_handles_labels()
        unique = dict(zip(names, handles))
        if grid:
            legend_cell.axis("off")
            legend_cell.legend(unique.values(), unique.keys(), loc="center", fontsize=9, frameon=False,
                               title="method (knob); numbers: knob values")
        else:
            figure.legend(unique.values(), unique.keys(), loc="outside lower center", ncol=min(len(unique), 8),
                          fontsize=8, frameon=False)
            figure.set_layout_engine("constrained")
    figure.suptitle(title, fontsize=10)
    return figure


@styled
def nearest_distances(panels: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float], float]],
                      threshold: float, bins: int = 30) -> Figure:
    """Memorisation, one row per distance: ``panels[name] = (d1, train_nearest, ratio, share)``.

    Left: histogram of each sample's distance to its nearest training image (d1) over the training images'
    distances to their own nearest other training image, on shared bins. Right: d1/d2 per sample, with the
    near-duplicate threshold and the share below it."""
    figure = Figure(figsize=(9, 2.8 * len(panels)), layout="tight")
    axes = figure.subplots(len(panels), 2, squeeze=False)
    for (left, right), (name, (d1, train_nearest, ratio, share)) in zip(axes, panels.items()):
        top = max(float(np.max(d1)), float(np.max(train_nearest))) or 1.0
        edges = np.linspace(0.0, top, bins + 1)
        left.hist(train_nearest, edges, color="tab:gray", alpha=0.5, label="training → nearest other training")
        left.hist(d1, edges, color="tab:blue", alpha=0.7, label="sample → nearest training")
        left.set(xlabel=f"{name} distance", ylabel="images")
        left.legend(fontsize=7)
        right.hist(ratio, np.linspace(0.0, max(1.0, float(np.max(ratio))), bins + 1), color="tab:blue", alpha=0.7)
        right.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:.3g}")
        right.set(xlabel="nearest / second-nearest training distance", ylabel="samples",
                  title=f"near-duplicates: {share:.1%}")
        right.legend(fontsize=7)
    return figure


def slider_player(frames: Sequence[Figure], labels: Sequence[str], name: str, dpi: int = 80) -> str:
    """A slider that works without a kernel: ``frames`` drawn once, embedded as PNG data URIs in one HTML fragment
    with a range input; moving it swaps the image and shows ``labels[i]`` (no script tag, no network). Display it
    with ``IPython.display.HTML``; the live ipywidgets version needs a running kernel, this one a static page.

    Returns the HTML; the range input carries ``data-player=name`` so a browser test can find it."""
    import base64
    import html
    import io
    import json
    if len(frames) != len(labels) or not frames:
        raise ValueError(f"need one label per frame, got {len(frames)} frames and {len(labels)} labels")
    uris = []
    for frame in frames:
        frame.draw_without_rendering()
        readable(frame)
        buffer = io.BytesIO()
        frame.savefig(buffer, format="png", dpi=dpi)
        uris.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    show = ("const p=this.parentElement.parentElement;p.querySelector('img').src=JSON.parse(this.dataset.frames)"
            "[this.value];p.querySelector('output').textContent=JSON.parse(this.dataset.labels)[this.value]")
    attributes = {"type": "range", "min": "0", "max": str(len(frames) - 1), "step": "1", "value": "0",
                  "data-player": name, "data-frames": json.dumps(uris), "data-labels": json.dumps(list(labels)),
                  "oninput": show, "aria-label": name}
    slider = "<input " + " ".join(f'{key}="{html.escape(value)}"' for key, value in attributes.items()) + ">"
    return (f'<div class="sdft-player"><div>{slider} <output>{html.escape(labels[0])}</output></div>'
            f'<img src="{uris[0]}" alt="{html.escape(name)}" style="max-width:100%"></div>')
