"""Every error of the scoring protocol (PROTOCOLS.md), against a live server."""

from __future__ import annotations

import io
import socket
import threading
import time

import pandas as pd
import pytest

from tests.serving.conftest import HOST, IRIS_COLUMNS, IRIS_ROWS, LiveServer, sleep_body

SPLIT = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}


@pytest.mark.parametrize("content_type", [
    "text/plain",
    "application/xml",
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "text/csv; charset=ascii",
    "application/json; format=pandas-split",
    "application/json; charset=utf-8; format=pandas-records",
    "Application/JSON",
    "application/json;",
    "",
    None,
])
def test_unsupported_content_types_are_415_plain_text(sklearn_server: LiveServer,
                                                      content_type: str | None) -> None:
    resp = sklearn_server.post(SPLIT, content_type)
    assert resp.status == 415, (content_type, resp.body)
    assert resp.content_type == "text/plain"
    assert resp.body


@pytest.mark.parametrize("body", [
    b"{not json",
    b"",
    b"[1, 2, 3]",
    b"42",
    b'"text"',
    b"null",
    b"{}",
    b'{"params": {"a": 1}}',
    b'{"columns": ["a"], "data": [[1]]}',
    b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}, "dataframe_records": [{"a": 1}]}',
    b'{"dataframe_split": [[1, 2]]}',
    b'{"dataframe_records": {"a": [1]}}',
    b'{"dataframe_split": {"columns": ["a"], "index": [1, 2, 3], "data": [[1], [2]]}}',
    b'{"dataframe_split": {"columns": ["a"], "data": [[1]], "bogus": 1}}',
    b"\xff\xfe\x00garbage",
])
def test_malformed_json_bodies_are_400_bad_request(sklearn_server: LiveServer,
                                                   body: bytes) -> None:
    resp = sklearn_server.post(body)
    assert resp.status == 400, (body, resp.body)
    assert resp.content_type == "application/json"
    assert resp.json()["error_code"] == "BAD_REQUEST"


def test_missing_required_column_names_it(sklearn_server: LiveServer) -> None:
    resp = sklearn_server.post({"dataframe_split": {"columns": IRIS_COLUMNS[:2],
                                                    "data": [r[:2] for r in IRIS_ROWS]}})
    assert resp.status == 400
    body = resp.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "petal_length" in body["message"] and "petal_width" in body["message"]


def test_uncastable_value_is_400(sklearn_server: LiveServer) -> None:
    resp = sklearn_server.post({"dataframe_split": {"columns": IRIS_COLUMNS,
                                                    "data": [["foo", 1.0, 1.0, 1.0]]}})
    assert resp.status == 400
    assert resp.json()["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE")
    assert "sepal_length" in resp.json()["message"]


@pytest.mark.parametrize("params", [{"times": "x"}, {"upper": "maybe"}, {"weights": "x"},
                                    {"times": [1, 2]}, "not-a-dict"])
def test_bad_param_is_400_invalid_parameter_value(params_server: LiveServer,
                                                  params: object) -> None:
    resp = params_server.post({"dataframe_records": [{"text": "a"}], "params": params})
    assert resp.status == 400, resp.body
    assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_empty_csv_is_400(sklearn_server: LiveServer) -> None:
    resp = sklearn_server.post(b"", "text/csv")
    assert resp.status == 400
    assert resp.json()["error_code"] == "BAD_REQUEST"


def test_csv_that_is_not_utf8_is_400(sklearn_server: LiveServer) -> None:
    resp = sklearn_server.post("sepal_length\n\xe9\n".encode("latin-1"), "text/csv")
    assert resp.status == 400


def test_broken_parquet_is_400(sklearn_server: LiveServer) -> None:
    resp = sklearn_server.post(b"PAR1 this is not parquet", "application/vnd.apache.parquet")
    assert resp.status == 400
    assert resp.json()["error_code"] == "BAD_REQUEST"


def test_parquet_missing_column_is_400(sklearn_server: LiveServer) -> None:
    out = io.BytesIO()
    pd.DataFrame({"sepal_length": [1.0]}).to_parquet(out)
    resp = sklearn_server.post(out.getvalue(), "application/vnd.apache.parquet")
    assert resp.status == 400
    assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/invocations"), ("PUT", "/invocations"), ("DELETE", "/invocations"),
    ("POST", "/ping"), ("POST", "/version"), ("POST", "/openapi.json"),
    ("GET", "/v2/models/sklearn_skops/infer"),
])
def test_wrong_method_is_405(sklearn_server: LiveServer, method: str, path: str) -> None:
    resp = sklearn_server.request(method, path, b"{}" if method != "GET" else None,
                                  {"Content-Type": "application/json"})
    assert resp.status == 405
    assert resp.json() == {"detail": "Method Not Allowed"}
    assert resp.headers["allow"]


