"""Copy the book's third-party JavaScript from node_modules/ into the built site, so it needs no CDN.

Sphinx and MyST-NB load MathJax, require.js and the ipywidgets HTML manager from CDNs by default; offline,
math then shows as raw TeX and widgets stay blank. `_config.yml` points `mathjax_path` and `nb_ipywidgets_js`
at `_vendor/...` instead, and this script, run after `jupyter-book build`, puts exactly those files there:

    npm ci --ignore-scripts --no-audit --no-fund      # once: installs package-lock.json into node_modules/
    .venv/bin/jupyter-book build . -W
    .venv/bin/python book/tools/vendor_js.py          # -> _build/html/_vendor/

It then checks that every `_vendor/` file a built page asks for is present. node_modules/ (about 150 MB, most
of it build-time dependencies of the widget manager) stays out of git and out of `_static`; the site gets the
few MB it loads.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO_ROOT / "node_modules"
SITE = REPO_ROOT / "_build" / "html"

# destination under _vendor/  <-  source under node_modules/ (a file, or a folder copied whole)
MATHJAX_FILES = {
    "mathjax/tex-mml-chtml.js": "mathjax/es5/tex-mml-chtml.js",      # the component Sphinx loads by default
    "mathjax/input/tex/extensions": "mathjax/es5/input/tex/extensions",  # loaded on demand (\require, autoload)
    "mathjax/output/chtml/fonts/woff-v2": "mathjax/es5/output/chtml/fonts/woff-v2",  # CHTML fonts
    "mathjax/ui": "mathjax/es5/ui",                                   # the right-click menu's lazy parts
    "mathjax/a11y": "mathjax/es5/a11y",                               # accessibility options of the menu
    "mathjax/LICENSE": "mathjax/LICENSE",
}
WIDGET_FILES = {
    "requirejs/require.js": "requirejs/require.js",
    # embed-amd.js defines @jupyter-widgets/base, controls, output and html-manager as AMD modules for
    # require.js: the build that MyST-NB's default (html-manager@1.0.6/dist/embed-amd.js) refers to.
    "html-manager/embed-amd.js": "@jupyter-widgets/html-manager/dist/embed-amd.js",
}
WIDGET_FONT_SUFFIXES = (".woff2", ".woff")  # Font Awesome for widget icons; every current browser reads woff2
PACKAGES = ("mathjax", "requirejs", "@jupyter-widgets/html-manager")
VENDOR_SRC = re.compile(r"""(?:src|href)="([^"]*_vendor/[^"?#]*)""")


def vendor_plan(node_modules: Path = NODE_MODULES) -> dict[str, Path]:
    """Destination (relative to _vendor/) -> source path, for every file or folder to copy."""
    plan = {dest: node_modules / src for dest, src in {**MATHJAX_FILES, **WIDGET_FILES}.items()}
    font_dir = node_modules / "@jupyter-widgets/html-manager/dist"
    for font in sorted(font_dir.glob("*")):
        if font.suffix in WIDGET_FONT_SUFFIXES:
            plan[f"html-manager/{font.name}"] = font
    return plan


def package_versions(node_modules: Path = NODE_MODULES) -> dict[str, tuple[str, str]]:
    """name -> (version, licence) of each vendored package, read from its package.json."""
    versions = {}
    for name in PACKAGES:
        meta = json.loads((node_modules / name / "package.json").read_text(encoding="utf-8"))
        versions[name] = (meta["version"], meta.get("license", "see package"))
    return versions


def copy_vendor(site: Path = SITE, node_modules: Path = NODE_MODULES) -> Path:
    """Copy every planned file into site/_vendor (replacing an older copy); return the _vendor folder."""
    plan = vendor_plan(node_modules)
    missing = [str(src) for src in plan.values() if not src.exists()]
    if missing:
        raise FileNotFoundError("not in node_modules (run `npm ci --ignore-scripts` first): " + ", ".join(missing))
    vendor = site / "_vendor"
    shutil.rmtree(vendor, ignore_errors=True)
    for dest, src in plan.items():
        target = vendor / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target)
        else:
            shutil.copy2(src, target)
    lines = [f"{name} {version} ({licence}), from npm" for name, (version, licence) in package_versions().items()]
    (vendor / "README.txt").write_text(
        "Third-party JavaScript served by this site (copied by book/tools/vendor_js.py):\n"
        + "\n".join(lines) + "\n", encoding="utf-8")
    return vendor


def missing_vendor_refs(site: Path = SITE) -> list[str]:
    """`page: reference` for every _vendor/ file that a built page refers to but that does not exist."""
    missing = []
    for page in sorted(site.rglob("*.html")):
        if "_vendor" in page.relative_to(site).parts:
            continue
        for ref in VENDOR_SRC.findall(page.read_text(encoding="utf-8")):
            if not (page.parent / ref).resolve().is_file():
                missing.append(f"{page.relative_to(site)}: {ref}")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=SITE, help="the built HTML folder (default _build/html)")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        print(f"no built site at {args.site}: run jupyter-book build . first", file=sys.stderr)
        return 1
    vendor = copy_vendor(args.site)
    size = sum(f.stat().st_size for f in vendor.rglob("*") if f.is_file())
    print(f"vendored {len(vendor_plan())} entries into {vendor} ({size / 1e6:.1f} MB)")
    missing = missing_vendor_refs(args.site)
    for ref in missing:
        print(f"MISSING vendored file {ref}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
