"""Pure planning of an Azure ML rollout: what exists + what was asked -> the SDK calls, in order.

Nothing here imports azure-ai-ml or talks to Azure: :func:`plan_deploy` gets a snapshot of
the endpoint (:class:`EndpointState`, read by the target) and the validated request
(:class:`DeploySpec`) and returns a :class:`~deployer.targets.base.DeployPlan` whose calls
name azure-ai-ml operations (``online_deployments.begin_create_or_update``...) with plain,
JSON-printable parameters. ``--dry-run`` prints exactly this; :mod:`.apply` runs it.

The default rollout is blue/green, as Azure recommends for managed online endpoints:

1. create the endpoint if it does not exist (undone if the rollout fails);
2. register what the deployment runs: an environment for a bring-your-own-container image
   (image + inference_config routes), or the MLflow model (``mlflow_model``: Azure builds the
   environment and scores with its no-code server);
3. create the new deployment (the idle one of blue/green) with **0 %** traffic and wait until
   it reaches Succeeded; a deployment that fails provisioning is deleted;
4. smoke-test it: one request built from the model's input example, sent to the endpoint's
   scoring URI with the ``azureml-model-deployment`` header, so it reaches only the new
   deployment; a failure deletes the new deployment and leaves traffic untouched;
5. commit: set the endpoint's traffic map (all to the new deployment, or ``--traffic``).

With ``--registry`` and ``-m``, deployer builds its own image for Azure ML (azmlinfsrv +
score.py, the model inside), verifies it and pushes it before step 1, and step 2 registers
that image: a build or push failure leaves the workspace untouched.

The previous deployment is kept at 0 %: shifting back is one ``--traffic`` away, and the
next rollout replaces it.

Idempotence: every deployment deployer creates carries a fingerprint tag (what it runs and
with which settings). When the deployment that takes all the traffic already has the
fingerprint of the request, the plan is a ``noop``: re-running a pipeline does not roll a new
deployment (nor build or push an image).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from deployer.targets.azureml import traffic as tr
from deployer.targets.base import DeployPlan, PlannedCall

TARGET = "azureml"
SERVICE = "azure-ai-ml"
DATA_PLANE = "scoring-uri"

#: Deployment tag holding :func:`fingerprint` of what the deployment runs.
TAG_FINGERPRINT = "deployer-fingerprint"
#: Prefix of the provenance tags (:class:`~deployer.model.provenance.Provenance`) written on
#: the endpoint (when it is created) and on every deployment.
PROVENANCE_PREFIX = "deployer-"

#: Markers in deployment params for results of earlier calls of the same plan.
FROM_ENVIRONMENT = "@environments.create_or_update"
FROM_MODEL = "@models.create_or_update"


@dataclass(frozen=True)
class ImageRoutes:
    """The inference_config of a bring-your-own-container environment: where Azure probes
    liveness/readiness and sends scoring requests inside the container."""

    port: int = 8080  # what `deployer build --target azureml` images listen on (azmlinfsrv)
    liveness: str = "/"
    readiness: str = "/"
    scoring: str = "/score"

    def inference_config(self) -> dict[str, Any]:
        return {
            "liveness_route": {"path": self.liveness, "port": self.port},
            "readiness_route": {"path": self.readiness, "port": self.port},
            "scoring_route": {"path": self.scoring, "port": self.port},
        }


@dataclass(frozen=True)
class ImageSource:
    """Deploy a pushed image (BYOC): Azure runs it as is and probes the routes."""

    image: str
    routes: ImageRoutes = ImageRoutes()
    environment_name: str = ""


@dataclass(frozen=True)
class MlflowSource:
    """Deploy an MLflow model with Azure's no-code path: register it as ``mlflow_model``."""

    path: str  # local model directory
    model_name: str
    digest: str = ""  # the model files' content digest (what the deployment serves)
    # what the no-code check found (targets/azureml/no_code.py): shown in the plan's facts
    no_code: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RegisteredSource:
    """A model already registered in the workspace (``azureml:NAME:VERSION``)."""

    reference: str


Source = ImageSource | MlflowSource | RegisteredSource


