"""Values of a target's options, parsed exactly as the command line parses them.

One parser for every front end: the CLI's options (click) and the MLflow plugin's ``-C
key=value`` pairs both go through :func:`coerce_option`, which uses the same click types as
the generated command-line options (:func:`option_type`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from deployer.errors import UsageError
from deployer.targets.base import OptionSpec


class _MappingOrText(click.ParamType):
    """A mapping (``config={"model_config": {...}}`` from Python) kept as it is, or text (``-C
    model_config='{...}'`` or a file path) for the option's consumer to parse."""

    name = "mapping"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, Mapping | str):
            return value
        self.fail(f"expected a mapping or its JSON text, got {type(value).__name__}", param, ctx)


def option_type(spec: OptionSpec) -> click.ParamType:
    """The click type that parses values of ``spec`` (one value of a ``multiple`` option)."""
    types: dict[str, click.ParamType] = {
        "str": click.STRING,
        "int": click.INT,
        "float": click.FLOAT,
        "bool": click.BOOL,
        "path": click.Path(exists=True, dir_okay=False),
        "choice": click.Choice(list(spec.choices)),
        "mapping": _MappingOrText(),
    }
    return types[spec.type]


def coerce_option(spec: OptionSpec, value: Any, where: str) -> Any:
    """Parse ``value`` (text or already typed) for ``spec`` exactly as the command line would.

    A ``multiple`` option takes a list/tuple, a JSON list in text (``'["A=1", "B=2"]'``) or
    one value. Bad values raise :class:`UsageError` naming ``where``.
    """
    import json

    if spec.multiple:
        items = value
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                items = json.loads(value)
            except ValueError as exc:
                raise UsageError(
                    f"{value!r} is not a JSON list ({exc})",
                    where=where,
                    fix='write one value, or a JSON list such as ["A=1", "B=2"]',
                ) from None
        if not isinstance(items, (list, tuple)):
            items = (items,)
        return tuple(_convert(spec, item, where) for item in items)
    return _convert(spec, value, where)


def _convert(spec: OptionSpec, value: Any, where: str) -> Any:
    try:
        return option_type(spec).convert(value, None, None)
    except click.BadParameter as exc:
        expected = (
            f"one of {', '.join(spec.choices)}" if spec.type == "choice" else f"a {spec.type} value"
        )
        raise UsageError(
            f"invalid value {value!r}: {exc.format_message()}",
            where=where,
            fix=f"pass {expected} for {spec.name}",
        ) from None
