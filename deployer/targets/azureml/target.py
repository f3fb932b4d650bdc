"""``--target azureml``: Azure ML managed online endpoints through azure-ai-ml.

The class is what the ``deployer.targets`` entry point names. Its ``options`` are read by the
CLI without instantiating it (no SDK import, no credentials needed for ``--help``). Planning
reads the endpoint (GET only), :mod:`.plan` decides, :mod:`.apply` runs the calls.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from deployer.errors import TargetError, UsageError
from deployer.targets.azureml import plan as pl
from deployer.targets.azureml import traffic as tr
from deployer.targets.azureml.client import (
    Workspace,
    azure_errors,
    is_not_found,
    ml_client,
    resolve_workspace,
)
from deployer.targets.base import (
    DeployPlan,
    DeployRequest,
    DeployResult,
    EndpointStatus,
    OptionSpec,
)

log = logging.getLogger("deployer")

#: Azure ML asset names (models, environments).
_ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_ALL = ("deploy", "status", "list", "delete", "predict")

OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "subscription",
        "Azure subscription id (default: AZURE_SUBSCRIPTION_ID).",
        metavar="ID",
        commands=_ALL,
        connection=True,
    ),
    OptionSpec(
        "resource_group",
        "Resource group of the Azure ML workspace (default: AZURE_RESOURCE_GROUP).",
        metavar="NAME",
        commands=_ALL,
        connection=True,
    ),
    OptionSpec(
        "workspace",
        "Azure ML workspace name (default: AZUREML_WORKSPACE_NAME).",
        metavar="NAME",
        commands=_ALL,
        connection=True,
    ),
    OptionSpec(
        "local",
        "Use azure-ai-ml's local endpoints: run --image-uri in the local Docker engine "
        "(no Azure account; one deployment, no traffic split).",
        type="bool",
        default=False,
        commands=_ALL,
        connection=True,
    ),
    OptionSpec(
        "deployment",
        "Deployment name (default: alternate blue/green; on delete/predict: one deployment).",
        metavar="NAME",
        commands=("deploy", "delete", "predict"),
    ),
    OptionSpec(
        "instance_type", "VM size of the deployment.", default="Standard_DS3_v2", metavar="SKU"
    ),
    OptionSpec("instance_count", "Number of instances.", type="int", default=1, metavar="N"),
    OptionSpec(
        "traffic",
        "Traffic map after the rollout, e.g. blue=90,green=10 (default: all to the new "
        "deployment). Without -m/--image-uri: only shift traffic.",
        metavar="NAME=PCT,...",
    ),
    OptionSpec(
        "env",
        "Environment variable for the container, KEY=VALUE (repeatable).",
        multiple=True,
        metavar="KEY=VALUE",
    ),
    OptionSpec(
        "auth_mode",
        "Endpoint authentication (new endpoints only).",
        type="choice",
        choices=("key", "aml_token", "aad_token"),
        default="key",
    ),
    OptionSpec(
        "model_name",
        "Name to register the MLflow model under (default: the endpoint name).",
        metavar="NAME",
    ),
    OptionSpec(
        "image_port",
        "Port the --image-uri container listens on (inference_config routes).",
        type="int",
        default=8080,
        metavar="PORT",
    ),
    OptionSpec(
        "scoring_route",
        "Scoring path inside the --image-uri container.",
        default="/score",
        metavar="PATH",
    ),
    OptionSpec(
        "health_route",
        "Liveness/readiness path inside the --image-uri container.",
        default="/",
        metavar="PATH",
    ),
    OptionSpec(
        "smoke_test",
        "Send the model's input example to the new deployment before shifting traffic.",
        type="bool",
        default=True,
    ),
    OptionSpec(
        "registry",
        "With -m: build deployer's image for Azure ML (azmlinfsrv + score.py, the model "
        "inside), verify it, push it to this registry (e.g. the workspace's ACR) and deploy it as "
        "a "
        "custom container; the image options (--pip, --base-image, --lock...) apply. Without it, "
        "-m "
        "registers the MLflow model and Azure ML builds its environment.",
        metavar="HOST[/NAMESPACE]",
    ),
    OptionSpec(
        "request_timeout_ms",
        "Scoring request timeout of the deployment, in ms.",
        type="int",
        metavar="MS",
    ),
    OptionSpec(
        "max_concurrent_requests", "Concurrent requests per instance.", type="int", metavar="N"
    ),
)


class AzureMLTarget:
    """Azure ML managed online endpoints (azure-ai-ml + DefaultAzureCredential)."""

    name = "azureml"
    options = OPTIONS
    # -m registers the MLflow model and Azure ML builds its environment, unless --registry asks
    # for deployer's image: the build options apply only then
    builds_images = "registry"

    def __init__(
        self,
        subscription: str | None = None,
        resource_group: str | None = None,
        workspace: str | None = None,
        *,
        credential: Any = None,
        transport: Any = None,
        http: Callable[..., tuple[int, bytes]] | None = None,
        local: bool = False,
    ) -> None:
        self.local = bool(local)
        if self.local:  # local endpoints never reach Azure; MLClient still wants names
            subscription = subscription or os.environ.get("AZURE_SUBSCRIPTION_ID") or "local"
            resource_group = resource_group or os.environ.get("AZURE_RESOURCE_GROUP") or "local"
            workspace = workspace or os.environ.get("AZUREML_WORKSPACE_NAME") or "local"
        self._names = (subscription, resource_group, workspace)
        self._credential = credential
        self._transport = transport
        self._http = http
        self._client: Any = None
        self._workspace: Workspace | None = None
        self._model_dir: str | None = None

    # ------------------------------------------------------------------ connection
    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = resolve_workspace(*self._names)
        return self._workspace

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = ml_client(
                self.workspace, credential=self._credential, transport=self._transport
            )
        return self._client

    def operations(self) -> Any:
        from deployer.targets.azureml.apply import AzureOperations

        return AzureOperations(self.client, http=self._http, credential=self._credential)

    # ------------------------------------------------------------------ deploy
    def plan(self, request: DeployRequest) -> DeployPlan:
        endpoint = tr.check_name(request.name, kind="endpoint", flag="--name")
        spec = self._spec(request, endpoint)
        return pl.plan_deploy(spec, self.read_state(endpoint))

    def apply(self, plan: DeployPlan) -> DeployResult:
        return self.operations().run(plan)

    def _spec(self, request: DeployRequest, endpoint: str) -> pl.DeploySpec:
        opts: Mapping[str, Any] = request.options or {}
        traffic = tr.parse_traffic(opts["traffic"]) if opts.get("traffic") else None
        deployment = opts.get("deployment")
        if deployment:
            tr.check_name(deployment, kind="deployment", flag="--deployment")
        count = int(opts.get("instance_count") or 1)
        if count < 1:
            raise UsageError(
                f"--instance-count must be at least 1, got {count}",
                where="--instance-count",
                fix="pass --instance-count 1 or more",
            )
        source, smoke = self._source(request, opts, endpoint)
        provenance: dict[str, str] = {}
        if self._model_dir and request.model_uri and not request.image_uri:
            from deployer.model.provenance import model_provenance

            provenance = model_provenance(request.model_uri, Path(self._model_dir)).to_tags(
                pl.PROVENANCE_PREFIX
            )
        build_step = None
        if opts.get("registry"):
            source, build_step = self._image_build(request, str(opts["registry"]), source)
        elif isinstance(source, pl.MlflowSource):  # hashed only when it is what gets deployed
            from deployer.model.files import model_digest
            from deployer.targets.azureml.no_code import check_no_code

            no_code = check_no_code(self._loaded)  # Azure builds the environment: can it?
            for warning in no_code.warnings:
                log.warning("%s", warning)
            source = replace(
                source, digest=model_digest(Path(source.path)), no_code=no_code.to_dict()
            )
        return pl.DeploySpec(
            endpoint=endpoint,
            source=source,
            deployment=deployment,
            instance_type=str(opts.get("instance_type") or "Standard_DS3_v2"),
            instance_count=count,
            env=parse_env(opts.get("env") or ()),
            traffic=traffic,
            auth_mode=str(opts.get("auth_mode") or "key"),
            wait=bool(request.wait),
            timeout=float(request.timeout or 1800.0),
            smoke_body=smoke if opts.get("smoke_test", True) else None,
            request_timeout_ms=opts.get("request_timeout_ms"),
            max_concurrent_requests=opts.get("max_concurrent_requests"),
            tags={"deployed-by": "deployer", **provenance},
            provenance=provenance,
            local=self.local,
            model_path=self._model_dir,
            build_step=build_step,
        )

    def _image_build(
        self, request: DeployRequest, registry: str, source: pl.Source | None
    ) -> tuple[pl.ImageSource, dict[str, Any]]:
        """``--registry``: deploy deployer's image built from -m instead of the MLflow model."""
        from deployer.targets.model_image import plan_registry_image

        if request.image_uri or not isinstance(source, pl.MlflowSource) or not request.model_uri:
            raise UsageError(
                "--registry builds the image from a model directory: it needs -m MODEL "
                "(a local or MLflow URI), not --image-uri or an azureml: model",
                where="--registry",
                fix="pass -m MODEL, or drop --registry",
            )
        image, step = plan_registry_image(request.model_uri, request.build, pl.TARGET, registry)
        return pl.ImageSource(image=image), step

    def _source(
        self, request: DeployRequest, opts: Mapping[str, Any], endpoint: str
    ) -> tuple[pl.Source | None, Any]:
        model_uri = request.model_uri
        smoke = None
        model_dir: Path | None = None
        self._model_dir = None
        if model_uri and not model_uri.startswith("azureml:"):
            from deployer.intake import load_model

            loaded = load_model(model_uri)
            self._loaded = loaded
            model_dir = Path(loaded.path)
            self._model_dir = str(model_dir)
            for warning in getattr(loaded, "warnings", ()) or ():
                log.warning("%s", warning)
            info = getattr(loaded.mlmodel, "saved_input_example_info", None)
            from deployer.targets.azureml.payload import serving_example

            smoke = serving_example(model_dir, getattr(info, "serving_input_path", None))
        if request.image_uri:
            routes = pl.ImageRoutes(
                port=int(opts.get("image_port") or 8080),
                liveness=str(opts.get("health_route") or "/"),
                readiness=str(opts.get("health_route") or "/"),
                scoring=str(opts.get("scoring_route") or "/score"),
            )
            for label, path in (
                ("--scoring-route", routes.scoring),
                ("--health-route", routes.liveness),
            ):
                if not path.startswith("/") or any(c.isspace() for c in path):
                    raise UsageError(
                        f"bad route {path!r}",
                        where=label,
                        fix="use an absolute path such as /score",
                    )
            return pl.ImageSource(image=request.image_uri, routes=routes), smoke
        if model_uri and model_uri.startswith("azureml:"):
            return pl.RegisteredSource(model_uri), smoke
        if model_dir is not None:
            model_name = str(opts.get("model_name") or endpoint)
            if not _ASSET_NAME.match(model_name):
                raise UsageError(
                    f"invalid model name {model_name!r}",
                    where="--model-name",
                    fix="use letters, digits, '-', '_' or '.', starting with a letter or digit "
                    "(max 255)",
                )
            return pl.MlflowSource(path=str(model_dir), model_name=model_name), smoke
        return None, None

    def read_state(self, endpoint: str) -> pl.EndpointState:
        """GET the endpoint and its deployments (reads only)."""
        where = self._where(endpoint)
        with azure_errors("read the endpoint", where=where):
            try:
                ep = self._get_endpoint(endpoint)
            except Exception as exc:
                if is_not_found(exc):
                    return pl.EndpointState(name=endpoint)
                raise
            found = self._deployments(endpoint)
        deployments = {d.name: _state(d) or "Unknown" for d in found}
        fingerprints = {
            d.name: str(fp)
            for d in found
            if (fp := (getattr(d, "tags", None) or {}).get(pl.TAG_FINGERPRINT))
        }
        return pl.EndpointState(
            name=endpoint,
            exists=True,
            provisioning_state=_state(ep),
            traffic={k: int(v) for k, v in (ep.traffic or {}).items()},
            deployments=deployments,
            scoring_uri=getattr(ep, "scoring_uri", None),
            auth_mode=getattr(ep, "auth_mode", None),
            fingerprints=fingerprints,
        )

    def _where(self, endpoint: str) -> str:
        return (
            f"local endpoint {endpoint} (Docker)"
            if self.local
            else f"endpoint {endpoint} in {self.workspace.describe()}"
        )

    def _get_endpoint(self, name: str) -> Any:
        if self.local:
            return self.client.online_endpoints.get(name, local=True)
        return self.client.online_endpoints.get(name)

    def _deployments(self, endpoint: str) -> list[Any]:
        if self.local:  # the SDK lists every local deployment, whatever the endpoint
            return [
                d
                for d in self.client.online_deployments.list(endpoint, local=True)
                if getattr(d, "endpoint_name", endpoint) == endpoint
            ]
        return list(self.client.online_deployments.list(endpoint))

    # ------------------------------------------------------------------ other commands
    def status(self, name: str) -> EndpointStatus:
        tr.check_name(name, kind="endpoint", flag="--name")
        where = self._where(name)
        with azure_errors("read the endpoint", where=where):
            try:
                ep = self._get_endpoint(name)
            except Exception as exc:
                if is_not_found(exc):
                    raise TargetError(
                        f"endpoint {name!r} does not exist",
                        where=where,
                        fix="deployer list --target azureml shows the endpoints",
                    ) from exc
                raise
            found = self._deployments(name)
            deployments = [_deployment_info(d) for d in found]
        return EndpointStatus(
            pl.TARGET,
            name,
            _state(ep) or "Unknown",
            {
                "scoring_uri": getattr(ep, "scoring_uri", None),
                "auth_mode": getattr(ep, "auth_mode", None),
                "traffic": {k: int(v) for k, v in (ep.traffic or {}).items()},
                "deployments": deployments,
                "provenance": (p.to_dict() if (p := _serving_provenance(ep, found)) else None),
            },
        )

    def provenance(self, name: str) -> Any:
        """What the deployment taking most of the endpoint's traffic was deployed from
        (:class:`~deployer.model.provenance.Provenance`; None: no endpoint, or not recorded)."""
        tr.check_name(name, kind="endpoint", flag="--name")
        with azure_errors("read the endpoint", where=self._where(name)):
            try:
                ep = self._get_endpoint(name)
            except Exception as exc:
                if is_not_found(exc):
                    return None
                raise
            return _serving_provenance(ep, self._deployments(name))

    def list(self) -> Sequence[EndpointStatus]:
        with azure_errors(
            "list endpoints", where="local Docker" if self.local else self.workspace.describe()
        ):
            endpoints = list(
                self.client.online_endpoints.list(local=True)
                if self.local
                else self.client.online_endpoints.list()
            )
        return [
            EndpointStatus(
                pl.TARGET,
                ep.name,
                _state(ep) or "Unknown",
                {
                    "scoring_uri": getattr(ep, "scoring_uri", None),
                    "traffic": {k: int(v) for k, v in (ep.traffic or {}).items()},
                },
            )
            for ep in endpoints
        ]

    def delete(self, name: str, deployment: str | None = None) -> DeployResult:
        tr.check_name(name, kind="endpoint", flag="--name")
        operations = self.operations()
        if deployment:
            tr.check_name(deployment, kind="deployment", flag="--deployment")
            state = self.read_state(name)
            if not state.exists:
                raise TargetError(
                    f"endpoint {name!r} does not exist",
                    where=self._where(name),
                    fix="deployer list --target azureml shows the endpoints",
                )
            share = {k.lower(): v for k, v in state.traffic.items()}
            if share.get(deployment.lower(), 0) > 0:
                raise UsageError(
                    f"deployment {deployment!r} receives {share[deployment.lower()]}% of the "
                    "traffic",
                    where="--deployment",
                    fix="shift its traffic away first: deployer deploy --target azureml --name "
                    f"{name} --traffic OTHER=100",
                )
            if deployment.lower() not in {d.lower() for d in state.deployments}:
                return DeployResult(
                    pl.TARGET, name, "delete", "NotFound", details={"deployment": deployment}
                )
            operations.call(
                pl.PlannedCall(
                    pl.SERVICE,
                    "online_deployments.begin_delete",
                    {"name": deployment, "endpoint_name": name, "local": self.local},
                    f"delete deployment {deployment}",
                )
            )
            return DeployResult(
                pl.TARGET, name, "delete", "Deleted", details={"deployment": deployment}
            )
        state = self.read_state(name)
        if not state.exists:
            return DeployResult(pl.TARGET, name, "delete", "NotFound")
        params: dict[str, Any] = {"name": name, "local": True} if self.local else {"name": name}
        operations.call(
            pl.PlannedCall(
                pl.SERVICE,
                "online_endpoints.begin_delete",
                params,
                f"delete endpoint {name} and its deployments",
            )
        )
        return DeployResult(
            pl.TARGET, name, "delete", "Deleted", details={"deployments": sorted(state.deployments)}
        )

    def predict(
        self, name: str, body: bytes, content_type: str, deployment: str | None = None
    ) -> bytes:
        from deployer.targets.azureml.apply import SMOKE_TIMEOUT, post_json, scoring_access
        from deployer.targets.azureml.payload import predict_body

        tr.check_name(name, kind="endpoint", flag="--name")
        if deployment:
            tr.check_name(deployment, kind="deployment", flag="--deployment")
        data = predict_body(body, content_type)
        uri, token = scoring_access(self.client, name, local=self.local)
        send = self._http or post_json
        status, answer = send(uri, data, token=token, deployment=deployment, timeout=SMOKE_TIMEOUT)
        if status != 200:
            from deployer.targets.azureml.apply import _error_text

            text = _error_text(answer)
            raise TargetError(
                f"endpoint answered HTTP {status}: {text}",
                where=f"endpoint {name}",
                fix="check the request body; deployer status --target azureml shows "
                "the deployments",
            )
        return answer


