"""Kubernetes' and KServe's operations for the one plan executor (:mod:`deployer.targets.executor`).

Each planned operation is one API call (or a wait made of GETs); the executor runs them and owns
the rollback rule. What Kubernetes adds:

* ``apply`` is a server-side apply; its undo applies the previous object back (the previous
  pod template: Kubernetes rolls the pods back to it) or deletes an object this run created;
* ``wait_deployment`` follows the Deployment as ``kubectl rollout status`` does (observed
  generation, updated / available replicas, the progress deadline) and gives up early on
  what never heals by itself: an invalid image name, a container config error, a pod that
  keeps crashing, a ReplicaSet that cannot create pods (a ResourceQuota refusing them);
* ``wait_inference_service`` waits for KServe's ``Ready`` condition of the new generation;
* a failed wait is reported with the pods' state, their last events and log lines, so the
  error says why the rollout did not become ready (the executor then restores the previous
  objects).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deployer.errors import DeployerError, TargetError
from deployer.targets.base import DeployPlan, DeployResult, PlannedCall
from deployer.targets.executor import BaseOperations, execute
from deployer.targets.kubernetes.client import Kube
from deployer.targets.kubernetes.plan import FROM_PUSH

log = logging.getLogger("deployer")

#: Container states that never heal by themselves: the rollout fails at once.
FATAL_WAITING = (
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImageNeverPull",
)
#: Restarts after which a crashing container fails the rollout (before the timeout).
CRASH_RESTARTS = 3
#: How many pods, events and log lines a failure report shows.
SHOWN_PODS, SHOWN_EVENTS, SHOWN_LOG_LINES = 3, 5, 20


@dataclass
class KubeOperations(BaseOperations):
    """Carries out Kubernetes / KServe plans' calls with a :class:`Kube` connection."""

    kube: Kube
    target: str = "kubernetes"
    poll: float = 5.0  # most seconds between two GETs of a wait (the first come after 0.5 s)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    outputs: dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------- the plan
    def run(self, plan: DeployPlan) -> DeployResult:
        report = execute(plan, self)
        details = {**plan.facts, "image": self._pushed_image(plan.facts.get("image"))}
        rollout = report.outputs.get("wait_deployment") or report.outputs.get(
            "wait_inference_service"
        )
        if rollout:
            details["rollout"] = rollout
        if report.warnings:
            details["warnings"] = list(report.warnings)
        status = "Ready" if rollout else ("Unchanged" if plan.action == "noop" else "Applied")
        return DeployResult(
            plan.target,
            plan.name,
            plan.action,
            status,
            endpoint_url=plan.facts.get("service"),
            details=details,
        )

    def story(self, plan: DeployPlan, call: PlannedCall, exc: DeployerError) -> Sequence[str]:
        if call.operation.startswith("wait_") and plan.action == "update":
            return ["the previous template was applied back: Kubernetes rolls the pods back to it"]
        return []

    def _pushed_image(self, planned: Any) -> Any:
        pushed = self.outputs.get("push")
        return _digest_reference(pushed) if pushed is not None else planned

    # ---------------------------------------------------------------- image
    def _op_build_image(self, p: dict[str, Any]) -> str:
        from deployer.targets.model_image import build_step

        return build_step(p)

    def _op_push(self, p: dict[str, Any]) -> Any:
        from deployer.registries.login import login_for
        from deployer.registries.push import push_image

        dest = str(p["Image"])
        return push_image(
            str(p["LocalImage"]), dest, credentials=login_for(dest), skip_if_present=True
        )

    # ---------------------------------------------------------------- objects
    def _op_apply(self, p: dict[str, Any]) -> dict[str, Any]:
        obj = p["object"]
        pushed = self.outputs.get("push")
        if pushed is not None:
            obj = _replace(obj, FROM_PUSH, _digest_reference(pushed))
        return self.kube.apply(obj)

    def _op_delete(self, p: dict[str, Any]) -> bool:
        return self.kube.delete(p["kind"], p.get("namespace"), p["name"])

    # ---------------------------------------------------------------- waits
    def _op_wait_deployment(self, p: dict[str, Any]) -> dict[str, Any]:
        def look(dep: dict[str, Any]) -> Look:
            state = rollout_state(dep)
            return Look(
                state.summary() if state.done else None,
                state.failure,
                f"the rollout did not complete within {p['timeout']:g}s ({state.progress})",
                _selector(dep),
                _image(dep),
            )

        return self._wait("Deployment", p, look)  # type: ignore[no-any-return]

    def _op_wait_inference_service(self, p: dict[str, Any]) -> dict[str, Any]:
        def look(isvc: dict[str, Any]) -> Look:
            ready, why = inference_service_ready(isvc)
            status = isvc.get("status") or {}
            predictor = (status.get("components") or {}).get("predictor") or {}
            done = {
                "url": status.get("url"),
                "traffic": predictor.get("traffic"),
                "latest_ready_revision": predictor.get("latestReadyRevision"),
            }
            return Look(
                done if ready else None,
                why[len("failed:") :].strip() if why.startswith("failed:") else None,
                f"not Ready within {p['timeout']:g}s ({why})",
                f"serving.kserve.io/inferenceservice={p['name']}",
                None,
            )

        return self._wait("InferenceService", p, look)

    def _wait(self, kind: str, p: dict[str, Any], look: Callable[[dict[str, Any]], Look]) -> Any:
        """GET ``kind`` until ``look`` says it is done, fails, or the timeout passes; a pod of
        the new template that cannot heal fails it at once (see the module docstring)."""
        namespace, name, timeout = p["namespace"], p["name"], float(p["timeout"])
        deadline = self.clock() + timeout
        pause = self._pauses()
        while True:
            obj = self.kube.get(kind, namespace, name)
            if obj is None:
                raise TargetError(
                    f"{kind} {name} disappeared during the rollout",
                    where=f"namespace {namespace}",
                    fix="someone deleted it: deploy again",
                )
            seen = look(obj)
            if seen.done is not None:
                return seen.done
            problem = seen.failure or self._pod_failure(namespace, seen.selector, seen.image)
            if problem is None and self.clock() >= deadline:
                problem = seen.timeout_message
            if problem is not None:
                raise TargetError(
                    f"{kind} {name} did not become ready: {problem}",
                    where=f"namespace {namespace}",
                    fix=_fix(problem) + "\n" + self.diagnose(namespace, seen.selector),
                )
            self.sleep(min(next(pause), max(0.0, deadline - self.clock())))

    def _pauses(self) -> Any:
        """0.5 s, 1 s, 2 s... up to :attr:`poll` between two GETs."""
        pause = 0.5
        while True:
            yield pause
            pause = min(pause * 2, self.poll)

    # ---------------------------------------------------------------- diagnosis
    def _pod_failure(self, namespace: str, selector: str, image: str | None) -> str | None:
        """A reason to stop waiting now: a pod of the new template that cannot heal."""
        for pod in self.kube.list("Pod", namespace, selector=selector):
            if image is not None and image not in _pod_images(pod):
                continue  # a pod of the previous template
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (status.get("state") or {}).get("waiting") or {}
                reason = waiting.get("reason")
                pod_name = pod["metadata"]["name"]
                if reason in FATAL_WAITING:
                    return f"pod {pod_name}: {reason}: {waiting.get('message') or ''}".rstrip(": ")
                if (
                    reason == "CrashLoopBackOff"
                    and int(status.get("restartCount") or 0) >= CRASH_RESTARTS
                ):
                    return (
                        f"pod {pod_name}: the container keeps crashing "
                        f"({status.get('restartCount')} restarts, CrashLoopBackOff)"
                    )
        return None

    def diagnose(self, namespace: str, selector: str) -> str:
        """The pods' state, last events and log lines, as text for an error."""
        lines: list[str] = []
        try:
            pods = self.kube.list("Pod", namespace, selector=selector)
        except DeployerError as exc:
            return f"(could not list the pods: {exc})"
        if not pods:
            lines.append(
                "no pod was created (see the events of the ReplicaSet: kubectl get events)"
            )
        unready = [p for p in pods if not _pod_ready(p)] or pods
        for pod in unready[:SHOWN_PODS]:
            name = pod["metadata"]["name"]
            lines.append(f"pod {name}: {_pod_state(pod)}")
            try:
                events = self.kube.list(
                    "Event", namespace, field_selector=f"involvedObject.name={name}"
                )
            except DeployerError:
                events = []
            events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
            for event in events[-SHOWN_EVENTS:]:
                lines.append(
                    f"  event {event.get('type', '')} {event.get('reason', '')}: "
                    f"{str(event.get('message') or '').strip()}"
                )
            restarted = any(
                int(s.get("restartCount") or 0) > 0
                for s in (pod.get("status") or {}).get("containerStatuses") or []
            )
            text = self.kube.logs(namespace, name, tail=SHOWN_LOG_LINES, previous=restarted)
            if text.strip():
                lines.append(
                    "  last log lines" + (" (previous container)" if restarted else "") + ":"
                )
                lines.extend(
                    "    " + line for line in text.rstrip().splitlines()[-SHOWN_LOG_LINES:]
                )
        return "\n".join(lines)