@dataclass(frozen=True)
class EndpointState:
    """What the target read about the endpoint before planning."""

    name: str
    exists: bool = False
    provisioning_state: str | None = None
    traffic: Mapping[str, int] = field(default_factory=dict)
    deployments: Mapping[str, str] = field(default_factory=dict)  # name -> provisioning state
    scoring_uri: str | None = None
    auth_mode: str | None = None
    fingerprints: Mapping[str, str] = field(default_factory=dict)  # deployment -> TAG_FINGERPRINT


@dataclass(frozen=True)
class DeploySpec:
    """A validated ``deployer deploy --target azureml`` request."""

    endpoint: str
    source: Source | None  # None: only change traffic
    deployment: str | None = None
    instance_type: str = "Standard_DS3_v2"
    instance_count: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    traffic: Mapping[str, int] | None = None
    auth_mode: str = "key"
    wait: bool = True
    timeout: float = 1800.0
    smoke_body: Any = None  # JSON body for the smoke test; None: no example, test skipped
    request_timeout_ms: int | None = None
    max_concurrent_requests: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    provenance: Mapping[str, str] = field(default_factory=dict)
    """The model's provenance tags (``PROVENANCE_PREFIX``), for the new deployment."""
    local: bool = False  # azure-ai-ml local endpoints: the local Docker engine, no Azure calls
    model_path: str | None = None  # local model folder (local mode mounts it)
    # --registry: the build_image step's params (ModelUri, LocalImage, Build); the image is
    # built and pushed as the ImageSource's image before anything changes in the workspace
    build_step: Mapping[str, Any] | None = None


def plan_deploy(spec: DeploySpec, state: EndpointState) -> DeployPlan:
    """The ordered SDK calls that take ``state`` to what ``spec`` asks for."""
    if spec.local:
        plan = _plan_local(spec, state)
    elif spec.source is None:
        plan = _plan_traffic_only(spec, state)
    else:
        plan = _plan_rollout(spec, state)
    if spec.build_step is None or plan.action == "noop":
        return plan
    assert isinstance(spec.source, ImageSource)
    return replace(
        plan,
        calls=(*_image_calls(spec.build_step, spec.source.image), *plan.calls),
        facts={
            **plan.facts,
            "image": spec.source.image,
            "local_image": spec.build_step["LocalImage"],
            "verify": spec.build_step["Build"].get("verify", True) is not False,
        },
    )


def _image_calls(step: Mapping[str, Any], image: str) -> tuple[PlannedCall, ...]:
    """Build (and verify) deployer's image, then push it as ``image``: no undo, the workspace
    is untouched and a content-addressed image left in the registry is reused next time."""
    from deployer.targets.model_image import build_call

    local = str(step["LocalImage"])
    return (
        build_call(step, "the Azure ML image"),
        PlannedCall(
            "docker",
            "push",
            {"LocalImage": local, "Image": image},
            f"push {local} to {image} (skipped if the registry has it)",
        ),
    )


def fingerprint(spec: DeploySpec) -> str:
    """What a deployment runs and how, as one digest: the same => nothing to roll out.

    The source counts by content (image reference, model digest, registered reference), not by
    where the model folder happens to be; traffic, waiting and the smoke test do not count."""
    source: dict[str, Any] = asdict(spec.source) if spec.source is not None else {}
    source.pop("path", None)
    source.pop("no_code", None)  # a finding about the model, not what is deployed
    serving = {
        "source": {"kind": type(spec.source).__name__, **source},
        "instance_type": spec.instance_type,
        "instance_count": spec.instance_count,
        "env": dict(spec.env),
        "request_timeout_ms": spec.request_timeout_ms,
        "max_concurrent_requests": spec.max_concurrent_requests,
    }
    return hashlib.sha256(json.dumps(serving, sort_keys=True, default=str).encode()).hexdigest()


def _already_serving(
    spec: DeploySpec, state: EndpointState, current: dict[str, int], print_: str
) -> DeployPlan | None:
    """The noop plan when the deployment taking all the traffic already runs ``print_``."""
    live = next((d for d, pct in current.items() if pct == 100), None)
    if (
        live is None
        or state.fingerprints.get(live) != print_
        or state.deployments.get(live) != "Succeeded"
        or (spec.deployment and spec.deployment.lower() != live.lower())
    ):
        return None
    if spec.traffic is not None:
        existing = list(state.deployments)
        named = {_match(k, existing): v for k, v in spec.traffic.items()}
        if None in named or tr.normalize(named, existing) != current:  # type: ignore[arg-type]
            return None  # another split, or a deployment to create
    return DeployPlan(
        TARGET,
        spec.endpoint,
        "noop",
        (),
        f"endpoint {spec.endpoint}: deployment {live} already runs this with these settings and "
        "takes "
        "all the traffic; nothing to do",
        {
            "endpoint": spec.endpoint,
            "deployment": live,
            "endpoint_exists": True,
            "previous_traffic": current,
            "traffic": current,
            "smoke_test": "skipped: nothing changes",
            "fingerprint": print_,
            "wait": spec.wait,
        },
    )


