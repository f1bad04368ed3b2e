"""Check the built book as a reader sees it: every toc page rendered in headless Chromium, offline.

For each page of `_toc.yml`, the site `_build/html` is served on 127.0.0.1 (a free port) and Debian's
Chromium loads the page with every other host unreachable, lets MathJax typeset (`--virtual-time-budget`),
dumps the DOM and saves a screenshot of the whole page to `_build/screenshots/`. The page passes when:

- it loads (HTTP 200, a non-empty DOM with an <h1>);
- every <img> it shows is served by the site itself and decodes as an image (no external image);
- a notebook page shows at least as many output images as the notebook has stored image outputs, and draws
  every stored ipywidgets view;
- math is typeset: where the source has math the page has math elements, MathJax produced at least one
  `mjx-container` per element, reported no error, and no raw `$$`, `\\(`, `\\[` is left in the visible text;
- no display equation is wider than the text column it sits in (it would be cut off at the right edge);
- no <script src> or stylesheet comes from another host (in particular no jsDelivr, cdnjs or unpkg).

    python tests/book/check_site.py [--site _build/html] [--pages book/intro notebooks/00_setup_check]

Needs `/usr/bin/chromium` (Debian: `apt-get install -y chromium`).
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import functools
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import urljoin, urlparse

import yaml
from bs4 import BeautifulSoup
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
SITE = REPO_ROOT / "_build" / "html"
SCREENSHOTS = REPO_ROOT / "_build" / "screenshots"
TOC = REPO_ROOT / "_toc.yml"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: only the local server resolves
    "--window-size=1280,1600",                                    # WINDOW_WIDTH × WINDOW_HEIGHT
    "--virtual-time-budget=10000",                                # let deferred scripts and MathJax finish
)
CHROMIUM_TIMEOUT_S = 90
CDN_HOSTS = ("cdn.jsdelivr.net", "cdnjs.cloudflare.com", "unpkg.com")
LOCAL_HOSTS = ("127.0.0.1", "localhost")
IMAGE_MIME_TYPES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
REMOVED_OUTPUT_TAGS = {"remove-output", "remove-cell"}
RAW_MATH_MARKERS = ("$$", "\\(", "\\[", "\\begin{")
NOT_VISIBLE_TAGS = ("script", "style", "pre", "code", "mjx-container", "noscript", "template", "textarea", "svg")


@dataclass(frozen=True)
class Page:
    """One toc page: its docname (`book/intro`), source file and built HTML file."""

    docname: str
    source: Path
    html: Path

    @property
    def screenshot_name(self) -> str:
        return self.docname.replace("/", "__") + ".png"


@dataclass(frozen=True)
class Rendered:
    """What Chromium returned for one page: its exit code, dumped DOM and the tail of its stderr."""

    returncode: int
    dom: str
    stderr_tail: str
    wide_math: tuple[str, ...] = ()   # display equations wider than their column, as the screenshot shows them


# ---------------------------------------------------------------- pages and their sources

def toc_docnames(toc_path: Path = TOC) -> list[str]:
    """The root and every chapter of a jb-book `_toc.yml`, in reading order."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    return [toc["root"]] + [ch["file"] for part in toc.get("parts", []) for ch in part["chapters"]]


def toc_pages(site: Path = SITE, toc_path: Path = TOC) -> list[Page]:
    """Pages of the toc, each with its source file (.md or .ipynb) and its built HTML path."""
    pages = []
    for docname in toc_docnames(toc_path):
        stem = docname.rsplit(".", 1)[0] if docname.endswith((".md", ".ipynb")) else docname
        sources = [REPO_ROOT / f"{stem}{suffix}" for suffix in (".ipynb", ".md")]
        source = next((s for s in sources if s.is_file()), sources[-1])
        pages.append(Page(stem, source, site / f"{stem}.html"))
    return pages


