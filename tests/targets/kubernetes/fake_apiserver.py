"""A stateful fake Kubernetes API server over HTTP, for the real ``kubernetes`` client.

deployer connects with a kubeconfig naming ``http://127.0.0.1:PORT`` and a bearer token, so the
official client's configuration loading and HTTP layer run unmodified; only the server is fake.
It answers the way the API server does, for what deployer uses:

* ``GET`` / ``DELETE`` of an object (404 with a ``Status`` body when absent), lists with label
  selectors (``a=b,c=d``) and the ``involvedObject.name`` field selector of events;
* server-side apply: ``PATCH`` with ``Content-Type: application/apply-patch+yaml``; it requires
  ``fieldManager`` (400 without), checks the body names the URL's object (400), creates the
  object (201) or replaces what the manager applied (200), bumps ``metadata.generation`` when
  the spec changes, keeps ``status`` and the server's metadata;
* namespaces must exist (404 ``namespaces "x" not found``), and a bearer token is required (401);
* pod logs (``.../pods/NAME/log``, ``previous``), and the service proxy
  (``POST .../services/NAME:PORT/proxy/PATH``): forwarded to a backend URL the test registered
  for that Service (a real scoring server), else 503 ``no endpoints available``.

A small "controller" plays the cluster's part after each apply, decided by the image the pod
template names (:attr:`FakeApiServer.images`): ``ready`` (the rollout completes after
:attr:`polls_to_ready` GETs), ``crash`` (pods in CrashLoopBackOff, with events and the previous
container's log lines), ``quota`` (the ReplicaSet cannot create pods: a ResourceQuota
refuses them), ``unready`` (pods run but never pass the readiness probe), ``pull``
(ImagePullBackOff). InferenceServices get revisions, KServe's conditions and a traffic split
honouring ``canaryTrafficPercent``.

Faults can be injected for the next matching request(s): :meth:`FakeApiServer.fail`.
Every request is recorded (:attr:`FakeApiServer.requests`).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

PLURAL_KINDS = {
    "deployments": "Deployment",
    "services": "Service",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "poddisruptionbudgets": "PodDisruptionBudget",
    "servingruntimes": "ServingRuntime",
    "inferenceservices": "InferenceService",
    "pods": "Pod",
    "events": "Event",
}
TOKEN = "fake-token-for-tests"
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>.+))?)?$"
)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any

    @property
    def kind(self) -> str | None:
        m = _PATH.match(self.path)
        return PLURAL_KINDS.get(m.group("plural")) if m else None

    def __repr__(self) -> str:  # what a failing assertion shows
        return f"{self.method} {self.path}{'?' + '&'.join(f'{k}={v}' for k, v in self.query.items()) if self.query else ''}"


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    reason: str
    message: str
    times: int = 1


@dataclass
class FakeApiServer:
    namespaces: set[str] = field(default_factory=lambda: {"default", "ml"})
    images: dict[str, str] = field(default_factory=dict)  # image -> behaviour (default: ready)
    backends: dict[tuple[str, str], str] = field(default_factory=dict)  # (ns, service) -> URL
    polls_to_ready: int = 1
    requests: list[Recorded] = field(default_factory=list)
    objects: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)  # pod name -> log text
    faults: list[Fault] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _countdown: dict[tuple[str, str], int] = field(default_factory=dict)
    _revisions: dict[tuple[str, str], int] = field(default_factory=dict)

    # ------------------------------------------------------------------ test API
    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body, ctype = server.handle(self.command, self.path, dict(self.headers), raw)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def fail(self, method: str, path: str, status: int, reason: str, message: str, times: int = 1) -> None:
        """The next ``times`` requests ``method`` whose path matches ``path`` (a regex) get this
        error ``Status``."""
        self.faults.append(Fault(method, re.compile(path), status, reason, message, times))

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        plural = next(p for p, k in PLURAL_KINDS.items() if k == kind)
        for (_gv, ns, pl, nm), obj in self.objects.items():
            if (ns, pl, nm) == (namespace, plural, name):
                return obj
        return None

    def names(self, namespace: str | None = None) -> list[str]:
        """``Kind/name`` of every object a client made (not pods, events, nor what the fake
        controller made), sorted."""
        return sorted(f"{PLURAL_KINDS[pl]}/{nm}" for (gv, ns, pl, nm), obj in self.objects.items()
                      if pl not in ("pods", "events") and "owner" not in obj
                      and (namespace is None or ns == namespace))

    def changes(self) -> list[Recorded]:
        """The requests that change something (apply, delete), in order."""
        return [r for r in self.requests if r.method in ("PATCH", "DELETE", "PUT", "POST")
                and "/proxy/" not in r.path]

    # ------------------------------------------------------------------ HTTP
    def handle(self, method: str, raw_path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, str]:
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        ctype = headers.get("Content-Type") or headers.get("content-type")
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        with self._lock:
            self.requests.append(Recorded(method, path, query, ctype, body))
            auth = headers.get("Authorization") or headers.get("authorization")
            if auth != f"Bearer {TOKEN}":
                return _status(401, "Unauthorized", "Unauthorized")
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.path.search(path):
                    fault.times -= 1
                    return _status(fault.status, fault.reason, fault.message)
            if "/proxy/" in path:
                return self._proxy(path, raw, ctype)
            m = _PATH.match(path)
            if not m:
                return _status(404, "NotFound", f"the server could not find the requested resource ({path})")
            gv = "v1" if m.group("core") else f"{m.group('group')}/{m.group('version')}"
            ns, plural, name, sub = m.group("ns"), m.group("plural"), m.group("name"), m.group("sub")
            if plural not in PLURAL_KINDS:
                return _status(404, "NotFound", f"the server could not find the requested resource ({plural})")
            if ns not in self.namespaces:  # reads find nothing there; writes name the namespace
                if method == "GET":
                    return (200, self._list(gv, ns, plural, query), "application/json") if name is None \
                        else _not_found(plural, name)
                return _status(404, "NotFound", f'namespaces "{ns}" not found')
            key = (gv, ns, plural, name or "")
            if sub == "log" and method == "GET":
                text = self.logs.get(f"{name}{'/previous' if query.get('previous') == 'true' else ''}", "")
                return 200, text.encode(), "text/plain"
            if name is None and method == "GET":
                return 200, self._list(gv, ns, plural, query), "application/json"
            if method == "GET":
                obj = self.objects.get(key)
                if obj is None:
                    return _not_found(plural, name)
                self._tick(obj)
                return 200, obj, "application/json"
            if method == "PATCH":
                return self._apply(key, query, ctype, body)
            if method == "DELETE":
                obj = self.objects.pop(key, None)
                if obj is None:
                    return _not_found(plural, name)
                self._delete_dependents(obj)
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}, "application/json"
            return _status(405, "MethodNotAllowed", f"{method} is not supported here")

    def _list(self, gv: str, ns: str, plural: str, query: dict[str, str]) -> dict[str, Any]:
        items = [o for (g, n, p, _), o in self.objects.items() if (g, n, p) == (gv, ns, plural)]
        if query.get("labelSelector"):
            wanted = dict(pair.split("=", 1) for pair in query["labelSelector"].split(","))
            items = [o for o in items if all((o["metadata"].get("labels") or {}).get(k) == v
                                             for k, v in wanted.items())]
        if query.get("fieldSelector"):
            key, value = query["fieldSelector"].split("=", 1)
            assert key == "involvedObject.name", key
            items = [o for o in items if o.get("involvedObject", {}).get("name") == value]
        for obj in items:
            self._tick(obj)
        return {"kind": f"{PLURAL_KINDS[plural]}List", "apiVersion": gv, "items": copy.deepcopy(items)}

    def _apply(self, key: tuple[str, str, str, str], query: dict[str, str], ctype: str | None,
               body: Any) -> tuple[int, Any, str]:
        gv, ns, plural, name = key
        if ctype != "application/apply-patch+yaml":
            return _status(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {ctype}")
        if not query.get("fieldManager"):
            return _status(400, "BadRequest", "PATCH, fieldManager: Required value: is required for apply patch")
        if not isinstance(body, dict) or body.get("kind") != PLURAL_KINDS[plural] or \
                body.get("apiVersion") != gv or body.get("metadata", {}).get("name") != name:
            return _status(400, "BadRequest", "the name / kind / apiVersion of the object does not match the URL")
        if body["metadata"].get("namespace") not in (None, ns):
            return _status(400, "BadRequest", "the namespace of the object does not match the namespace on the request")
        old = self.objects.get(key)
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        meta["namespace"] = ns
        if old is None:
            meta.update(uid=str(uuid.uuid4()), generation=1, resourceVersion="1",
                        creationTimestamp="2026-12-07T00:00:00Z")
            obj["status"] = {}
            created = True
        else:
            old_meta = old["metadata"]
            changed = old.get("spec") != obj.get("spec")
            meta.update(uid=old_meta["uid"], creationTimestamp=old_meta["creationTimestamp"],
                        generation=old_meta["generation"] + (1 if changed else 0),
                        resourceVersion=str(int(old_meta["resourceVersion"]) + 1))
            obj["status"] = old.get("status", {})
            created = False
        meta["managedFields"] = [{"manager": query["fieldManager"], "operation": "Apply"}]
        self.objects[key] = obj
        self._reconcile(obj, created=created, previous=old)
        return (201 if created else 200), obj, "application/json"

    def _proxy(self, path: str, raw: bytes, ctype: str | None) -> tuple[int, Any, str]:
        m = re.match(r"^/api/v1/namespaces/([^/]+)/services/([^/:]+)(?::([^/]+))?/proxy/(.*)$", path)
        if not m:
            return _status(404, "NotFound", "bad proxy path")
        ns, service, _port, rest = m.groups()
        if ("v1", ns, "services", service) not in self.objects:
            return _not_found("services", service)
        url = self.backends.get((ns, service))
        if url is None:
            return _status(503, "ServiceUnavailable", f'no endpoints available for service "{service}"')
        request = urllib.request.Request(f"{url.rstrip('/')}/{rest}", data=raw, method="POST",
                                         headers={"Content-Type": ctype or "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=60) as response:
                return response.status, response.read(), response.headers.get("Content-Type", "application/json")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "application/json")

    # ------------------------------------------------------------------ the "controller"
    def _reconcile(self, obj: dict[str, Any], *, created: bool, previous: dict[str, Any] | None) -> None:
        kind = obj["kind"]
        if kind == "Deployment":
            self._countdown[("Deployment", obj["metadata"]["name"])] = self.polls_to_ready
        elif kind == "InferenceService":
            self._reconcile_isvc(obj, previous)

    def _tick(self, obj: dict[str, Any]) -> None:
        """Advance a Deployment's status (called on each GET, like time passing)."""
        if obj.get("kind") != "Deployment":
            return
        meta, spec = obj["metadata"], obj["spec"]
        key = ("Deployment", meta["name"])
        if obj["status"].get("observedGeneration") == meta["generation"] and key not in self._countdown:
            return
        left = self._countdown.get(key, 0)
        if left > 0:
            self._countdown[key] = left - 1
            obj["status"] = {**obj["status"], "updatedReplicas": 0}
            return
        self._countdown.pop(key, None)
        ns, name = meta["namespace"], meta["name"]
        replicas = spec.get("replicas", 1)
        container = spec["template"]["spec"]["containers"][0]
        behaviour = self.images.get(container["image"], "ready")
        labels = spec["template"]["metadata"]["labels"]
        self._replace_pods(ns, name, labels, container, behaviour, max(replicas, 1))
        status: dict[str, Any] = {"observedGeneration": meta["generation"], "replicas": replicas,
                                  "updatedReplicas": replicas, "conditions": []}
        if behaviour == "ready":
            status.update(readyReplicas=replicas, availableReplicas=replicas)
            status["conditions"] = [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]
        elif behaviour == "quota":
            status.update(updatedReplicas=0, replicas=0)
            status["conditions"] = [
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                 "message": f'pods "{name}-7d9f8-x2x4q" is forbidden: exceeded quota: compute, requested: '
                            "limits.cpu=4, used: limits.cpu=0, limited: limits.cpu=2"}]
        else:
            status.update(readyReplicas=0, availableReplicas=0, unavailableReplicas=replicas)
            status["conditions"] = [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]
        obj["status"] = status

    def _replace_pods(self, ns: str, owner: str, labels: dict[str, str], container: dict[str, Any],
                      behaviour: str, count: int) -> None:
        for key in [k for k, o in self.objects.items() if k[2] == "pods" and o.get("owner") == owner]:
            del self.objects[key]
        if behaviour == "quota":
            return
        for i in range(count):
            pod = f"{owner}-{abs(hash(container['image'])) % 10**5:05d}-p{i}"
            ready = behaviour == "ready"
            state: dict[str, Any] = {"running": {"startedAt": "2026-12-07T00:00:01Z"}}
            restarts = 0
            if behaviour == "crash":
                state = {"waiting": {"reason": "CrashLoopBackOff",
                                     "message": "back-off 40s restarting failed container"}}
                restarts = 4
                self.logs[f"{pod}/previous"] = (
                    "INFO loading the model from /opt/ml/model\nTraceback (most recent call last):\n"
                    "ModuleNotFoundError: No module named 'sklearn'\nERROR the model failed to load\n")
                self._event(ns, pod, "Warning", "BackOff", "Back-off restarting failed container model")
            elif behaviour == "pull":
                state = {"waiting": {"reason": "ImagePullBackOff",
                                     "message": f'Back-off pulling image "{container["image"]}"'}}
                self._event(ns, pod, "Warning", "Failed", f'Failed to pull image "{container["image"]}": not found')
            elif behaviour == "unready":
                self.logs[pod] = "INFO serving on 0.0.0.0:8080\nWARNING model not ready\n"
                self._event(ns, pod, "Warning", "Unhealthy",
                            "Readiness probe failed: HTTP probe failed with statuscode: 503")
            self.objects[("v1", ns, "pods", pod)] = {
                "apiVersion": "v1", "kind": "Pod", "owner": owner,
                "metadata": {"name": pod, "namespace": ns, "labels": dict(labels)},
                "spec": {"containers": [copy.deepcopy(container)]},
                "status": {
                    "phase": "Running" if behaviour != "pull" else "Pending",
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                    "containerStatuses": [{"name": container["name"], "image": container["image"],
                                           "ready": ready, "restartCount": restarts, "state": state}],
                },
            }

    def _event(self, ns: str, pod: str, type_: str, reason: str, message: str) -> None:
        name = f"{pod}.{uuid.uuid4().hex[:8]}"
        self.objects[("v1", ns, "events", name)] = {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"kind": "Pod", "name": pod}, "type": type_, "reason": reason,
            "message": message, "lastTimestamp": "2026-12-07T00:00:02Z"}

    def _reconcile_isvc(self, obj: dict[str, Any], previous: dict[str, Any] | None) -> None:
        meta, predictor = obj["metadata"], obj["spec"]["predictor"]
        ns, name = meta["namespace"], meta["name"]
        old_status = obj.get("status") or {}
        old_predictor = ((previous or {}).get("spec") or {}).get("predictor") or {}
        strip = lambda p: {k: v for k, v in p.items() if k != "canaryTrafficPercent"}  # noqa: E731
        comp = (old_status.get("components") or {}).get("predictor") or {}
        ready_rev = comp.get("latestReadyRevision")
        previous_rev = comp.get("previousRolledoutRevision") or ready_rev
        if previous is None or strip(predictor) != strip(old_predictor):
            number = self._revisions.get((ns, name), 0) + 1
            self._revisions[(ns, name)] = number
            created = f"{name}-predictor-{number:05d}"
            previous_rev = ready_rev
        else:
            created = comp.get("latestCreatedRevision")
        behaviour = self.images.get(predictor["model"]["image"], "ready")
        labels = {"serving.kserve.io/inferenceservice": name, "app.kubernetes.io/managed-by": "kserve"}
        container = {"name": "kserve-container", "image": predictor["model"]["image"]}
        self._replace_pods(ns, f"{name}-predictor", labels, container, behaviour, 1)
        status: dict[str, Any] = {"observedGeneration": meta["generation"]}
        service = ("v1", ns, "services", f"{name}-predictor")
        if service not in self.objects:  # KServe's RawDeployment mode: a ClusterIP Service
            self.objects[service] = {
                "apiVersion": "v1", "kind": "Service", "owner": f"{name}-predictor",
                "metadata": {"name": f"{name}-predictor", "namespace": ns, "labels": labels},
                "spec": {"type": "ClusterIP", "ports": [{"port": 80, "targetPort": 8080}]}}
        if behaviour == "ready":
            canary = predictor.get("canaryTrafficPercent")
            traffic = [{"revisionName": created, "percent": 100, "latestRevision": True}]
            if canary is not None and previous_rev and previous_rev != created:
                traffic = [{"revisionName": created, "percent": canary, "latestRevision": True, "tag": "latest"},
                           {"revisionName": previous_rev, "percent": 100 - canary, "latestRevision": False,
                            "tag": "prev"}]
            status["conditions"] = [{"type": t, "status": "True"} for t in ("IngressReady", "PredictorReady", "Ready")]
            status["url"] = f"http://{name}.{ns}.example.com"
            status["components"] = {"predictor": {
                "latestCreatedRevision": created, "latestReadyRevision": created,
                "previousRolledoutRevision": previous_rev, "traffic": traffic}}
        else:
            message = f'Revision "{created}" failed with message: container exited with code 1.'
            status["conditions"] = [
                {"type": "IngressReady", "status": "True"},
                {"type": "PredictorReady", "status": "False", "reason": "RevisionFailed", "message": message},
                {"type": "Ready", "status": "False", "reason": "RevisionFailed", "message": message}]
            status["components"] = {"predictor": {
                "latestCreatedRevision": created, "latestReadyRevision": ready_rev,
                "previousRolledoutRevision": previous_rev,
                "traffic": comp.get("traffic") or []}}
        obj["status"] = status

    def _delete_dependents(self, obj: dict[str, Any]) -> None:
        owner = obj["metadata"]["name"]
        if obj["kind"] == "InferenceService":
            owner = f"{owner}-predictor"
        if obj["kind"] in ("Deployment", "InferenceService"):
            for key in [k for k, o in self.objects.items()
                        if k[2] in ("pods", "services") and o.get("owner") == owner]:
                del self.objects[key]


def _status(code: int, reason: str, message: str) -> tuple[int, dict[str, Any], str]:
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": reason, "code": code}, "application/json"


def _not_found(plural: str, name: str) -> tuple[int, dict[str, Any], str]:
    return _status(404, "NotFound", f'{plural} "{name}" not found')


def kubeconfig(server: str, *, namespace: str = "ml", token: str = TOKEN) -> dict[str, Any]:
    """A kubeconfig with contexts ``fake`` (current, namespace ``namespace``) and ``other``."""
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester", "namespace": namespace}},
                     {"name": "other", "context": {"cluster": "fake", "user": "tester"}}],
    }
