"""The built book, checked page by page in headless Chromium (see check_site.py for what is checked).

Needs the site built first (`make book`: jupyter-book build + vendor_js.py). Without `_build/html` the page
tests are skipped, unless SDFT_BOOK_SITE_REQUIRED=1 (set by `make test-book`), when they fail. Without
Chromium they are skipped, except under CI=true, when they fail. The last tests check the checker itself
on hand-made inputs, so they need neither.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_site  # noqa: E402

PAGES = check_site.toc_pages()


def need_chromium() -> str:
    """Chromium's path; a test that needs it fails in CI without it (the site check is part of `make test`) and is
    skipped elsewhere."""
    chromium = check_site.find_chromium()
    if chromium is None:
        message = "chromium is not installed (apt-get update && apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return chromium


@pytest.fixture(scope="module")
def rendered_site():
    """Serve the built site, render every toc page once (in parallel), yield (base_url, renders)."""
    if not (check_site.SITE / "index.html").is_file():
        message = f"{check_site.SITE} is not built: run `make book` first"
        if os.environ.get("SDFT_BOOK_SITE_REQUIRED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    chromium = need_chromium()
    with check_site.serve(check_site.SITE) as base_url:
        yield base_url, check_site.render_all(PAGES, base_url, check_site.SCREENSHOTS, chromium)


@pytest.mark.parametrize("page", PAGES, ids=[page.docname for page in PAGES])
def test_page_renders_offline(rendered_site, page):
    base_url, renders = rendered_site
    problems = check_site.check_page(page, renders[page.docname], base_url)
    assert not problems, f"{page.docname}:\n  " + "\n  ".join(problems)


# ---------------------------------------------------------------- the checker can fail

def test_cdn_script_and_stylesheet_are_flagged():
    html = ('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
            '<link rel="stylesheet" href="https://unpkg.com/x.css"><script src="../_static/ok.js"></script>')
    problems = check_site.check_no_cdn(BeautifulSoup(html, "html.parser"), "page")
    assert len(problems) == 2 and "cdn.jsdelivr.net" in problems[0] and "unpkg.com" in problems[1]


def test_raw_math_left_in_text_is_found_but_code_is_ignored():
    text = check_site.visible_text('<p>cost $$x^2$$</p><pre>$$ in code</pre><code>\\(a\\)</code>')
    assert "$$" in text and "in code" not in text and "\\(" not in text


def test_math_detection_ignores_code(tmp_path):
    plain = tmp_path / "plain.md"
    plain.write_text("Costs `$5` and\n```python\nx = '$a$'\n```\n", encoding="utf-8")
    maths = tmp_path / "maths.md"
    maths.write_text("Where $\\abar_t$ falls.\n", encoding="utf-8")
    assert not check_site.source_has_math(plain)
    assert check_site.source_has_math(maths)


def test_notebook_outputs_are_counted_except_removed_cells(tmp_path):
    png = {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"},
           "metadata": {}}
    view = {"output_type": "display_data", "metadata": {},
            "data": {check_site.WIDGET_VIEW_MIME: {"model_id": "m"}, "text/plain": "IntSlider()"}}
    cells = [
        {"cell_type": "code", "metadata": {}, "source": "", "outputs": [png, view], "execution_count": 1},
        {"cell_type": "code", "metadata": {"tags": ["remove-output"]}, "source": "", "outputs": [png],
         "execution_count": 2},
    ]
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert check_site.notebook_image_outputs(notebook) == 1
    assert check_site.notebook_widget_views(notebook) == 1


def test_a_static_slider_player_swaps_its_frame_in_chromium(tmp_path):
    """figures.slider_player needs no kernel: in headless Chromium, moving its range input shows another frame and
    its label (a harness page moves the slider the way a reader's input event does)."""
    chromium = need_chromium()
    from matplotlib.figure import Figure

    from sdft_lite.figures import slider_player
    frames = []
    for k in range(3):
        figure = Figure(figsize=(2, 1))
        figure.subplots().plot([0, 1], [0, k])
        frames.append(figure)
    player = slider_player(frames, ["first", "second", "third"], "demo")
    harness = tmp_path / "player.html"
    harness.write_text(
        "<html><body>" + player + "<script>"
        "const s = document.querySelector('input[data-player=demo]');"
        "const before = document.querySelector('.sdft-player img').src;"
        "s.value = 2; s.dispatchEvent(new Event('input'));"
        "const img = document.querySelector('.sdft-player img');"
        "document.body.dataset.moved = String(img.src !== before && img.src === JSON.parse(s.dataset.frames)[2]);"
        "document.body.dataset.label = document.querySelector('.sdft-player output').textContent;"
        "</script></body></html>", encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        done = subprocess.run([chromium, *check_site.CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                               harness.as_uri()], capture_output=True, text=True, timeout=120)
    body = BeautifulSoup(done.stdout, "html.parser").body
    assert body is not None and body.get("data-moved") == "true" and body.get("data-label") == "third"


def test_screenshots_show_the_whole_page_not_only_the_window(tmp_path):
    """full_page_screenshot captures a page taller than the 1600-px window from top to bottom: the PNG is as tall
    as the page, and its bottom rows show the page's last element (blue), not the window's end."""
    chromium = need_chromium()
    page = tmp_path / "tall.html"
    page.write_text('<html><body style="margin:0"><div style="height:4000px;background:red"></div>'
                    '<div style="height:1000px;background:blue"></div></body></html>', encoding="utf-8")
    shot = check_site.full_page_screenshot(page.as_uri(), tmp_path / "tall.png", chromium)
    width, height = shot.width, shot.height
    from PIL import Image
    image = Image.open(tmp_path / "tall.png").convert("RGB")
    assert (width, height) == (check_site.WINDOW_WIDTH, 5000) and image.size == (check_site.WINDOW_WIDTH, 5000)
    assert image.getpixel((10, 100)) == (255, 0, 0) and image.getpixel((10, 4990)) == (0, 0, 255)


def test_a_display_equation_wider_than_its_column_is_found(tmp_path):
    """The measurement behind the wide-math check, on a page with two display boxes in a 600-px column: the one
    whose typeset maths is 900 px wide is reported, the 300-px one is not (no MathJax needed: the check reads the
    boxes' geometry)."""
    chromium = need_chromium()
    box = ('<mjx-container display="true" style="display:block;overflow-x:auto">'
           '<mjx-math style="display:inline-block;width:{}px">{}</mjx-math></mjx-container>')
    page = tmp_path / "math.html"
    page.write_text('<html><body><div style="width:600px">' + box.format(900, "wide") + box.format(300, "narrow")
                    + "</div></body></html>", encoding="utf-8")
    shot = check_site.full_page_screenshot(page.as_uri(), tmp_path / "math.png", chromium)
    assert shot.wide_math == ("wide",)


def test_screenshots_work_from_a_process_with_few_open_files(tmp_path):
    """A fresh interpreter (the script's command line) gets its pipes on fds 3 to 6; the pipe ends Chromium reads
    as fds 3 and 4 must survive being moved there (the check used to close one and Chromium exited at once)."""
    chromium = need_chromium()
    page = tmp_path / "page.html"
    page.write_text('<html><body style="margin:0"><div style="height:2000px;background:red"></div></body></html>',
                    encoding="utf-8")
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import check_site; "
              "print(check_site.full_page_screenshot(sys.argv[2], check_site.Path(sys.argv[3])).height)")
    done = subprocess.run([sys.executable, "-c", script, str(Path(check_site.__file__).parent), page.as_uri(),
                           str(tmp_path / "page.png")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip() == "2000"
