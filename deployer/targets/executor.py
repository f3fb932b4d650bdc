"""The one executor of deploy plans: every target's calls run here, with one rollback rule.

A target plans :class:`~deployer.targets.base.PlannedCall` s (pure) and supplies the handlers
that carry them out: an :class:`Operations` (one ``handle`` method, the way a transport
supplies ``handle_request`` to httpx's one client pipeline). Everything else is here, so every
target - local Docker, SageMaker, Azure ML, and the ones to come - fails the same way.

Calls run in plan order. A call's ``phase`` (see ``PlannedCall``) says what its failure means:

``create`` / ``commit`` / ``prepare`` / ``wait``
    The run stops and is **undone**: the ``undo`` of every call of this run that succeeded
    runs, in reverse order (a ``create``'s or ``commit``'s undo removes what it made, a
    ``prepare``'s restores what it changed). **The failing call's own undo runs too when it is
    a ``create``**: a create the service accepted can fail after leaving a half-made resource
    behind (an Azure deployment in state Failed, a container that started and died), which its
    undo removes; a failed ``commit`` or ``prepare`` is a single switch that did not happen, so
    nothing of its own is undone. An undo answered "not found" counts as done (for the failing
    call's own undo: there was nothing to remove). The error then tells the story: what failed,
    what was removed, restored or kept, what could not be removed and how to remove it (when
    the very first step failed and left nothing behind, its own error is raised as it is).
``post``
    Runs after the wait, on what now serves (autoscaling): the committed change stands (undoing
    it would be a second risky change), only this run's ``post`` calls are undone, the cleanup
    still runs, and the error says to run the same command again.
``cleanup``
    Removes what this run replaced; runs in plan order (after the wait). A failure is a warning
    in the result; "not found" is success.

Two escapes, both decided by the target: an error of class :class:`NoRollback` (the change
is still in progress, or the service is in a state where removing anything could make it
worse) is raised as it is, with nothing undone; and :meth:`Operations.keeps` (``--archive``)
keeps what a create made instead of removing it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from deployer.errors import DeployerError, TargetError
from deployer.targets.base import DeployPlan, PlannedCall

log = logging.getLogger("deployer")

_STOP = threading.Event()
_STOP_REASON: list[str] = []


def interrupt(reason: str) -> None:
    """Stop the runs of this process before their next call (SIGTERM in ``deployer watch``).

    The call that is running finishes; the next one fails with ``reason`` as if it had failed
    itself, so the one rollback rule undoes what the run did and the endpoint keeps what it
    served. Only ``cleanup`` and ``post`` calls (after the change settled) still run: a run
    already past its commit and wait finishes."""
    _STOP_REASON[:] = [reason]
    _STOP.set()


def _check_interrupted(call: PlannedCall) -> None:
    if _STOP.is_set() and call.phase not in ("cleanup", "post"):
        raise TargetError(
            f"interrupted ({_STOP_REASON[0] if _STOP_REASON else 'stop requested'}) before: "
            f"{call.description or call.operation}",
            fix="what this run changed was rolled back; run it again",
        )


Phase = Literal["create", "commit", "wait", "cleanup", "prepare", "post"]
#: Phases whose failure stops the run and undoes it.
UNDOING: tuple[str, ...] = ("create", "commit", "prepare", "wait")


class NoRollback(TargetError):
    """A failure after which nothing may be undone (the change is still in progress, or the
    service's state is unknown); raised as it is, with what to do in its message."""


class Operations(Protocol):
    """What a target supplies to the executor: its operation handlers."""

    def handle(self, call: PlannedCall, outputs: Mapping[str, Any]) -> Any:
        """Carry out ``call`` (``outputs``: what earlier calls of the run returned, by
        operation); raise a :class:`~deployer.errors.DeployerError` on failure."""
        ...

    def label(self, call: PlannedCall) -> str:
        """A short name for logs and stories: ``create_model iris-m-1``."""
        ...

    def is_not_found(self, exc: DeployerError) -> bool:
        """The error says the resource does not exist (undo and cleanup: already done)."""
        ...

    def keeps(self, plan: DeployPlan, call: PlannedCall) -> bool:
        """Keep what ``call`` made when the run is undone (``--archive``)."""
        ...

    def story(self, plan: DeployPlan, call: PlannedCall, exc: DeployerError) -> Sequence[str]:
        """Target-specific lines for the failure message (what still serves...)."""
        ...


class BaseOperations:
    """Defaults for the optional parts of :class:`Operations`: labels from descriptions,
    "not found" from a ``not_found`` attribute of the error, nothing kept, no extra story; and
    a ``handle`` that dispatches each call to the method ``_op_<operation>`` (dots become
    ``__``) with the call's parameters, recording what it returned in ``self.outputs`` (a
    dict) when the subclass has one."""

    def handle(self, call: PlannedCall, outputs: Mapping[str, Any] | None = None) -> Any:
        handler = getattr(self, "_op_" + call.operation.replace(".", "__"), None)
        if handler is None:
            raise TargetError(
                f"unknown planned operation {call.operation!r}", where=f"{call.service} plan"
            )
        out = handler(dict(call.params))
        recorded = getattr(self, "outputs", None)
        if isinstance(recorded, dict):
            recorded[call.operation] = out
        return out

    def call(self, call: PlannedCall) -> Any:
        """One call outside a plan run (``delete``), logged by its description."""
        log.info("%s", call.description or call.operation)
        return self.handle(call, {})

    def label(self, call: PlannedCall) -> str:
        return call.description or f"{call.service}:{call.operation}"

    def is_not_found(self, exc: DeployerError) -> bool:
        return bool(getattr(exc, "not_found", False))

    def keeps(self, plan: DeployPlan, call: PlannedCall) -> bool:
        return False

    def story(self, plan: DeployPlan, call: PlannedCall, exc: DeployerError) -> Sequence[str]:
        return ()


@dataclass
class Report:
    """What a run did (the target turns it into its
    :class:`~deployer.targets.base.DeployResult`)."""

    outputs: dict[str, Any] = field(default_factory=dict)  # operation -> what its handler returned
    done: list[PlannedCall] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # labels of the resources this run made
    removed: list[str] = field(default_factory=list)  # labels of cleanups that ran
    warnings: list[str] = field(default_factory=list)


def execute(
    plan: DeployPlan, operations: Operations, *, progress: Callable[[str], None] | None = None
) -> Report:
    """Run ``plan.calls`` with ``operations`` under the rules of the module docstring."""
    say = progress or log.info
    report = Report()
    for call in plan.calls:
        label = operations.label(call)
        if call.phase == "cleanup":
            _cleanup(call, label, operations, report)
            continue
        say(
            label
            if not call.description or call.description == label
            else f"{label}  ({call.description})"
        )
        try:
            _check_interrupted(call)
            report.outputs[call.operation] = operations.handle(call, report.outputs)
        except NoRollback:
            raise
        except DeployerError as exc:
            if call.phase == "post":
                _fail_post(plan, call, exc, operations, report)
            _fail(plan, call, exc, operations, report)
        report.done.append(call)
        if call.phase in ("create", "commit") and call.undo is not None:
            report.created.append(_target_of(label))
    return report


def _target_of(label: str) -> str:
    """``create_model iris-m-1`` -> ``iris-m-1``."""
    return label.split(" ", 1)[-1]


def _cleanup(call: PlannedCall, label: str, operations: Operations, report: Report) -> None:
    try:
        operations.handle(call, report.outputs)
        report.removed.append(_target_of(label))
    except DeployerError as exc:
        if operations.is_not_found(exc):
            return
        report.warnings.append(f"could not {label}: {exc.what}")
        log.warning("could not %s: %s", label, exc.what)


@dataclass
class _Undo:
    undone: list[str] = field(default_factory=list)  # labels of the undo calls that ran
    removed: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _undo(
    plan: DeployPlan, steps: Sequence[tuple[PlannedCall, bool]], operations: Operations
) -> _Undo:
    """Run the undo of each (call, is-the-failing-call) in order; collect what happened."""
    out = _Undo()
    for done, failing in steps:
        undo = done.undo
        if undo is None:
            continue
        what = _target_of(operations.label(undo))
        if done.phase != "prepare" and operations.keeps(plan, done):
            out.kept.append(what)
            continue
        try:
            log.info("rolling back: %s", operations.label(undo))
            operations.handle(undo, {})
        except DeployerError as exc:
            if operations.is_not_found(exc):
                if not failing:
                    out.removed.append(what)
                continue
            out.failed.append(f"{what} ({exc.what})")
            log.error("rollback step failed (%s): %s", operations.label(undo), exc.what)
            continue
        out.undone.append(operations.label(undo))
        (out.restored if done.phase == "prepare" else out.removed).append(
            operations.label(undo) if done.phase == "prepare" else what
        )
    return out


def _fail(
    plan: DeployPlan, call: PlannedCall, exc: DeployerError, operations: Operations, report: Report
) -> None:
    """Undo the run (see the module docstring), then raise one error telling the story."""
    steps = [(call, True)] if call.phase == "create" else []
    steps += [(done, False) for done in reversed(report.done)]
    undone = _undo(plan, steps, operations)
    if not report.done and not undone.undone and not undone.kept and not undone.failed:
        raise exc  # the first step failed and left nothing behind: its own error is the whole story
    story = [f"{operations.label(call)} failed: {exc.what}", *operations.story(plan, call, exc)]
    if undone.removed:
        removals = [u for u in undone.undone if u not in undone.restored]
        story.append(f"rolled back: {', '.join(removals)} (removed what this run created)")
    else:
        story.append("removed what this run created: nothing to remove")
    if undone.restored:
        story.append("restored: " + ", ".join(undone.restored))
    if undone.kept:
        story.append("kept (--archive): " + ", ".join(undone.kept))
    if undone.failed:
        story.append("COULD NOT REMOVE: " + ", ".join(undone.failed))
    fix = exc.fix or "fix the cause above and run the same command again"
    if undone.failed:
        fix += "; remove what is listed as COULD NOT REMOVE by hand"
    raise TargetError(
        "; ".join(story), where=exc.where or f"{plan.target} endpoint {plan.name}", fix=fix
    ) from exc


def _fail_post(
    plan: DeployPlan, call: PlannedCall, exc: DeployerError, operations: Operations, report: Report
) -> None:
    """A step after the change settled failed: undo this run's post steps, clean up, explain."""
    posts = [(done, False) for done in reversed(report.done) if done.phase == "post"]
    undone = _undo(plan, posts, operations)
    failed = list(undone.failed)
    for cleanup in (c for c in plan.calls if c.phase == "cleanup"):
        before = len(report.warnings)
        _cleanup(cleanup, operations.label(cleanup), operations, report)
        failed += report.warnings[before:]
    undid = [*undone.removed, *undone.restored]
    story = [
        f"{operations.label(call)} failed: {exc.what}",
        *operations.story(plan, call, exc),
        "undone: " + (", ".join(undid) if undid else "nothing"),
    ]
    if failed:
        story.append("COULD NOT: " + ", ".join(failed))
    raise TargetError(
        "; ".join(story),
        where=exc.where or f"{plan.target} endpoint {plan.name}",
        fix=(exc.fix + "; then " if exc.fix else "") + "run the same command again: only what "
        "is missing is applied",
    ) from exc


# ---------------------------------------------------------------------------- --dry-run
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
