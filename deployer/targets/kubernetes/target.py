"""``--target kubernetes`` and ``--target kserve``: deployer's image on a Kubernetes cluster.

The classes are what the ``deployer.targets`` entry points name. Their ``options`` are read by
the CLI without instantiating them (no client import, no kubeconfig needed for ``--help``).
Planning reads the live objects (GET only), :mod:`.plan` decides, :mod:`.apply` runs the calls.

* ``kubernetes``: a Deployment and a Service (+ HorizontalPodAutoscaler, PodDisruptionBudget);
* ``kserve``: a ServingRuntime and an InferenceService on the Open Inference Protocol (V2),
  with canary rollouts (``--canary PCT``, then ``--promote`` or ``--rollback``).

The image is deployer's, verified before it ships: built from ``-m`` and pushed to
``--registry``, or ``--image-uri`` (a tag is resolved to its digest when planning, so the
template never names a moving tag).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from deployer.errors import TargetError, UsageError
from deployer.targets.base import (
    DeployPlan,
    DeployRequest,
    DeployResult,
    EndpointStatus,
    OptionSpec,
)
from deployer.targets.kubernetes import manifests
from deployer.targets.kubernetes import plan as pl
from deployer.targets.kubernetes.spec import KubeSpec, check_name, parse_spec

log = logging.getLogger("deployer")

_ALL = ("deploy", "status", "list", "delete", "predict")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
#: The label every object deployer makes carries (list shows these).
MANAGED = "app.kubernetes.io/managed-by=deployer"
#: The route ``predict`` posts to (deployer's server answers MLflow's protocol next to V2).
PREDICT_ROUTE = "invocations"

CONNECTION: tuple[OptionSpec, ...] = (
    OptionSpec(
        "namespace",
        "Namespace (default: the kubeconfig context's, else 'default').",
        metavar="NAME",
        commands=_ALL,
        connection=True,
    ),
    OptionSpec(
        "context",
        "kubeconfig context (default: the current one).",
        metavar="NAME",
        commands=_ALL,
        connection=True,
    ),
    OptionSpec(
        "kubeconfig",
        "kubeconfig file (default: $KUBECONFIG, ~/.kube/config; none: the "
        "in-cluster service account).",
        type="path",
        metavar="FILE",
        commands=_ALL,
        connection=True,
    ),
)
POD: tuple[OptionSpec, ...] = (
    OptionSpec(
        "registry",
        "With -m: push the verified image to this registry (the cluster pulls it "
        "from there; the template names its digest); the image options (--pip, --base-image, "
        "--lock...) apply.",
        metavar="HOST[/NAMESPACE]",
    ),
    OptionSpec(
        "cpu",
        "CPU request per pod (e.g. 500m, 2); also the limit unless --cpu-limit. The "
        "server runs one worker per whole CPU of the limit.",
        metavar="QUANTITY",
    ),
    OptionSpec("cpu_limit", "CPU limit per pod (default: --cpu).", metavar="QUANTITY"),
    OptionSpec(
        "memory",
        "Memory request per pod (e.g. 1Gi); also the limit unless --memory-limit.",
        metavar="QUANTITY",
    ),
    OptionSpec("memory_limit", "Memory limit per pod (default: --memory).", metavar="QUANTITY"),
    OptionSpec(
        "env",
        "Environment variable for the container, KEY=VALUE (repeatable).",
        multiple=True,
        metavar="KEY=VALUE",
    ),
    OptionSpec(
        "image_pull_secret",
        "Secret the nodes pull the image with (a private registry).",
        metavar="NAME",
    ),
    OptionSpec("service_account", "ServiceAccount the pods run as.", metavar="NAME"),
    OptionSpec(
        "model_name",
        "Name the V2 routes answer to (/v2/models/NAME/...; default: --name).",
        metavar="NAME",
    ),
)
KUBERNETES_OPTIONS: tuple[OptionSpec, ...] = (
    CONNECTION
    + POD
    + (
        OptionSpec("replicas", "Pods (without --autoscale).", type="int", default=1, metavar="N"),
        OptionSpec(
            "autoscale",
            "HorizontalPodAutoscaler: MIN:MAX:CPU% pods and average CPU utilization "
            "of the request, e.g. 2:10:70 (needs --cpu).",
            metavar="MIN:MAX:CPU%",
        ),
        OptionSpec(
            "pdb_min_available",
            "PodDisruptionBudget: pods kept during voluntary disruptions (node drains).",
            type="int",
            metavar="N",
        ),
    )
)
KSERVE_OPTIONS: tuple[OptionSpec, ...] = (
    CONNECTION
    + POD
    + (
        OptionSpec(
            "canary",
            "Send this percent of the traffic to the new revision (the rest stays on "
            "the previous one); then --promote or --rollback.",
            type="int",
            metavar="PCT",
        ),
        OptionSpec(
            "promote",
            "Without -m/--image-uri: send all the traffic to the latest revision.",
            type="bool",
            default=False,
        ),
        OptionSpec(
            "rollback",
            "Without -m/--image-uri: send all the traffic back to the previous revision.",
            type="bool",
            default=False,
        ),
        OptionSpec(
            "min_replicas",
            "Fewest predictor pods (0: scale to zero, serverless mode).",
            type="int",
            metavar="N",
        ),
        OptionSpec("max_replicas", "Most predictor pods.", type="int", metavar="N"),
    )
)


class _KubeTarget:
    """What both targets share: the connection, the image, status/list/delete/predict."""

    name = ""
    workload = ""  # the kind status and list read
    kinds: tuple[str, ...] = ()  # what deploy makes, in apply order
    # -m builds deployer's image only to push it to --registry: the build options need it
    builds_images = "registry"

    def __init__(
        self,
        namespace: str | None = None,
        context: str | None = None,
        kubeconfig: str | None = None,
        *,
        kube: Any = None,
    ) -> None:
        self._namespace = namespace
        self._context = context
        self._kubeconfig = kubeconfig
        self._kube = kube

    # ------------------------------------------------------------------ connection
    @property
    def kube(self) -> Any:
        if self._kube is None:
            from deployer.targets.kubernetes.client import Kube

            self._kube = Kube.connect(kubeconfig=self._kubeconfig, context=self._context)
        return self._kube

    @property
    def namespace(self) -> str:
        if self._namespace:
            return check_name(self._namespace, what="namespace", flag="--namespace")
        return str(getattr(self.kube, "namespace", None) or "default")

    def operations(self) -> Any:
        from deployer.targets.kubernetes.apply import KubeOperations

        return KubeOperations(self.kube, target=self.name)

    def apply(self, plan: DeployPlan) -> DeployResult:
        result: DeployResult = self.operations().run(plan)
        return result

    # ------------------------------------------------------------------ planning
    def _spec(self, request: DeployRequest) -> KubeSpec:
        opts = request.options or {}
        check_name(request.name, what="endpoint name", flag="--name")
        model_name = str(opts.get("model_name") or request.name)
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", model_name):
            raise UsageError(
                f"--model-name {model_name!r} is not a valid model name",
                where="--model-name",
                fix="use letters, digits, '_', '.', '-' (it is a URL path segment)",
            )
        return parse_spec(
            request.name,
            opts,
            namespace=self.namespace,
            model_name=model_name,
            timeout=request.timeout,
            wait=request.wait,
        )

    def _image(self, request: DeployRequest) -> tuple[str, pl.ImageSteps | None]:
        """The image to deploy (a digest reference, or the tag a planned push makes)."""
        registry = (request.options or {}).get("registry")
        if request.model_uri and request.image_uri:
            raise UsageError(
                "give -m MODEL or --image-uri IMAGE, not both",
                where="-m / --image-uri",
                fix="-m builds and pushes the model's image; --image-uri deploys a pushed one",
            )
        if request.model_uri:
            if not registry:
                raise UsageError(
                    "-m builds the model's image, which the cluster must pull from a registry",
                    where="--registry",
                    fix="add --registry HOST[/NAMESPACE] (the cluster's nodes must reach it), or "
                    "deploy "
                    "a pushed image with --image-uri",
                )
            return self._image_build(request, str(registry))
        if registry:
            raise UsageError(
                "--registry is for -m (build and push the model's image)",
                where="--registry",
                fix="drop --registry, or pass -m MODEL",
            )
        if request.image_uri:
            return resolve_digest(request.image_uri), None
        raise UsageError(
            f"nothing to deploy to {self.name}",
            where="-m / --image-uri",
            fix="pass -m MODEL --registry HOST[/NAMESPACE], or --image-uri IMAGE",
        )

    def _with_provenance(self, spec: KubeSpec, request: DeployRequest) -> KubeSpec:
        """``spec`` carrying the provenance annotations of the model of ``-m`` (if any)."""
        if not request.model_uri:
            return spec
        from dataclasses import replace

        from deployer.intake import load_model
        from deployer.model.provenance import model_provenance

        record = model_provenance(request.model_uri, load_model(request.model_uri).path)
        return replace(spec, provenance=tuple(record.to_tags(manifests.PROVENANCE_PREFIX).items()))

    def provenance(self, name: str) -> Any:
        """What the workload ``name`` was deployed from (its annotations; None: absent)."""
        from deployer.model.provenance import Provenance

        check_name(name, what="endpoint name", flag="--name")
        obj = self.kube.get(self.workload, self.namespace, name)
        if obj is None:
            return None
        found = _provenance_of(obj.get("metadata") or {})
        return Provenance(**found) if found else None

    def _image_build(self, request: DeployRequest, registry: str) -> tuple[str, pl.ImageSteps]:
        from deployer.targets.model_image import plan_registry_image

        assert request.model_uri is not None
        image, step = plan_registry_image(request.model_uri, request.build, "local", registry)
        return image, pl.ImageSteps(build=step, image=image)

    def _live(self, namespace: str, name: str, kinds: Sequence[str]) -> pl.Live:
        objects = {}
        for kind in kinds:
            obj_name = manifests.runtime_name_of(name) if kind == "ServingRuntime" else name
            objects[kind] = self.kube.get(kind, namespace, obj_name)
        return pl.Live(objects)

    # ------------------------------------------------------------------ other commands
    def list(self) -> Sequence[EndpointStatus]:
        found = self.kube.list(self.workload, self.namespace, selector=MANAGED)
        return [self._status_of(obj) for obj in found]

    def status(self, name: str) -> EndpointStatus:
        check_name(name, what="endpoint name", flag="--name")
        obj = self.kube.get(self.workload, self.namespace, name)
        if obj is None:
            raise TargetError(
                f"{self.workload} {name!r} does not exist",
                where=self._where(),
                fix=f"deployer list --target {self.name} shows what deployer deployed there",
            )
        return self._status_of(obj)

    def _status_of(self, obj: Mapping[str, Any]) -> EndpointStatus:
        raise NotImplementedError

    def _where(self) -> str:
        host = getattr(self.kube, "host", "?")
        return f"namespace {self.namespace} on {host}"

    def plan_delete(self, name: str) -> DeployPlan:
        check_name(name, what="endpoint name", flag="--name")
        live = self._live(self.namespace, name, self.kinds)
        present = [kind for kind in self.kinds if live.get(kind) is not None]
        return pl.plan_delete(self.name, self.namespace, name, present)

    def delete(self, name: str) -> DeployResult:
        plan = self.plan_delete(name)
        if not plan.calls:
            return DeployResult(
                self.name, name, "delete", "NotFound", details={"namespace": self.namespace}
            )
        operations = self.operations()
        deleted = []
        for call in plan.calls:
            if operations.call(call):
                deleted.append(f"{call.params['kind']}/{call.params['name']}")
        return DeployResult(
            self.name,
            name,
            "delete",
            "Deleted",
            details={"namespace": self.namespace, "deleted": deleted},
        )

    def predict(self, name: str, body: bytes, content_type: str) -> bytes:
        check_name(name, what="endpoint name", flag="--name")
        service, port = self._predict_service(name)
        answer = self.kube.proxy(self.namespace, service, port, PREDICT_ROUTE, body, content_type)
        if answer.status == 200:
            return bytes(answer.body)
        text = answer.body.decode(errors="replace").strip()[:500]
        fix = "check the request body (deployer predict --help shows the formats)"
        if answer.status == 503 or "no endpoints available" in text:
            fix = f"no pod is ready to serve it: deployer status --target {self.name} --name {name}"
        elif answer.status == 404 and "services" in text:
            fix = f"deployer list --target {self.name} shows what is deployed in {self.namespace}"
        raise TargetError(
            f"{service} answered HTTP {answer.status}: {text}",
            where=f"{self._where()} (through the API server's service proxy)",
            fix=fix,
        )

    def _predict_service(self, name: str) -> tuple[str, int | str]:
        raise NotImplementedError


class KubernetesTarget(_KubeTarget):
    """A Deployment + Service (+ HPA, PDB) running deployer's image."""

    name = "kubernetes"
    workload = "Deployment"
    kinds = ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget")
    options = KUBERNETES_OPTIONS

    def plan(self, request: DeployRequest) -> DeployPlan:
        spec = self._spec(request)
        image, steps = self._image(request)
        spec = self._with_provenance(spec, request)
        return pl.plan_kubernetes(
            spec, image, self._live(spec.namespace, spec.name, self.kinds), steps
        )

    def _status_of(self, obj: Mapping[str, Any]) -> EndpointStatus:
        from deployer.targets.kubernetes.apply import rollout_state

        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        state = rollout_state(obj)
        containers = obj["spec"]["template"]["spec"].get("containers") or [{}]
        label = "Ready" if state.done else ("Failed" if state.failure else "Progressing")
        return EndpointStatus(
            self.name,
            meta.get("name", "?"),
            label,
            {
                "namespace": meta.get("namespace"),
                "image": containers[0].get("image"),
                "replicas": state.replicas,
                "ready": int(status.get("readyReplicas") or 0),
                "updated": int(status.get("updatedReplicas") or 0),
                "progress": state.failure or state.progress,
                "fingerprint": (meta.get("annotations") or {}).get(manifests.FINGERPRINT),
                "provenance": _provenance_of(meta),
                "service": f"{meta.get('name')}.{meta.get('namespace')}.svc:80",
            },
        )

    def _predict_service(self, name: str) -> tuple[str, int | str]:
        return name, "http"


