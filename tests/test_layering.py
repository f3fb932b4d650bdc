"""Layering as a test: which rooms of deployer may import which (in the spirit of click's
tests/test_imports.py).

Read from the source with ``ast``, module-level imports AND imports inside functions (which
``import deployer.x`` at runtime would never reveal). The rooms, lowest first:

* base modules (``errors``, ``redact``, ``atomic``, ``resources``, ``config``, ``console``, the
  package ``__init__``): import only ``errors``;
* ``serving`` (the in-image runtime) and ``model`` (the model directory) and ``rendering``:
  only base modules;
* ``environment`` (read from the model) -> ``model``; ``intake`` (model + environment) -> both;
* ``building`` -> model, environment, intake, rendering, serving (what images contain);
* ``registries`` -> building (its engine client) and below;
* ``targets`` -> everything above except the front ends; ``spark`` -> building and below;
* the front ends, ``cli`` and ``integrations`` (the MLflow plugin): anything but each other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import deployer

BASE = frozenset({"errors", "redact", "atomic", "resources", "config", "console", "__init__"})
_BELOW_BUILDING = frozenset({"model", "environment", "intake", "rendering", "serving"})
ALLOWED: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    **{name: frozenset({"errors"}) for name in BASE - {"errors"}},
    "serving": BASE,
    "model": BASE,
    "rendering": BASE,
    "environment": BASE | {"model"},
    "intake": BASE | {"model", "environment"},
    "building": BASE | _BELOW_BUILDING,
    "registries": BASE | _BELOW_BUILDING | {"building"},
    "spark": BASE | _BELOW_BUILDING | {"building"},
    "targets": BASE | _BELOW_BUILDING | {"building", "registries"},
    "integrations": BASE | _BELOW_BUILDING | {"building", "registries", "targets", "spark"},
    "cli": BASE | _BELOW_BUILDING | {"building", "registries", "targets", "spark"},
}


def room(module: str, root: Path) -> str:
    """``deployer.building.plan`` -> ``building``; ``deployer.errors`` -> ``errors``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """Every ``deployer.*`` module ``path`` imports (line, module), wherever the import is."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                names = [".".join(base) + (f".{node.module}" if node.module else "")]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            if name == "deployer" or name.startswith("deployer."):
                yield node.lineno, name


def violations(package_dir: Path) -> list[str]:
    """Imports that break :data:`ALLOWED`, as ``file:line: room -> room (module)``."""
    out = []
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        src = room(module, package_dir)
        allowed = ALLOWED.get(src)
        if allowed is None:
            out.append(f"{rel}: room {src!r} is not in the layering table (add it to tests/test_layering.py)")
            continue
        for line, name in imports(path, module):
            dst = room(name, package_dir)
            if dst != src and dst not in allowed:
                out.append(f"{rel}.py:{line}: {src} -> {dst} ({name})")
    return out


def test_no_room_imports_a_higher_one() -> None:
    found = violations(Path(deployer.__file__).parent)
    assert not found, "imports against the layering:\n" + "\n".join(found)


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The checker itself: an upward import hidden in a function body, and a relative one."""
    pkg = tmp_path / "deployer"
    (pkg / "building").mkdir(parents=True)
    (pkg / "targets").mkdir()
    for folder in (pkg, pkg / "building", pkg / "targets"):
        (folder / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "building" / "verify.py").write_text(
        "from deployer.errors import BuildError\n\n"
        "def plan():\n    from deployer.targets.local import ROUTES\n    return ROUTES\n")
    (pkg / "building" / "sneaky.py").write_text("from ..targets import local\n")
    (pkg / "targets" / "local.py").write_text("from deployer.building import verify\n")
    assert violations(pkg) == [
        "deployer/building/sneaky.py:1: building -> targets (deployer.targets)",
        "deployer/building/verify.py:4: building -> targets (deployer.targets.local)",
    ]


@pytest.mark.parametrize("src, dst", [("building", "targets"), ("integrations", "cli"), ("model", "environment"),
                                      ("serving", "building"), ("registries", "targets")])
def test_the_arrows_the_rules_forbid(src: str, dst: str) -> None:
    assert dst not in ALLOWED[src]
