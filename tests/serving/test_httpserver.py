"""The built-in HTTP/1.1 server, over real sockets: keep-alive, pipelining, 100-continue,
limits, malformed input, concurrency with batching; and the uvicorn alternative."""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from deployer.serving import httpserver
from tests.serving.conftest import HOST, IRIS_COLUMNS, IRIS_ROWS, LiveServer


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the method, path and body it received."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/boom":
        raise RuntimeError("app failure")
    payload = json.dumps({"method": scope["method"], "path": scope["path"],
                          "query": scope["query_string"].decode(), "size": len(body)}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", b"%d" % len(payload))]})
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture()
def toy_server() -> Iterator[int]:
    """httpserver.serve(echo_app) on a free port, in a thread with its own loop."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(128)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        task = asyncio.ensure_future(httpserver.serve(echo_app, sock, handle_signals=False,
                                                      keep_alive_timeout=1.0,
                                                      graceful_timeout=2.0))
        await stop.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    time.sleep(0.2)
    yield sock.getsockname()[1]
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    sock.close()


def _exchange(port: int, data: bytes, *, wait: float = 1.0) -> bytes:
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(data)
        sock.settimeout(wait)
        out = b""
        try:
            while True:
                part = sock.recv(65536)
                if not part:
                    break
                out += part
        except TimeoutError:
            pass
        return out


def test_keep_alive_and_pipelining(toy_server: int) -> None:
    requests = b"".join(
        b"POST /p%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (i, i, b"x" * i)
        for i in range(5))
    out = _exchange(toy_server, requests)
    assert out.count(b"HTTP/1.1 200 OK") == 5
    sizes = [json.loads(chunk.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["size"]
             for chunk in out.split(b"HTTP/1.1 200 OK")[1:]]
    assert sizes == [0, 1, 2, 3, 4]  # in order


def test_one_connection_many_requests(toy_server: int) -> None:
    conn = http.client.HTTPConnection(HOST, toy_server, timeout=5)
    for i in range(50):
        conn.request("POST", f"/x?i={i}", body=b"a" * i)
        resp = conn.getresponse()
        assert json.loads(resp.read()) == {"method": "POST", "path": "/x", "query": f"i={i}",
                                           "size": i}
    conn.close()


def test_chunked_request_body(toy_server: int) -> None:
    out = _exchange(toy_server, b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                b"\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert b'"size": 5' in out


def test_expect_100_continue(toy_server: int) -> None:
    with socket.create_connection((HOST, toy_server), timeout=5) as sock:
        sock.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"body")
        assert b'"size": 4' in sock.recv(4096)


def test_http_1_0_closes(toy_server: int) -> None:
    out = _exchange(toy_server, b"GET /old HTTP/1.0\r\n\r\n", wait=3)
    assert out.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in out


def test_head_has_no_body(toy_server: int) -> None:
    out = _exchange(toy_server, b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length:" in head and body == b""


@pytest.mark.parametrize(("data", "status"), [
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
    (b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"400"),
])
def test_malformed_requests(toy_server: int, data: bytes, status: bytes) -> None:
    out = _exchange(toy_server, data, wait=3)
    assert out.startswith(b"HTTP/1.1 " + status), out[:100]


def test_upgrade_is_answered_as_plain_http_then_closed(toy_server: int) -> None:
    out = _exchange(toy_server, b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
                                b"Connection: Upgrade\r\n\r\nGET /again HTTP/1.1\r\n\r\n", wait=3)
    assert out.startswith(b"HTTP/1.1 200") and b"connection: close" in out
    assert out.count(b"HTTP/1.1") == 1


def test_app_exception_is_500_and_server_lives(toy_server: int) -> None:
    assert _exchange(toy_server, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
        b"HTTP/1.1 500")
    assert _exchange(toy_server, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
        b"HTTP/1.1 200")


def test_idle_connection_times_out(toy_server: int) -> None:
    with socket.create_connection((HOST, toy_server), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHo")  # never finishes its headers
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server
        assert time.monotonic() - started < 4


def test_large_body_with_expect_100_continue(sklearn_server: LiveServer) -> None:
    """What curl does for bodies over 1 KiB: headers, wait for 100 Continue, then the body."""
    body = json.dumps({"dataframe_split": {"columns": IRIS_COLUMNS,
                                           "data": IRIS_ROWS * 200}}).encode()
    with socket.create_connection((HOST, sklearn_server.port), timeout=30) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Expect: 100-continue\r\n\r\n" % len(body))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"]}"):
            part = sock.recv(65536)
            if not part:
                break
            reply += part
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(payload)["predictions"] == [0, 1, 2] * 200


@pytest.mark.slow
def test_concurrent_requests_get_their_own_answers(sklearn_server: LiveServer) -> None:
    """Concurrent one-row requests are batched: each must still get its own prediction,
    and a bad one in a batch must not spoil the others."""
    expected = {tuple(r): label for r, label in zip(IRIS_ROWS, [0, 1, 2], strict=True)}
    errors: list[str] = []

    def client(seed: int) -> None:
        rnd = random.Random(seed)
        conn = http.client.HTTPConnection(HOST, sklearn_server.port, timeout=30)
        for _ in range(150):
            if rnd.random() < 0.1:
                body = {"dataframe_split": {"columns": IRIS_COLUMNS,
                                            "data": [[float("nan"), 1.0, 1.0, 1.0]]}}
                conn.request("POST", "/invocations", json.dumps(body),
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 400:
                    errors.append(f"NaN row got {resp.status}")
                continue
            rows = rnd.sample(IRIS_ROWS, rnd.randint(1, 3))
            conn.request("POST", "/invocations",
                         json.dumps({"dataframe_split": {"columns": IRIS_COLUMNS, "data": rows}}),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            got = json.loads(resp.read())
            if got != {"predictions": [expected[tuple(r)] for r in rows]}:
                errors.append(f"{rows} -> {got}")
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]


@pytest.mark.slow
def test_uvicorn_mode(server_pool, sklearn_model) -> None:  # type: ignore[no-untyped-def]
    server = server_pool.deployer(sklearn_model, "--workers", "1", "--http", "uvicorn",
                                  "--max-body-bytes", "2000")
    body = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}
    for _ in range(30):
        assert server.post(body).json() == {"predictions": [0, 1, 2]}
    assert server.post(b"{x").status == 400
    assert server.post(body, "text/plain").status == 415
    assert server.get("/invocations").status == 405
    big = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS * 40}}
    assert server.post(big).status == 413
    assert server.get("/v2/health/ready").status == 200
