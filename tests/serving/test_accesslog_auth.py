"""Access log, request ids and API-key auth, on real server processes (and the pure parts)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from deployer.serving.accesslog import AccessLog, RequestIds
from deployer.serving.auth import ApiKeyAuth
from tests.serving.conftest import (
    HOST,
    IRIS_COLUMNS,
    IRIS_ROWS,
    LiveServer,
    ServerPool,
    start_deployer,
)
from tests.serving.sse import stream

BODY = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS[:1]}}
KEY = "test-key-" + "Q7w" * 8
_GENERATED = re.compile(r"[0-9a-f]{12}-[0-9a-f]+")
_TEXT_LINE = re.compile(
    r"^\S+Z access (?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) (?P<bytes>\d+)B "
    r"(?P<ms>[\d.]+)ms id=(?P<id>\S+)(?: model=(?P<model>\S+))?$", re.M)


def _access_lines(server: LiveServer) -> list[dict[str, str]]:
    return [m.groupdict() for m in _TEXT_LINE.finditer(server.log())]


def _json_lines(server: LiveServer) -> list[dict[str, object]]:
    out = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _wait_for(predicate, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


# ---------------------------------------------------------------------------- pure parts
def test_request_ids_echo_sane_ones_and_generate_the_rest() -> None:
    ids = RequestIds()
    assert ids.pick(b"abc-123_x.y:z") == b"abc-123_x.y:z"
    for bad in (b"", b"has space", b"semi;colon", b"x" * 129, b"new\nline", "é".encode()):
        assert _GENERATED.fullmatch(ids.pick(bad).decode()), bad
    first, second = ids.pick(None), ids.pick(None)
    assert first != second and first.split(b"-")[0] == second.split(b"-")[0]
    assert RequestIds().pick(None).split(b"-")[0] != first.split(b"-")[0]  # per process


def test_access_log_lines_cannot_be_forged(tmp_path: Path) -> None:
    out = tmp_path / "log"
    with open(out, "wb") as fh:
        log = AccessLog("text", fd=fh.fileno())
        log.record("GET", b"/a\nfake 200 line", 404, 22, 0.0012, b"rid")
        log.record("GET", b"/x" * 500, 404, 22, 0.0012, b"rid")
        log.flush()
        js = AccessLog("json", fd=fh.fileno())
        js.record("POST", b"/invocations", 200, 5, 0.5, b"r2")
        js.flush()
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    assert "\\n" in lines[0] and lines[0].endswith("404 22B 1.20ms id=rid")
    assert len(lines[1]) < 400
    record = json.loads(lines[2])
    assert {k: record[k] for k in ("type", "method", "path", "status", "bytes", "ms",
                                   "request_id")} == {
        "type": "access", "method": "POST", "path": "/invocations", "status": 200,
        "bytes": 5, "ms": 500.0, "request_id": "r2"}


def test_auth_header_forms_and_exempt_routes() -> None:
    auth = ApiKeyAuth(KEY.encode(), ["/ping", "/v2/health/*"])
    assert auth.allowed([(b"authorization", b"Bearer " + KEY.encode())])
    assert auth.allowed([(b"authorization", b"bearer " + KEY.encode())])
    assert auth.allowed([(b"x-api-key", KEY.encode())])
    assert not auth.allowed([(b"authorization", b"Basic " + KEY.encode())])
    assert not auth.allowed([(b"x-api-key", KEY.encode()[:-1])])
    assert not auth.allowed([])
    assert auth.exempt("/ping") and auth.exempt("/v2/health/ready")
    assert not auth.exempt("/pingx") and not auth.exempt("/invocations")
    assert KEY not in repr(auth)


# ---------------------------------------------------------------------------- live servers
def test_text_access_log_and_request_ids(sklearn_server: LiveServer) -> None:
    resp = sklearn_server.request("POST", "/invocations", json.dumps(BODY), {
        "Content-Type": "application/json", "X-Request-Id": "client-id.42"})
    assert resp.status == 200 and resp.headers["x-request-id"] == "client-id.42"
    bad = sklearn_server.request("GET", "/nowhere", None, {"X-Request-Id": "not ok!"})
    assert bad.status == 404 and _GENERATED.fullmatch(bad.headers["x-request-id"])
    ids = {"client-id.42", bad.headers["x-request-id"]}

    def both_logged() -> dict[str, dict[str, str]] | None:
        found = {x["id"]: x for x in _access_lines(sklearn_server) if x["id"] in ids}
        return found if len(found) == 2 else None

    mine = _wait_for(both_logged)
    assert mine, sklearn_server.log()[-2000:]
    ok = mine["client-id.42"]
    assert (ok["method"], ok["path"], ok["status"]) == ("POST", "/invocations", "200")
    assert int(ok["bytes"]) == len(resp.body)
    missing = mine[bad.headers["x-request-id"]]
    assert (missing["method"], missing["path"], missing["status"]) == ("GET", "/nowhere", "404")


@pytest.fixture(scope="module")
def auth_server(server_pool: ServerPool, sklearn_model: Path,
                tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    key_file = tmp_path_factory.mktemp("key") / "api-key"
    key_file.write_text(KEY + "\n")
    return server_pool.deployer(sklearn_model, "--workers", "1", "--api-key-file",
                                str(key_file), "--log-format", "json")


def test_auth_401_without_the_key_200_with_it(auth_server: LiveServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-key-" + "x" * 20},
                    {"X-Api-Key": KEY[:-1]}, {"Authorization": KEY}):
        resp = auth_server.request("POST", "/invocations", json.dumps(BODY),
                                   {"Content-Type": "application/json", **headers})
        assert resp.status == 401, headers
        assert resp.headers["www-authenticate"].startswith("Bearer")
        body = resp.json()
        assert body["error_code"] == "UNAUTHENTICATED" and "X-Api-Key" in body["message"]
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-Api-Key": KEY}):
        resp = auth_server.request("POST", "/invocations", json.dumps(BODY),
                                   {"Content-Type": "application/json", **headers})
        assert resp.status == 200, headers
        assert len(resp.json()["predictions"]) == 1
    # health routes are exempt (load balancers send no key); the others are not
    for path in ("/ping", "/health", "/v2/health/live", "/v2/health/ready"):
        assert auth_server.get(path).status == 200, path
    for path in ("/metrics", "/version", "/openapi.json", "/v2/models/iris", "/nowhere"):
        assert auth_server.get(path).status == 401, path


def test_json_logs_and_the_key_is_never_logged(auth_server: LiveServer) -> None:
    auth_server.request("POST", "/invocations", json.dumps(BODY),
                        {"Content-Type": "application/json", "X-Api-Key": KEY,
                         "X-Request-Id": "json-log-1"})
    auth_server.request("GET", "/version", None, {"X-Api-Key": KEY + "-wrong"})
    records = _wait_for(lambda: [r for r in _json_lines(auth_server)
                                 if r.get("request_id") == "json-log-1"])
    assert records, auth_server.log()[-2000:]
    assert records[0]["status"] == 200 and records[0]["path"] == "/invocations"
    assert any(r.get("status") == 401 and r.get("path") == "/version"
               for r in _json_lines(auth_server))
    # the server's own log lines are JSON too
    assert any("listening on" in str(r.get("message", "")) for r in _json_lines(auth_server))
    assert KEY not in auth_server.log()
    assert KEY[len("test-key-"):] not in auth_server.log()


def test_env_key_custom_exemptions_and_no_access_log(server_pool: ServerPool,
                                                     sklearn_model: Path) -> None:
    server = server_pool.deployer(sklearn_model, "--workers", "1", "--auth-exempt",
                                  "/ping,/metrics", "--no-access-log",
                                  env={"DEPLOYER_API_KEY": KEY})
    assert server.get("/metrics").status == 200
    assert server.get("/health").status == 401  # no longer exempt
    resp = server.request("GET", "/health", None, {"Authorization": f"Bearer {KEY}"})
    assert resp.status == 200 and resp.headers["x-request-id"]
    assert " access " not in server.log() and '"access"' not in server.log()
    assert KEY not in server.log()


# ---------------------------------------------------------------------------- deployer serve
def test_deployer_serve_streams_with_env_options_and_auth(counter_stream_model: Path,
                                                         tmp_path: Path) -> None:
    """The CLI on the host: DEPLOYER_SERVE_* honoured (timeout, log format), DEPLOYER_API_KEY
    required, a stream end to end, one JSON access line for it."""
    exe = Path(sys.executable).with_name("deployer")
    server = start_deployer(
        counter_stream_model, tmp_path,
        argv=[str(exe), "serve", "-m", str(counter_stream_model), "--port", "0",
              "--workers", "1"],
        env={"DEPLOYER_SERVE_TIMEOUT": "3", "DEPLOYER_SERVE_LOG_FORMAT": "json",
             "DEPLOYER_API_KEY": KEY, "NO_COLOR": "1", **{
                 k: "" for k in os.environ if k.startswith("DEPLOYER_SERVE_") and k not in (
                     "DEPLOYER_SERVE_TIMEOUT", "DEPLOYER_SERVE_LOG_FORMAT")}})
    try:
        body = {"inputs": {"prompt": ["hi"]}, "params": {"n": 3}, "stream": True}
        assert stream(HOST, server.port, body).status == 401
        out = stream(HOST, server.port, body, {"X-Api-Key": KEY, "X-Request-Id": "cli-stream"})
        assert out.status == 200 and out.done
        assert [c["i"] for c in out.chunks()] == [0, 1, 2]
        # the environment's 3 s timeout applies between chunks
        stalled = stream(HOST, server.port, {**body, "params": {"n": 2, "stall_at": 1,
                                                               "stall": 6.0}},
                         {"X-Api-Key": KEY})
        assert json.loads(stalled.events[-1])["error"]["code"] == "DEADLINE_EXCEEDED"
        records = _wait_for(lambda: [r for r in _json_lines(server)
                                     if r.get("request_id") == "cli-stream"])
        assert records and records[0]["status"] == 200
        assert records[0]["bytes"] == sum(len(f"data: {e}\n\n") for e in out.events)
    finally:
        server.stop()
    assert KEY not in server.log()