def parse_env(items: Sequence[str] | str) -> dict[str, str]:
    """``("A=1", "B=x=y")`` -> ``{"A": "1", "B": "x=y"}``; names must be valid variable names."""
    if isinstance(items, str):
        items = (items,)
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise UsageError(
                f"bad --env value {item!r}",
                where="--env",
                fix="write KEY=VALUE, e.g. --env LOG_LEVEL=debug",
            )
        out[key] = value
    return out


def _state(obj: Any) -> str | None:
    value = getattr(obj, "provisioning_state", None)
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _serving_provenance(ep: Any, deployments: Sequence[Any]) -> Any:
    """The provenance tags of the deployment with the most traffic (local endpoints: the one)."""
    from deployer.model.provenance import Provenance

    traffic = {str(k).lower(): int(v) for k, v in (getattr(ep, "traffic", None) or {}).items()}
    ranked = sorted(deployments, key=lambda d: traffic.get(str(d.name).lower(), 0), reverse=True)
    for d in ranked[:1]:
        return Provenance.from_tags(getattr(d, "tags", None) or {}, pl.PROVENANCE_PREFIX)
    return None


def _deployment_info(d: Any) -> dict[str, Any]:
    env = getattr(d, "environment", None)
    return {
        "name": d.name,
        "state": _state(d),
        "instance_type": getattr(d, "instance_type", None),
        "instance_count": getattr(d, "instance_count", None),
        "model": str(d.model) if getattr(d, "model", None) else None,
        "environment": str(env) if env else None,
    }
