"""Which of deployer's own files go into an image: the serving code and what it imports.

Why not ``pip install deployer`` in the image: the CLI pulls click, rich, docker, jinja2 and
the cloud SDK glue, none of which runs in a container. Why not copy the whole package: it
would make the runtime layer change whenever *any* module changes (e.g. the SageMaker
target), forcing rebuilds for no reason, and ship dead code.

So the set is computed: start from every module of ``deployer.serving`` and follow
``import deployer.x`` / ``from deployer.x import y`` / relative imports (statically, with
``ast``: importing would run code), adding each parent package's ``__init__.py``. Imports
inside functions are followed too; a module that does not exist is skipped (optional).
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from pathlib import Path

from deployer.errors import BuildError
from deployer.resources import package_dir

ROOT_PACKAGE = "deployer"
ENTRY_PACKAGES = ("deployer.serving",)


@dataclass(frozen=True)
class RuntimeFiles:
    """Files (relative to the folder containing the ``deployer`` package) and their digest."""

    files: tuple[str, ...]
    digest: str

    def to_dict(self) -> dict[str, object]:
        return {"files": list(self.files), "digest": self.digest}


def _module_file(pkg_root: Path, module: str) -> Path | None:
    parts = module.split(".")[1:]
    base = pkg_root.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    py = base.with_suffix(".py")
    return py if py.is_file() else None


def _imports(path: Path, module: str) -> set[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:  # pragma: no cover - deployer's own code always parses
        raise BuildError(f"cannot parse {path}: {exc}", fix="reinstall deployer") from exc
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return {m for m in found if m == ROOT_PACKAGE or m.startswith(ROOT_PACKAGE + ".")}


def runtime_files(
    pkg_root: Path | None = None, entries: tuple[str, ...] = ENTRY_PACKAGES
) -> RuntimeFiles:
    """The import closure of ``entries`` inside the deployer package at ``pkg_root``."""
    root = pkg_root or package_dir()
    todo: list[str] = []
    for entry in entries:
        folder = root.joinpath(*entry.split(".")[1:])
        if not folder.is_dir():
            raise BuildError(
                f"deployer's serving package is missing ({folder})",
                fix="reinstall deployer with the serving runtime",
            )
        todo += [entry] + [
            f"{entry}.{p.stem}" for p in sorted(folder.glob("*.py")) if p.stem != "__init__"
        ]
    seen: dict[str, Path] = {}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        path = _module_file(root, module)
        if path is None:
            continue  # `from deployer.x import name` where name is not a module
        seen[module] = path
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(_imports(path, module))
    rels = sorted({p.relative_to(root.parent).as_posix() for p in seen.values()})
    h = hashlib.sha256()
    for rel in rels:
        h.update(rel.encode() + b"\0" + (root.parent / rel).read_bytes() + b"\0")
    return RuntimeFiles(files=tuple(rels), digest="sha256:" + h.hexdigest())
