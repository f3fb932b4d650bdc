"""deployer as an MLflow deployments plugin: ``mlflow deployments ... -t deployer-<target>``.

MLflow finds plugins through the ``mlflow.deployments`` entry-point group. deployer registers
one entry per target (``deployer-local``, ``-sagemaker``, ``-azureml``, ``-kubernetes``,
``-kserve``), each naming a :class:`_Plugin` object of this module: MLflow calls ``run_local``
and ``target_help`` on it without saying which target it is for, so each target needs its own.
Each plugin holds
exactly one :class:`BaseDeploymentClient` subclass, as MLflow's plugin manager requires.

Nothing here deploys by itself: every call goes through :mod:`deployer.targets.actions`, the
functions ``deployer deploy / status / list / delete / predict / run-local`` run. The plugin
only translates: target URI -> connection options, ``-C key=value`` -> the target's declared
options (parsed by the same click types as the command line), results -> the dicts MLflow
documents, :class:`~deployer.errors.DeployerError` -> ``MlflowException`` with deployer's
what / where / fix.

This module imports mlflow at import time; only MLflow loads it (through the entry points),
so ``import deployer`` never needs mlflow.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlparse

from mlflow.deployments import BaseDeploymentClient, PredictionsResponse
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    NOT_IMPLEMENTED,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
)

from deployer.errors import ConfigError, DeployerError, UsageError
from deployer.model.uri import model_uri_text
from deployer.targets import actions
from deployer.targets.base import DeployPlan, DeployRequest, EndpointStatus, OptionSpec
from deployer.targets.executor import render_plan
from deployer.targets.options import coerce_option

log = logging.getLogger("deployer")

FLAVOR = "python_function"
PREFIX = "deployer-"

#: What the path of a target URI (``deployer-<target>:/PATH``) names, per target.
URI_FORMS = {
    "local": ("deployer-local", "no path: containers on this machine's Docker engine"),
    "sagemaker": (
        "deployer-sagemaker:/REGION",
        "the AWS region (no path: the AWS SDK's default region); "
        "credentials and profile come from the AWS SDK's usual chain (AWS_PROFILE...)",
    ),
    "azureml": (
        "deployer-azureml:/SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE",
        "the Azure ML workspace (no path: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, "
        "AZUREML_WORKSPACE_NAME); deployer-azureml:/local uses azure-ai-ml's local endpoints "
        "(Docker, no Azure account)",
    ),
    "kubernetes": (
        "deployer-kubernetes:/[CONTEXT/]NAMESPACE",
        "the namespace, optionally after a kubeconfig context (no path: the current context and "
        "its namespace); the kubeconfig comes from KUBECONFIG or ~/.kube/config",
    ),
    "kserve": (
        "deployer-kserve:/[CONTEXT/]NAMESPACE",
        "the namespace, optionally after a kubeconfig context (no path: the current context and "
        "its namespace); the kubeconfig comes from KUBECONFIG or ~/.kube/config",
    ),
}
#: Contract the run_local container starts with, where it is not the kind itself.
_RUN_LOCAL_AS = {"kubernetes": "local", "kserve": "local"}

# Generic settings of the deployer commands, as -C keys (same meaning as the flags).
_IMAGE_URI = OptionSpec(
    "image_uri",
    "Deploy this prebuilt, pushed image instead of building one from the model.",
    metavar="IMAGE",
)
_DRY_RUN = OptionSpec(
    "dry_run", "Return the ordered plan of cloud calls; change nothing.", type="bool", default=False
)
_WAIT = OptionSpec("wait", "Wait until the endpoint serves.", type="bool", default=True)
_TIMEOUT = OptionSpec("timeout", "Give up waiting after this many seconds.", type="float")
_DETACH = OptionSpec(
    "detach",
    "run_local: return once the container serves, leave it running "
    "(remove it with delete_deployment on deployer-local).",
    type="bool",
    default=False,
)
_READY_TIMEOUT = OptionSpec(
    "ready_timeout",
    "run_local: seconds to wait for the server to answer.",
    type="float",
    default=300.0,
)

_F = TypeVar("_F", bound=Callable[..., Any])


#: How the run-local help names the platform a target starts the image as.
_PLATFORM_NAMES = {"sagemaker": "SageMaker", "azureml": "Azure ML"}


def _translated(method: _F) -> _F:
    """deployer's errors -> MlflowException carrying deployer's what / where / fix."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except MlflowException:
            raise
        except DeployerError as exc:
            code = (
                INVALID_PARAMETER_VALUE
                if isinstance(exc, (UsageError, ConfigError))
                else INTERNAL_ERROR
            )
            raise MlflowException(exc.format_message(), error_code=code) from exc

    return wrapper  # type: ignore[return-value]


