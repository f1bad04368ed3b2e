"""Over-long code and output lines scroll inside their box (a visible horizontal scrollbar) instead of being
clipped: the book's decision for code cells, outputs and literal blocks. Checked in pure Python over the built
HTML and the stylesheets each page links: every code/output block with a line wider than the page must match a
rule that sets overflow(-x) to auto or scroll, and neither it nor a box around it may match a rule that sets
hidden or clip. The last tests run the check on deliberately broken copies (a stylesheet with `overflow: hidden`
injected, a page whose blocks lose their scrolling rule) and show that it fails.

Needs `_build/html` for the page tests (skipped without it, like test_site.py); the broken-copy tests need nothing.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_site  # noqa: E402

# the page's text column is ~720 px; code is set at 0.875 rem monospace, about 7.7 px a character
PAGE_CHARACTERS = 92
BLOCKS = "div.highlight pre, div.cell_output pre, pre.literal-block, div.output pre"
SCROLLS, CLIPS = {"auto", "scroll"}, {"hidden", "clip"}
COMMENT = re.compile(r"/\*.*?\*/", re.S)
RULE = re.compile(r"([^{}@]+)\{([^{}]*)\}")
PSEUDO = re.compile(r"::?[\w-]+(\([^)]*\))?")


def overflow_rules(css: str) -> list[tuple[str, str]]:
    """(selector, horizontal overflow value) for every rule that sets overflow or overflow-x, in source order;
    @media blocks are read as if they applied (the narrow-screen case is the one that matters most)."""
    rules = []
    for selectors, body in RULE.findall(COMMENT.sub("", css)):
        value = None
        for declaration in body.split(";"):
            name, _, raw = declaration.partition(":")
            name, raw = name.strip().lower(), raw.replace("!important", "").strip().lower()
            if name == "overflow" and raw:
                value = raw.split()[0]            # overflow: <x> [<y>]
            elif name == "overflow-x" and raw:
                value = raw
        if value is not None:
            rules += [(selector.strip(), value) for selector in selectors.split(",") if selector.strip()]
    return rules


def matches(soup: BeautifulSoup, selector: str) -> set[int]:
    """ids of the elements a selector matches (pseudo-classes dropped; an unparsable selector matches nothing)."""
    plain = PSEUDO.sub("", selector).strip()
    if not plain:
        return set()
    try:
        return {id(element) for element in soup.select(plain)}
    except Exception:   # a selector soupsieve does not support
        return set()


def long_blocks(soup: BeautifulSoup) -> list:
    return [pre for pre in soup.select(BLOCKS)
            if max((len(line) for line in pre.get_text().splitlines()), default=0) > PAGE_CHARACTERS]


def clipped_long_lines(html: str, css: str, where: str = "page") -> list[str]:
    """Problems: a long code/output block that is clipped or that nothing lets scroll.

    Walk from the block outwards (the block, then its boxes): the first element that a horizontal-overflow rule
    applies to decides. Its value is that of the last such rule in source order (specificity is not weighed:
    the book's own stylesheet comes last and is the one expected to change). auto/scroll: the block scrolls
    (a clipping box further out no longer matters: the scrolling box is as wide as its container); hidden/clip:
    the long line is cut off. An inline style on the block counts first."""
    soup = BeautifulSoup(html, "html.parser")
    rules = [(matches(soup, selector), value) for selector, value in overflow_rules(css)]
    problems = []
    for pre in long_blocks(soup):
        chain = [pre] + [parent for parent in pre.parents if parent.name not in (None, "[document]", "html", "body")]
        inline = re.findall(r"overflow(?:-x)?\s*:\s*([a-z-]+)", (pre.get("style") or "").lower())
        decided = inline[-1] if inline else None
        if decided is None:
            for element in chain:
                values = [value for hit, value in rules if id(element) in hit and value in SCROLLS | CLIPS]
                if values:
                    decided = values[-1]
                    break
        text = pre.get_text().splitlines()[0][:50] if pre.get_text() else ""
        if decided in CLIPS:
            problems.append(f"{where}: a long code/output block is clipped (overflow {decided}): {text!r} ...")
        elif decided not in SCROLLS:
            problems.append(f"{where}: no overflow auto/scroll rule on a long code/output block: {text!r} ...")
    return problems


def page_css(page: Path) -> str:
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    texts = []
    for link in soup.find_all("link", rel="stylesheet"):
        href = (link.get("href") or "").split("?")[0]
        path = (page.parent / href).resolve()
        if not check_site.is_external(href) and path.is_file():
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(texts)


def built_pages() -> list[Path]:
    return [page.html for page in check_site.toc_pages() if page.html.is_file()]


@pytest.fixture(scope="module")
def site_pages():
    if not (check_site.SITE / "index.html").is_file():
        message = f"{check_site.SITE} is not built: run `make book` first"
        if os.environ.get("SDFT_BOOK_SITE_REQUIRED") == "1":   # `make test-book`: the built book must be checked
            pytest.fail(message)
        pytest.skip(message)
    return [(page, page.read_text(encoding="utf-8"), page_css(page)) for page in built_pages()]


def test_the_built_book_has_long_lines_to_check(site_pages):
    """The check is not vacuous: the chapters do print lines wider than the page."""
    assert sum(len(long_blocks(BeautifulSoup(html, "html.parser"))) for _, html, _ in site_pages) > 0


def test_long_code_and_output_lines_scroll_in_the_built_book(site_pages):
    problems = [p for page, html, css in site_pages
                for p in clipped_long_lines(html, css, page.relative_to(check_site.SITE).as_posix())]
    assert not problems, "\n".join(problems[:20])


def test_a_copy_with_overflow_hidden_injected_fails(site_pages):
    page, html, css = next((p, h, c) for p, h, c in site_pages if long_blocks(BeautifulSoup(h, "html.parser")))
    broken = css + "\ndiv.highlight pre, div.cell_output pre { overflow: hidden; }\n"
    assert clipped_long_lines(html, broken)


# ---------------------------------------------------------------- the checker can fail, on hand-made copies

LONG = "x = " + "1 + " * 40 + "1"
PAGE = f"""<article><div class="cell"><div class="cell_input"><div class="highlight"><pre>{LONG}</pre></div></div>
<div class="cell_output"><div class="output stream"><pre>short</pre></div></div></div></article>"""
GOOD = "pre { display: block; overflow: auto; } .prev-next-area a { overflow-x: hidden; }"


def test_a_scrolling_stylesheet_passes():
    assert clipped_long_lines(PAGE, GOOD) == []


@pytest.mark.parametrize("broken", [
    "pre { overflow: hidden; }",                                       # the scrolling rule replaced
    GOOD + " div.highlight pre { overflow-x: clip; }",                 # a later rule clips the block
    GOOD + " @media (max-width: 960px) { .highlight pre { overflow: hidden } }",   # ... on narrow screens
    "pre { display: block; } div.highlight { overflow: hidden; }",     # no scrolling, and a box clips it
    "pre { display: block; }",                                         # nothing makes it scroll
])
def test_a_clipping_stylesheet_fails(broken):
    assert clipped_long_lines(PAGE, broken)


def test_an_inline_style_that_clips_fails():
    assert clipped_long_lines(PAGE.replace("<pre>x", '<pre style="overflow: hidden">x'), GOOD)


def test_a_clipping_box_around_a_scrolling_block_is_fine():
    """The block scrolls inside its container, so an `overflow: hidden` box further out (an admonition, a
    collapsed cell) cuts nothing off."""
    assert clipped_long_lines(PAGE, GOOD + " div.cell { overflow: hidden; }") == []


def test_short_lines_need_no_scrolling():
    assert clipped_long_lines(PAGE.replace(LONG, "x = 1"), "pre { overflow: hidden; }") == []
