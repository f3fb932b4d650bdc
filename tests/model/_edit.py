"""Test helpers: copy a fixture model and alter its files (the fixtures themselves are shared)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def read_mlmodel(model: Path) -> dict[str, Any]:
    return yaml.safe_load((model / "MLmodel").read_text())


def write_mlmodel(model: Path, data: dict[str, Any]) -> None:
    (model / "MLmodel").write_text(yaml.safe_dump(data, sort_keys=False))


def edit_mlmodel(model: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    data = read_mlmodel(model)
    change(data)
    write_mlmodel(model, data)
    return model


def altered(src: Path, dst: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of ``src`` at ``dst`` whose MLmodel was changed by ``change(dict)``."""
    return edit_mlmodel(copy_model(src, dst), change)
