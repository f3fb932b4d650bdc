"""``deployer sync``: endpoints that follow a model registry alias, declared in a file.

A deployments file (TOML) lists endpoints::

    [[endpoints]]
    name = "iris"                        # the endpoint (as --name)
    target = "sagemaker"                 # as --target
    model = "models:/iris@champion"      # a registered model alias (as -m)
    region = "eu-west-1"                 # any other key: an option `deployer deploy` takes,
    instance_type = "ml.m5.large"        # spelled as the MLflow plugin's -C keys (snake_case)

For each entry, :func:`plan_sync` asks the registry which version the alias names now and
reads what the endpoint serves (the target's ``provenance(name)``, written by every deploy);
when they differ it plans the ordinary deploy (:func:`deployer.targets.actions.plan_deploy`,
the code ``deployer deploy`` runs), and :func:`apply_sync` applies it with the target's own
``apply`` (the one executor: a failing deploy is rolled back). State lives on the endpoints and
in the registry only, so a sync can be run again, from anywhere, at any time.

Entries are independent: an entry whose file values, registry lookup, plan or deploy fail is
reported as failed; the others go on.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from deployer.errors import ConfigError, DeployerError, UsageError
from deployer.model.provenance import Provenance
from deployer.targets.base import DeployPlan, DeployRequest, OptionSpec, Target

log = logging.getLogger("deployer")

#: Keys of an entry that are not options of ``deployer deploy``'s target.
ENTRY_KEYS = ("name", "target", "model")

#: The generic ``deploy`` options an entry may set (the target's own and the build group too).
GENERIC_SPECS = (
    OptionSpec("image_uri", "Deploy this prebuilt image; -m still names what it serves."),
    OptionSpec("wait", "Wait until the endpoint serves.", type="bool", default=True),
    OptionSpec("timeout", "Give up waiting after this many seconds.", type="float"),
)

UNCHANGED, DEPLOY, DEPLOYED, FAILED = "unchanged", "deploy", "deployed", "failed"


@dataclass(frozen=True)
class SyncEntry:
    """One endpoint of a deployments file, validated like ``deployer deploy``'s options."""

    name: str
    target: str
    model_uri: str
    connection: Mapping[str, Any]
    request: DeployRequest


@dataclass(frozen=True)
class EntryPlan:
    """What a sync does for one entry: nothing (``unchanged``), a deploy, or ``failed``."""

    name: str
    target: str
    model_uri: str
    decision: str
    wanted: Mapping[str, Any] | None = None
    """The registered version the alias names now (name, version, run_id, alias)."""
    live: Provenance | None = None
    plan: DeployPlan | None = None
    error: Mapping[str, Any] | None = None
    plugin: Target | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "model": self.model_uri,
            "decision": self.decision,
            "wanted": dict(self.wanted) if self.wanted else None,
            "live": self.live.to_dict() if self.live else None,
            "plan": self.plan,
            "error": dict(self.error) if self.error else None,
        }


@dataclass(frozen=True)
class EntryResult:
    """The outcome of one entry: ``unchanged``, ``deployed`` or ``failed``."""

    name: str
    target: str
    result: str
    version: str | None = None
    action: str | None = None
    endpoint_url: str | None = None
    error: Mapping[str, Any] | None = None


# ------------------------------------------------------------------------------ the file
def load_deployments(path: Path, *, only: str | None = None) -> list[SyncEntry | EntryPlan]:
    """Read ``path``; every entry becomes a :class:`SyncEntry`, or (bad values) a failed
    :class:`EntryPlan`. A file that is not a list of endpoints is a :class:`ConfigError`;
    ``only`` naming no entry is a :class:`UsageError`."""
    from deployer.config import read_toml

    where = str(path)
    data = read_toml(path)
    extra = sorted(set(data) - {"endpoints"})
    raw = data.get("endpoints")
    if extra or not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise ConfigError(
            "a deployments file is a list of [[endpoints]] tables"
            + (f" (unknown top-level key(s): {', '.join(extra)})" if extra else ""),
            where=where,
            fix='write [[endpoints]] tables with name, target, model = "models:/NAME@ALIAS" '
            "and deploy options (README: Deploys that follow the registry)",
        )
    names = [str(e.get("name")) for e in raw]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"endpoint(s) listed twice: {', '.join(duplicates)}",
            where=where,
            fix="list each endpoint once",
        )
    if only is not None and only not in names:
        raise UsageError(
            f"no entry named {only!r} in {where}",
            where="--only",
            fix=f"pass one of: {', '.join(names) or '(the file lists none)'}",
        )
    entries: list[SyncEntry | EntryPlan] = []
    for index, item in enumerate(raw):
        if only is not None and item.get("name") != only:
            continue
        label = f"{where}: endpoints[{index}]" + (f" ({item['name']})" if "name" in item else "")
        try:
            entries.append(parse_entry(item, label))
        except DeployerError as exc:
            entries.append(
                EntryPlan(
                    name=str(item.get("name", f"endpoints[{index}]")),
                    target=str(item.get("target", "?")),
                    model_uri=str(item.get("model", "?")),
                    decision=FAILED,
                    error=exc.to_dict(),
                )
            )
    return entries


def deploy_specs(target: str) -> dict[str, OptionSpec]:
    """Every option an entry for ``target`` may set: what ``deployer deploy`` takes for it."""
    from deployer.targets.actions import own_options
    from deployer.targets.build_options import option_specs

    return {**{s.name: s for s in GENERIC_SPECS}, **own_options(target, "deploy"), **option_specs()}