def _plain(obj: Any) -> Any:
    """Results as plain JSON types (what MLflow's CLI prints and notebooks inspect)."""
    from deployer.console import to_json

    return json.loads(to_json(obj))


def _status_dict(status: EndpointStatus) -> dict[str, Any]:
    head = {"name": status.name, "target": status.target, "status": status.status}
    return {**head, **{k: v for k, v in _plain(dict(status.details)).items() if k not in head}}


def _dry_run(name: str, plan: DeployPlan) -> dict[str, Any]:
    log.warning(
        "%s", render_plan(plan)
    )  # MLflow's CLI prints only "... is created": say what was not
    return {"name": name, "flavor": FLAVOR, "dry_run": True, "plan": _plain(plan)}


def _parse_uri(kind: str, target_uri: str) -> dict[str, Any]:
    """Connection options named by the path of ``target_uri`` (see :data:`URI_FORMS`)."""
    parsed = urlparse(target_uri)
    path = parsed.path if parsed.scheme else ""
    parts = [p for p in path.split("/") if p]
    form = URI_FORMS[kind][0]
    bad = MlflowException(
        f"target URI {target_uri!r} does not name a {kind} location: expected {form} "
        f"({URI_FORMS[kind][1]})",
        error_code=INVALID_PARAMETER_VALUE,
    )
    if not parts:
        return {}
    if kind == "sagemaker" and len(parts) == 1:
        return {"region": parts[0]}
    if kind == "azureml" and parts == ["local"]:
        return {"local": True}
    if kind == "azureml" and len(parts) == 3:
        return dict(zip(("subscription", "resource_group", "workspace"), parts, strict=True))
    if kind in ("kubernetes", "kserve") and len(parts) in (1, 2):
        return dict(zip(("context", "namespace")[2 - len(parts) :], parts, strict=True))
    raise bad