class KServeTarget(_KubeTarget):
    """A ServingRuntime + InferenceService (Open Inference Protocol V2) running deployer's image."""

    name = "kserve"
    workload = "InferenceService"
    kinds = ("InferenceService", "ServingRuntime")
    options = KSERVE_OPTIONS

    def plan(self, request: DeployRequest) -> DeployPlan:
        opts = request.options or {}
        spec = self._spec(request)
        action = [a for a in ("promote", "rollback") if opts.get(a)]
        live = self._live(spec.namespace, spec.name, self.kinds)
        if action:
            if (
                len(action) > 1
                or request.model_uri
                or request.image_uri
                or opts.get("canary") is not None
            ):
                raise UsageError(
                    f"--{action[0]} only moves traffic",
                    where=f"--{action[0]}",
                    fix="use one of --promote / --rollback alone, without -m, --image-uri "
                    "or --canary",
                )
            if live.get("InferenceService") is None:
                raise TargetError(
                    f"InferenceService {spec.name!r} does not exist",
                    where=f"namespace {spec.namespace}",
                    fix="deploy it first (deployer deploy --target kserve ...)",
                )
            return pl.plan_traffic(spec, live, action[0])
        image, steps = self._image(request)
        spec = self._with_provenance(spec, request)
        return pl.plan_kserve(spec, image, live, steps)

    def _status_of(self, obj: Mapping[str, Any]) -> EndpointStatus:
        from deployer.targets.kubernetes.apply import inference_service_ready

        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        ready, why = inference_service_ready(obj)
        predictor_spec = (obj.get("spec") or {}).get("predictor") or {}
        predictor = (status.get("components") or {}).get("predictor") or {}
        return EndpointStatus(
            self.name,
            meta.get("name", "?"),
            "Ready" if ready else "NotReady",
            {
                "namespace": meta.get("namespace"),
                "url": status.get("url"),
                "image": (predictor_spec.get("model") or {}).get("image"),
                "canary_traffic_percent": predictor_spec.get("canaryTrafficPercent"),
                "traffic": predictor.get("traffic"),
                "latest_ready_revision": predictor.get("latestReadyRevision"),
                "reason": None if ready else why,
                "fingerprint": (meta.get("annotations") or {}).get(manifests.FINGERPRINT),
                "provenance": _provenance_of(meta),
            },
        )

    def _predict_service(self, name: str) -> tuple[str, int | str]:
        """RawDeployment mode: ``<name>-predictor`` (a ClusterIP Service). Serverless mode:
        that Service is an ExternalName for the Knative gateway, which the API server cannot
        proxy to, so the request goes to the latest ready revision's Service instead."""
        predictor = f"{name}-predictor"
        svc = self.kube.get("Service", self.namespace, predictor)
        if svc is not None and (svc.get("spec") or {}).get("type") != "ExternalName":
            return predictor, 80
        isvc = self.kube.get("InferenceService", self.namespace, name)
        if isvc is None:
            raise TargetError(
                f"InferenceService {name!r} does not exist",
                where=self._where(),
                fix="deployer list --target kserve shows what deployer deployed there",
            )
        revision = (
            ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}
        ).get("latestReadyRevision")
        if not revision:
            raise TargetError(
                f"InferenceService {name!r} has no ready revision",
                where=self._where(),
                fix=f"deployer status --target kserve --name {name}",
            )
        return str(revision), 80


