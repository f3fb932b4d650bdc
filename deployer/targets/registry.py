"""Find targets through the ``deployer.targets`` entry-point group.

Each entry point names a factory (a class or function) that takes keyword options
(``region=...`` etc.) and returns an object implementing :class:`deployer.targets.base.Target`.
"""

from __future__ import annotations

import difflib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from deployer.errors import DeployerError, UsageError
from deployer.targets.base import Target

GROUP = "deployer.targets"


def available_targets() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def get_target(name: str, **options: Any) -> Target:
    """Load the target plugin ``name`` and instantiate it with ``options``."""
    found = available_targets()
    ep = found.get(name)
    if ep is None:
        close = difflib.get_close_matches(name, list(found), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"installed targets: {', '.join(sorted(found)) or 'none'}"
        raise UsageError(f"unknown target {name!r}", fix=hint)
    try:
        factory = ep.load()
    except ImportError as exc:
        raise DeployerError(
            f"target {name!r} could not be loaded: {exc}",
            where=f"entry point {ep.value}",
            fix=f"pip install 'deployer[{name}]' (or reinstall the plugin that provides it)",
        ) from exc
    target = factory(**options)
    if not isinstance(target, Target):
        raise DeployerError(
            f"target {name!r} does not implement the Target interface",
            where=f"entry point {ep.value}",
            fix="implement plan/apply/status/list/delete/predict (see deployer.targets.base)",
        )
    return target
