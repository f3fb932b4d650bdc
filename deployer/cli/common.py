"""Conventions every command shares: output format, verbosity, config file, env vars, errors.

Commands are ``DeployerCommand`` instances built with :func:`command`; they get
``--output text|json``, ``-v/--verbose`` and ``-q/--quiet``, an env var ``DEPLOYER_<OPTION>``
for each option, and config-file defaults (flag > env > file > default).
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from deployer.config import Config, env_var_name, load_config
from deployer.console import Console, configure_logging
from deployer.errors import ConfigError, DeployerError

# Options that never read an env var or config value.
_NO_ENV = {"help", "version", "config"}


class CommandState:
    """What the top-level error handler needs to know about the running command."""

    console: Console = Console()


def _config_for(ctx: click.Context) -> Config:
    root = ctx.find_root()
    cfg = root.meta.get("deployer.config")
    if cfg is None:
        from deployer.cli import COMMANDS

        path = root.params.get("config") if root.params else None
        cfg = load_config(
            path, known_commands=set(COMMANDS) | {n.replace("-", "_") for n in COMMANDS}
        )
        root.meta["deployer.config"] = cfg
    return cfg


class DeployerCommand(click.Command):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if (
                isinstance(param, click.Option)
                and param.envvar is None
                and param.expose_value
                and param.name not in _NO_ENV
            ):
                param.envvar = env_var_name(param.name or "")

    def invoke(self, ctx: click.Context) -> Any:
        root_ctx = ctx.find_root()
        # Until the command's own flags are merged, errors (e.g. a bad config file) are reported
        # with the group-level flags, not with whatever a previous invocation left here.
        pre = root_ctx.params or {}
        CommandState.console = Console(
            output=pre.get("output") or "text",
            verbosity=-1 if pre.get("quiet") else int(pre.get("verbose") or 0),
        )
        cfg = _config_for(ctx)
        target = ctx.params.get("target")
        for param in self.params:
            name = param.name
            if not name or name in _NO_ENV or not param.expose_value:
                continue
            source = ctx.get_parameter_source(name)
            if source not in (ParameterSource.DEFAULT, None):
                continue
            # `deployer --output json inspect` (group-level flag or env) beats the config file too
            if root_ctx is not ctx and root_ctx.get_parameter_source(name) not in (
                ParameterSource.DEFAULT,
                None,
            ):
                continue
            found, value = cfg.lookup(name, command=self.name, target=target)
            if found:
                try:
                    ctx.params[name] = param.type_cast_value(ctx, value)
                except click.BadParameter as exc:
                    raise ConfigError(
                        f"invalid value {value!r} for '{name}': {exc.message}",
                        where=str(cfg.source),
                        fix=f"fix '{name}' in the config file",
                    ) from exc
        root = ctx.find_root().params or {}
        verbosity = int(root.get("verbose") or 0) + int(ctx.params.pop("verbose", 0) or 0)
        quiet = ctx.params.pop("quiet", False)  # pop first: `deployer -q cmd` must not leak it
        if root.get("quiet") or quiet:
            verbosity = -1
        output = ctx.params.pop("output", None) or root.get("output") or "text"
        console = Console(output=output, verbosity=verbosity)
        CommandState.console = console
        configure_logging(verbosity)
        ctx.meta["deployer.console"] = console
        return super().invoke(ctx)


def get_console() -> Console:
    ctx = click.get_current_context()
    return ctx.meta.get("deployer.console") or CommandState.console


def output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--output",
        type=click.Choice(["text", "json"]),
        default=None,
        help="Result format: text (default) or json (on stdout; logs go to stderr).",
    )(f)
    f = click.option(
        "-v", "--verbose", count=True, help="More logs (repeatable); tracebacks on error."
    )(f)
    f = click.option(
        "-q", "--quiet", is_flag=True, default=False, help="Only warnings and errors."
    )(f)
    return f


def command(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], DeployerCommand]:
    """Decorator: a deployer subcommand with the shared options."""

    def decorator(f: Callable[..., Any]) -> DeployerCommand:
        return click.command(name, cls=DeployerCommand, **kwargs)(output_options(f))  # type: ignore[return-value]

    return decorator


def model_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-m",
        "--model",
        "model_uri",
        required=True,
        metavar="URI",
        help="Model: a local path, file://, s3://, runs:/<run_id>/path, "
        "models:/<name>/<version|@alias>.",
    )(f)


def model_set_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The image commands' models: ``-m URI`` (one model, as before), or ``-m NAME=URI``
    repeated and/or ``--model-repository DIR`` (one multi-model image). The command gets
    ``model_uris`` and ``model_repository``; ``deployer.building.sources.model_source`` reads
    them."""
    f = click.option(
        "--model-repository",
        "model_repository",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        metavar="DIR",
        help="Build one image with every model in DIR (each subdirectory holding an MLmodel, "
        "named after it); with -m NAME=URI too.",
    )(f)
    return models_option("for one image serving several models (they must share one environment)")(
        f
    )


def models_option(several: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-m URI`` or ``-m NAME=URI`` repeated (``model_uris``); ``several`` ends the help."""
    return click.option(
        "-m",
        "--model",
        "model_uris",
        multiple=True,
        metavar="URI|NAME=URI",
        help="Model: a local path, file://, s3://, runs:/<run_id>/path, "
        f"models:/<name>/<version|@alias>. Repeat as NAME=URI {several}.",
    )


class ReportedError(click.ClickException):
    """Carries a DeployerError (or an unexpected one) through click's standalone handling."""

    def __init__(self, error: BaseException, console: Console) -> None:
        self.error = error
        self.console = console
        if isinstance(error, DeployerError):
            super().__init__(error.format_message())
            self.exit_code = error.exit_code
        else:
            super().__init__(f"internal error: {type(error).__name__}: {error}")
            self.exit_code = 1

    def show(self, file: Any = None) -> None:
        stderr = sys.stderr
        if self.console.verbosity > 0:
            traceback.print_exception(
                type(self.error), self.error, self.error.__traceback__, file=stderr
            )
        message = self.message
        if not isinstance(self.error, DeployerError) and self.console.verbosity <= 0:
            message += "\n  hint: run again with -v for the traceback, and report it as a bug"
        stderr.write(f"error: {message}\n")
        if self.console.json:
            payload = (
                self.error.to_dict()
                if isinstance(self.error, DeployerError)
                else {
                    "error": "InternalError",
                    "message": str(self.error),
                    "where": None,
                    "fix": None,
                }
            )
            sys.stdout.write(json.dumps(payload, indent=2) + "\n")
