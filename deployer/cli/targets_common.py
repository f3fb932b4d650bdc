"""What the target commands (deploy, status, list, delete, batch, predict) share.

Target-specific options are *declared by the targets* as data (:class:`OptionSpec`) and
turned into click options here, for every installed target at once, so ``deploy --help``
lists them all, each prefixed with the target(s) it belongs to. At run time the values are
split: options of the selected target go to it (connection options to its factory, the rest
to the request or method), and an option given on the command line that the selected target
does not declare is a usage error naming the target(s) that do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

from deployer.errors import DeployerError, UsageError
from deployer.targets.base import OptionSpec
from deployer.targets.build_options import NAMES as BUILD_OPTION_NAMES
from deployer.targets.executor import render_plan  # noqa: F401 - the CLI renders plans from here too
from deployer.targets.options import option_type

# Parameters of the generic commands; a target may not redefine them with another meaning.
GENERIC = {
    "target",
    "name",
    "model_uri",
    "image_uri",
    "dry_run",
    "wait",
    "timeout",
    "output",
    "verbose",
    "quiet",
    "input_uri",
    "output_uri",
    "stop",
    "config",
} | BUILD_OPTION_NAMES


@dataclass(frozen=True)
class MergedOption:
    spec: OptionSpec
    owners: frozenset[str]
    helps: tuple[tuple[str, str], ...] = ()
    """(target, help) of every declaration, for the help text of shared options."""


def _merge(command: str) -> tuple[dict[str, MergedOption], dict[str, DeployerError]]:
    """Merge every target's options for ``command`` by name.

    A declaration that clashes (a generic option's name, or a shared name with another type)
    is left out and recorded against its target: one faulty plugin must not take the other
    targets' options away; it fails only when it is selected. Targets are merged in name
    order, so of two clashing declarations the target whose name sorts first keeps it.
    """
    from deployer.targets.registry import options_by_target

    merged: dict[str, MergedOption] = {}
    conflicts: dict[str, DeployerError] = {}
    for target, specs in options_by_target(command).items():
        for spec in specs:
            if spec.name in GENERIC:
                conflicts[target] = DeployerError(
                    f"target {target!r} declares option {spec.flag}, which `deployer {command}` "
                    "already has",
                    where=f"target {target!r}",
                    fix="rename the option in the target plugin",
                )
                continue
            seen = merged.get(spec.name)
            if seen is None:
                merged[spec.name] = MergedOption(spec, frozenset({target}), ((target, spec.help),))
                continue
            if (seen.spec.type, seen.spec.multiple, seen.spec.connection) != (
                spec.type,
                spec.multiple,
                spec.connection,
            ):
                conflicts[target] = DeployerError(
                    f"target {target!r} declares {spec.flag} as {spec.type}"
                    f"{' (multiple)' if spec.multiple else ''}, but target(s) "
                    f"{', '.join(sorted(seen.owners))} "
                    f"declare it as {seen.spec.type}{' (multiple)' if seen.spec.multiple else ''}",
                    where=f"target {target!r}",
                    fix="declare the shared option with the same type, or rename it",
                )
                continue
            choices = tuple(dict.fromkeys(seen.spec.choices + spec.choices))
            merged_spec = (
                seen.spec
                if choices == seen.spec.choices
                else OptionSpec(**{**seen.spec.__dict__, "choices": choices})
            )
            merged[spec.name] = MergedOption(
                merged_spec, seen.owners | {target}, seen.helps + ((target, spec.help),)
            )
    return merged, conflicts


def merged_options(command: str) -> dict[str, MergedOption]:
    """Every target's options for ``command``, merged by name."""
    return _merge(command)[0]


def _click_option(opt: MergedOption) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    spec = opt.spec
    owners = ", ".join(sorted(opt.owners))
    texts = {h for _, h in opt.helps}
    if len(texts) > 1:
        help_text = " ".join(f"[{t}] {h}" for t, h in sorted(opt.helps))
    else:
        help_text = f"[{owners}] {spec.help}"
        if spec.default not in (None, False, ()) and spec.type != "bool":
            help_text += f" (default: {spec.default})"
    kwargs: dict[str, Any] = {"default": None, "help": help_text, "show_envvar": False}
    if spec.metavar:
        kwargs["metavar"] = spec.metavar
    if spec.type == "bool":
        flag = spec.flag
        return click.option(f"{flag}/--no-{flag[2:]}", spec.name, **kwargs)
    kwargs["type"] = option_type(spec)
    if spec.multiple:
        kwargs["multiple"] = True
    return click.option(spec.flag, spec.name, **kwargs)


def target_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator adding every installed target's options for ``command``."""

    def decorator(f: Callable[..., Any]) -> Callable[..., Any]:
        merged = merged_options(command)
        for opt in sorted(merged.values(), key=lambda o: o.spec.name, reverse=True):
            f = _click_option(opt)(f)
        return f

    return decorator


def require_target(name: str | None, command: str) -> str:
    if name:
        return name
    from deployer.targets.registry import available_targets

    installed = ", ".join(sorted(available_targets())) or "none installed"
    raise UsageError(
        f"`deployer {command}` needs --target",
        where="--target",
        fix=f"pass --target NAME (installed: {installed}), or set `target` in deployer.toml",
    )


def split_target_values(
    ctx: click.Context, target: str, command: str, values: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pop the target options from ``values``; return (factory kwargs, command options).

    Command options hold every option ``target`` declares for ``command`` (its default when
    unset); factory kwargs only the connection options that were set.
    """
    merged, conflicts = _merge(command)
    from deployer.targets.actions import own_options, resolve_options
    from deployer.targets.registry import load_factory

    load_factory(target)  # surfaces "unknown target" / import errors before anything else
    if target in conflicts:
        raise conflicts[target]
    own = own_options(target, command)
    given: dict[str, Any] = {}
    for name in list(values):
        if name not in merged:
            continue
        value = values.pop(name)
        is_set = value is not None and value != ()
        if name not in own:
            if is_set and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
                owners = ", ".join(sorted(merged[name].owners))
                plural = "s" if len(merged[name].owners) > 1 else ""
                raise UsageError(
                    f"{merged[name].spec.flag} is an option of target{plural} {owners}, not of "
                    f"{target!r}",
                    where=merged[name].spec.flag,
                    fix=f"drop {merged[name].spec.flag}, or use --target "
                    f"{sorted(merged[name].owners)[0]}",
                )
            continue
        given[name] = value
    return resolve_options(target, command, given)


# ------------------------------------------------------------------------------ rendering
def render_mapping(title: str, data: Mapping[str, Any]) -> str:
    lines = [title]
    for key, value in data.items():
        if value in (None, [], {}, ""):
            continue
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)