def parse_entry(item: Mapping[str, Any], where: str) -> SyncEntry:
    """One ``[[endpoints]]`` table -> a :class:`SyncEntry` (values parsed like the command
    line's; unknown keys refused, naming the file, the entry and the key)."""
    from deployer.model.uri import uri_alias
    from deployer.targets.actions import deploy_request
    from deployer.targets.options import coerce_option
    from deployer.targets.registry import load_factory

    for key in ENTRY_KEYS:
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise ConfigError(
                f"the entry needs {key!r} (a string)",
                where=where,
                fix='each entry sets name, target and model = "models:/NAME@ALIAS"',
            )
    name, target, model = (str(item[k]).strip() for k in ENTRY_KEYS)
    try:
        load_factory(target)  # "unknown target" names the installed ones
    except DeployerError as exc:
        exc.where = f"{where}: target"
        raise
    if not model.startswith("models:/") or not uri_alias(model):
        raise ConfigError(
            f"model {model!r} does not name a registry alias",
            where=f"{where}: model",
            fix='sync follows an alias: write model = "models:/NAME@ALIAS"',
        )
    specs = deploy_specs(target)
    values: dict[str, Any] = {}
    for key, value in item.items():
        if key in ENTRY_KEYS:
            continue
        spec = specs.get(key)
        if spec is None:
            close = difflib.get_close_matches(key, list(specs), n=1)
            raise ConfigError(
                f"unknown key {key!r} for target {target!r}"
                + (f" (did you mean {close[0]!r}?)" if close else ""),
                where=f"{where}: {key}",
                fix=f"valid keys: {', '.join([*ENTRY_KEYS, *sorted(specs)])}",
            )
        values[key] = coerce_option(spec, value, f"{where}: {key}")
    connection, request = deploy_request(target, name, model, values)
    return SyncEntry(name, target, model, connection, request)


# ------------------------------------------------------------------------------ plan
def plan_entry(entry: SyncEntry) -> EntryPlan:
    """Compare the alias with what the endpoint serves; plan the ordinary deploy if they
    differ. Failures (registry, target, planning) make a failed plan, never an exception."""
    from deployer.model.uri import registered_version
    from deployer.targets.actions import connect, plan_deploy

    base = EntryPlan(entry.name, entry.target, entry.model_uri, decision=FAILED)
    try:
        wanted = registered_version(entry.model_uri)
        base = replace(base, wanted=asdict(wanted))
        plugin = connect(entry.target, entry.connection)
        reader = getattr(plugin, "provenance", None)
        if reader is None:
            raise UsageError(
                f"target {entry.target!r} does not record what it deploys, so sync cannot "
                "compare it with the registry",
                where=f"endpoint {entry.name}",
                fix="deploy to it with `deployer deploy`",
            )
        live: Provenance | None = reader(entry.name)
        base = replace(base, live=live)
        if live is not None and live.registry_version() == (wanted.name, wanted.version):
            return replace(base, decision=UNCHANGED)
        plugin, plan = plan_deploy(entry.target, entry.request, entry.connection)  # as deploy does
        decision = UNCHANGED if plan.action == "noop" else DEPLOY
        return replace(base, decision=decision, plan=plan, plugin=plugin)
    except DeployerError as exc:
        return replace(base, error=exc.to_dict())


def plan_sync(entries: Sequence[SyncEntry | EntryPlan]) -> list[EntryPlan]:
    """Every entry's plan, in file order (already-failed entries kept as they are)."""
    return [e if isinstance(e, EntryPlan) else plan_entry(e) for e in entries]


# ------------------------------------------------------------------------------ apply
def apply_entry(planned: EntryPlan) -> EntryResult:
    """Run one entry's deploy with its target's ``apply`` (the one executor and its rollback)."""
    version = (planned.wanted or {}).get("version")
    head = {"name": planned.name, "target": planned.target, "version": version}
    if planned.decision != DEPLOY:
        return EntryResult(**head, result=planned.decision, error=planned.error)
    assert planned.plugin is not None and planned.plan is not None
    try:
        result = planned.plugin.apply(planned.plan)
    except DeployerError as exc:
        return EntryResult(**head, result=FAILED, action=planned.plan.action, error=exc.to_dict())
    return EntryResult(
        **head, result=DEPLOYED, action=result.action, endpoint_url=result.endpoint_url
    )


def apply_sync(
    plans: Sequence[EntryPlan],
    *,
    on_result: Callable[[EntryResult], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[EntryResult]:
    """Apply every entry's plan, one after the other; ``stop()`` true: apply no further entry
    (those left are reported unchanged, the endpoint as it was)."""
    results = []
    for planned in plans:
        if stop is not None and stop() and planned.decision == DEPLOY:
            planned = replace(planned, decision=UNCHANGED)
        result = apply_entry(planned)
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results


def render_plans(plans: Sequence[EntryPlan]) -> str:
    """The plans of every entry, for people (``--dry-run`` and before applying)."""
    from deployer.targets.executor import render_plan

    blocks = []
    for p in plans:
        wanted = p.wanted or {}
        want = f"{wanted.get('name')} v{wanted.get('version')}" if wanted else "?"
        live = p.live.describe() if p.live else "nothing recorded"
        head = f"{p.name} ({p.target}): {p.model_uri} -> {want}; live: {live}"
        if p.decision == FAILED:
            error = p.error or {}
            fix = f"\n  fix: {error['fix']}" if error.get("fix") else ""
            blocks.append(f"{head}\n  FAILED: {error.get('message')}{fix}")
        elif p.decision == UNCHANGED:
            blocks.append(f"{head}\n  unchanged")
        else:
            assert p.plan is not None
            body = "\n".join("  " + line for line in render_plan(p.plan).splitlines())
            blocks.append(f"{head}\n{body}")
    return "\n\n".join(blocks)
