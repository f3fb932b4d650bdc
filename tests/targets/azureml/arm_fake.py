"""A stateful fake of Azure Resource Manager for Microsoft.MachineLearningServices, as an
azure-core transport.

``MLClient(credential, sub, rg, ws, transport=FakeARM(...))`` sends every management-plane
request here instead of the network, so the *real* azure-ai-ml code (entity -> REST body,
LRO pollers, pagers, error mapping) runs unmodified. The fake answers the way ARM does:

* PUT of an online endpoint or deployment -> 201/200 with ``provisioningState: Creating`` and an
  ``Azure-AsyncOperation`` header; polling that URL answers ``InProgress`` a few times and then
  ``Succeeded`` (or ``Failed`` with an error, when a failure was injected); the resource's own
  GET then shows the final provisioningState.
* DELETE -> 202 with ``Location`` + ``Azure-AsyncOperation``; the resource disappears when the
  operation completes. Deleting a deployment that still receives traffic is refused (400), as
  Azure does; so is an endpoint traffic map naming unknown deployments or not summing to 100.
* Environment / model versions are synchronous PUTs (200/201).
* Anything not on the management host is refused: tests never reach the network through it.

Polling sleeps go through :meth:`sleep`, recorded instead of slept, so tests run fast.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.utils import case_insensitive_dict

ARM_HOST = "management.azure.com"
PROVIDER = "Microsoft.MachineLearningServices"


class _Raw:
    def close(self) -> None:
        pass


def make_response(request: Any, status: int, body: Any = None, headers: dict[str, str] | None = None) -> HttpResponseImpl:
    """An azure.core.rest response holding ``body`` (JSON-encoded unless bytes)."""
    h = case_insensitive_dict(headers or {})
    if body is None:
        content = b""
    elif isinstance(body, bytes):
        content = body
    else:
        content = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json; charset=utf-8")
    h["Content-Length"] = str(len(content))
    h.setdefault("x-ms-request-id", str(uuid.uuid4()))
    response = HttpResponseImpl(
        request=request,
        internal_response=_Raw(),
        status_code=status,
        reason={200: "OK", 201: "Created", 202: "Accepted", 204: "No Content"}.get(status, "Error"),
        content_type=h.get("Content-Type"),
        headers=h,
        stream_download_generator=None,
    )
    response._content = content  # noqa: SLF001 - the body is complete, nothing to stream
    return response


def _arm_error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": code, "message": message}}


@dataclass
class Recorded:
    """One request as the fake saw it. ``path`` is relative to the workspace when it can be."""

    method: str
    path: str
    api_version: str | None
    body: Any

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class _Operation:
    op_id: str
    resource: str  # full lower-case path of the resource
    kind: str  # "put" | "delete"
    polls_left: int
    error: dict[str, str] | None = None
    status: str = "InProgress"


@dataclass
class FakeARM(HttpTransport):
    subscription: str = "00000000-0000-0000-0000-000000000000"
    resource_group: str = "rg"
    workspace: str = "ws"
    location: str = "westeurope"
    polls: int = 2
    scoring_uri: Any = None  # callable(endpoint_name) -> str, or None for an azure-looking URI
    requests: list[Recorded] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.resources: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, _Operation] = {}
        self._fail_next: dict[str, dict[str, str]] = {}
        self._reject_next: dict[str, tuple[int, str, str]] = {}
        self.keys = {"primaryKey": "pk-" + uuid.uuid4().hex, "secondaryKey": "sk-" + uuid.uuid4().hex}
        ws = self.workspace_path()
        self.resources[ws.lower()] = {
            "id": ws,
            "name": self.workspace,
            "type": f"{PROVIDER}/workspaces",
            "location": self.location,
            "kind": "Default",
            "identity": {"type": "SystemAssigned", "principalId": str(uuid.uuid4()), "tenantId": str(uuid.uuid4())},
            "properties": {
                "friendlyName": self.workspace,
                "storageAccount": f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/Microsoft.Storage/storageAccounts/st{self.workspace}",
                "keyVault": f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/Microsoft.KeyVault/vaults/kv{self.workspace}",
                "containerRegistry": f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/Microsoft.ContainerRegistry/registries/cr{self.workspace}",
                "discoveryUrl": f"https://{self.location}.api.azureml.ms/discovery",
                "mlFlowTrackingUri": f"azureml://{self.location}.api.azureml.ms/mlflow/v1.0{ws}",
                "provisioningState": "Succeeded",
                "workspaceId": str(uuid.uuid4()),
            },
        }

        store = "workspaceblobstore"
        self.resources[(ws + "/datastores/" + store).lower()] = {
            "id": ws + "/datastores/" + store,
            "name": store,
            "type": f"{PROVIDER}/workspaces/datastores",
            "properties": {
                "datastoreType": "AzureBlob",
                "accountName": f"st{self.workspace}",
                "containerName": f"azureml-blobstore-{uuid.uuid4()}",
                "endpoint": "core.windows.net",
                "protocol": "https",
                "isDefault": True,
                "credentials": {"credentialsType": "AccountKey"},
            },
        }

    # ---- knobs for tests ------------------------------------------------------------------
    def workspace_path(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{PROVIDER}/workspaces/{self.workspace}"
        )

    def fail_provisioning(self, relative: str, code: str = "ResourceNotReady", message: str = "") -> None:
        """The next PUT of ``relative`` (e.g. "onlineEndpoints/ep/deployments/green") is accepted,
        then its long-running operation ends Failed, like a container that never gets ready."""
        self._fail_next[relative.lower()] = {
            "code": code,
            "message": message or "User container has crashed or terminated: liveness probe failed",
        }

    def reject_next(self, relative: str, status: int, code: str, message: str) -> None:
        """The next PUT of ``relative`` is refused synchronously (quota, validation...)."""
        self._reject_next[relative.lower()] = (status, code, message)

    def get(self, relative: str) -> dict[str, Any] | None:
        """The stored resource at a workspace-relative path (None when absent)."""
        res = self.resources.get((self.workspace_path() + "/" + relative).lower())
        return copy.deepcopy(res) if res is not None else None

    def put_resource(self, relative: str, resource: dict[str, Any]) -> None:
        """Seed a resource directly (for state that existed before the test)."""
        full = self.workspace_path() + "/" + relative
        resource = copy.deepcopy(resource)
        resource.setdefault("id", full)
        resource.setdefault("name", relative.rsplit("/", 1)[-1])
        self.resources[full.lower()] = resource

    def calls(self, *, include_polls: bool = False, include_reads: bool = True) -> list[str]:
        """Requests as "METHOD relative/path", polling of operations left out by default."""
        out = []
        for r in self.requests:
            if not include_polls and ("operationsstatus" in r.path.lower() or "operationresults" in r.path.lower()):
                continue
            if not include_reads and r.method == "GET":
                continue
            out.append(str(r))
        return out

    def bodies(self, method: str, relative: str) -> list[Any]:
        return [r.body for r in self.requests if r.method == method and r.path.lower() == relative.lower()]

    # ---- HttpTransport ------------------------------------------------------------------
    def __enter__(self) -> FakeARM:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def sleep(self, duration: float) -> None:
        self.sleeps.append(duration)

    def send(self, request: Any, **kwargs: Any) -> HttpResponseImpl:
        url = urlsplit(request.url)
        if url.hostname != ARM_HOST:
            return make_response(request, *_arm_error(599, "NotARM", f"fake ARM refuses {url.hostname}"))
        body = _json_body(request)
        query = parse_qs(url.query)
        path = url.path.rstrip("/")
        with self._lock:
            ws = self.workspace_path()
            rel = path[len(ws) + 1 :] if path.lower().startswith(ws.lower() + "/") else path
            self.requests.append(Recorded(request.method, rel, (query.get("api-version") or [None])[0], body))
            status, payload, headers = self._route(request.method, path, rel, body, query)
        return make_response(request, status, payload, headers)

    # ---- routing ------------------------------------------------------------------------
    def _route(self, method: str, path: str, rel: str, body: Any, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        low = path.lower()
        m = re.search(r"/(mfeoperationsstatus|operationresults)/([^/]+)$", low)
        if m and method == "GET":
            return self._poll(m.group(1), m.group(2))
        if method == "POST":
            return self._action(path, rel, body)
        if method == "GET":
            if low in self.resources:
                return 200, copy.deepcopy(self.resources[low]), {}
            if _is_collection(rel):
                return 200, {"value": self._children(low, query)}, {}
            return (*_arm_error(404, "ResourceNotFound", f"Resource {rel} was not found."), {})
        if method == "PUT":
            return self._put(path, rel, body)
        if method == "DELETE":
            return self._delete(path, rel)
        return (*_arm_error(405, "MethodNotAllowed", method), {})

    def _children(self, collection: str, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        depth = collection.count("/") + 1
        items = [
            copy.deepcopy(res)
            for key, res in self.resources.items()
            if key.startswith(collection + "/") and key.count("/") == depth
        ]
        if "isDefault" in query or "isdefault" in {k.lower() for k in query}:
            items = [i for i in items if i.get("properties", {}).get("isDefault")]
        return items

    def _lro_headers(self, op: _Operation, *, location: bool = False) -> dict[str, str]:
        base = f"https://{ARM_HOST}/subscriptions/{self.subscription}/providers/{PROVIDER}/locations/{self.location}"
        headers = {
            "Azure-AsyncOperation": f"{base}/mfeOperationsStatus/{op.op_id}?api-version=2023-04-01",
            "x-ms-async-operation-timeout": "PT1H",
            "Retry-After": "1",
        }
        if location:
            headers["Location"] = f"{base}/mfeOperationResults/{op.op_id}?api-version=2023-04-01"
        return headers

    def _new_op(self, resource: str, kind: str, error: dict[str, str] | None = None) -> _Operation:
        op = _Operation(uuid.uuid4().hex, resource.lower(), kind, self.polls, error)
        self.operations[op.op_id] = op
        return op

    def _put(self, path: str, rel: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        low = path.lower()
        rel_low = rel.lower()
        if rel_low in self._reject_next:
            status, code, message = self._reject_next.pop(rel_low)
            return (*_arm_error(status, code, message), {})
        if not isinstance(body, dict):
            return (*_arm_error(400, "BadRequest", "request body must be a JSON object"), {})
        existed = low in self.resources
        name = path.rsplit("/", 1)[-1]
        resource = copy.deepcopy(body)
        resource["id"] = path
        resource["name"] = name
        resource["type"] = _arm_type(rel)
        resource.setdefault("properties", {})
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        created = self.resources.get(low, {}).get("systemData", {}).get("createdAt", now)
        resource["systemData"] = {
            "createdBy": "test@example.com",
            "createdByType": "User",
            "createdAt": created,
            "lastModifiedBy": "test@example.com",
            "lastModifiedByType": "User",
            "lastModifiedAt": now,
        }
        kind = _kind(rel)
        if kind in ("endpoint", "deployment"):
            parent_error = self._check_parent_and_traffic(kind, rel, path, resource)
            if parent_error:
                return (*parent_error, {})
            props = resource["properties"]
            if kind == "endpoint":
                old = self.resources.get(low, {}).get("properties", {})
                props.setdefault("authMode", old.get("authMode", "Key"))
                props["scoringUri"] = self._scoring_uri(name)
                props["swaggerUri"] = props["scoringUri"].rsplit("/", 1)[0] + "/swagger.json"
                props.setdefault("traffic", {})
            else:
                _deployment_defaults(props)
            props["provisioningState"] = "Updating" if existed else "Creating"
            op = self._new_op(path, "put", self._fail_next.pop(rel_low, None))
            self.resources[low] = resource
            return (200 if existed else 201), copy.deepcopy(resource), self._lro_headers(op)
        # synchronous resources (environment/model versions and containers, ...)
        if re.match(r"^models/[^/]+/versions/[^/]+$", rel_low):
            resource["properties"].setdefault("flavors", {})  # ARM derives them from MLmodel
        resource["properties"].setdefault("provisioningState", "Succeeded")
        versioned = re.match(r"^(models|environments)/([^/]+)/versions/([^/]+)$", rel_low)
        if versioned and existed and self.resources[low]["properties"].get("image") != resource["properties"].get("image"):
            # asset versions are immutable in Azure ML
            return (*_arm_error(409, "UserError", f"{rel} already exists with different content."), {})
        self.resources[low] = resource
        if versioned:
            self._touch_container(path.rsplit("/versions/", 1)[0], versioned.group(3))
        return (200 if existed else 201), copy.deepcopy(resource), {}

    def _touch_container(self, container: str, version: str) -> None:
        """ARM keeps a container per asset name with its latest/next version."""
        props = self.resources.get(container.lower(), {}).get("properties", {})
        latest = max([v for v in (props.get("latestVersion"), version) if v], key=lambda v: int(v) if v.isdigit() else 0)
        self.resources[container.lower()] = {
            "id": container,
            "name": container.rsplit("/", 1)[-1],
            "type": _arm_type(container[len(self.workspace_path()) + 1 :]),
            "properties": {"latestVersion": latest, "nextVersion": str(int(latest) + 1) if latest.isdigit() else None,
                           "isArchived": False},
            "systemData": {"createdAt": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
        }

    def _check_parent_and_traffic(self, kind: str, rel: str, path: str, resource: dict[str, Any]) -> tuple[int, Any] | None:
        if kind == "deployment":
            endpoint = path.rsplit("/deployments/", 1)[0].lower()
            ep = self.resources.get(endpoint)
            if ep is None:
                return _arm_error(404, "ResourceNotFound", f"endpoint for {rel} does not exist")
            if ep["properties"].get("provisioningState") not in ("Succeeded",):
                return _arm_error(409, "Conflict", "the endpoint is still being provisioned")
            return None
        traffic = resource["properties"].get("traffic") or {}
        if traffic:
            names = {
                res["name"].lower(): res
                for key, res in self.resources.items()
                if key.startswith(path.lower() + "/deployments/") and key.count("/") == path.count("/") + 2
            }
            for dep, pct in traffic.items():
                if dep.lower() not in names:
                    return _arm_error(400, "BadArgument", f"Traffic names deployment '{dep}', which does not exist.")
                if int(pct) and names[dep.lower()]["properties"].get("provisioningState") != "Succeeded":
                    return _arm_error(400, "BadArgument", f"Deployment '{dep}' is not in a Succeeded state.")
            total = sum(int(v) for v in traffic.values())
            if total not in (0, 100):
                return _arm_error(400, "BadArgument", f"Traffic must add up to 0 or 100, got {total}.")
        return None

    def _scoring_uri(self, endpoint: str) -> str:
        if self.scoring_uri is not None:
            return str(self.scoring_uri(endpoint))
        return f"https://{endpoint}.{self.location}.inference.ml.azure.com/score"

    def _delete(self, path: str, rel: str) -> tuple[int, Any, dict[str, str]]:
        low = path.lower()
        if low not in self.resources:
            return 204, None, {}
        kind = _kind(rel)
        if kind == "deployment":
            endpoint = self.resources.get(path.rsplit("/deployments/", 1)[0].lower(), {})
            traffic = {k.lower(): int(v) for k, v in endpoint.get("properties", {}).get("traffic", {}).items()}
            if traffic.get(path.rsplit("/", 1)[-1].lower(), 0) > 0:
                return (*_arm_error(400, "BadArgument", "Deployment has traffic; set it to 0 before deleting."), {})
        if kind in ("endpoint", "deployment"):
            self.resources[low]["properties"]["provisioningState"] = "Deleting"
            op = self._new_op(path, "delete")
            return 202, None, self._lro_headers(op, location=True)
        self._drop(low)
        return 200, None, {}

    def _drop(self, low: str) -> None:
        for key in [k for k in self.resources if k == low or k.startswith(low + "/")]:
            del self.resources[key]

    def _poll(self, which: str, op_id: str) -> tuple[int, Any, dict[str, str]]:
        op = self.operations.get(op_id)
        if op is None:
            return (*_arm_error(404, "NotFound", "operation not found"), {})
        if op.status == "InProgress":
            if op.polls_left > 0:
                op.polls_left -= 1
            else:
                self._finish(op)
        if which == "operationresults":
            return (202, None, {"Retry-After": "1", "Location": ""}) if op.status == "InProgress" else (200, None, {})
        payload: dict[str, Any] = {"id": op_id, "name": op_id, "status": op.status}
        if op.status == "Failed" and op.error:
            payload["error"] = dict(op.error)
        return 200, payload, ({"Retry-After": "1"} if op.status == "InProgress" else {})

    def _finish(self, op: _Operation) -> None:
        if op.kind == "delete":
            self._drop(op.resource)
            op.status = "Succeeded"
            return
        res = self.resources.get(op.resource)
        if res is None:
            op.status = "Canceled"
            return
        if op.error:
            res["properties"]["provisioningState"] = "Failed"
            op.status = "Failed"
        else:
            res["properties"]["provisioningState"] = "Succeeded"
            op.status = "Succeeded"

    def _action(self, path: str, rel: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        action = path.rsplit("/", 1)[-1].lower()
        target = path.rsplit("/", 1)[0].lower()
        if target not in self.resources:
            return (*_arm_error(404, "ResourceNotFound", f"{rel} target not found"), {})
        if action == "listkeys":
            return 200, dict(self.keys), {}
        if action == "token":
            return 200, {"accessToken": "aml-token", "tokenType": "Bearer", "expiryTimeUtc": 4102444800}, {}
        if action == "listsecrets":
            return 200, {"secretsType": "AccountKey", "key": base64.b64encode(b"k" * 64).decode()}, {}
        if action == "getlogs":
            return 200, {"content": "fake container logs\n"}, {}
        return (*_arm_error(400, "UnsupportedAction", action), {})


def _deployment_defaults(props: dict[str, Any]) -> None:
    """Fill in what ARM adds to a managed deployment the client left out."""
    props.setdefault("endpointComputeType", "Managed")
    props.setdefault("scaleSettings", {"scaleType": "Default"})
    props.setdefault("requestSettings", {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 1, "maxQueueWait": "PT0.5S"})
    probe = {"initialDelay": "PT10S", "period": "PT10S", "timeout": "PT2S", "successThreshold": 1, "failureThreshold": 30}
    props.setdefault("livenessProbe", dict(probe))
    props.setdefault("readinessProbe", dict(probe, failureThreshold=30))
    props.setdefault("appInsightsEnabled", False)
    props.setdefault("egressPublicNetworkAccess", "Enabled")


def _json_body(request: Any) -> Any:
    raw = request.content
    if raw is None:
        return None
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode()
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _kind(rel: str) -> str:
    parts = rel.strip("/").lower().split("/")
    if parts[:1] == ["onlineendpoints"] and len(parts) == 2:
        return "endpoint"
    if parts[:1] == ["onlineendpoints"] and len(parts) == 4 and parts[2] == "deployments":
        return "deployment"
    return "other"


_COLLECTIONS = {"onlineendpoints", "deployments", "environments", "versions", "models", "datastores", "codes"}


def _is_collection(rel: str) -> bool:
    return rel.strip("/").lower().rsplit("/", 1)[-1] in _COLLECTIONS


def _arm_type(rel: str) -> str:
    parts = rel.strip("/").split("/")
    types = [parts[i] for i in range(0, len(parts), 2)]
    return f"{PROVIDER}/workspaces/" + "/".join(types)
