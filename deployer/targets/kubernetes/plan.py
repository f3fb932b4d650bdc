"""Deploy plans for Kubernetes and KServe (pure: the live objects come in, calls come out).

A deploy is a server-side apply of each object (field manager ``deployer``), then a wait for
the rollout (the Deployment's conditions, or the InferenceService's ``Ready``). Every apply
carries its undo for the executor's one rule: an object that existed is applied back as it
was (its previous template: the rollback), a new one is deleted. So a rollout that does not
become ready within ``--timeout`` leaves the previous template serving, and the error shows
the pods' last events and log lines (see :mod:`.apply`).

The same request again plans no call: the workload carries a fingerprint annotation of what
it runs (:func:`deployer.targets.kubernetes.manifests.fingerprint`), compared with the live one.
With ``-m`` the plan starts with the build (verified) and the push, like Azure ML's
``--registry``; the image is then referenced by the digest the push returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deployer.targets.base import DeployPlan, PlannedCall
from deployer.targets.kubernetes import manifests
from deployer.targets.kubernetes.spec import KubeSpec

SERVICE = "kubernetes"
#: A planned image not known before the push ran: the handler puts the pushed digest here.
FROM_PUSH = "$pushed-image"
#: Fields the API server fills in, never re-applied when a previous object is restored.
_SERVER_METADATA = (
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
)
_SERVER_ANNOTATIONS = (
    "deployment.kubernetes.io/revision",
    "kubectl.kubernetes.io/last-applied-configuration",
)


@dataclass(frozen=True)
class ImageSteps:
    """``-m``: build (and verify) the image, push it to ``image`` (a tag); the apply then uses
    the pushed digest."""

    build: Mapping[str, Any]  # model_image.plan_model_image's step parameters
    image: str  # registry/repository:tag


@dataclass(frozen=True)
class Live:
    """What exists now, by kind (None: absent)."""

    objects: Mapping[str, dict[str, Any] | None] = field(default_factory=dict)

    def get(self, kind: str) -> dict[str, Any] | None:
        return self.objects.get(kind)

    def fingerprint(self, kind: str) -> str | None:
        """The ``deployer.io/fingerprint`` annotation of the live ``kind`` (None: absent)."""
        meta = (self.objects.get(kind) or {}).get("metadata") or {}
        return (meta.get("annotations") or {}).get(manifests.FINGERPRINT)


def restorable(obj: dict[str, Any]) -> dict[str, Any]:
    """A live object as an apply body: what was applied, without what the server added."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in _SERVER_METADATA}
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in _SERVER_ANNOTATIONS
    }
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": meta,
        "spec": obj.get("spec", {}),
    }


def apply_call(
    obj: dict[str, Any], live: dict[str, Any] | None, description: str, *, phase: str = "commit"
) -> PlannedCall:
    """Apply ``obj``; undo: apply ``live`` back (it existed) or delete (it did not)."""
    meta = obj["metadata"]
    if live is not None:
        undo = PlannedCall(
            SERVICE,
            "apply",
            {"object": restorable(live)},
            f"restore {obj['kind']} {meta['name']} as it was",
        )
    else:
        undo = PlannedCall(
            SERVICE,
            "delete",
            {"kind": obj["kind"], "namespace": meta.get("namespace"), "name": meta["name"]},
            f"delete {obj['kind']} {meta['name']}",
        )
    return PlannedCall(SERVICE, "apply", {"object": obj}, description, phase=phase, undo=undo)


def _image_calls(steps: ImageSteps) -> list[PlannedCall]:
    from deployer.targets.model_image import build_call

    local = str(steps.build["LocalImage"])
    return [
        build_call(steps.build, "the model's image"),
        PlannedCall(
            "docker",
            "push",
            {"LocalImage": local, "Image": steps.image},
            f"push {local} to {steps.image} (skipped if the registry has it)",
        ),
    ]


def _noop(spec: KubeSpec, kind: str, workload: str, facts: dict[str, Any]) -> DeployPlan:
    return DeployPlan(
        kind,
        spec.name,
        "noop",
        (),
        summary=f"{workload} {spec.namespace}/{spec.name} "
        "already runs exactly this (same fingerprint): nothing to do",
        facts=facts,
    )


def plan_kubernetes(
    spec: KubeSpec, image: str, live: Live, steps: ImageSteps | None = None
) -> DeployPlan:
    """Deployment + Service (+ HPA, PDB), then wait for the rollout; obsolete HPA/PDB removed
    after success."""
    wanted = manifests.fingerprint(spec, image, "kubernetes")
    objects = manifests.kubernetes_objects(spec, FROM_PUSH if steps else image, wanted)
    current = live.fingerprint("Deployment")
    facts: dict[str, Any] = {
        "namespace": spec.namespace,
        "image": image,
        "fingerprint": wanted,
        "replicas": None if spec.autoscale else spec.replicas,
        "workers": spec.workers,
        "service": f"{spec.name}.{spec.namespace}.svc:80",
    }
    obsolete = [
        k
        for k in ("HorizontalPodAutoscaler", "PodDisruptionBudget")
        if live.get(k) is not None and k not in {o["kind"] for o in objects}
    ]
    if current == wanted and live.get("Service") is not None and not obsolete:
        return _noop(spec, "kubernetes", "Deployment", facts)
    calls = _image_calls(steps) if steps else []
    verb = "update" if live.get("Deployment") is not None else "create"
    for obj in objects:
        kind = obj["kind"]
        previous = live.get(kind)
        if kind == "Deployment" and previous is not None and live.get("HorizontalPodAutoscaler"):
            # the autoscaler owns the replica count: a rollback must not take it over (a later
            # apply without it would then reset the Deployment to 1 replica)
            previous = {
                **previous,
                "spec": {k: v for k, v in previous.get("spec", {}).items() if k != "replicas"},
            }
        calls.append(
            apply_call(
                obj,
                previous,
                f"server-side apply {kind} {spec.name} ({_detail(spec, kind, verb, image)})",
            )
        )
    if spec.wait:
        calls.append(
            PlannedCall(
                SERVICE,
                "wait_deployment",
                {"namespace": spec.namespace, "name": spec.name, "timeout": spec.timeout},
                f"wait until the rollout of {spec.name} is complete (new pods ready) within "
                f"{spec.timeout:g}s",
                phase="wait",
            )
        )
    for kind in obsolete:
        calls.append(
            PlannedCall(
                SERVICE,
                "delete",
                {"kind": kind, "namespace": spec.namespace, "name": spec.name},
                f"delete {kind} {spec.name} (no longer asked for)",
                phase="cleanup",
            )
        )
    return DeployPlan(
        "kubernetes",
        spec.name,
        verb,
        tuple(calls),
        summary=f"{verb} {spec.namespace}/{spec.name}: {image}",
        facts=facts,
    )


