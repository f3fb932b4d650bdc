"""conda.yaml: channels, conda packages and the pip section, split the way MLflow splits them.

MLflow's rule (``_PythonEnv.get_dependencies_from_conda_yaml``): ``python`` gives the Python
version; ``pip``, ``setuptools`` and ``wheel`` are build packages that pip can install too;
the ``pip:`` mapping lists pip requirements. Anything else is a *conda-only* package, and only
then does the model need a conda build. Most MLflow-written conda.yaml files hold just python +
pip + a pip list, which :mod:`resolve` turns into a plain pip environment.

Conda match specs and channels are validated against a conservative pattern (no quotes,
``$``, backticks, ``;``, ``&``, newlines) because they are rendered into environment files and
commands later; the bracket form ``numpy[version='>=1.8']`` is refused for the same reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from deployer.errors import EnvironmentSpecError
from deployer.model.mlmodel import load_yaml
from deployer.redact import redact_text

BUILD_PACKAGES = ("pip", "setuptools", "wheel")

_SPEC = re.compile(
    r"^(?:(?P<channel>[A-Za-z0-9_.\-/]+)::)?"
    r"(?P<name>[A-Za-z0-9_][A-Za-z0-9_.\-]*)"
    r"(?P<rest>[A-Za-z0-9_.*+!,|<>=~\- ]*)$"
)
_VERSION_OP = re.compile(
    r"^\s*(?P<op>==|=|>=|<=|~=|>|<|!=)?\s*(?P<version>[0-9][0-9A-Za-z.*+]*)?\s*(?P<build>\S.*)?$"
)
_CHANNEL = re.compile(r"^[A-Za-z0-9_.\-/:@%~+]+$")


@dataclass(frozen=True)
class CondaEnv:
    """The parts of a conda.yaml deployer cares about, validated."""

    python_version: str | None
    channels: tuple[str, ...]
    conda_packages: tuple[str, ...]  # anything besides python/pip/setuptools/wheel
    build_packages: tuple[str, ...]  # pip/setuptools/wheel, as pip requirements
    pip: tuple[str, ...]  # the raw pip list (read by requirements.read_requirement_lines)
    warnings: tuple[str, ...]


def _error(
    what: str, where: str, fix: str = "fix conda.yaml, or save the model again with mlflow"
) -> EnvironmentSpecError:
    return EnvironmentSpecError(redact_text(what), where=redact_text(where), fix=fix)


def parse_conda_file(path: Path) -> CondaEnv:
    """Parse a conda environment file (conda.yaml, or the legacy mlflow_env.yml)."""
    where = str(path)
    data = load_yaml(path, error=EnvironmentSpecError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _error(
            f"a conda environment file must be a mapping, got {type(data).__name__}", where
        )
    warnings: list[str] = []
    channels = data.get("channels") or []
    if not isinstance(channels, list):
        raise _error(f"'channels' must be a list, got {channels!r}", where)
    for ch in channels:
        if not isinstance(ch, str) or not _CHANNEL.match(ch):
            raise _error(f"channel {ch!r} is not a channel name or URL", where)
    if data.get("variables"):
        warnings.append(f"{where}: conda 'variables' are ignored by deployer")
    deps = data.get("dependencies") or []
    if not isinstance(deps, list):
        raise _error(f"'dependencies' must be a list, got {type(deps).__name__}", where)

    python: str | None = None
    conda_pkgs: list[str] = []
    build: list[str] = []
    pip: list[str] = []
    for i, dep in enumerate(deps):
        here = f"{where} (dependencies[{i}])"
        if isinstance(dep, dict):
            if set(dep) != {"pip"}:
                raise _error(
                    f"only a {{pip: [...]}} mapping may appear in dependencies, got keys "
                    f"{sorted(dep)}",
                    here,
                )
            items = dep["pip"] or []
            if not isinstance(items, list):
                raise _error(f"'pip' must be a list of requirements, got {items!r}", here)
            pip.extend(items)
            continue
        if not isinstance(dep, str):
            raise _error(
                f"a conda dependency must be a string, got {type(dep).__name__} {dep!r}", here
            )
        m = _SPEC.match(dep.strip())
        if not m:
            raise _error(
                f"conda dependency {dep!r} is not a plain match spec (name, optional channel::, "
                "version, build)",
                here,
                fix="write it as name=version, e.g. 'cudatoolkit=11.8'; bracket and quoted forms "
                "are not supported",
            )
        name = m.group("name").lower()
        rest = m.group("rest")
        if name == "python":
            if python is not None:
                continue
            python = _python_version(rest, dep, here, warnings)
        elif name in BUILD_PACKAGES and not m.group("channel"):
            build.append(_as_pip(name, rest, dep, here))
        else:
            conda_pkgs.append(dep.strip())
    return CondaEnv(
        python_version=python,
        channels=tuple(channels),
        conda_packages=tuple(conda_pkgs),
        build_packages=tuple(build),
        pip=tuple(pip),
        warnings=tuple(warnings),
    )


def _python_version(rest: str, dep: str, where: str, warnings: list[str]) -> str | None:
    m = _VERSION_OP.match(rest)
    if not m or not m.group("version"):
        warnings.append(f"{where}: '{dep}' does not pin a Python version")
        return None
    version = m.group("version").rstrip("*").rstrip(".")
    op = m.group("op") or "="
    if op in ("<", ">", "!="):
        raise _error(
            f"python dependency {dep!r} uses {op!r}; a Python version must be pinned",
            where,
            fix="write python=3.11 (or python>=3.11 / python<=3.11)",
        )
    if op not in ("=", "=="):
        warnings.append(f"{where}: '{dep}' is a range; Python {version} is used")
    return version


def _as_pip(name: str, rest: str, dep: str, where: str) -> str:
    """conda's ``pip<=24`` / ``pip=24.0`` -> pip's ``pip<=24`` / ``pip==24.0``."""
    m = _VERSION_OP.match(rest)
    if not m or m.group("build"):
        raise _error(
            f"build package spec {dep!r} cannot be expressed for pip",
            where,
            fix=f"write it as {name}=<version> or {name}>=<version>",
        )
    op, version = m.group("op"), m.group("version")
    if not version:
        return name
    return f"{name}{'==' if op in (None, '=') else op}{version}"
