"""The boundary to the Kubernetes API server: one connection, REST calls, errors translated.

Connecting is the official ``kubernetes`` client's job (kubeconfig with ``--context``, or the
in-cluster service account; exec plugins, client certificates, tokens, proxies and CA bundles
as ``kubectl`` handles them). The calls themselves are plain REST through that client's HTTP
layer (:meth:`Kube.request`), for every kind the targets use: one code path, the same on every
version of the client, and exactly the requests the API server documents:

* read: ``GET .../{plural}/{name}`` (404 -> None);
* server-side apply: ``PATCH .../{plural}/{name}?fieldManager=deployer&force=true`` with
  ``Content-Type: application/apply-patch+yaml`` (a JSON body is valid YAML);
* delete: ``DELETE .../{plural}/{name}`` with foreground propagation (404 -> done);
* list, pod logs, events, and ``POST .../services/{name}:{port}/proxy/{path}`` for ``predict``
  (the API server's service proxy: it works from a laptop with only a kubeconfig).

Errors become :class:`~deployer.errors.TargetError` with what / where / fix: 401/403 (whose
permissions), 404, 409, 422 (the API server's own message), quota refusals, and an unreachable
API server (within a bounded time, naming the server and the context).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from deployer.errors import MissingDependencyError, TargetError, UsageError

log = logging.getLogger("deployer")

FIELD_MANAGER = "deployer"
#: (connect, read) seconds of one API call: an unreachable server fails in bounded time.
TIMEOUT = (10, 60)

#: kind -> (apiVersion, plural)
KINDS: dict[str, tuple[str, str]] = {
    "Deployment": ("apps/v1", "deployments"),
    "Service": ("v1", "services"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets"),
    "ServingRuntime": ("serving.kserve.io/v1alpha1", "servingruntimes"),
    "InferenceService": ("serving.kserve.io/v1beta1", "inferenceservices"),
    "Pod": ("v1", "pods"),
    "Event": ("v1", "events"),
    "Namespace": ("v1", "namespaces"),
}


def collection_path(kind: str, namespace: str | None) -> str:
    api_version, plural = KINDS[kind]
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{root}/namespaces/{quote(namespace)}/{plural}" if namespace else f"{root}/{plural}"


def object_path(kind: str, namespace: str | None, name: str) -> str:
    return f"{collection_path(kind, namespace)}/{quote(name)}"


@dataclass
class ApiAnswer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Kube:
    """One API server (see module docstring). ``api_client``: a ``kubernetes.client.ApiClient``."""

    def __init__(
        self, api_client: Any, *, context: str | None = None, namespace: str | None = None
    ) -> None:
        self.api_client = api_client
        self.context = context
        self.namespace = namespace  # the context's (or the pod's) namespace: the default one
        self.host = str(api_client.configuration.host)

    @classmethod
    def connect(cls, *, kubeconfig: str | None = None, context: str | None = None) -> Kube:
        """From ``kubeconfig`` (default $KUBECONFIG / ~/.kube/config) and ``context`` (default
        its current one), else the in-cluster service account."""
        try:
            from kubernetes import config
            from kubernetes.config.config_exception import ConfigException
        except ImportError as exc:
            raise MissingDependencyError(
                "kubernetes", "kubernetes", "the Kubernetes and KServe targets"
            ) from exc
        path = (
            kubeconfig
            or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
            or os.path.expanduser("~/.kube/config")
        )
        if os.path.isfile(path):
            try:
                client = config.new_client_from_config(
                    config_file=path, context=context, persist_config=False
                )
                contexts, active = config.list_kube_config_contexts(config_file=path)
            except ConfigException as exc:
                raise UsageError(
                    f"cannot use the kubeconfig: {exc}",
                    where=f"{path}" + (f" (--context {context})" if context else ""),
                    fix="check the context name (kubectl config get-contexts) and the kubeconfig",
                ) from None
            chosen = (
                next((c for c in contexts or [] if c.get("name") == context), None)
                if context
                else active
            )
            namespace = ((chosen or {}).get("context") or {}).get("namespace")
            return cls(client, context=context or (active or {}).get("name"), namespace=namespace)
        if context or kubeconfig:
            raise UsageError(
                f"no kubeconfig at {path}",
                where="--kubeconfig / KUBECONFIG",
                fix="point --kubeconfig (or KUBECONFIG) at a kubeconfig file",
            )
        try:
            from kubernetes.client import ApiClient, Configuration

            configuration = Configuration()
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise UsageError(
                f"no Kubernetes configuration: {exc}",
                where="~/.kube/config",
                fix="create a kubeconfig (kubectl config), pass --kubeconfig, or run inside "
                "a pod with a service account",
            ) from None
        return cls(ApiClient(configuration=configuration), namespace=_pod_namespace())

    # ------------------------------------------------------------------ HTTP
    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: Any = TIMEOUT,
        raw: bytes | None = None,
    ) -> ApiAnswer:
        """One REST call; any HTTP status comes back (errors are the caller's to judge), a
        connection failure raises TargetError."""
        conf = self.api_client.configuration
        hook = getattr(conf, "refresh_api_key_hook", None)
        if hook is not None:
            hook(conf)
        headers = {"Accept": accept, "User-Agent": "deployer"}
        for setting in conf.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        data = raw
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        elif raw is not None:
            headers["Content-Type"] = content_type
        url = self.host.rstrip("/") + path + (f"?{urlencode(query)}" if query else "")
        # the client's own connection pool (its TLS, client certificates and proxy settings);
        # the REST helpers above it differ between client versions, the pool does not
        pool = self.api_client.rest_client.pool_manager
        try:
            import urllib3

            response = pool.request(
                method,
                url,
                body=data,
                headers=headers,
                retries=False,
                timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
            )
        except Exception as exc:  # noqa: BLE001 - connection refused, timeouts, TLS errors
            raise TargetError(
                f"cannot reach the Kubernetes API server at {self.host}: "
                f"{type(exc).__name__}: {exc}",
                where=self._where(),
                fix="check the cluster is up and reachable from here (kubectl cluster-info), the "
                "context, and any VPN or proxy",
            ) from None
        payload = response.data
        return ApiAnswer(int(response.status), payload or b"")

    def _where(self, what: str | None = None) -> str:
        ctx = f" (context {self.context})" if self.context else ""
        return f"{what} on {self.host}{ctx}" if what else f"{self.host}{ctx}"

    def check(self, answer: ApiAnswer, what: str, *, ok: tuple[int, ...] = (200, 201, 202)) -> Any:
        """The answer's JSON, or a TargetError saying what the API server refused and why."""
        if answer.status in ok:
            return answer.json()
        raise api_error(answer, what, self._where(what))

    # ------------------------------------------------------------------ objects
    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        answer = self.request("GET", object_path(kind, namespace, name))
        if answer.status == 404:
            return None
        return self.check(answer, f"{kind} {name}")  # type: ignore[no-any-return]

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of ``obj`` (field manager ``deployer``, conflicts forced)."""
        kind, meta = obj["kind"], obj["metadata"]
        answer = self.request(
            "PATCH",
            object_path(kind, meta.get("namespace"), meta["name"]),
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=obj,
            content_type="application/apply-patch+yaml",
        )
        return self.check(answer, f"apply {kind} {meta['name']}")  # type: ignore[no-any-return]

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete (foreground: dependents first); False when it did not exist."""
        answer = self.request(
            "DELETE",
            object_path(kind, namespace, name),
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"},
        )
        if answer.status == 404:
            return False
        self.check(answer, f"delete {kind} {name}")
        return True

    def list(
        self,
        kind: str,
        namespace: str | None,
        *,
        selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        query = {
            k: v for k, v in (("labelSelector", selector), ("fieldSelector", field_selector)) if v
        }
        answer = self.request("GET", collection_path(kind, namespace), query=query or None)
        return list((self.check(answer, f"list {KINDS[kind][1]}") or {}).get("items") or [])

    def logs(self, namespace: str, pod: str, *, tail: int = 20, previous: bool = False) -> str:
        """The last ``tail`` log lines of a pod ('' when there are none); ``previous``: of the
        container that ran before the last restart."""
        query: dict[str, Any] = {"tailLines": tail}
        if previous:
            query["previous"] = "true"
        answer = self.request(
            "GET", object_path("Pod", namespace, pod) + "/log", query=query, accept="text/plain"
        )
        return answer.body.decode(errors="replace") if answer.status == 200 else ""

    def proxy(
        self,
        namespace: str,
        service: str,
        port: int | str,
        path: str,
        body: bytes,
        content_type: str,
        timeout: float = 120.0,
    ) -> ApiAnswer:
        """POST ``body`` to ``path`` of a Service through the API server's service proxy."""
        url = f"{object_path('Service', namespace, f'{service}:{port}')}/proxy/{path.lstrip('/')}"
        return self.request(
            "POST",
            url,
            raw=body,
            content_type=content_type,
            accept="application/json",
            timeout=(10, timeout),
        )


def api_error(answer: ApiAnswer, what: str, where: str) -> TargetError:
    """An API server refusal as a TargetError: its Status message, and what to do."""
    try:
        status = json.loads(answer.body) if answer.body else {}
    except ValueError:
        status = {}
    message = status.get("message") if isinstance(status, dict) else None
    reason = status.get("reason") if isinstance(status, dict) else None
    text = message or answer.body.decode(errors="replace")[:300] or f"HTTP {answer.status}"
    fixes = {
        401: "your credentials were refused: refresh them (kubectl get ns works?)",
        403: "grant your user or service account the RBAC permission named above "
        "(kubectl auth can-i)",
        404: "create it first, or check the namespace (--namespace) and the name",
        409: "someone else changed it at the same time: run the command again",
        422: "the API server refused the object: see its message (a quota, an invalid field)",
    }
    fix = fixes.get(answer.status, "see the API server's message above")
    if "quota" in text.lower():
        fix = (
            "the namespace's ResourceQuota refused it: lower --cpu / --memory / --replicas, or ask "
            "for a larger quota (kubectl describe resourcequota)"
        )
    error = TargetError(
        f"{what}: {reason + ': ' if reason else ''}{text} (HTTP {answer.status})",
        where=where,
        fix=fix,
    )
    error.not_found = answer.status == 404  # type: ignore[attr-defined]
    return error


def _pod_namespace() -> str | None:
    """The pod's own namespace when running in a cluster (the service account's file)."""
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as fh:
            return fh.read().strip() or None
    except OSError:
        return None