@pytest.mark.parametrize("path", ["/", "/nope", "/invocations/extra", "/v2/unknown",
                                  "/v2/models/", "/v2/models/x/y/z", "/%00", "/../../etc/passwd"])
def test_unknown_path_is_404(sklearn_server: LiveServer, path: str) -> None:
    resp = sklearn_server.request("GET", path)
    assert resp.status == 404


def test_server_survives_errors(sklearn_server: LiveServer) -> None:
    for body in (b"[", b"{}", b"\x00" * 1000):
        sklearn_server.post(body)
    assert sklearn_server.alive()
    assert sklearn_server.post(SPLIT).status == 200


# ------------------------------------------------------------------ limits: 413 and 504
@pytest.fixture(scope="module")
def small_limit_server(server_pool, sklearn_model) -> LiveServer:  # type: ignore[no-untyped-def]
    return server_pool.deployer(sklearn_model, "--workers", "1", "--max-body-bytes", "2000")


def _raw_exchange(port: int, head: bytes, chunks: list[bytes]) -> bytes:
    """Send a request piece by piece; return whatever the server answers."""
    with socket.create_connection((HOST, port), timeout=20) as sock:
        sock.sendall(head)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
                time.sleep(0.01)
        except OSError:
            pass  # the server may close early: that is the point
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < 12:
                part = sock.recv(65536)
                if not part:
                    break
                data += part
        except OSError:
            pass
        return data


def test_declared_body_over_limit_is_413_without_reading_it(
        small_limit_server: LiveServer) -> None:
    head = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 500000000\r\n\r\n")
    started = time.monotonic()
    answer = _raw_exchange(small_limit_server.port, head, [b"{" + b" " * 1000])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 10
    assert small_limit_server.alive()


def test_streamed_body_over_limit_is_413(small_limit_server: LiveServer) -> None:
    head = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b" " * 500
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 50
    answer = _raw_exchange(small_limit_server.port, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert small_limit_server.alive()


def test_body_under_limit_is_served(small_limit_server: LiveServer) -> None:
    resp = small_limit_server.post(SPLIT)
    assert resp.status == 200
    big = small_limit_server.post({"dataframe_split": {"columns": IRIS_COLUMNS,
                                                       "data": IRIS_ROWS * 40}})
    assert big.status == 413
    assert big.json()["error_code"] == "RESOURCE_EXHAUSTED"


@pytest.fixture(scope="module")
def slow_server(server_pool, slow_model) -> LiveServer:  # type: ignore[no-untyped-def]
    return server_pool.deployer(slow_model, "--workers", "1", "--timeout", "1.5")


@pytest.mark.slow
def test_slow_request_is_504_and_server_stays_responsive(slow_server: LiveServer) -> None:
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(slow_server.post(sleep_body(4))))
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)
    assert slow_server.alive()  # /ping answers while the model is busy
    thread.join(30)
    resp = results[0]
    assert resp.status == 504  # type: ignore[attr-defined]
    assert resp.json()["error_code"] == "DEADLINE_EXCEEDED"  # type: ignore[attr-defined]
    assert time.monotonic() - started < 3.5
    ok = slow_server.post(sleep_body(0.01))
    assert ok.status == 200 and ok.json() == {"predictions": [{"slept": 0.01}]}


@pytest.mark.slow
def test_slow_body_upload_is_504(slow_server: LiveServer) -> None:
    head = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n")
    with socket.create_connection((HOST, slow_server.port), timeout=20) as sock:
        sock.sendall(head + b"{")
        data = b""
        while b"\r\n\r\n" not in data:
            part = sock.recv(4096)
            if not part:
                break
            data += part
    assert data.startswith(b"HTTP/1.1 504"), data[:200]


@pytest.mark.slow
def test_user_model_code_always_stays_timeoutable(slow_server: LiveServer) -> None:
    """Many quick answers must not move a Python model onto the event loop (where a
    timeout could not answer for it): the slow request after them is still a 504."""
    for _ in range(40):
        assert slow_server.post(sleep_body(0.001)).status == 200
    started = time.monotonic()
    resp = slow_server.post(sleep_body(4))
    assert resp.status == 504
    assert time.monotonic() - started < 3.5
