"""Azure ML's operations for the one plan executor (:mod:`deployer.targets.executor`).

Each planned operation maps to one azure-ai-ml call (or one scoring request for the smoke
test); the executor runs them and owns the rollback rule. What Azure adds:

* a deployment whose provisioning failed still exists (in state Failed): its create call's
  own undo deletes it (the executor's rule for failing ``create`` calls);
* the traffic map is only ever changed by the ``commit`` call, which runs after the smoke
  test, so a failure anywhere before it leaves traffic exactly where it was, and the error
  says so ("traffic left at ...");
* ``cleanup`` failures are warnings.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deployer.errors import DeployerError, TargetError
from deployer.targets.azureml import plan as pl
from deployer.targets.azureml.client import azure_errors, is_not_found
from deployer.targets.base import DeployPlan, DeployResult, PlannedCall
from deployer.targets.executor import BaseOperations, execute

log = logging.getLogger("deployer")

#: How long the smoke request may take (a cold container can be slow on its first request).
SMOKE_TIMEOUT = 120.0


@dataclass
class AzureOperations(BaseOperations):
    """Carries out Azure plans' calls with an MLClient. ``http`` sends data-plane requests
    (the smoke test)."""

    client: Any
    http: Callable[..., tuple[int, bytes]] | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    credential: Any = None  # azure-core TokenCredential for an ACR push (None: the default chain)

    def __post_init__(self) -> None:
        if self.http is None:
            self.http = post_json

    # ---------------------------------------------------------------- the plan
    def run(self, plan: DeployPlan) -> DeployResult:
        execute(plan, self)
        return self._result(plan)

    def is_not_found(self, exc: DeployerError) -> bool:
        return exc.__cause__ is not None and is_not_found(exc.__cause__)

    def story(self, plan: DeployPlan, call: PlannedCall, exc: DeployerError) -> Sequence[str]:
        kept = plan.facts.get("previous_traffic")
        if kept is not None:
            from deployer.targets.azureml.traffic import format_traffic

            return [f"traffic left at {format_traffic(kept)}"]
        return []

    def _result(self, plan: DeployPlan) -> DeployResult:
        facts = dict(plan.facts)
        endpoint = self.outputs.get("online_endpoints.update_traffic") or self._endpoint(
            plan.name, local=bool(facts.get("local"))
        )
        details: dict[str, Any] = {
            "deployment": facts.get("deployment"),
            "previous_traffic": facts.get("previous_traffic"),
            "traffic": _merged_traffic(facts.get("traffic") or {}, endpoint),
            "smoke_test": self.outputs.get("smoke_test", facts.get("smoke_test")),
        }
        env = self.outputs.get("environments.create_or_update")
        if env is not None:
            details["environment"] = getattr(env, "id", None)
        model = self.outputs.get("models.create_or_update")
        if model is not None:
            details["model"] = getattr(model, "id", None)
        dep = self.outputs.get("online_deployments.begin_create_or_update")
        if dep is not None:
            details["deployment_state"] = _state(dep)
        status = (
            "Succeeded"
            if plan.facts.get("wait", True)
            else (details.get("deployment_state") or "Creating")
        )
        url = getattr(endpoint, "scoring_uri", None) if endpoint is not None else None
        if url and facts.get("local"):
            url = scoring_access(self.client, plan.name, local=True)[0]
        return DeployResult(
            pl.TARGET, plan.name, plan.action, status, endpoint_url=url, details=details
        )

    def _endpoint(self, name: str, *, local: bool = False) -> Any:
        try:
            with azure_errors("read the endpoint", where=f"endpoint {name}"):
                return (
                    self.client.online_endpoints.get(name, local=True)
                    if local
                    else self.client.online_endpoints.get(name)
                )
        except TargetError:
            return None

    # ---------------------------------------------------------------- the operations
    def _op_build_image(self, p: dict[str, Any]) -> str:
        from deployer.targets.model_image import build_step

        return build_step(p)

    def _op_push(self, p: dict[str, Any]) -> Any:
        from deployer.registries.login import login_for
        from deployer.registries.push import push_image

        dest = str(p["Image"])
        return push_image(
            str(p["LocalImage"]),
            dest,
            credentials=login_for(dest, credential=self.credential),
            skip_if_present=True,
        )

    def _op_online_endpoints__begin_create_or_update(self, p: dict[str, Any]) -> Any:
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        endpoint = ManagedOnlineEndpoint(
            name=p["name"], auth_mode=p.get("auth_mode", "key"), tags=p.get("tags") or {}
        )
        with azure_errors("create the endpoint", where=f"endpoint {p['name']}"):
            if p.get("local"):
                return self.client.online_endpoints.begin_create_or_update(endpoint, local=True)
            return self.client.online_endpoints.begin_create_or_update(endpoint).result()

    def _op_online_endpoints__begin_delete(self, p: dict[str, Any]) -> Any:
        with azure_errors("delete the endpoint", where=f"endpoint {p['name']}"):
            try:
                if p.get("local"):
                    from deployer.targets.azureml.local import unstage

                    self.client.online_endpoints.begin_delete(name=p["name"], local=True)
                    unstage(p["name"])
                    return None
                return self.client.online_endpoints.begin_delete(name=p["name"]).result()
            except Exception as exc:
                if is_not_found(exc):
                    return None
                raise

    def _op_online_endpoints__update_traffic(self, p: dict[str, Any]) -> Any:
        where = f"endpoint {p['name']}"
        with azure_errors("read the endpoint", where=where):
            endpoint = self.client.online_endpoints.get(p["name"])
        endpoint.traffic = {k: int(v) for k, v in p["traffic"].items()}
        with azure_errors("set the traffic", where=where):
            return self.client.online_endpoints.begin_create_or_update(endpoint).result()

    def _op_environments__create_or_update(self, p: dict[str, Any]) -> Any:
        from azure.ai.ml.entities import Environment

        env = Environment(name=p["name"], image=p["image"], inference_config=p["inference_config"])
        with azure_errors("register the environment", where=f"environment {p['name']}"):
            return self.client.environments.create_or_update(env)

    def _op_models__create_or_update(self, p: dict[str, Any]) -> Any:
        from azure.ai.ml.entities import Model

        model = Model(
            name=p["name"],
            path=p["path"],
            type=p.get("type", "mlflow_model"),
            description="registered by deployer",
        )
        with azure_errors("register the model", where=f"model {p['name']} ({p['path']})"):
            return self.client.models.create_or_update(model)

    def _op_online_deployments__begin_create_or_update(self, p: dict[str, Any]) -> Any:
        from azure.ai.ml.entities import ManagedOnlineDeployment, OnlineRequestSettings

        if p.get("local"):
            return self._local_deployment(p)
        kwargs: dict[str, Any] = {
            "name": p["name"],
            "endpoint_name": p["endpoint_name"],
            "instance_type": p["instance_type"],
            "instance_count": int(p["instance_count"]),
            "environment_variables": p.get("environment_variables") or None,
            "tags": p.get("tags") or None,
        }
        env = p.get("environment")
        if env == pl.FROM_ENVIRONMENT:
            env = self.outputs[pl.FROM_ENVIRONMENT[1:]]
        if env is not None:
            kwargs["environment"] = env
        model = p.get("model")
        if model == pl.FROM_MODEL:
            model = _asset_ref(self.outputs[pl.FROM_MODEL[1:]])
        if model is not None:
            kwargs["model"] = model
        if p.get("request_settings"):
            kwargs["request_settings"] = OnlineRequestSettings(**p["request_settings"])
        deployment = ManagedOnlineDeployment(**kwargs)
        where = f"deployment {p['name']} of endpoint {p['endpoint_name']}"
        with azure_errors("create the deployment", where=where):
            poller = self.client.online_deployments.begin_create_or_update(deployment)
            if not p.get("wait", True):
                return deployment
            result = poller.result(timeout=p.get("timeout"))
            if not poller.done():
                raise TargetError(
                    f"deployment did not finish within {p.get('timeout')} s",
                    where=where,
                    fix="raise --timeout, or check `deployer status --target azureml`",
                )
        state = _state(result)
        if state and state.lower() != "succeeded":
            raise TargetError(
                f"deployment ended in state {state}",
                where=where,
                fix="check the container logs: az ml online-deployment get-logs",
            )
        return result

    def _local_deployment(self, p: dict[str, Any]) -> Any:
        """Run the image in the local Docker engine through the SDK's local endpoints."""
        from azure.ai.ml import load_environment
        from azure.ai.ml.entities import CodeConfiguration, ManagedOnlineDeployment, Model

        from deployer.targets.azureml.local import stage

        where = f"local deployment {p['name']} of endpoint {p['endpoint_name']}"
        staged = stage(
            p["endpoint_name"], p["name"], p["model_path"], p["image"], p["inference_config"]
        )
        with azure_errors("run the local deployment", where=where):
            deployment = ManagedOnlineDeployment(
                name=p["name"],
                endpoint_name=p["endpoint_name"],
                model=Model(path=str(staged.model)),
                code_configuration=CodeConfiguration(
                    code=str(staged.code), scoring_script="score.py"
                ),
                environment=load_environment(str(staged.environment_yml)),
                instance_type=p["instance_type"],
                instance_count=int(p["instance_count"]),
                environment_variables=p.get("environment_variables") or None,
            )
            return self.client.online_deployments.begin_create_or_update(deployment, local=True)

    def _op_online_deployments__begin_delete(self, p: dict[str, Any]) -> Any:
        where = f"deployment {p['name']} of endpoint {p['endpoint_name']}"
        with azure_errors("delete the deployment", where=where):
            try:
                if p.get("local"):
                    return self.client.online_deployments.begin_delete(
                        name=p["name"], endpoint_name=p["endpoint_name"], local=True
                    )
                return self.client.online_deployments.begin_delete(
                    name=p["name"], endpoint_name=p["endpoint_name"]
                ).result()
            except Exception as exc:
                if is_not_found(exc):
                    return None
                raise

    def _op_smoke_test(self, p: dict[str, Any]) -> dict[str, Any]:
        where = f"deployment {p['deployment']} of endpoint {p['endpoint']}"
        uri, token = scoring_access(self.client, p["endpoint"], local=bool(p.get("local")))
        started = time.monotonic()
        assert self.http is not None
        status, body = self.http(
            uri, p["body"], token=token, deployment=p["deployment"], timeout=SMOKE_TIMEOUT
        )
        elapsed = round((time.monotonic() - started) * 1000, 1)
        if status != 200:
            raise TargetError(
                f"smoke test failed: the new deployment answered HTTP {status}: "
                f"{_error_text(body)}",
                where=where,
                fix="fix the model or image and deploy again; traffic was not changed",
            )
        try:
            json.loads(body)
        except ValueError as exc:
            raise TargetError(
                f"smoke test failed: the answer is not JSON: {_snippet(body)}",
                where=where,
                fix="the scoring route must answer JSON; check the image's scoring server",
            ) from exc
        return {"status": status, "ms": elapsed, "response": _snippet(body, 200)}


