"""A streaming ChatModel, built into an image by the real CLI and engine, streams from the
container: server-sent events over chunked HTTP, SageMaker's response-stream contract
(``X-Amzn-SageMaker-Accept: text/event-stream``), API-key auth from ``DEPLOYER_API_KEY``,
and JSON access-log lines (``DEPLOYER_SERVE_LOG_FORMAT``) in the container's log.

One image for the module (a shared fixture); one container runs every check.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.building.conftest import BuiltImage, Secrets, build_with_cli
from tests.serving.sse import read_events

pytestmark = [pytest.mark.docker, pytest.mark.slow]

KEY = "container-key-" + "Zx9" * 8
CHAT = {"messages": [{"role": "user", "content": "streams from a container"}]}


@pytest.fixture(scope="module")
def chat_image(docker_client, base_image: str, chat_stream_model: Path,  # type: ignore[no-untyped-def]
               build_secrets: Secrets) -> BuiltImage:
    # verified like every build: the check takes MLflow's unwrapped answer to a chat request
    image = build_with_cli(chat_stream_model, "deployer-test/chat-stream:1", base_image, build_secrets.env)
    labels = docker_client.images.get(image.tag).attrs["Config"]["Labels"]
    assert labels["io.deployer.verify.status"] == "passed", labels
    return image


@pytest.fixture(scope="module")
def chat_container(docker_client, chat_image: BuiltImage) -> Iterator[tuple[Any, int]]:  # type: ignore[no-untyped-def]
    container = docker_client.containers.run(
        chat_image.tag, ["serve"], detach=True,
        environment={"DEPLOYER_API_KEY": KEY, "DEPLOYER_SERVE_LOG_FORMAT": "json",
                     "MLFLOW_MODELS_WORKERS": "1", "DEPLOYER_SERVE_PORT": "8181"},
        ports={"8181/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        port = int(container.ports["8181/tcp"][0]["HostPort"])
        deadline = time.monotonic() + 240
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            container.reload()
            assert container.status == "running", container.logs().decode()[-3000:]
            assert time.monotonic() < deadline, "not ready in time"
            time.sleep(0.5)
        yield container, port
    finally:
        container.remove(force=True)


def _post(port: int, body: dict[str, Any], headers: dict[str, str]) -> tuple[Any, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/invocations", body=json.dumps(body),
                 headers={"Content-Type": "application/json", **headers})
    return conn, conn.getresponse()


def test_chat_model_streams_from_the_container(chat_container: tuple[Any, int]) -> None:
    _, port = chat_container
    conn, resp = _post(port, {**CHAT, "stream": True},
                       {"Authorization": f"Bearer {KEY}", "X-Request-Id": "in-container-1"})
    try:
        assert resp.status == 200
        assert resp.getheader("Content-Type").startswith("text/event-stream")
        assert resp.getheader("Transfer-Encoding") == "chunked"
        assert resp.getheader("X-Request-Id") == "in-container-1"
        events, _ = read_events(resp)
    finally:
        conn.close()
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 4
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == \
        "streams from a container"


def test_sagemaker_response_stream_contract_in_the_container(chat_container: tuple[Any, int]
                                                             ) -> None:
    _, port = chat_container
    conn, resp = _post(port, CHAT, {"X-Amzn-SageMaker-Accept": "text/event-stream",
                                    "X-Api-Key": KEY})
    try:
        assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
        events, _ = read_events(resp)
    finally:
        conn.close()
    assert len(events) == 5 and events[-1] == "[DONE]"
    # without the header (InvokeEndpoint) the same body is one JSON answer
    conn, resp = _post(port, CHAT, {"X-Api-Key": KEY})
    try:
        assert resp.status == 200
        assert json.loads(resp.read())["object"] == "chat.completion"
    finally:
        conn.close()


def test_environment_options_are_honoured_in_the_image(chat_container: tuple[Any, int]
                                                      ) -> None:
    """DEPLOYER_SERVE_PORT beats the entrypoint's default port; MLflow's worker variable and
    DEPLOYER_SERVE_LOG_FORMAT apply (the server's own log lines are JSON)."""
    container, _ = chat_container
    messages = [json.loads(line).get("message", "") for line in
                container.logs().decode().splitlines() if line.startswith("{")]
    assert any("listening on http://0.0.0.0:8181 (1 worker," in m for m in messages), messages


def test_auth_and_json_access_log_in_the_container(chat_container: tuple[Any, int]) -> None:
    container, port = chat_container
    conn, resp = _post(port, {**CHAT, "stream": True}, {})
    assert resp.status == 401 and resp.getheader("WWW-Authenticate").startswith("Bearer")
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/ping")  # exempt: SageMaker's health check carries no key
    assert conn.getresponse().status == 200
    conn.close()
    deadline = time.monotonic() + 10
    while True:
        logs = container.logs().decode()
        records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        access = [r for r in records if r.get("type") == "access"]
        if any(r.get("request_id") == "in-container-1" for r in access) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert any(r.get("status") == 401 for r in access), logs[-3000:]
    streamed = [r for r in access if r.get("request_id") == "in-container-1"]
    if streamed:  # when the stream test ran first in this module
        assert streamed[0]["status"] == 200 and streamed[0]["bytes"] > 0
    assert KEY not in logs
