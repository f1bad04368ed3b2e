"""environment.yml (conda, Binder) installs what `make venv` installs: it parses, names the package with every
extra, and pins every direct dependency of pyproject.toml to exactly the version constraints.txt pins."""
import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    return {normalised(name): version for name, version in (line.split("==") for line in lines if "==" in line)}


def pip_section(text: str) -> list[str]:
    environment = yaml.safe_load(text)
    pip = [entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict)]
    assert len(pip) == 1 and "pip" in environment["dependencies"]
    return pip[0]


def direct_dependencies() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [d for name, deps in project["optional-dependencies"].items() if name != "all" for d in deps]
    return {normalised(re.split(r"[<>=!~\[; ]", d)[0]) for d in project["dependencies"] + extras}


def disagreements(text: str) -> list[str]:
    """What is wrong with an environment.yml's pins: versions that differ from constraints.txt, direct
    dependencies it does not pin, packages it pins that are not direct dependencies."""
    pins = constraints()
    pinned = {normalised(e.split("==")[0]): e.split("==")[1] for e in pip_section(text) if not e.startswith("-")}
    wrong = [f"{name}=={version} (constraints.txt: {pins.get(name)})" for name, version in pinned.items()
             if pins.get(name) != version]
    return wrong + [f"{name} not pinned" for name in sorted(direct_dependencies() - set(pinned))] + \
        [f"{name} is not a direct dependency" for name in sorted(set(pinned) - direct_dependencies())]


def test_environment_pins_agree_with_constraints_and_cover_every_direct_dependency():
    text = (REPO / "environment.yml").read_text()
    assert disagreements(text) == []
    assert "torch==2.14.1" in pip_section(text) and "torchvision==0.29.1" in pip_section(text)


def test_environment_installs_the_package_with_every_extra_under_the_constraints():
    text = (REPO / "environment.yml").read_text()
    assert "--constraint constraints.txt" in pip_section(text) and "--editable .[all]" in pip_section(text)
    python = [d for d in yaml.safe_load(text)["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    assert python == ["python=3.11"]


def test_a_stale_or_missing_pin_is_caught():
    text = (REPO / "environment.yml").read_text()
    stale = text.replace("numpy==2.4.6", "numpy==2.0.0").replace("      - scipy==1.17.1\n", "")
    assert disagreements(stale) == ["numpy==2.0.0 (constraints.txt: 2.4.6)", "scipy not pinned"]
