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

from deployer.cli.build_options import NAMES as BUILD_OPTION_NAMES
from deployer.errors import DeployerError, UsageError
from deployer.targets.base import DeployPlan, OptionSpec, PlannedCall

# Parameters of the generic commands; a target may not redefine them with another meaning.
GENERIC = {"target", "name", "model_uri", "image_uri", "dry_run", "wait", "timeout", "output",
           "verbose", "quiet", "input_uri", "output_uri", "stop", "config"} | BUILD_OPTION_NAMES


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
                    f"target {target!r} declares option {spec.flag}, which `deployer {command}` already has",
                    where=f"target {target!r}", fix="rename the option in the target plugin")
                continue
            seen = merged.get(spec.name)
            if seen is None:
                merged[spec.name] = MergedOption(spec, frozenset({target}), ((target, spec.help),))
                continue
            if (seen.spec.type, seen.spec.multiple, seen.spec.connection) != (spec.type, spec.multiple, spec.connection):
                conflicts[target] = DeployerError(
                    f"target {target!r} declares {spec.flag} as {spec.type}"
                    f"{' (multiple)' if spec.multiple else ''}, but target(s) {', '.join(sorted(seen.owners))} "
                    f"declare it as {seen.spec.type}{' (multiple)' if seen.spec.multiple else ''}",
                    where=f"target {target!r}", fix="declare the shared option with the same type, or rename it")
                continue
            choices = tuple(dict.fromkeys(seen.spec.choices + spec.choices))
            merged_spec = seen.spec if choices == seen.spec.choices else OptionSpec(
                **{**seen.spec.__dict__, "choices": choices})
            merged[spec.name] = MergedOption(merged_spec, seen.owners | {target}, seen.helps + ((target, spec.help),))
    return merged, conflicts


def merged_options(command: str) -> dict[str, MergedOption]:
    """Every target's options for ``command``, merged by name."""
    return _merge(command)[0]


def option_type(spec: OptionSpec) -> click.ParamType:
    """The click type that parses values of ``spec`` (one value of a ``multiple`` option)."""
    types: dict[str, click.ParamType] = {
        "str": click.STRING, "int": click.INT, "float": click.FLOAT, "bool": click.BOOL,
        "path": click.Path(exists=True, dir_okay=False),
        "choice": click.Choice(list(spec.choices)),
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
                raise UsageError(f"{value!r} is not a JSON list ({exc})", where=where,
                                 fix='write one value, or a JSON list such as ["A=1", "B=2"]') from None
        if not isinstance(items, (list, tuple)):
            items = (items,)
        return tuple(_convert(spec, item, where) for item in items)
    return _convert(spec, value, where)


def _convert(spec: OptionSpec, value: Any, where: str) -> Any:
    try:
        return option_type(spec).convert(value, None, None)
    except click.BadParameter as exc:
        expected = f"one of {', '.join(spec.choices)}" if spec.type == "choice" else f"a {spec.type} value"
        raise UsageError(f"invalid value {value!r}: {exc.format_message()}", where=where,
                         fix=f"pass {expected} for {spec.name}") from None


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
    raise UsageError(f"`deployer {command}` needs --target", where="--target",
                     fix=f"pass --target NAME (installed: {installed}), or set `target` in deployer.toml")


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
                    f"{merged[name].spec.flag} is an option of target{plural} {owners}, not of {target!r}",
                    where=merged[name].spec.flag,
                    fix=f"drop {merged[name].spec.flag}, or use --target {sorted(merged[name].owners)[0]}")
            continue
        given[name] = value
    return resolve_options(target, command, given)


# ------------------------------------------------------------------------------ rendering
def _call_text(index: int, call: PlannedCall) -> list[str]:
    import json

    head = f"{index:2d}. {call.service}:{call.operation}"
    if call.phase != "create":
        head += f"  [{call.phase}]"
    lines = [head + (f"  - {call.description}" if call.description else "")]
    params = json.dumps(dict(call.params), default=str, sort_keys=False)
    if len(params) > 400:
        params = params[:400] + "..."
    lines.append(f"      {params}")
    if call.undo is not None:
        lines.append(f"      undo on failure: {call.undo.service}:{call.undo.operation}")
    return lines


def render_plan(plan: DeployPlan) -> str:
    lines = [f"plan ({plan.target}, {plan.action}): {plan.summary}"]
    if not plan.calls:
        lines.append("no calls: nothing to do")
    for i, call in enumerate(plan.calls, 1):
        lines += _call_text(i, call)
    lines.append("dry run: nothing was changed")
    return "\n".join(lines)


def render_mapping(title: str, data: Mapping[str, Any]) -> str:
    lines = [title]
    for key, value in data.items():
        if value in (None, [], {}, ""):
            continue
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)