def _plan_rollout(spec: DeploySpec, state: EndpointState) -> DeployPlan:
    """Blue/green: the new deployment at 0 %, smoke-tested, then the traffic map."""
    existing = list(state.deployments)
    current = tr.normalize(state.traffic, existing)
    print_ = fingerprint(spec)
    if state.exists:
        noop = _already_serving(spec, state, current, print_)
        if noop is not None:
            return noop
    new = spec.deployment or tr.choose_deployment(state.traffic, existing)
    tr.check_name(new, kind="deployment", flag="--deployment")
    new = _match(new, existing) or new
    # Updating a deployment that serves users (only when named with --deployment) is a rolling
    # update, not blue/green: nothing can be rolled back, so it gets no undo.
    in_place = current.get(new, 0) > 0
    final = tr.shifted(current, new, existing, spec.traffic) if spec.wait else current

    calls: list[PlannedCall] = [] if state.exists else [_create_endpoint_call(spec)]
    deployment = _deployment_params(spec, new, print_)
    source_calls, what = _source_calls(spec, new, deployment)
    calls += source_calls
    calls.append(
        _deployment_call(
            spec,
            new,
            deployment,
            what,
            in_place=in_place,
            idle=current.get(new, 0) == 0,
            verb="update" if new in existing else "create",
        )
    )
    smoke = "skipped: --no-wait"
    if spec.wait:
        if spec.smoke_body is not None:
            calls.append(
                PlannedCall(
                    DATA_PLANE,
                    "smoke_test",
                    {"endpoint": spec.endpoint, "deployment": new, "body": spec.smoke_body},
                    f"send the model's input example to deployment {new} through the endpoint's "
                    "scoring URI",
                    phase="create",
                )
            )
            smoke = "input example"
        else:
            smoke = "skipped: the model has no input example"
        if final != current or not state.exists:
            calls.append(_traffic_call(spec.endpoint, final, current))
    action = "create" if not state.exists else "update"
    summary = f"{action} endpoint {spec.endpoint}: deployment {new} <- {what}; " + (
        f"traffic {tr.format_traffic(current)} -> {tr.format_traffic(final)}"
        if spec.wait
        else "traffic unchanged (--no-wait: shift it later with --traffic)"
    )
    facts = {
        "endpoint": spec.endpoint,
        "deployment": new,
        "endpoint_exists": state.exists,
        "previous_traffic": current,
        "traffic": final,
        "smoke_test": smoke,
        "in_place_update": in_place,
        "wait": spec.wait,
    }
    if isinstance(spec.source, MlflowSource) and spec.source.no_code:
        facts["no_code_check"] = dict(spec.source.no_code)
    return DeployPlan(TARGET, spec.endpoint, action, tuple(calls), summary, facts)


def _create_endpoint_call(spec: DeploySpec) -> PlannedCall:
    return PlannedCall(
        SERVICE,
        "online_endpoints.begin_create_or_update",
        {"name": spec.endpoint, "auth_mode": spec.auth_mode, "tags": dict(spec.tags)},
        f"create endpoint {spec.endpoint} (auth: {spec.auth_mode})",
        phase="create",
        undo=PlannedCall(
            SERVICE,
            "online_endpoints.begin_delete",
            {"name": spec.endpoint},
            f"delete endpoint {spec.endpoint}",
            phase="cleanup",
        ),
    )