def scoring_access(
    client: Any, endpoint_name: str, *, local: bool = False
) -> tuple[str, str | None]:
    """The endpoint's scoring URI and the bearer token (key or token) its auth mode needs."""
    where = f"endpoint {endpoint_name}"
    with azure_errors("read the endpoint", where=where):
        endpoint = (
            client.online_endpoints.get(endpoint_name, local=True)
            if local
            else client.online_endpoints.get(endpoint_name)
        )
    uri = getattr(endpoint, "scoring_uri", None)
    if not uri:
        raise TargetError(
            "the endpoint has no scoring URI yet",
            where=where,
            fix="wait until it is provisioned (deployer status --target azureml)",
        )
    if local:
        from urllib.parse import urlsplit, urlunsplit

        from deployer.targets.azureml.local import scoring_path

        path = scoring_path(endpoint_name)
        if path:
            uri = urlunsplit(urlsplit(str(uri))._replace(path=path))
        return str(uri), None  # local endpoints take no key
    with azure_errors("get the endpoint's keys", where=where):
        creds = client.online_endpoints.get_keys(endpoint_name)
    token = getattr(creds, "primary_key", None) or getattr(creds, "access_token", None)
    return str(uri), token


def post_json(
    uri: str, body: Any, *, token: str | None, deployment: str | None, timeout: float
) -> tuple[int, bytes]:
    """POST ``body`` as JSON to a scoring URI; returns (status, body) for any HTTP status."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if deployment:
        headers["azureml-model-deployment"] = deployment
    request = urllib.request.Request(uri, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scoring URI from ARM
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise TargetError(
            f"cannot reach the scoring URI: {getattr(exc, 'reason', exc)}",
            where=uri,
            fix="check the network; private endpoints are reachable only from their "
            "virtual network",
        ) from exc


def _asset_ref(asset: Any) -> str:
    name, version = getattr(asset, "name", None), getattr(asset, "version", None)
    if name and version:
        return f"azureml:{name}:{version}"
    return str(getattr(asset, "id", asset))


def _state(obj: Any) -> str | None:
    value = getattr(obj, "provisioning_state", None)
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _merged_traffic(planned: dict[str, int], endpoint: Any) -> dict[str, int]:
    """The endpoint's traffic with every known deployment listed (the SDK drops zeroes)."""
    if endpoint is None:
        return dict(planned)
    actual = {k: int(v) for k, v in (getattr(endpoint, "traffic", None) or {}).items()}
    merged = {k: 0 for k in planned}
    for name, pct in actual.items():
        key = next((k for k in merged if k.lower() == name.lower()), name)
        merged[key] = pct
    return merged


def _error_text(body: bytes | str) -> str:
    """A scoring error answer for a message: its error_code/message when it is JSON."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return _snippet(body)
    if isinstance(data, dict) and data.get("message"):
        code = data.get("error_code") or data.get("code")
        return _snippet(f"{code}: {data['message']}" if code else str(data["message"]))
    return _snippet(body)


def _snippet(body: bytes | str, limit: int = 500) -> str:
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
