"""moto's InvokeEndpoint extended the way SageMaker treats multi-model endpoints (MME).

Installed per test (``install(sm, monkeypatch)``); the threaded moto server runs in this process,
so patching its response class changes what the HTTP server answers. deployer's code is not
touched: it calls sagemaker-runtime over HTTP as it would call AWS.

Control plane (always): every invocation is recorded with its ``X-Amzn-SageMaker-Target-Model``
header; an endpoint whose model has ``Mode: MultiModel`` requires TargetModel, and the archive
``<ModelDataUrl><TargetModel>`` must exist in moto's S3 (else SageMaker's ValidationError "Failed
to download model data"); a single-model endpoint refuses TargetModel. What passes these checks
is answered by moto's canned results.

Data plane (``DataPlane.serve(endpoint, image)``): what SageMaker's MME front end does on an
instance, with a real container of the endpoint's image started as SageMaker starts it (the
model's ``Environment``, ``serve``, port 8080): on the first request for a TargetModel the
archive is fetched from moto's S3 and extracted into ``/opt/ml/models/<id>/model`` (a host
directory mounted read-only), loaded with ``POST /models`` (SageMaker's container contract),
then every request for it is ``POST /models/<id>/invoke``. A container answer other than 200
comes back as SageMaker's ``ModelError`` (424) with the original status and body.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.targets.sagemaker.conftest import ACCOUNT, REGION, SageMakerSim

PORT = 8080


@dataclass
class Instance:
    """One endpoint instance: its container and the host port of its 8080."""

    container: Any
    port: int
    models: Path  # mounted at /opt/ml/models

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


@dataclass
class DataPlane:
    docker: Any
    root: Path
    name_prefix: str
    instances: dict[str, Instance] = field(default_factory=dict)
    loads: list[tuple[str, int]] = field(default_factory=list)
    """(TargetModel, status of POST /models) per load SageMaker's front end asked for."""
    downloads: list[str] = field(default_factory=list)

    def serve(self, endpoint: str, image: str, timeout: float = 240.0) -> Instance:
        """Start the endpoint's instance from ``image`` (the locally built image the model's
        ECR URI stands for), with the environment of the endpoint's model."""
        from moto.sagemaker.models import sagemaker_backends

        backend = sagemaker_backends[ACCOUNT][REGION]
        config = backend.endpoint_configs[backend.endpoints[endpoint].endpoint_config_name]
        container = backend._models[config.production_variants[0]["ModelName"]].primary_container
        models = self.root / endpoint
        models.mkdir(parents=True)
        models.chmod(0o755)
        run = self.docker.containers.run(
            image, ["serve"], detach=True, name=f"{self.name_prefix}-{endpoint}",
            environment=dict(container.get("Environment") or {}),
            volumes={str(models): {"bind": "/opt/ml/models", "mode": "ro"}},
            ports={f"{PORT}/tcp": ("127.0.0.1", None)})
        try:
            run.reload()
            instance = Instance(run, int(run.ports[f"{PORT}/tcp"][0]["HostPort"]), models)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if instance.request("GET", "/ping")[0] == 200:
                        break
                except OSError:
                    pass
                run.reload()
                assert run.status == "running", run.logs().decode()[-3000:]
                assert time.monotonic() < deadline, "the instance did not answer /ping in time"
                time.sleep(0.5)
        except BaseException:
            run.remove(force=True)
            raise
        self.instances[endpoint] = instance
        return instance

    def stop(self) -> None:
        for instance in self.instances.values():
            instance.container.remove(force=True)
        self.instances.clear()

    def invoke(self, instance: Instance, target: str, archive: bytes, body: bytes,
               headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        model_id = hashlib.sha256(target.encode()).hexdigest()[:32]
        url = f"/opt/ml/models/{model_id}/model"
        if instance.request("GET", f"/models/{model_id}")[0] != 200:
            dest = instance.models / model_id / "model"
            if not dest.exists():
                self.downloads.append(target)
                dest.mkdir(parents=True)
                with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                    tar.extractall(dest, filter="data")
                for path in (dest.parent, *dest.rglob("*")):
                    path.chmod(0o755 if path.is_dir() else 0o644)
            status, _, answer = instance.request(
                "POST", "/models", json.dumps({"model_name": model_id, "url": url}).encode(),
                {"Content-Type": "application/json"})
            self.loads.append((target, status))
            if status not in (200, 409):
                return status, {}, answer
        return instance.request("POST", f"/models/{model_id}/invoke", body, headers)


@dataclass
class MmeSim:
    sm: SageMakerSim
    invocations: list[dict[str, Any]] = field(default_factory=list)
    data_plane: DataPlane | None = None


def _error(kind: str, message: str, status: int = 400, **extra: Any) -> Any:
    body = json.dumps({"__type": kind, "message": message, **extra})
    return status, {"Content-Type": "application/x-amz-json-1.1", "status": str(status)}, body


def install(sm: SageMakerSim, mp: pytest.MonkeyPatch, data_plane: DataPlane | None = None) -> MmeSim:
    from moto.s3.models import s3_backends
    from moto.sagemaker.models import sagemaker_backends
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    sim = MmeSim(sm, data_plane=data_plane)
    canned = SageMakerRuntimeResponse.invoke_endpoint

    def invoke_endpoint(self: Any) -> Any:
        name = self.path.split("/")[2]
        headers = {k.lower(): v for k, v in self.headers.items()}
        target = headers.get("x-amzn-sagemaker-target-model")
        sim.invocations.append({"endpoint": name, "target_model": target})
        backend = sagemaker_backends[ACCOUNT][REGION]
        ep = backend.endpoints.get(name)
        if ep is None:
            return canned(self)
        config = backend.endpoint_configs[ep.endpoint_config_name]
        container = backend._models[config.production_variants[0]["ModelName"]].primary_container
        multi = container.get("Mode") == "MultiModel"
        if multi and not target:
            return _error("ValidationError", f"Endpoint {name} is a multi-model endpoint: TargetModel is required.")
        if not multi and target:
            return _error("ValidationError",
                          f"Endpoint {name} is not a multi-model endpoint. It does not support TargetModel.")
        if not multi:
            return canned(self)
        bucket, _, prefix = container["ModelDataUrl"][len("s3://"):].partition("/")
        key = s3_backends[ACCOUNT]["global"].buckets[bucket].keys.get(prefix + target)
        if key is None:
            return _error("ValidationError", f"Failed to download model data(bucket: {bucket}, key: {prefix + target}).")
        instance = sim.data_plane.instances.get(name) if sim.data_plane else None
        if instance is None:
            return canned(self)
        assert sim.data_plane is not None
        forward = {k: v for k, v in (("Content-Type", headers.get("content-type")),
                                     ("Accept", headers.get("accept"))) if v}
        body = self.body if isinstance(self.body, bytes) else str(self.body or "").encode()
        status, answer_headers, answer = sim.data_plane.invoke(instance, target, key.value, body, forward)
        if status != 200:
            original = answer.decode("utf-8", "replace")
            return _error("ModelError", f"Received client error ({status}) from primary with message \"{original}\".",
                          424, OriginalStatusCode=status, OriginalMessage=original)
        return 200, {"Content-Type": answer_headers.get("content-type", "application/json"),
                     "x-Amzn-Invoked-Production-Variant": config.production_variants[0]["VariantName"]}, answer

    mp.setattr(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)
    return sim