def _deployment_params(spec: DeploySpec, name: str, print_: str) -> dict[str, Any]:
    """The new deployment, as the create call's parameters (its source is added by
    :func:`_source_calls`)."""
    deployment: dict[str, Any] = {
        "name": name,
        "endpoint_name": spec.endpoint,
        "instance_type": spec.instance_type,
        "instance_count": spec.instance_count,
        "environment_variables": dict(spec.env),
        "tags": {TAG_FINGERPRINT: print_, **spec.provenance},
        "wait": spec.wait,
        "timeout": spec.timeout,
    }
    settings = {
        k: v
        for k, v in (
            ("request_timeout_ms", spec.request_timeout_ms),
            ("max_concurrent_requests_per_instance", spec.max_concurrent_requests),
        )
        if v
    }
    if settings:
        deployment["request_settings"] = settings
    return deployment


def _source_calls(
    spec: DeploySpec, new: str, deployment: dict[str, Any]
) -> tuple[list[PlannedCall], str]:
    """What the deployment runs: an image (registered as an environment), an MLflow model
    (registered, uploaded) or a registered model; returns the calls and a description."""
    source = spec.source
    if isinstance(source, ImageSource):
        env_name = source.environment_name or f"{spec.endpoint}-{new}-env"
        deployment["environment"] = FROM_ENVIRONMENT
        return [
            PlannedCall(
                SERVICE,
                "environments.create_or_update",
                {
                    "name": env_name,
                    "image": source.image,
                    "inference_config": source.routes.inference_config(),
                },
                f"register environment {env_name} for image {source.image}",
                phase="create",
            )
        ], f"image {source.image}"
    if isinstance(source, MlflowSource):
        deployment["model"] = FROM_MODEL
        return [
            PlannedCall(
                SERVICE,
                "models.create_or_update",
                {"name": source.model_name, "path": source.path, "type": "mlflow_model"},
                f"register MLflow model {source.model_name} from {source.path} (uploads it)",
                phase="create",
            )
        ], f"MLflow model {source.model_name} (Azure no-code scoring)"
    deployment["model"] = source.reference
    return [], f"registered model {source.reference}"


def _deployment_call(
    spec: DeploySpec,
    new: str,
    deployment: dict[str, Any],
    what: str,
    *,
    in_place: bool,
    idle: bool,
    verb: str,
) -> PlannedCall:
    where = (
        " in place (it serves traffic: no rollback possible)"
        if in_place
        else " at 0% traffic"
        if idle
        else ""
    )
    return PlannedCall(
        SERVICE,
        "online_deployments.begin_create_or_update",
        deployment,
        f"{verb} deployment {new} ({spec.instance_count} x {spec.instance_type}) running "
        f"{what}{where}" + (", wait for Succeeded" if spec.wait else ", not waiting"),
        phase="create",
        undo=None
        if in_place
        else PlannedCall(
            SERVICE,
            "online_deployments.begin_delete",
            {"name": new, "endpoint_name": spec.endpoint},
            f"delete deployment {new}",
            phase="cleanup",
        ),
    )


def _plan_local(spec: DeploySpec, state: EndpointState) -> DeployPlan:
    """A local endpoint (azure-ai-ml ``local=True``): one container in the local Docker engine.

    Local endpoints have no traffic map and no keys, so there is no blue/green: the single
    deployment is created or replaced, then smoke-tested through its local scoring URI.
    """
    from deployer.errors import UsageError

    if not isinstance(spec.source, ImageSource) or not spec.model_path:
        raise UsageError(
            "a local Azure ML endpoint runs a built image with the model mounted: pass both "
            "--image-uri and -m",
            where="--local",
            fix="deployer build --target azureml -m MODEL, then deploy --local --image-uri IMAGE "
            "-m MODEL",
        )
    name = spec.deployment or tr.BLUE_GREEN[0]
    calls: list[PlannedCall] = []
    if not state.exists:
        calls.append(
            PlannedCall(
                SERVICE,
                "online_endpoints.begin_create_or_update",
                {
                    "name": spec.endpoint,
                    "auth_mode": spec.auth_mode,
                    "tags": dict(spec.tags),
                    "local": True,
                },
                f"create local endpoint {spec.endpoint} (Docker)",
                phase="create",
                undo=PlannedCall(
                    SERVICE,
                    "online_endpoints.begin_delete",
                    {"name": spec.endpoint, "local": True},
                    f"delete local endpoint {spec.endpoint}",
                    phase="cleanup",
                ),
            )
        )
    calls.append(
        PlannedCall(
            SERVICE,
            "online_deployments.begin_create_or_update",
            {
                "name": name,
                "endpoint_name": spec.endpoint,
                "instance_type": spec.instance_type,
                "instance_count": spec.instance_count,
                "environment_variables": dict(spec.env),
                "local": True,
                "image": spec.source.image,
                "inference_config": spec.source.routes.inference_config(),
                "model_path": spec.model_path,
                "wait": True,
                "timeout": spec.timeout,
            },
            f"run image {spec.source.image} as local deployment {name} with the model mounted",
            phase="create",
            undo=None
            if state.exists
            else PlannedCall(
                SERVICE,
                "online_deployments.begin_delete",
                {"name": name, "endpoint_name": spec.endpoint, "local": True},
                f"delete local deployment {name}",
                phase="cleanup",
            ),
        )
    )
    if spec.smoke_body is not None:
        calls.append(
            PlannedCall(
                DATA_PLANE,
                "smoke_test",
                {
                    "endpoint": spec.endpoint,
                    "deployment": name,
                    "body": spec.smoke_body,
                    "local": True,
                },
                f"send the model's input example to local deployment {name}",
                phase="create",
            )
        )
    return DeployPlan(
        TARGET,
        spec.endpoint,
        "update" if state.exists else "create",
        tuple(calls),
        f"local endpoint {spec.endpoint}: deployment {name} <- image {spec.source.image}",
        {
            "endpoint": spec.endpoint,
            "deployment": name,
            "local": True,
            "endpoint_exists": state.exists,
            "smoke_test": "input example"
            if spec.smoke_body is not None
            else "skipped: the model has no input example",
            "wait": True,
        },
    )