@dataclass(frozen=True)
class Look:
    """One GET of a workload during a wait, judged."""

    done: Any  # what the wait returns once it is ready (None: not yet)
    failure: str | None  # a state that will not heal
    timeout_message: str  # what to say if the time is up now
    selector: str  # its pods
    image: str | None  # the new template's image (None: every pod counts)


@dataclass(frozen=True)
class RolloutState:
    done: bool
    progress: str
    failure: str | None = None
    replicas: int = 0
    ready: int = 0

    def summary(self) -> dict[str, Any]:
        return {"replicas": self.replicas, "ready": self.ready}


def rollout_state(dep: Mapping[str, Any]) -> RolloutState:
    """Where a Deployment's rollout is (the rules of ``kubectl rollout status``)."""
    meta, spec, status = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    wanted = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    progress = f"{updated}/{wanted} updated, {available} available"
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return RolloutState(
            False, "waiting for the controller to see the new template", replicas=wanted
        )
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return RolloutState(
                False,
                progress,
                f"progress deadline exceeded: {cond.get('message')}",
                wanted,
                available,
            )
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return RolloutState(
                False, progress, f"{cond.get('reason')}: {cond.get('message')}", wanted, available
            )
    if updated < wanted:
        return RolloutState(False, progress, replicas=wanted, ready=available)
    if total > updated:
        return RolloutState(
            False,
            f"{total - updated} old pod(s) still terminating",
            replicas=wanted,
            ready=available,
        )
    if available < updated:
        return RolloutState(False, progress, replicas=wanted, ready=available)
    return RolloutState(True, progress, replicas=wanted, ready=available)