def _detail(spec: KubeSpec, kind: str, verb: str, image: str) -> str:
    if kind == "Deployment":
        workers = f"{spec.workers} worker(s)" if spec.workers else "a worker per CPU it sees"
        return f"{verb}: {image}, {workers} per pod"
    if kind == "Service":
        return "port 80 -> 8080"
    if kind == "HorizontalPodAutoscaler" and spec.autoscale is not None:
        a = spec.autoscale
        return f"{a.min_replicas}-{a.max_replicas} pods at {a.cpu_percent}% CPU"
    return f"min available {spec.pdb_min_available}"


def plan_kserve(
    spec: KubeSpec, image: str, live: Live, steps: ImageSteps | None = None
) -> DeployPlan:
    """ServingRuntime + InferenceService (V2), then wait until it is Ready."""
    wanted = manifests.fingerprint(spec, image, "kserve")
    runtime, isvc = manifests.kserve_objects(spec, FROM_PUSH if steps else image, wanted)
    current = live.fingerprint("InferenceService")
    facts: dict[str, Any] = {
        "namespace": spec.namespace,
        "image": image,
        "fingerprint": wanted,
        "runtime": runtime["metadata"]["name"],
        "canary": spec.canary,
        "protocol": "v2",
        "workers": spec.workers,
    }
    if current == wanted and live.get("ServingRuntime") is not None:
        return _noop(spec, "kserve", "InferenceService", facts)
    verb = "update" if live.get("InferenceService") is not None else "create"
    canary = (
        ""
        if spec.canary is None
        else f", {spec.canary}% of the traffic to the new revision (canary)"
    )
    calls = _image_calls(steps) if steps else []
    calls.append(
        apply_call(
            runtime,
            live.get("ServingRuntime"),
            f"server-side apply ServingRuntime {runtime['metadata']['name']} ({image}, V2)",
        )
    )
    calls.append(
        apply_call(
            isvc,
            live.get("InferenceService"),
            f"server-side apply InferenceService {spec.name}{canary}",
        )
    )
    if spec.wait:
        calls.append(_wait_isvc(spec))
    return DeployPlan(
        "kserve",
        spec.name,
        verb,
        tuple(calls),
        summary=f"{verb} InferenceService {spec.namespace}/{spec.name}: {image}{canary}",
        facts=facts,
    )


def _wait_isvc(spec: KubeSpec) -> PlannedCall:
    return PlannedCall(
        SERVICE,
        "wait_inference_service",
        {"namespace": spec.namespace, "name": spec.name, "timeout": spec.timeout},
        f"wait until InferenceService {spec.name} is Ready within {spec.timeout:g}s",
        phase="wait",
    )


def plan_traffic(spec: KubeSpec, live: Live, action: str) -> DeployPlan:
    """KServe ``--promote`` (all traffic to the latest revision) or ``--rollback`` (all to the
    previous one): the live InferenceService applied with ``canaryTrafficPercent`` removed or 0."""
    current = live.get("InferenceService")
    assert current is not None
    body = restorable(current)
    predictor = dict(body["spec"].get("predictor") or {})
    before = predictor.get("canaryTrafficPercent")
    if action == "promote":
        predictor.pop("canaryTrafficPercent", None)
        what = "send all the traffic to the latest revision"
    else:
        predictor["canaryTrafficPercent"] = 0
        what = "send all the traffic back to the previous revision"
    body["spec"] = {**body["spec"], "predictor": predictor}
    facts = {"namespace": spec.namespace, "canary_before": before, "action": action}
    calls: list[PlannedCall] = [
        apply_call(body, current, f"server-side apply InferenceService {spec.name}: {what}")
    ]
    if spec.wait:
        calls.append(_wait_isvc(spec))
    return DeployPlan(
        "kserve", spec.name, action, tuple(calls), summary=f"{spec.name}: {what}", facts=facts
    )


def plan_delete(kind: str, namespace: str, name: str, present: Sequence[str]) -> DeployPlan:
    """Delete what deployer made for ``name`` (the kinds in ``present``), workload first."""
    order = [
        "InferenceService",
        "ServingRuntime",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]
    calls = []
    for k in order:
        if k in present:
            obj_name = manifests.runtime_name_of(name) if k == "ServingRuntime" else name
            calls.append(
                PlannedCall(
                    SERVICE,
                    "delete",
                    {"kind": k, "namespace": namespace, "name": obj_name},
                    f"delete {k} {obj_name}",
                    phase="cleanup",
                )
            )
    return DeployPlan(
        kind,
        name,
        "delete",
        tuple(calls),
        summary=f"delete {namespace}/{name}",
        facts={"namespace": namespace},
    )
