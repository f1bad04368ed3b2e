"""The package's layers import one way only: core → metrics → {editing, synthfaces} → experiments → cli.

Every ``import``/``from … import`` of every module (top-level or inside a function) is read with ``ast`` and mapped
to the layer of the module it names; a module may import its own layer's siblings in its own subpackage and any
lower layer, never a higher one or a sibling subpackage of the same rank (editing ↔ synthfaces)."""
import ast
from pathlib import Path

import sdft_lite

PACKAGE = Path(sdft_lite.__file__).parent
RANKS = {"core": 0, "metrics": 1, "editing": 2, "synthfaces": 2, "experiments": 3, "cli": 4}
SUBPACKAGES = set(RANKS) - {"core"}
CORE_SUBPACKAGES = {"rivals"}   # subpackages of the core's rank: they import core modules only, and the core them


def layer_of(module: str) -> str:
    """'sdft_lite.editing.asyrp' → 'editing'; 'sdft_lite.unet' → 'core'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in SUBPACKAGES else "core"


def imported_modules(path: Path, package_dir: Path) -> set[str]:
    """Absolute names of the sdft_lite modules ``path`` (a file under ``package_dir``) imports."""
    module = "sdft_lite." + ".".join(path.relative_to(package_dir).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names |= {f"{target}.{alias.name}" for alias in node.names}   # `from . import figures`
    return {n for n in names if n == "sdft_lite" or n.startswith("sdft_lite.")}


def violations(package_dir: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package_dir.rglob("*.py")):   # sorted: the report does not depend on hash order
        own = layer_of("sdft_lite." + ".".join(path.relative_to(package_dir).with_suffix("").parts))
        for target in sorted(imported_modules(path, package_dir)):
            other = layer_of(target)
            if other != own and RANKS[other] >= RANKS[own]:
                found.append(f"{path.relative_to(package_dir)} ({own}) imports {target} ({other})")
    return found


def test_layers_import_downwards_only():
    assert violations() == []


def test_the_checker_sees_an_upward_import(tmp_path):
    """A core module importing an experiment, even inside a function, is reported."""
    fake = tmp_path / "sdft_lite"
    (fake / "experiments").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "experiments" / "__init__.py").write_text("")
    (fake / "core_module.py").write_text("def f():\n    from .experiments import zoo\n")
    assert violations(fake) == ["core_module.py (core) imports sdft_lite.experiments (experiments)",
                            "core_module.py (core) imports sdft_lite.experiments.zoo (experiments)"]


def test_every_subpackage_has_a_layer():
    """A new subpackage is registered here (in RANKS, or in CORE_SUBPACKAGES when it belongs to the core)."""
    found = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert found - SUBPACKAGES - CORE_SUBPACKAGES == set()
    assert CORE_SUBPACKAGES <= found and all(layer_of(f"sdft_lite.{name}.x") == "core" for name in CORE_SUBPACKAGES)