def _strip_code(markdown: str) -> str:
    """Markdown without fenced code blocks and inline code (which may contain `$`)."""
    markdown = re.sub(r"^(```|~~~).*?^\1", "", markdown, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", markdown)


MATH_IN_MARKDOWN = re.compile(r"\$\$|\$[^\s$][^$\n]*?\$|\{math\}|\\begin\{(?:align|equation|gather)")


def markdown_texts(source: Path) -> list[str]:
    """The Markdown text of a page: the file itself, or a notebook's markdown cells."""
    if source.suffix == ".md":
        return [source.read_text(encoding="utf-8")]
    notebook = json.loads(source.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown"
            and not REMOVED_OUTPUT_TAGS & set(c.get("metadata", {}).get("tags", []))]


def source_has_math(source: Path) -> bool:
    """True if the page's Markdown (outside code) or a notebook's text/latex output contains math."""
    if any(MATH_IN_MARKDOWN.search(_strip_code(text)) for text in markdown_texts(source)):
        return True
    if source.suffix == ".ipynb":
        notebook = json.loads(source.read_text(encoding="utf-8"))
        return any("text/latex" in out.get("data", {}) for cell in notebook["cells"]
                   for out in cell.get("outputs", []))
    return False


def shown_outputs(source: Path) -> list[dict]:
    """The stored outputs a notebook page shows: cells tagged remove-* and glue() outputs left out."""
    if source.suffix != ".ipynb":
        return []
    notebook = json.loads(source.read_text(encoding="utf-8"))
    outputs = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code" or REMOVED_OUTPUT_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        outputs += [out for out in cell.get("outputs", []) if "scrapbook" not in out.get("metadata", {})]
    return outputs


def notebook_image_outputs(source: Path) -> int:
    """Number of stored image outputs a notebook page should show."""
    return sum(any(mime in out.get("data", {}) for mime in IMAGE_MIME_TYPES) for out in shown_outputs(source))


def notebook_widget_views(source: Path) -> int:
    """Number of ipywidgets views a notebook page should show (they render only if the state was saved)."""
    return sum(WIDGET_VIEW_MIME in out.get("data", {}) for out in shown_outputs(source))


# ---------------------------------------------------------------- serving and rendering

class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output readable
        pass


@contextmanager
def serve(site: Path = SITE) -> Iterator[str]:
    """Serve `site` over HTTP on 127.0.0.1 (a free port) while the block runs; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def render(url: str, screenshot: Path, chromium: str = CHROMIUM) -> Rendered:
    """Load `url` in headless Chromium (fresh profile), dump its DOM after scripts ran; then save a screenshot
    of the whole page (`full_page_screenshot`)."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
    shot = full_page_screenshot(url, screenshot, chromium)
    return Rendered(done.returncode, done.stdout, done.stderr[-2000:], shot.wide_math)


class DevToolsPipe:
    """Chromium's DevTools protocol over --remote-debugging-pipe: JSON messages ending in a NUL byte; Chromium reads
    its fd 3 and writes its fd 4. Replies are matched by id; events are kept until asked for."""

    def __init__(self, write_fd: int, read_fd: int, timeout_s: float):
        self.write_fd, self.read_fd, self.timeout_s = write_fd, read_fd, timeout_s
        self.buffer, self.last_id, self.events = b"", 0, []

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            reply = self.receive()
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str) -> dict:
        while True:
            for i, message in enumerate(self.events):
                if message.get("method") == event:
                    return self.events.pop(i)
            self.events.append(self.receive())

    def receive(self) -> dict:
        deadline = time.monotonic() + self.timeout_s
        while b"\0" not in self.buffer:
            if not select.select([self.read_fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError(f"Chromium sent nothing for {self.timeout_s:.0f} s")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)


PAGE_SETTLED = """new Promise(done => {           // MathJax has typeset, every image has loaded (or 5 s passed)
  const startup = window.MathJax && MathJax.startup;
  const loaded = image => image.complete ? 0 : new Promise(r => { image.onload = image.onerror = r; });
  (startup && startup.promise ? startup.promise : Promise.resolve())
    .then(() => Promise.race([Promise.all([...document.images].map(loaded)), new Promise(r => setTimeout(r, 5000))]))
    .then(() => done(true));
})"""
# a typeset display equation (the <mjx-math> inside a display <mjx-container>, which spans its text column) that is
# wider than the container: its right end is cut off or hidden behind a scroll the screenshot does not show
WIDE_MATH = """[...document.querySelectorAll('mjx-container[display="true"]')]
  .filter(box => box.firstElementChild &&
          box.firstElementChild.getBoundingClientRect().width > box.getBoundingClientRect().width + 1)
  .map(box => (box.textContent || '').replace(/\\s+/g, ' ').slice(0, 60))"""
WINDOW_WIDTH, WINDOW_HEIGHT, MAX_SCREENSHOT_HEIGHT = 1280, 1600, 60000


@dataclass(frozen=True)
class Shot:
    """A full-page screenshot's size in CSS pixels and what was measured on the page it shows."""

    width: int
    height: int
    wide_math: tuple[str, ...]


def above_nine(fd: int) -> int:
    """The same open file on the lowest free descriptor above 9 (the original closed)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


def full_page_screenshot(url: str, screenshot: Path, chromium: str = CHROMIUM) -> Shot:
    """Save a PNG of the whole page at the check's window width, not only the window Chromium's --screenshot
    captures: through the DevTools protocol, the window is made as tall as the page (so lazy images load and
    MathJax typesets everything), then captured. Returns the size captured, in CSS pixels, and the display
    equations wider than their column at that width (``WIDE_MATH``)."""
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    flags = [flag for flag in CHROMIUM_FLAGS if not flag.startswith("--virtual-time-budget")]
    to_chromium, from_chromium = os.pipe(), os.pipe()
    # --remote-debugging-pipe reads fd 3 and writes fd 4: bash (dash takes one-digit fds only) puts the pipe ends
    # there and execs Chromium (thread-safe, unlike a preexec_fn: render_all runs several pages at once). The
    # child's ends are first moved above 9: in a process with few files open the pipes get fds 3 to 6, and
    # "3<&3 ... 3<&-" would close the very end Chromium needs
    to_chromium = (above_nine(to_chromium[0]), to_chromium[1])
    from_chromium = (from_chromium[0], above_nine(from_chromium[1]))
    as_fds_3_and_4 = (f'exec "$0" "$@" 3<&{to_chromium[0]} 4>&{from_chromium[1]} '
                      f'{to_chromium[0]}<&- {from_chromium[1]}>&-')
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        process = subprocess.Popen(["/bin/bash", "-c", as_fds_3_and_4, chromium, *flags, f"--user-data-dir={profile}",
                                    "--remote-debugging-pipe", "about:blank"], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   pass_fds=(to_chromium[0], from_chromium[1]))
        os.close(to_chromium[0])
        os.close(from_chromium[1])
        pipe = DevToolsPipe(to_chromium[1], from_chromium[0], CHROMIUM_TIMEOUT_S)
        try:
            target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
            session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            pipe.call("Page.enable", session)

            def settle_at(height: int) -> int:
                pipe.call("Emulation.setDeviceMetricsOverride", session, width=WINDOW_WIDTH, height=height,
                          deviceScaleFactor=1, mobile=False)
                pipe.call("Runtime.evaluate", session, expression=PAGE_SETTLED, awaitPromise=True)
                return min(int(pipe.call("Page.getLayoutMetrics", session)["cssContentSize"]["height"]),
                           MAX_SCREENSHOT_HEIGHT)

            pipe.call("Emulation.setDeviceMetricsOverride", session, width=WINDOW_WIDTH, height=WINDOW_HEIGHT,
                      deviceScaleFactor=1, mobile=False)
            pipe.call("Page.navigate", session, url=url)
            pipe.wait_for("Page.loadEventFired")
            height = settle_at(settle_at(WINDOW_HEIGHT))
            shot = pipe.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True,
                             clip={"x": 0, "y": 0, "width": WINDOW_WIDTH, "height": height, "scale": 1})
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            wide = pipe.call("Runtime.evaluate", session, expression=WIDE_MATH, returnByValue=True)
            wide_math = tuple(wide.get("result", {}).get("value") or ())
            pipe.call("Browser.close")
        finally:
            os.close(to_chromium[1])
            os.close(from_chromium[0])
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return Shot(WINDOW_WIDTH, height, wide_math)


def render_all(pages: list[Page], base_url: str, screenshots: Path = SCREENSHOTS,
               chromium: str = CHROMIUM, workers: int = 3) -> dict[str, Rendered]:
    """Render every page (a few Chromiums at a time: each mostly waits); docname -> Rendered."""
    def one(page: Page) -> tuple[str, Rendered]:
        return page.docname, render(urljoin(base_url, f"{page.docname}.html"), screenshots / page.screenshot_name,
                                    chromium)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(one, pages))


# ---------------------------------------------------------------- checks

def fetch(url: str) -> tuple[int, bytes]:
    """HTTP status and body of a local URL."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def is_external(url: str) -> bool:
    host = urlparse(url).hostname
    return host is not None and host not in LOCAL_HOSTS


def image_problem(body: bytes, url: str) -> str | None:
    """None if `body` is a readable raster image or an SVG document, else what is wrong."""
    if url.split("?")[0].endswith(".svg") or body.lstrip()[:5] in (b"<svg ", b"<?xml"):
        return None if b"<svg" in body[:2000] else f"{url} is not an SVG document"
    try:
        with Image.open(io.BytesIO(body)) as image:
            image.verify()
            return None if image.width > 0 and image.height > 0 else f"{url} has zero size"
    except Exception as error:  # PIL raises many kinds for a broken file
        return f"{url} does not decode as an image ({error})"


def check_loads(page: Page, rendered: Rendered, soup: BeautifulSoup, base_url: str) -> list[str]:
    status, _ = fetch(urljoin(base_url, f"{page.docname}.html"))
    problems = [] if status == 200 else [f"HTTP {status} for the page"]
    if rendered.returncode != 0:
        problems.append(f"chromium exited {rendered.returncode}: {rendered.stderr_tail}")
    if soup.find("h1") is None:
        problems.append("no <h1> in the rendered page (did it load?)")
    return problems


def check_images(page: Page, soup: BeautifulSoup, base_url: str) -> list[str]:
    problems = []
    page_url = urljoin(base_url, f"{page.docname}.html")
    for img in soup.find_all("img"):
        src = img.get("src", "")
        if src.startswith("data:"):
            continue
        url = urljoin(page_url, src)
        if is_external(url):
            problems.append(f"external image {url} (not available offline)")
            continue
        status, body = fetch(url)
        problem = f"image {src} answers HTTP {status}" if status != 200 else image_problem(body, src)
        if problem:
            problems.append(problem)
    expected = notebook_image_outputs(page.source)
    shown = len(soup.select(".cell_output img"))
    if shown < expected:
        problems.append(f"notebook has {expected} image outputs but the page shows {shown} output images")
    return problems


def check_widgets(page: Page, soup: BeautifulSoup) -> list[str]:
    """Widgets are drawn by the vendored html-manager into a .widget-subarea beside each view."""
    expected = notebook_widget_views(page.source)
    drawn = sum(1 for area in soup.select(".widget-subarea") if area.select_one(".jupyter-widgets"))
    if drawn < expected:
        return [f"notebook has {expected} widget views but the page draws {drawn} "
                "(widget state not saved in the notebook, or require.js/html-manager not loaded)"]
    return []


def visible_text(dom: str) -> str:
    """The page's text outside code, scripts and typeset math."""
    soup = BeautifulSoup(dom, "html.parser")
    for tag in soup.find_all(NOT_VISIBLE_TAGS):
        tag.decompose()
    return soup.get_text(" ")


def check_math(page: Page, soup: BeautifulSoup, static: BeautifulSoup, dom: str,
               wide_math: tuple[str, ...] = ()) -> list[str]:
    problems = []
    math_elements = len(static.select("span.math, div.math"))
    typeset = len(soup.find_all("mjx-container"))
    if source_has_math(page.source) and math_elements == 0:
        problems.append("the source has math but the built page has no math element (dollarmath off?)")
    if typeset < math_elements:
        problems.append(f"{math_elements} math elements but only {typeset} typeset by MathJax")
    for error in soup.find_all("mjx-merror"):
        problems.append(f"MathJax error: {error.get('data-mjx-error', error.get_text())}")
    problems += [f"display equation wider than the text column, cut off at {WINDOW_WIDTH} px: {text}..."
                 for text in wide_math]
    text = visible_text(dom)
    for marker in RAW_MATH_MARKERS:
        if marker in text:
            where = text.index(marker)
            problems.append(f"raw {marker!r} in the visible text: ...{text[max(0, where - 40):where + 40]}...")
    return problems


def check_no_cdn(soup: BeautifulSoup, where: str) -> list[str]:
    problems = []
    scripts = [s.get("src") for s in soup.find_all("script") if s.get("src")]
    sheets = [link.get("href") for link in soup.find_all("link")
              if "stylesheet" in (link.get("rel") or []) and link.get("href")]
    for url in scripts + sheets:
        if is_external(url) or any(host in url for host in CDN_HOSTS):
            problems.append(f"{where} loads {url} from another host")
    return problems


def check_page(page: Page, rendered: Rendered, base_url: str) -> list[str]:
    """Every problem found on one rendered page (empty when the page is fine)."""
    if not page.html.is_file():
        return [f"{page.html} was not built"]
    soup = BeautifulSoup(rendered.dom, "html.parser")
    static = BeautifulSoup(page.html.read_text(encoding="utf-8"), "html.parser")
    return (check_loads(page, rendered, soup, base_url)
            + check_images(page, soup, base_url)
            + check_widgets(page, soup)
            + check_math(page, soup, static, rendered.dom, rendered.wide_math)
            + check_no_cdn(static, "the built HTML")
            + check_no_cdn(soup, "the rendered page"))


def find_chromium() -> str | None:
    """The Chromium binary to use: /usr/bin/chromium, else `chromium` on PATH, else None."""
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=SITE)
    parser.add_argument("--screenshots", type=Path, default=SCREENSHOTS)
    parser.add_argument("--pages", nargs="*", help="docnames to check (default: every page of _toc.yml)")
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("chromium not found: apt-get update && apt-get install -y chromium", file=sys.stderr)
        return 2
    pages = [p for p in toc_pages(args.site) if not args.pages or p.docname in args.pages]
    with serve(args.site) as base_url:
        rendered = render_all(pages, base_url, args.screenshots, chromium, args.workers)
        failures = 0
        for page in pages:
            problems = check_page(page, rendered[page.docname], base_url)
            failures += bool(problems)
            print(f"{'FAIL' if problems else 'ok  '} {page.docname}")
            for problem in problems:
                print(f"     - {problem}")
    print(f"site check: {len(pages) - failures} pages ok, {failures} failed; screenshots in {args.screenshots}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