def _plan_traffic_only(spec: DeploySpec, state: EndpointState) -> DeployPlan:
    from deployer.errors import UsageError

    if not state.exists:
        raise UsageError(
            f"endpoint {spec.endpoint!r} does not exist, so there is no traffic to shift",
            where="--name",
            fix="deploy a model first: deployer deploy --target azureml --name NAME -m MODEL",
        )
    if not spec.traffic:
        raise UsageError(
            "nothing to deploy: no model (-m), no image (--image-uri) and no --traffic",
            where="deployer deploy --target azureml",
            fix="pass -m MODEL or --image-uri IMAGE to roll out, or --traffic NAME=PCT,... to "
            "shift traffic",
        )
    existing = list(state.deployments)
    unknown = [k for k in spec.traffic if _match(k, existing) is None]
    if unknown:
        raise UsageError(
            f"--traffic names deployment(s) {', '.join(sorted(unknown))}, which endpoint "
            f"{spec.endpoint} does not have",
            where="--traffic",
            fix=f"use the existing deployments: {', '.join(existing) or '(none)'}",
        )
    not_ready = [
        k
        for k, v in spec.traffic.items()
        if v and state.deployments.get(_match(k, existing) or k) != "Succeeded"
    ]
    if not_ready:
        raise UsageError(
            f"deployment(s) {', '.join(not_ready)} are not in the Succeeded state and cannot take "
            "traffic",
            where="--traffic",
            fix="wait for them (deployer status --target azureml --name ...), or fix and redeploy",
        )
    current = tr.normalize(state.traffic, existing)
    final = tr.normalize({(_match(k, existing) or k): v for k, v in spec.traffic.items()}, existing)
    calls: tuple[PlannedCall, ...] = ()
    if final != current:
        calls = (_traffic_call(spec.endpoint, final, current),)
    return DeployPlan(
        TARGET,
        spec.endpoint,
        "traffic" if calls else "noop",
        calls,
        f"traffic {tr.format_traffic(current)} -> {tr.format_traffic(final)}",
        {"endpoint": spec.endpoint, "previous_traffic": current, "traffic": final},
    )


def _match(name: str, existing: list[str]) -> str | None:
    """Azure treats deployment names case-insensitively: the stored spelling, if any."""
    for e in existing:
        if e.lower() == name.lower():
            return e
    return None


def _traffic_call(endpoint: str, final: dict[str, int], current: dict[str, int]) -> PlannedCall:
    """The commit step of a deploy and of a traffic change: one ``update_traffic`` call."""
    return PlannedCall(
        SERVICE,
        "online_endpoints.update_traffic",
        {"name": endpoint, "traffic": final},
        f"set traffic {tr.format_traffic(final)} (was {tr.format_traffic(current)})",
        phase="commit",
    )
