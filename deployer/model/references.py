"""Which Python modules a model's own files reference, read without running or unpickling them.

A model's requirements say what the *saving* process had imported (MLflow's inference records
every package imported while the model loaded, including optional imports of its libraries:
skops imports torch, pytest and rich when they are installed). What the model itself needs is
narrower: the flavor's loader (:mod:`deployer.environment.loader_deps`) plus what its own files
refer to. This module reads the second part, statically and safely:

* Python sources (models-from-code scripts, ``code_paths`` modules): ``import`` statements,
  parsed with :mod:`ast`;
* pickles (``python_model.pkl``, ``model.pkl``, cloudpickle files): every string the pickle
  stream carries that looks like a module path, read opcode by opcode with
  :mod:`pickletools` (never unpickled). That covers classes (``sklearn.linear_model._logistic``)
  and cloudpickle's by-value functions, which name the modules they import as strings;
* skops files (a zip): the ``__module__`` fields of their ``schema.json``.

The answer is a set of *top-level* module names (``sklearn``, ``numpy``). Strings that merely
look like modules make it larger, never smaller: callers use it to show that a requirement is
*not* referenced, so over-reporting only hides a warning, and to choose per-worker loading,
which is always safe. The model's own modules (files of its ``code`` folders) are left out.
"""

from __future__ import annotations

import ast
import json
import pickletools
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

#: Files larger than this are not scanned (a multi-GB pickle of weights names few modules).
MAX_SCAN_BYTES = 256 << 20
PICKLE_SUFFIXES = (".pkl", ".pickle", ".cloudpickle", ".pt", ".pth")
_MODULE_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SKIPPED_DIRS = frozenset({"__pycache__", ".git"})


def referenced_modules(model_dir: Path) -> frozenset[str]:
    """Top-level modules the model's sources, pickles and skops files reference."""
    root = Path(model_dir)
    found: set[str] = set()
    own: set[str] = set()
    for path in _files(root):
        suffix = path.suffix.lower()
        if suffix == ".py":
            own.add(path.stem)
            if path.parent != root:
                own.add(path.relative_to(root).parts[0])
            found |= source_imports(path)
        elif suffix in PICKLE_SUFFIXES:
            found |= pickle_modules(path)
        elif suffix == ".skops":
            found |= skops_modules(path)
    # a model's own package folders (code/mypkg/__init__.py) are its modules, not distributions
    for path in root.rglob("__init__.py"):
        own.add(path.parent.name)
    return frozenset(found - own)


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if any(part in _SKIPPED_DIRS for part in path.relative_to(root).parts):
            continue
        if path.is_file() and not path.is_symlink():
            yield path


def source_imports(path: Path) -> set[str]:
    """Top-level modules a Python file imports (absolute imports; relative ones are its own)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return set()
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                out.add(arg.value.split(".")[0])
    return out


def _is_dynamic_import(node: ast.Call) -> bool:
    """``importlib.import_module("x")`` / ``__import__("x")`` with a literal name."""
    func = node.func
    name = (
        func.attr
        if isinstance(func, ast.Attribute)
        else func.id
        if isinstance(func, ast.Name)
        else ""
    )
    return name in ("import_module", "__import__") and bool(node.args)


def pickle_modules(path: Path) -> set[str]:
    """Top-level parts of the module-like strings in a pickle stream (not unpickled)."""
    try:
        if path.stat().st_size > MAX_SCAN_BYTES:
            return set()
        data = path.read_bytes()
    except OSError:
        return set()
    out: set[str] = set()
    try:
        for opcode, arg, _pos in pickletools.genops(data):
            if opcode.name == "GLOBAL" and isinstance(arg, str):
                out.add(arg.split(" ", 1)[0].split(".")[0])
            elif isinstance(arg, str) and len(arg) < 200 and _MODULE_PATH.match(arg):
                out.add(arg.split(".")[0])
    except Exception:  # noqa: BLE001 - not a pickle, or a truncated one: what was read counts
        pass
    return out


def skops_modules(path: Path) -> set[str]:
    """Top-level modules named by ``__module__`` fields of a skops file's schema."""
    try:
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return set()
    out: set[str] = set()
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            module = item.get("__module__")
            if isinstance(module, str) and _MODULE_PATH.match(module):
                out.add(module.split(".")[0])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return out