def resolve_digest(image: str) -> str:
    """``image`` as ``repo@sha256:...``: a tag is resolved through the registry (with the
    credentials a push would use), so the template never names a moving tag."""
    if _DIGEST.search(image):
        return image
    from deployer.registries.login import login_for
    from deployer.registries.push import remote_digest, split_reference

    repo = split_reference(image)[0]
    fix = (
        f"pass the image by digest ({repo}@sha256:...; deployer build-and-push prints it), "
        "or check the registry is reachable from here"
    )
    try:
        from deployer.building.engine import docker_client

        digest = remote_digest(docker_client(), image, login_for(image))
    except Exception as exc:  # noqa: BLE001 - engine or registry unreachable: say what to do
        message = getattr(exc, "message", None) or str(exc)
        raise UsageError(
            f"cannot resolve the tag of {image} to a digest: {message}",
            where="--image-uri",
            fix=fix,
        ) from None
    if not digest:
        raise UsageError(f"the registry has no image {image}", where="--image-uri", fix=fix)
    return f"{repo}@{digest}"


def _provenance_of(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The provenance annotations of a workload's metadata, as a dict (None: none)."""
    from deployer.model.provenance import Provenance

    found = Provenance.from_tags(meta.get("annotations") or {}, manifests.PROVENANCE_PREFIX)
    return found.to_dict() if found else None
