"""The one Jinja environment every template is rendered with.

Two guarantees, both enforced here rather than by review:

* ``StrictUndefined``: a missing variable is an error, never an empty string (an empty
  ``--model-dir`` argument is a silent bug).
* ``finalize``: every ``{{ ... }}`` must produce an :class:`~deployer.rendering.filters.Escaped`
  value, i.e. must have gone through one of the escaping filters. Raw strings, numbers and
  ``None`` are refused, so a template cannot paste an unescaped value by accident.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jinja2

from deployer.errors import RenderError
from deployer.rendering.filters import FILTERS, Escaped
from deployer.resources import templates_dir


def _finalize(value: Any) -> Any:
    if isinstance(value, Escaped):
        return value
    raise RenderError(
        f"a template tried to render an unescaped {type(value).__name__} value",
        fix="this is a bug in a deployer template: every {{ value }} needs an escaping filter",
    )


def _strict(flt: Callable[..., Any]) -> Callable[..., Any]:
    """Filters see Jinja's Undefined before it complains: make it complain first."""

    def wrapped(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, jinja2.Undefined):
            value._fail_with_undefined_error()
        return flt(value, *args, **kwargs)

    wrapped.__name__ = getattr(flt, "__name__", "filter")
    wrapped.__doc__ = flt.__doc__
    return wrapped


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters.update({name: _strict(flt) for name, flt in FILTERS.items()})
    return env


def render_template(name: str, **context: Any) -> str:
    """Render ``templates/<name>`` with ``context``; errors become :class:`RenderError`."""
    try:
        template = environment().get_template(name)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(
            f"template {name!r} not found", where=str(templates_dir()), fix="reinstall deployer"
        ) from exc
    try:
        return template.render(**context)
    except jinja2.UndefinedError as exc:
        raise RenderError(
            f"template {name!r} needs a value that was not provided: {exc.message}",
            fix="this is a bug in deployer: report it",
        ) from exc
