"""python_env.yaml: MLflow's virtualenv description (MLflow >= 1.26).

Layout, as ``mlflow.utils.environment._PythonEnv`` writes it::

    python: 3.11.7
    build_dependencies: [pip==24.0, setuptools==65.5.0, wheel]
    dependencies: [-r requirements.txt]

``dependencies`` entries are requirement-file lines (so ``-r``/``-c``/index options work),
resolved relative to the model directory as MLflow does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from deployer.errors import EnvironmentSpecError
from deployer.model.mlmodel import load_yaml

_PYTHON = re.compile(r"^\d+(\.\d+){0,2}([a-z]+\d*)?\+?$")
_KNOWN = {"python", "build_dependencies", "dependencies"}


@dataclass(frozen=True)
class PythonEnv:
    python_version: str | None
    build_dependencies: tuple[object, ...]
    dependencies: tuple[object, ...]
    warnings: tuple[str, ...]


def parse_python_env_file(path: Path) -> PythonEnv:
    where = str(path)
    data = load_yaml(path, error=EnvironmentSpecError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EnvironmentSpecError(
            "python_env.yaml must be a mapping with python/build_dependencies/dependencies, got "
            f"{type(data).__name__}",
            where=where,
            fix="save the model again with mlflow, or fix the file by hand",
        )
    warnings = [f"{where}: unknown key '{k}' ignored" for k in data if k not in _KNOWN]
    python = data.get("python")
    if isinstance(python, float):
        raise EnvironmentSpecError(
            f"'python' is the number {python!r}; YAML reads 3.10 as 3.1",
            where=where,
            fix="quote the version: python: '3.10'",
        )
    if python is not None:
        python = str(python)
        if not _PYTHON.match(python):
            raise EnvironmentSpecError(
                f"'python' {python!r} is not a Python version like 3.11.7",
                where=where,
                fix="write python: '3.11.7'",
            )
    lists = {}
    for key in ("build_dependencies", "dependencies"):
        value = data.get(key)
        if value is None:
            value = []
        if not isinstance(value, list):
            raise EnvironmentSpecError(
                f"'{key}' must be a list of requirement strings, got {type(value).__name__}",
                where=where,
                fix=f'write {key}: ["pkg==1.0", ...]',
            )
        lists[key] = tuple(value)
    return PythonEnv(
        python_version=python,
        build_dependencies=lists["build_dependencies"],
        dependencies=lists["dependencies"],
        warnings=tuple(warnings),
    )
