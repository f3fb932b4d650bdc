"""The manifests, as plain dicts (pure): what ``deploy`` applies and ``export`` writes.

One pod template for both targets (:func:`container`, :func:`pod_security`), built for
deployer's image and server:

* the image by digest (``repo@sha256:...``), never a moving tag;
* ``serve`` as the command (the image's entrypoint is dumb-init), port 8080;
* readiness on the Open Inference Protocol's model-ready route (a worker answers only once it
  holds the loaded model), liveness on ``/ping``; the first probe waits for the model to load
  (``startupProbe``, up to 10 minutes) so a slow load is not killed as dead;
* non-root (uid 1000, the image's user), read-only root filesystem, no privilege escalation,
  every capability dropped, and a writable ``/tmp`` (an ``emptyDir``: MLflow, the metrics
  directory and Python write only there; ``HOME`` and ``TMPDIR`` point at it);
* ``DEPLOYER_SERVE_WORKERS`` from the CPU limit (the container sees the node's CPUs, not its
  quota), ``terminationGracePeriodSeconds`` (40 s) above the server's graceful shutdown (25 s);
* a ``deployer.io/fingerprint`` annotation: what the pod runs, hashed; the same request plans
  no call when the live object already carries it.

Kubernetes: Deployment + Service (+ HorizontalPodAutoscaler, PodDisruptionBudget). KServe: a
ServingRuntime ``deployer-<name>`` holding that container (model format ``deployer-mlflow``,
protocol V2) and an InferenceService whose predictor uses it with ``protocolVersion: v2``,
min/max replicas and ``canaryTrafficPercent``. KServe's serverless mode runs the predictor as
a Knative revision, whose validation refuses startup probes, ``runAsGroup``, pod-level security
contexts and grace periods (Knative sets those itself): the KServe container keeps the
readiness probe, the non-root read-only settings and ``/tmp``, and nothing Knative refuses.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from deployer.targets.kubernetes.spec import GRACE_PERIOD, GRACEFUL_SECONDS, PORT, KubeSpec

FINGERPRINT = "deployer.io/fingerprint"
#: Prefix of the provenance annotations (:class:`~deployer.model.provenance.Provenance`).
PROVENANCE_PREFIX = "deployer.io/"
MODEL_FORMAT = "deployer-mlflow"
KSERVE_CONTAINER = "kserve-container"
MANAGED_BY = {"app.kubernetes.io/managed-by": "deployer"}


def runtime_name(spec: KubeSpec) -> str:
    return runtime_name_of(spec.name)


def runtime_name_of(name: str) -> str:
    """The ServingRuntime deployer makes for InferenceService ``name``."""
    return f"deployer-{name}"[:63].rstrip("-")


def fingerprint(spec: KubeSpec, image: str, kind: str) -> str:
    """What the workload runs and how (image, resources, env, replicas...), as one digest."""
    data = {
        "kind": kind,
        "image": image,
        **{
            k: v
            for k, v in spec.__dict__.items()
            if k not in ("timeout", "wait", "namespace", "provenance")
        },
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _resources(spec: KubeSpec) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", spec.cpu_request), ("memory", spec.memory_request)) if v}
    limits = {k: v for k, v in (("cpu", spec.cpu_limit), ("memory", spec.memory_limit)) if v}
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def container(
    spec: KubeSpec, image: str, *, name: str = "model", knative: bool = False
) -> dict[str, Any]:
    """deployer's server in the pod (see the module docstring). ``knative``: for KServe, whose
    serverless mode (Knative) refuses startup probes and ``runAsGroup``, and restarts nothing
    on its own: readiness only, so a slow model load is never killed."""
    env: dict[str, str] = {}
    if spec.workers is not None:  # one worker per CPU of the quota, one BLAS thread each
        env["DEPLOYER_SERVE_WORKERS"] = str(spec.workers)
        env["DEPLOYER_SERVE_BLAS_THREADS"] = "1"
    env.update(
        {
            "DEPLOYER_SERVE_MODEL_NAME": spec.model_name,
            "DEPLOYER_SERVE_GRACEFUL_TIMEOUT": str(GRACEFUL_SECONDS),
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
        }
    )
    env.update(dict(spec.env))  # the user's --env wins
    out: dict[str, Any] = {
        "name": name,
        "image": image,
        "args": ["serve"],
        # Knative (KServe's serverless mode) takes only the port names http1 and h2c
        "ports": [{"name": "http1", "containerPort": PORT, "protocol": "TCP"}],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "readinessProbe": _probe(f"/v2/models/{spec.model_name}/ready", period=5, failures=3),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if not knative:
        out["startupProbe"] = _probe("/ping", period=2, failures=300)
        out["livenessProbe"] = _probe("/ping", period=10, failures=3)
        out["securityContext"]["runAsGroup"] = 1000
    resources = _resources(spec)
    if resources:
        out["resources"] = resources
    return out


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def pod_volumes() -> list[dict[str, Any]]:
    return [{"name": "tmp", "emptyDir": {}}]


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pull_secrets(spec: KubeSpec) -> list[dict[str, str]]:
    return [{"name": spec.image_pull_secret}] if spec.image_pull_secret else []


def _metadata(
    spec: KubeSpec, name: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": spec.namespace, "labels": spec.labels()}
    if annotations:
        meta["annotations"] = annotations
    return meta


# ---------------------------------------------------------------------------- Kubernetes
def deployment(spec: KubeSpec, image: str, print_: str) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "securityContext": pod_security(),
        "terminationGracePeriodSeconds": GRACE_PERIOD,
        # Service links would give the container <SERVICE>_PORT=tcp://... for every Service of
        # the namespace: one named deployer-serve would set DEPLOYER_SERVE_PORT, the server's
        "enableServiceLinks": False,
        "containers": [container(spec, image)],
        "volumes": pod_volumes(),
    }
    if spec.service_account:
        pod["serviceAccountName"] = spec.service_account
    if spec.image_pull_secret:
        pod["imagePullSecrets"] = _pull_secrets(spec)
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec, spec.name, {FINGERPRINT: print_, **dict(spec.provenance)}),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": spec.name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "progressDeadlineSeconds": max(60, int(spec.timeout)),
            "template": {"metadata": {"labels": spec.labels()}, "spec": pod},
        },
    }
    if spec.autoscale is None:  # with an HPA, the HPA owns the replica count
        body["spec"]["replicas"] = spec.replicas
    return body


def service(spec: KubeSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, spec.name),
        "spec": {
            "selector": {"app.kubernetes.io/name": spec.name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http1", "protocol": "TCP"}],
        },
    }


def autoscaler(spec: KubeSpec) -> dict[str, Any]:
    assert spec.autoscale is not None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(spec, spec.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": spec.autoscale.min_replicas,
            "maxReplicas": spec.autoscale.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": spec.autoscale.cpu_percent,
                        },
                    },
                }
            ],
        },
    }


def disruption_budget(spec: KubeSpec) -> dict[str, Any]:
    assert spec.pdb_min_available is not None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(spec, spec.name),
        "spec": {
            "minAvailable": spec.pdb_min_available,
            "selector": {"matchLabels": {"app.kubernetes.io/name": spec.name}},
        },
    }


def kubernetes_objects(
    spec: KubeSpec, image: str, print_: str | None = None
) -> list[dict[str, Any]]:
    """Deployment, Service, and the optional HPA and PDB, in the order they are applied.
    ``print_``: the fingerprint annotation (default: of ``spec`` and ``image``)."""
    print_ = print_ or fingerprint(spec, image, "kubernetes")
    objects = [deployment(spec, image, print_), service(spec)]
    if spec.autoscale is not None:
        objects.append(autoscaler(spec))
    if spec.pdb_min_available is not None:
        objects.append(disruption_budget(spec))
    return objects


# ---------------------------------------------------------------------------- KServe
def serving_runtime(spec: KubeSpec, image: str) -> dict[str, Any]:
    runtime: dict[str, Any] = {
        "supportedModelFormats": [{"name": MODEL_FORMAT, "version": "1", "autoSelect": False}],
        "protocolVersions": ["v2"],
        "containers": [container(spec, image, name=KSERVE_CONTAINER, knative=True)],
        "volumes": pod_volumes(),
    }
    if spec.image_pull_secret:
        runtime["imagePullSecrets"] = _pull_secrets(spec)
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": _metadata(spec, runtime_name(spec)),
        "spec": runtime,
    }


def inference_service(spec: KubeSpec, image: str, print_: str) -> dict[str, Any]:
    # the image is set here too (KServe merges the model's container fields over the runtime's):
    # a new image is a new revision of this InferenceService, which canary rollouts need
    predictor: dict[str, Any] = {
        "model": {
            "modelFormat": {"name": MODEL_FORMAT},
            "runtime": runtime_name(spec),
            "protocolVersion": "v2",
            "image": image,
        },
        "enableServiceLinks": False,  # see deployment(); Knative accepts only false here
    }
    if spec.service_account:
        predictor["serviceAccountName"] = spec.service_account
    if spec.min_replicas is not None:
        predictor["minReplicas"] = spec.min_replicas
    if spec.max_replicas is not None:
        predictor["maxReplicas"] = spec.max_replicas
    if spec.canary is not None:
        predictor["canaryTrafficPercent"] = spec.canary
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _metadata(spec, spec.name, {FINGERPRINT: print_, **dict(spec.provenance)}),
        "spec": {"predictor": predictor},
    }


def kserve_objects(spec: KubeSpec, image: str, print_: str | None = None) -> list[dict[str, Any]]:
    """The ServingRuntime and the InferenceService (``print_``: see :func:`kubernetes_objects`)."""
    print_ = print_ or fingerprint(spec, image, "kserve")
    return [serving_runtime(spec, image), inference_service(spec, image, print_)]


def kustomization(files: list[str], namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        "resources": files,
    }
