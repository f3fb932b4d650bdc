"""Fixtures for the Azure ML target: a fake ARM transport, an endpoint "front door" on
localhost that routes scoring requests to real scoring servers, and a static token.

The front door does what Azure's endpoint ingress does: check the bearer key, send a request
with an ``azureml-model-deployment`` header to that deployment, otherwise pick a deployment by
the endpoint's traffic map (read from the fake ARM's state), and relay the answer. Behind it
run real servers: ``azmlinfsrv`` with deployer's rendered ``score.py`` and a real MLflow model.
"""

from __future__ import annotations

import http.server
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.targets.azureml.arm_fake import FakeARM

VENV_BIN = Path(sys.executable).parent


class StaticToken:
    """A TokenCredential with a fixed token (what azure-core's bearer policy needs)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("static-test-token", int(time.time()) + 3600)


class FrontDoor:
    """An HTTP server standing in for ``https://<endpoint>.<region>.inference.ml.azure.com``."""

    def __init__(self, arm: FakeARM) -> None:
        self.arm = arm
        self.backends: dict[tuple[str, str], Any] = {}  # a URL, or a function returning one
        self.seen: list[dict[str, Any]] = []
        door = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, payload = door.route(self.path, dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def uri(self, endpoint: str) -> str:
        return f"http://127.0.0.1:{self.port}/{endpoint}/score"

    def route(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        endpoint = path.strip("/").split("/")[0]
        lower = {k.lower(): v for k, v in headers.items()}
        self.seen.append({"endpoint": endpoint, "headers": lower, "body": body})
        if lower.get("authorization") != f"Bearer {self.arm.keys['primaryKey']}":
            return 401, b'{"message": "key_auth_access_denied"}'
        ep = self.arm.get(f"onlineEndpoints/{endpoint}")
        if ep is None:
            return 404, b'{"message": "endpoint not found"}'
        deployment = lower.get("azureml-model-deployment")
        if not deployment:
            traffic = {k: int(v) for k, v in ep["properties"].get("traffic", {}).items() if int(v) > 0}
            if not traffic:
                return 424, b'{"message": "no deployment receives traffic"}'
            deployment = random.choices(list(traffic), weights=list(traffic.values()))[0]
        dep = self.arm.get(f"onlineEndpoints/{endpoint}/deployments/{deployment}")
        if dep is None or dep["properties"].get("provisioningState") != "Succeeded":
            return 404, json.dumps({"message": f"deployment {deployment} not ready"}).encode()
        backend = self.backends.get((endpoint, deployment.lower()))
        if callable(backend):  # started on first use, like Azure pulling the environment's image
            backend = self.backends[(endpoint, deployment.lower())] = backend()
        if backend is None:
            return 502, json.dumps({"message": f"no backend for {deployment}"}).encode()
        request = urllib.request.Request(backend, data=body, headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def arm() -> Iterator[FakeARM]:
    yield FakeARM()


@pytest.fixture
def front_door(arm: FakeARM) -> Iterator[FrontDoor]:
    door = FrontDoor(arm)
    arm.scoring_uri = door.uri
    yield door
    door.close()


@pytest.fixture
def make_target(arm: FakeARM):  # type: ignore[no-untyped-def]
    from deployer.targets.azureml import AzureMLTarget

    def make(**kwargs: Any) -> AzureMLTarget:
        return AzureMLTarget(arm.subscription, arm.resource_group, arm.workspace,
                             credential=StaticToken(), transport=arm, **kwargs)

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(proc: subprocess.Popen, port: int, log: Path | None = None, timeout: float = 90) -> None:  # type: ignore[type-arg]
    """Wait until azmlinfsrv answers GET / with 200 (or fail with its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"azmlinfsrv exited {proc.returncode}: {text}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise RuntimeError(f"azmlinfsrv did not become healthy in {timeout} s")


class ScoreServer:
    """``azmlinfsrv`` running deployer's rendered score.py against a real MLflow model."""

    def __init__(self, workdir: Path, model_dir: Path) -> None:
        from deployer.serving.azure import render_score_py

        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "score.py").write_text(render_score_py())
        self.port = free_port()
        env = dict(os.environ, AZUREML_MODEL_DIR=str(model_dir), GUNICORN_CMD_ARGS="--no-control-socket",
                   HOME=str(workdir))
        self.log = (workdir / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "azmlinfsrv"), "--entry_script", str(workdir / "score.py"), "--port", str(self.port)],
            cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}/score"
        wait_healthy(self.proc, self.port, workdir / "server.log")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="session")
def sklearn_score_server(tmp_path_factory: pytest.TempPathFactory, sklearn_model: Path) -> Iterator[ScoreServer]:
    server = ScoreServer(tmp_path_factory.mktemp("score-sklearn"), sklearn_model)
    yield server
    server.close()


@pytest.fixture(scope="session")
def failing_score_server(tmp_path_factory: pytest.TempPathFactory, failing_model: Path) -> Iterator[ScoreServer]:
    server = ScoreServer(tmp_path_factory.mktemp("score-failing"), failing_model)
    yield server
    server.close()


@pytest.fixture
def blob_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arm: FakeARM) -> Iterator[Any]:
    """Blob storage of the fake workspace, behind a real HTTPS proxy (see blob_fake)."""
    from tests.targets.azureml.blob_fake import BlobProxy, BlobStore, make_tls

    host = f"st{arm.workspace}.blob.core.windows.net"
    ca, ctx = make_tls(tmp_path, [host])
    store = BlobStore()
    proxy = BlobProxy(ctx, store)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    for var in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    store.account = host.split(".")[0]  # type: ignore[attr-defined]
    yield store
    proxy.close()