def inference_service_ready(isvc: Mapping[str, Any]) -> tuple[bool, str]:
    """(Ready for the current generation, why not). A ``failed:`` reason will not heal."""
    meta, status = isvc.get("metadata") or {}, isvc.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is not None and int(observed) < int(meta.get("generation") or 0):
        return False, "waiting for KServe to see the new generation"
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready")
    predictor = (status.get("components") or {}).get("predictor") or {}
    created, latest = predictor.get("latestCreatedRevision"), predictor.get("latestReadyRevision")
    if ready and ready.get("status") == "True" and (created is None or created == latest):
        return True, "Ready"
    for cond in conditions.values():
        if cond.get("status") == "False" and cond.get("reason") in (
            "RevisionFailed",
            "ContainerMissing",
        ):
            return False, f"failed: {cond.get('type')}: {cond.get('reason')}: {cond.get('message')}"
    if ready is None:
        return False, "no Ready condition yet"
    return (
        False,
        f"Ready={ready.get('status')}: {ready.get('reason') or ''} "
        f"{ready.get('message') or ''}".strip(),
    )


def _fix(problem: str) -> str:
    lowered = problem.lower()
    if "quota" in lowered:
        return (
            "the namespace's ResourceQuota refused the pods: lower --cpu / --memory / --replicas, "
            "or ask for a larger quota (kubectl describe resourcequota); the previous template "
            "keeps serving"
        )
    if "imagepull" in lowered or "errimage" in lowered or "invalidimagename" in lowered:
        return (
            "the cluster cannot pull the image: check its name, that the registry is reachable "
            "from "
            "the nodes, and --image-pull-secret"
        )
    return "fix what the pods report below and deploy again; the previous template keeps serving"


def _selector(dep: Mapping[str, Any]) -> str:
    labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _image(dep: Mapping[str, Any]) -> str | None:
    containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    return containers[0].get("image") if containers else None


def _pod_images(pod: Mapping[str, Any]) -> list[Any]:
    return [c.get("image") for c in (pod.get("spec") or {}).get("containers") or []]


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def _pod_state(pod: Mapping[str, Any]) -> str:
    status = pod.get("status") or {}
    parts = [str(status.get("phase") or "Unknown")]
    for c in status.get("containerStatuses") or []:
        state = c.get("state") or {}
        for key in ("waiting", "terminated"):
            if state.get(key):
                detail = state[key]
                text = f"{c.get('name')} {key}: {detail.get('reason') or ''}"
                if detail.get("exitCode") is not None:
                    text += f" (exit code {detail['exitCode']})"
                if detail.get("message"):
                    text += f": {str(detail['message']).strip()[:300]}"
                parts.append(text)
        parts.append(
            f"{c.get('name')} ready={bool(c.get('ready'))} restarts={c.get('restartCount', 0)}"
        )
    for cond in status.get("conditions") or []:
        if cond.get("status") == "False" and cond.get("message"):
            parts.append(f"{cond.get('type')}: {cond.get('message')}")
    return "; ".join(parts)


def _digest_reference(pushed: Any) -> str:
    """``repo@sha256:...`` of a PushResult (the tag when the registry gave no digest)."""
    from deployer.registries.push import split_reference

    digest = getattr(pushed, "digest", None)
    image = str(getattr(pushed, "image", pushed))
    return f"{split_reference(image)[0]}@{digest}" if digest else image


def _replace(value: Any, placeholder: str, real: str) -> Any:
    if value == placeholder:
        return real
    if isinstance(value, dict):
        return {k: _replace(v, placeholder, real) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, placeholder, real) for v in value]
    return value
