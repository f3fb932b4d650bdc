"""User configuration: ``deployer.toml`` or ``[tool.deployer]`` in ``pyproject.toml``.

Layout of the file (every key is an option name of some command, dashes or underscores)::

    output = "json"              # defaults for any command that has the option

    [build]                      # defaults for one command
    base_image = "python:3.11-slim"

    [targets.sagemaker]          # defaults for any command run with --target sagemaker
    region = "eu-west-1"
    instance_type = "ml.m5.large"

Precedence, highest first: command-line flag > ``DEPLOYER_<OPTION>`` environment variable >
config file (target section > command section > top level) > built-in default.
The file is looked up in the current directory, or named by ``--config`` / ``DEPLOYER_CONFIG``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from deployer.errors import ConfigError

CONFIG_FILENAME = "deployer.toml"
ENV_PREFIX = "DEPLOYER_"


def _norm(key: str) -> str:
    return key.replace("-", "_").lower()


@dataclass(frozen=True)
class Config:
    """Parsed configuration; ``source`` is the file it came from (None when there is none)."""

    source: Path | None = None
    top: dict[str, Any] = field(default_factory=dict)
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def lookup(self, option: str, *, command: str | None, target: str | None) -> tuple[bool, Any]:
        """Find ``option`` for ``command``/``target``; returns (found, value)."""
        key = _norm(option)
        layers = []
        if target:
            layers.append(self.targets.get(_norm(target), {}))
        if command:
            layers.append(self.commands.get(_norm(command), {}))
        layers.append(self.top)
        for layer in layers:
            if key in layer:
                return True, layer[key]
        return False, None


def _split(data: dict[str, Any], source: Path, known_commands: set[str]) -> Config:
    top: dict[str, Any] = {}
    commands: dict[str, dict[str, Any]] = {}
    targets: dict[str, dict[str, Any]] = {}
    for raw_key, value in data.items():
        key = _norm(raw_key)
        if key == "targets":
            if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                raise ConfigError(
                    "'targets' must be a table of tables, e.g. [targets.sagemaker]",
                    where=str(source),
                    fix="write per-target settings under [targets.<name>]",
                )
            targets = {_norm(t): {_norm(k): v for k, v in tbl.items()} for t, tbl in value.items()}
        elif isinstance(value, dict):
            if known_commands and key not in known_commands:
                raise ConfigError(
                    f"unknown section [{raw_key}]",
                    where=str(source),
                    fix=f"sections are command names ({', '.join(sorted(known_commands))}) or "
                    "[targets.<name>]",
                )
            commands[key] = {_norm(k): v for k, v in value.items()}
        else:
            top[key] = value
    return Config(source=source, top=top, commands=commands, targets=targets)


def load_config(
    path: str | Path | None = None,
    *,
    cwd: Path | None = None,
    known_commands: set[str] | None = None,
) -> Config:
    """Load the config file named by ``path``, or found in ``cwd``; empty Config if none."""
    known = known_commands or set()
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(
                "config file not found",
                where=str(file),
                fix="check the --config / DEPLOYER_CONFIG path",
            )
        return (
            _split(_read_toml(file), file, known)
            if file.name != "pyproject.toml"
            else _from_pyproject(file, known)
        )
    base = cwd or Path.cwd()
    own = base / CONFIG_FILENAME
    if own.is_file():
        return _split(_read_toml(own), own, known)
    pyproject = base / "pyproject.toml"
    if pyproject.is_file():
        return _from_pyproject(pyproject, known)
    return Config()


def _from_pyproject(file: Path, known: set[str]) -> Config:
    data = _read_toml(file)
    section = data.get("tool", {}).get("deployer")
    if section is None:
        return Config()
    if not isinstance(section, dict):
        raise ConfigError(
            "[tool.deployer] must be a table", where=str(file), fix="see README: Configuration"
        )
    return _split(section, file, known)


def read_toml(file: Path) -> dict[str, Any]:
    """A TOML file as a dict; unreadable or invalid TOML is a :class:`ConfigError`."""
    return _read_toml(file)


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"not valid TOML: {exc}", where=str(file), fix="fix the TOML syntax"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", where=str(file)) from exc


def env_var_name(option: str) -> str:
    """``base_image`` -> ``DEPLOYER_BASE_IMAGE``."""
    return ENV_PREFIX + _norm(option).upper()
