"""Find targets through the ``deployer.targets`` entry-point group.

Each entry point names a factory (a class or function) that takes keyword options
(``region=...`` etc.) and returns an object implementing :class:`deployer.targets.base.Target`.
The factory's ``options`` attribute (a tuple of :class:`OptionSpec`) is read without calling
it, so the CLI can offer each target's options with no SDK imported and no credentials.
"""

from __future__ import annotations

import difflib
import logging
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from deployer.errors import DeployerError, UsageError
from deployer.targets.base import OPTION_TYPES, TARGET_COMMANDS, OptionSpec, Target

GROUP = "deployer.targets"
log = logging.getLogger("deployer")


def available_targets() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def _entry_point(name: str) -> EntryPoint:
    found = available_targets()
    ep = found.get(name)
    if ep is None:
        close = difflib.get_close_matches(name, list(found), n=1)
        hint = (
            f"did you mean '{close[0]}'?"
            if close
            else f"installed targets: {', '.join(sorted(found)) or 'none'}"
        )
        raise UsageError(f"unknown target {name!r}", fix=hint)
    return ep


def load_factory(name: str) -> Any:
    """Import the factory of target ``name`` (not calling it)."""
    ep = _entry_point(name)
    try:
        return ep.load()
    except ImportError as exc:
        raise DeployerError(
            f"target {name!r} could not be loaded: {exc}",
            where=f"entry point {ep.value}",
            fix=f"pip install 'deployer[{name}]' (or reinstall the plugin that provides it)",
        ) from exc


def get_target(name: str, **options: Any) -> Target:
    """Load the target plugin ``name`` and instantiate it with ``options``."""
    ep = _entry_point(name)
    factory = load_factory(name)
    target = factory(**options)
    if not isinstance(target, Target):
        raise DeployerError(
            f"target {name!r} does not implement the Target interface",
            where=f"entry point {ep.value}",
            fix="implement plan/apply/status/list/delete/predict (see deployer.targets.base)",
        )
    return target


def _validate(target: str, spec: Any, ep_value: str) -> OptionSpec:
    where = f"target {target!r} ({ep_value})"
    if not isinstance(spec, OptionSpec):
        raise DeployerError(
            f"option declaration {spec!r} is not an OptionSpec",
            where=where,
            fix="declare options as deployer.targets.base.OptionSpec(...) "
            "in the target's `options`",
        )
    problems = []
    if not spec.name.isidentifier() or spec.name != spec.name.lower():
        problems.append(f"name {spec.name!r} must be a lowercase Python identifier")
    if spec.type not in OPTION_TYPES:
        problems.append(f"type {spec.type!r} must be one of {', '.join(OPTION_TYPES)}")
    if spec.type == "choice" and not spec.choices:
        problems.append("type 'choice' needs `choices`")
    bad = [c for c in spec.commands if c not in TARGET_COMMANDS]
    if bad or not spec.commands:
        problems.append(
            f"commands {spec.commands!r} must be a non-empty subset of {TARGET_COMMANDS}"
        )
    if spec.type == "bool" and spec.multiple:
        problems.append("a bool option cannot be `multiple`")
    if problems:
        raise DeployerError(
            f"bad option declaration {spec!r}: {'; '.join(problems)}",
            where=where,
            fix="fix the OptionSpec in the target plugin (see deployer.targets.base)",
        )
    return spec


def declared_options(name: str, factory: Any = None) -> tuple[OptionSpec, ...]:
    """The validated ``options`` of target ``name``."""
    ep = _entry_point(name)
    factory = factory if factory is not None else load_factory(name)
    raw = getattr(factory, "options", ()) or ()
    return tuple(_validate(name, spec, ep.value) for spec in raw)


def options_by_target(command: str) -> dict[str, tuple[OptionSpec, ...]]:
    """Options of every loadable target for ``command``.

    A target whose plugin cannot be imported (its extra is not installed), or whose options
    are malformed, is skipped here:
    ``deployer deploy --target sagemaker`` must keep working when the Azure SDK is missing.
    Selecting the broken target still reports the import error through :func:`get_target`.
    """
    result: dict[str, tuple[OptionSpec, ...]] = {}
    for name in sorted(available_targets()):
        try:
            factory = load_factory(name)
        except DeployerError as exc:
            log.debug("target %s skipped while collecting options: %s", name, exc.what)
            continue
        try:
            specs = declared_options(name, factory)
        except DeployerError as exc:
            log.debug("target %s skipped while collecting options: %s", name, exc.what)
            continue
        result[name] = tuple(s for s in specs if command in s.commands)
    return result