def _predict_body(inputs: Any, params: Mapping[str, Any] | None) -> bytes:
    """MLflow pyfunc inputs -> one MLflow scoring request (what every deployer endpoint takes)."""
    from mlflow.utils.proto_json_utils import dump_input_data

    request_keys = {"dataframe_split", "dataframe_records", "instances", "inputs"}
    if isinstance(inputs, (bytes, str)):
        body = inputs.encode() if isinstance(inputs, str) else inputs
        if params is not None:
            raise MlflowException(
                "params cannot be added to a request given as text or bytes",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return body
    if isinstance(inputs, dict) and request_keys & set(inputs):
        payload = dict(inputs)
        if params is not None:
            payload["params"] = dict(params)
        return json.dumps(payload).encode()
    if isinstance(inputs, dict):
        inputs = {"inputs": inputs}
        return _predict_body(inputs, params)
    return str(
        dump_input_data(inputs, inputs_key="inputs", params=dict(params) if params else None)
    ).encode()


def _predictions(answer: bytes, where: str) -> PredictionsResponse:
    try:
        data = json.loads(answer)
    except ValueError:
        raise MlflowException(
            f"{where} answered something that is not JSON: {answer[:200]!r}",
            error_code=INTERNAL_ERROR,
        ) from None
    if isinstance(data, dict) and "predictions" in data:
        return PredictionsResponse(data)
    if isinstance(data, dict) and {"error_code", "message"} <= set(
        data
    ):  # MLflow's scoring error body
        raise MlflowException(
            f"{where} refused the request: {data['message']}", error_code=INVALID_PARAMETER_VALUE
        )
    return PredictionsResponse({"predictions": data})


class DeployerDeploymentClient(BaseDeploymentClient):
    """``mlflow.deployments`` client for one deployer target (``kind``).

    ``target_kwargs`` are extra keyword arguments for the target's factory, beyond what the
    URI names, e.g. ``client.target_kwargs["credential"] = ClientSecretCredential(...)`` for
    Azure ML (and, in tests, ``transport=`` azure-core's HTTP seam).
    """

    kind = ""

    def __init__(self, target_uri: str) -> None:
        super().__init__(target_uri)
        self.uri_connection = _parse_uri(self.kind, target_uri)
        self.target_kwargs: dict[str, Any] = {}

    # ------------------------------------------------------------------ config
    def _specs(self, command: str, *generic: OptionSpec) -> dict[str, OptionSpec]:
        specs = {s.name: s for s in generic}
        specs.update(actions.own_options(self.kind, command))
        return specs

    def _values(
        self, specs: Mapping[str, OptionSpec], config: Mapping[str, Any] | None, what: str
    ) -> dict[str, Any]:
        """``config`` checked against ``specs`` and parsed like the command line; URI options
        added."""
        config = dict(config or {})
        unknown = sorted(set(config) - set(specs))
        if unknown:
            hints = [
                f"{k!r} -> did you mean {close[0]!r}?"
                for k in unknown
                if (close := difflib.get_close_matches(k, list(specs), n=1))
            ]
            raise MlflowException(
                f"unknown config key(s) {', '.join(map(repr, unknown))} for {what} on "
                f"{self.target_uri}"
                + (f" ({'; '.join(hints)})" if hints else "")
                + f". Valid keys: {', '.join(sorted(specs))} (mlflow deployments help -t "
                f"{PREFIX}{self.kind})",
                error_code=INVALID_PARAMETER_VALUE,
            )
        values = {k: coerce_option(specs[k], v, f"-C {k}") for k, v in config.items()}
        for key, value in self.uri_connection.items():
            if key in values and values[key] != value:
                raise MlflowException(
                    f"-C {key}={values[key]} contradicts the target URI {self.target_uri} ({key} "
                    f"{value})",
                    error_code=INVALID_PARAMETER_VALUE,
                )
            values[key] = value
        return values

    def _split(
        self, command: str, values: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        connection, options = actions.resolve_options(self.kind, command, values)
        return {**connection, **self.target_kwargs}, options

    def _connection(self, command: str) -> dict[str, Any]:
        return self._split(command, dict(self.uri_connection))[0]

    def _no_endpoint(self, endpoint: str | None) -> None:
        if endpoint is not None and self.kind != "azureml":
            raise MlflowException(
                f"deployer's {self.kind} target has no endpoints apart from its deployments "
                f"(endpoint={endpoint!r}): name the deployment only",
                error_code=INVALID_PARAMETER_VALUE,
            )

    # ------------------------------------------------------------------ deployments
    @_translated
    def create_deployment(
        self,
        name: str,
        model_uri: str | os.PathLike[str] | None,
        flavor: str | None = None,
        config: Mapping[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        """Deploy ``model_uri`` as ``name`` (``deployer deploy``); refuses an existing
        deployment."""
        return self._deploy("create", name, model_uri, flavor, config, endpoint)

    @_translated
    def update_deployment(
        self,
        name: str,
        model_uri: str | os.PathLike[str] | None = None,
        flavor: str | None = None,
        config: Mapping[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        """Roll ``model_uri`` out to the existing deployment ``name`` (SageMaker: mode replace)."""
        return self._deploy("update", name, model_uri, flavor, config, endpoint)

    def _deploy(
        self,
        verb: str,
        name: str,
        model_uri: str | os.PathLike[str] | None,
        flavor: str | None,
        config: Mapping[str, Any] | None,
        endpoint: str | None,
    ) -> dict[str, Any]:
        self._no_endpoint(endpoint)
        model_uri = None if model_uri is None else model_uri_text(model_uri)
        if flavor not in (None, FLAVOR):
            raise MlflowException(
                f"deployer serves the {FLAVOR} flavor, not {flavor!r}",
                error_code=INVALID_PARAMETER_VALUE,
            )
        from deployer.targets.build_options import option_specs

        specs = {**self._specs("deploy", _IMAGE_URI, _DRY_RUN, _WAIT, _TIMEOUT), **option_specs()}
        values = self._values(specs, config, f"{verb}_deployment")
        dry_run = bool(values.pop("dry_run", False))
        mode = specs.get("mode")
        if (
            verb == "update"
            and "mode" not in values
            and mode is not None
            and "replace" in mode.choices
        ):
            values["mode"] = "replace"  # an update swaps the model in (deployer's --mode replace)
        endpoint_name, deployment = (endpoint, name) if endpoint else (name, None)
        if deployment is not None:
            values["deployment"] = deployment
        connection, request = actions.deploy_request(self.kind, endpoint_name, model_uri, values)
        connection = {**connection, **self.target_kwargs}  # as _split adds them
        plugin, plan = actions.plan_deploy(self.kind, request, connection)
        self._check_existence(verb, plugin, plan, endpoint_name, deployment)
        if dry_run:
            return _dry_run(name, plan)
        result = plugin.apply(plan)
        head = {
            "name": name,
            "flavor": FLAVOR,
            "endpoint": endpoint,
            "action": result.action,
            "status": result.status,
            "endpoint_url": result.endpoint_url,
        }
        return {**head, **{k: v for k, v in _plain(dict(result.details)).items() if k not in head}}

    def _check_existence(
        self, verb: str, plugin: Any, plan: DeployPlan, endpoint: str, deployment: str | None
    ) -> None:
        """create refuses what exists, update what does not (MLflow's contract), before any
        change."""
        if deployment is not None:  # a deployment inside an Azure ML endpoint
            state = plugin.read_state(endpoint)
            exists = deployment.lower() in {d.lower() for d in state.deployments}
            what = f"deployment {deployment!r} of endpoint {endpoint!r}"
        else:
            exists = plan.action not in ("create",)
            what = f"deployment {endpoint!r}"
        # noop: the same deployment again; add/tune: --mode add of a variant (tune: a re-run that
        # only reweights or rescales it) is a create of that variant, not of the endpoint
        if verb == "create" and exists and plan.action not in ("noop", "add", "tune"):
            raise MlflowException(
                f"{what} already exists on {self.target_uri}; nothing was changed. Fix: update it "
                f"(mlflow deployments update / client.update_deployment), or pick another name",
                error_code=RESOURCE_ALREADY_EXISTS,
            )
        if verb == "update" and not exists:
            raise MlflowException(
                f"{what} does not exist on {self.target_uri}; nothing was changed. Fix: create it "
                "first "
                f"(mlflow deployments create / client.create_deployment)",
                error_code=RESOURCE_DOES_NOT_EXIST,
            )

    @_translated
    def delete_deployment(
        self, name: str, config: Mapping[str, Any] | None = None, endpoint: str | None = None
    ) -> dict[str, Any] | None:
        """Delete ``name`` and what deployer created for it (``deployer delete``); idempotent."""
        self._no_endpoint(endpoint)
        values = self._values(self._specs("delete", _DRY_RUN), config, "delete_deployment")
        dry_run = bool(values.pop("dry_run", False))
        target_name = endpoint or name
        if endpoint:
            values["deployment"] = name
        connection, options = self._split("delete", values)
        try:
            result = actions.delete_endpoint(
                self.kind, target_name, connection, options, dry_run=dry_run
            )
        except DeployerError:
            if dry_run or any(
                e.name == target_name for e in actions.list_endpoints(self.kind, connection, {})
            ):
                raise
            return None  # already gone: deleting again is not an error (MLflow's contract)
        if isinstance(result, DeployPlan):
            return _dry_run(name, result)
        return None

    @_translated
    def list_deployments(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Every endpoint of the target (Azure ML with ``endpoint``: the deployments in it)."""
        self._no_endpoint(endpoint)
        if endpoint:
            status = actions.endpoint_status(self.kind, endpoint, self._connection("status"), {})
            return [
                dict(d, endpoint=endpoint) for d in _plain(status.details.get("deployments") or [])
            ]
        return [
            _status_dict(s) for s in actions.list_endpoints(self.kind, self._connection("list"), {})
        ]

    @_translated
    def get_deployment(self, name: str, endpoint: str | None = None) -> dict[str, Any]:
        """``deployer status`` of ``name`` as a dict; MlflowException when it does not exist."""
        self._no_endpoint(endpoint)
        target_name = endpoint or name
        try:
            status = actions.endpoint_status(self.kind, target_name, self._connection("status"), {})
        except DeployerError as exc:
            if any(
                e.name == target_name
                for e in actions.list_endpoints(self.kind, self._connection("list"), {})
            ):
                raise
            raise MlflowException(exc.format_message(), error_code=RESOURCE_DOES_NOT_EXIST) from exc
        if endpoint:
            for dep in _plain(status.details.get("deployments") or []):
                if str(dep.get("name", "")).lower() == name.lower():
                    return dict(dep, endpoint=endpoint)
            raise MlflowException(
                f"endpoint {endpoint!r} has no deployment {name!r}",
                error_code=RESOURCE_DOES_NOT_EXIST,
            )
        if status.status == "absent":
            raise MlflowException(
                f"no deployment {name!r} on {self.target_uri}", error_code=RESOURCE_DOES_NOT_EXIST
            )
        return _status_dict(status)

    @_translated
    def predict(
        self,
        deployment_name: str | None = None,
        inputs: Any = None,
        endpoint: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> PredictionsResponse:
        """One scoring request (``deployer predict --target``); pyfunc inputs, a
        PredictionsResponse."""
        self._no_endpoint(endpoint)
        if not (deployment_name or endpoint):
            raise MlflowException(
                "predict needs a deployment name (or an endpoint)",
                error_code=INVALID_PARAMETER_VALUE,
            )
        values: dict[str, Any] = dict(self.uri_connection)
        if endpoint and deployment_name:
            values["deployment"] = deployment_name
        connection, options = self._split("predict", values)
        name = str(endpoint or deployment_name)
        answer = actions.predict_endpoint(
            self.kind, name, _predict_body(inputs, params), "application/json", connection, options
        )
        return _predictions(answer, f"{self.kind} deployment {name!r}")

    def explain(
        self, deployment_name: str | None = None, df: Any = None, endpoint: str | None = None
    ) -> Any:
        raise MlflowException(
            f"deployer's {self.kind} target cannot explain predictions: its endpoints serve "
            "MLflow's scoring "
            "protocol only. Fix: compute explanations next to the model (e.g. with shap via "
            "mlflow.shap), or call predict",
            error_code=NOT_IMPLEMENTED,
        )

    # ------------------------------------------------------------------ endpoints (Azure ML)
    def _endpoints_only(self, method: str) -> None:
        if self.kind != "azureml":
            raise MlflowException(
                f"{method} is not supported by deployer's {self.kind} target: each deployment is "
                "its own "
                "endpoint. Fix: use the deployment methods "
                "(create_deployment, list_deployments...)",
                error_code=NOT_IMPLEMENTED,
            )

    def create_endpoint(self, name: str, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        self._endpoints_only("create_endpoint")
        raise MlflowException(
            "deployer creates an Azure ML endpoint together with its first deployment, never "
            "empty "
            f"(endpoint {name!r} was not created). Fix: create_deployment(DEPLOYMENT, MODEL_URI, "
            f"endpoint={name!r}) "
            f"(mlflow deployments create -t {self.target_uri} --endpoint {name} --name DEPLOYMENT "
            "-m MODEL)",
            error_code=NOT_IMPLEMENTED,
        )

    @_translated
    def update_endpoint(
        self, endpoint: str, config: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Shift traffic between the endpoint's deployments: ``-C traffic=blue=90,green=10``."""
        self._endpoints_only("update_endpoint")
        specs = {
            k: v
            for k, v in self._specs("deploy", _DRY_RUN, _WAIT, _TIMEOUT).items()
            if k in ("traffic", "dry_run", "wait", "timeout") or v.connection
        }
        values = self._values(specs, config, "update_endpoint")
        generic = {k: values.pop(k) for k in ("dry_run", "wait", "timeout") if k in values}
        connection, options = self._split("deploy", values)
        request = DeployRequest(
            name=endpoint,
            options=options,
            wait=bool(generic.get("wait", True)),
            timeout=generic.get("timeout"),
        )
        plugin, plan = actions.plan_deploy(self.kind, request, connection)
        if generic.get("dry_run"):
            return _dry_run(endpoint, plan)
        plugin.apply(plan)
        return None

    @_translated
    def delete_endpoint(self, endpoint: str) -> None:
        """Delete the endpoint and all its deployments; idempotent."""
        self._endpoints_only("delete_endpoint")
        connection, options = self._split("delete", dict(self.uri_connection))
        actions.delete_endpoint(self.kind, endpoint, connection, options)

    @_translated
    def list_endpoints(self) -> list[dict[str, Any]]:
        self._endpoints_only("list_endpoints")
        return [
            _status_dict(s) for s in actions.list_endpoints(self.kind, self._connection("list"), {})
        ]

    @_translated
    def get_endpoint(self, endpoint: str) -> dict[str, Any]:
        self._endpoints_only("get_endpoint")
        return _status_dict(
            actions.endpoint_status(self.kind, endpoint, self._connection("status"), {})
        )


# ------------------------------------------------------------------------------ plugins
def _local_specs(kind: str) -> dict[str, OptionSpec]:
    """run_local's keys: the local target's options and the build-option group; the container
    runs as ``kind`` would run it."""
    from dataclasses import replace

    from deployer.targets.build_options import option_specs
    from deployer.targets.local import OPTIONS

    serve_as = _RUN_LOCAL_AS.get(kind, kind)
    specs = {s.name: replace(s, default=serve_as) if s.name == "serve_as" else s for s in OPTIONS}
    specs.update({s.name: s for s in (_DETACH, _READY_TIMEOUT)})
    specs.update(option_specs())
    return specs


class _Plugin:
    """What one ``mlflow.deployments`` entry point names: a client class, ``run_local``,
    ``target_help``."""

    def __init__(self, kind: str, client: type[DeployerDeploymentClient]) -> None:
        self.kind = kind
        self.client = client

    @_translated
    def run_local(
        self,
        name: str,
        model_uri: str | os.PathLike[str],
        flavor: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """``deployer run-local``: build if needed, run the container as the target would, serve.

        Blocks streaming the container's logs until Ctrl-C, then removes the container
        (``-C detach=true``: returns once it serves, and the container keeps running).
        """
        from dataclasses import replace

        from deployer.targets.build_options import pop_config_build_options

        if flavor not in (None, FLAVOR):
            raise MlflowException(
                f"deployer serves the {FLAVOR} flavor, not {flavor!r}",
                error_code=INVALID_PARAMETER_VALUE,
            )
        model_uri = model_uri_text(model_uri)
        specs = _local_specs(self.kind)
        config = dict(config or {})
        unknown = sorted(set(config) - set(specs))
        if unknown:
            raise MlflowException(
                f"unknown config key(s) {', '.join(map(repr, unknown))} for run_local on "
                f"{PREFIX}{self.kind}. "
                f"Valid keys: {', '.join(sorted(specs))}",
                error_code=INVALID_PARAMETER_VALUE,
            )
        values = {k: coerce_option(specs[k], v, f"-C {k}") for k, v in config.items()}
        serve_as = values.get("serve_as") or _RUN_LOCAL_AS.get(self.kind, self.kind)
        build, _given = pop_config_build_options(values)
        opts = replace(build, target=serve_as)
        port = values.get("port")
        run = actions.start_local(
            model_uri,
            opts,
            name=name,
            port=8080 if port is None else int(port),
            ready_timeout=float(values.get("ready_timeout") or 300.0),
            step=lambda msg: log.info("%s", msg),
        )
        info = {**run.to_dict(), "model_uri": run.model_uri}
        sys.stderr.write(
            f"serving {run.model_uri} at {run.url} (container {info['container']}); "
            f"POST {run.predict_route}\n"
        )
        if values.get("detach"):
            return info
        sys.stderr.write("streaming logs; Ctrl-C stops and removes the container\n")
        actions.follow_local(
            run,
            lambda chunk: sys.stderr.write(chunk.decode(errors="replace")),
            lambda msg: sys.stderr.write(msg + "\n"),
        )
        return None

    def target_help(self) -> str:
        return target_help(self.kind)


def target_help(kind: str) -> str:
    """What ``mlflow deployments help -t deployer-<kind>`` prints."""
    form, meaning = URI_FORMS[kind]

    def rows(specs: Mapping[str, OptionSpec]) -> list[str]:
        out = []
        for spec in sorted(specs.values(), key=lambda s: s.name):
            kind_text = f"one of {'|'.join(spec.choices)}" if spec.type == "choice" else spec.type
            if spec.multiple:
                kind_text += ', repeatable: a JSON list such as ["A=1","B=2"]'
            default = "" if spec.default in (None, ()) else f" (default: {spec.default})"
            out.append(f"  {spec.name:<24} {kind_text}. {spec.help}{default}")
        return out

    from deployer.targets.build_options import option_specs
    from deployer.targets.registry import declared_options, load_factory

    declared = declared_options(kind)
    deploy = {s.name: s for s in (_IMAGE_URI, _DRY_RUN, _WAIT, _TIMEOUT)}
    deploy.update({s.name: s for s in declared if "deploy" in s.commands})
    if getattr(load_factory(kind), "builds_images", True) is not False:  # a str: with that option
        deploy.update(option_specs())
    delete = {s.name: s for s in (_DRY_RUN,)}
    delete.update({s.name: s for s in declared if "delete" in s.commands})
    lines = [
        f"deployer's {kind} target: the code path of `deployer deploy / status / list / delete / "
        "predict "
        f"--target {kind}`.",
        "",
        f"Target URI: {form}",
        f"  the path names {meaning}.",
        "",
        "Config (-C key=value, or config={...} in Python), parsed like deployer's command-line "
        "flags;",
        "unknown keys are refused. create / update:",
        *rows(deploy),
        "",
        "delete:",
        *rows(delete),
        "",
        "run-local (builds the image and runs it on this machine's Docker engine, as "
        f"{_PLATFORM_NAMES.get(kind, 'deployer')} would):",
        *rows(_local_specs(kind)),
        "",
        f"Flavor: {FLAVOR} only. create refuses an existing deployment, update a missing one; "
        "dry_run=true returns the plan and changes nothing.",
    ]
    if kind == "azureml":
        lines += [
            "Endpoints: --endpoint E --name D creates/updates/deletes deployment D in endpoint E; "
            "update-endpoint -C traffic=blue=90,green=10 shifts traffic; an endpoint is created "
            "with "
            "its first deployment (create-endpoint alone is refused)."
        ]
    else:
        lines += [
            "Endpoints: each deployment is its own endpoint; the *-endpoint commands are refused."
        ]
    return "\n".join(lines) + "\n"


class DeployerLocalClient(DeployerDeploymentClient):
    """Containers on this machine's Docker engine (``deployer deploy --target local``)."""

    kind = "local"


class DeployerSageMakerClient(DeployerDeploymentClient):
    """SageMaker real-time / serverless / async endpoints (``deployer deploy --target
    sagemaker``)."""

    kind = "sagemaker"


class DeployerAzureMLClient(DeployerDeploymentClient):
    """Azure ML managed online endpoints (``deployer deploy --target azureml``)."""

    kind = "azureml"


class DeployerKubernetesClient(DeployerDeploymentClient):
    """A Deployment + Service on a Kubernetes cluster (``deployer deploy --target kubernetes``)."""

    kind = "kubernetes"


class DeployerKServeClient(DeployerDeploymentClient):
    """A KServe InferenceService (``deployer deploy --target kserve``)."""

    kind = "kserve"


# The objects the entry points name.
local = _Plugin("local", DeployerLocalClient)
sagemaker = _Plugin("sagemaker", DeployerSageMakerClient)
azureml = _Plugin("azureml", DeployerAzureMLClient)
kubernetes = _Plugin("kubernetes", DeployerKubernetesClient)
kserve = _Plugin("kserve", DeployerKServeClient)
