"""Property test: random bodies, content types and headers never produce a 5xx or kill a worker.

Runs against live servers (a column-signature model with params, an sklearn model, a tensor
model). A model's own failure is a 400 in MLflow's protocol, so *no* 5xx is acceptable here;
after the run the same worker processes must still be serving (a dead worker would have been
replaced, changing the pids).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.conftest import IRIS_COLUMNS, LiveServer

pytestmark = pytest.mark.slow

_TOKEN = st.text(alphabet=st.sampled_from(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."), min_size=1,
    max_size=20)
_HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                        max_size=40)
_CONTENT_TYPES = st.one_of(
    st.sampled_from([
        "application/json", "application/json; charset=utf-8", "text/csv",
        "application/vnd.apache.parquet", "application/json; charset=latin-1",
        "text/csv; charset=UTF-8", "application/json; format=pandas-split", "text/plain",
        "multipart/form-data; boundary=x", "application/json;;", ";", "",
    ]),
    _HEADER_VALUE,
    st.none(),
)
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20)
_KEYS = st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs",
                         "params", "columns", "data", "index", "messages", "prompt", "input",
                         "inputs", *IRIS_COLUMNS, "text", "note", "times", "weights"])
_SHAPED = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=30)


@st.composite
def bodies(draw: Any) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=600))
    if kind == 1:
        return json.dumps(draw(_JSON)).encode()
    if kind == 2:
        csv_rows = draw(st.lists(st.lists(st.one_of(st.integers(), st.text(
            alphabet="ab,\"\n1.", max_size=5)), max_size=5), max_size=5))
        header = ",".join(draw(st.lists(_KEYS, min_size=1, max_size=5)))
        return "\n".join([header, *(",".join(map(str, r)) for r in csv_rows)]).encode()
    payload = draw(st.dictionaries(_KEYS, _SHAPED, min_size=1, max_size=3))
    text = json.dumps(payload)
    if kind == 5 and len(text) > 2:  # a slightly broken document
        cut = draw(st.integers(1, len(text) - 1))
        text = text[:cut] + draw(st.sampled_from(["", "\x00", "NaN", "}", "\ud800", "1e999"])) \
            + text[cut:]
        return text.encode("utf-8", "surrogatepass")
    return text.encode()


@st.composite
def requests(draw: Any) -> tuple[str, str, bytes, dict[str, str]]:
    method = draw(st.sampled_from(["POST"] * 8 + ["GET", "PUT", "PATCH", "OPTIONS"]))
    path = draw(st.sampled_from(["/invocations"] * 6 + [
        "/v2/models/MODEL/infer", "/ping", "/openapi.json", "/metrics", "/v2/models/MODEL",
        "/invocations?x=1", "/nope"]))
    headers = dict(draw(st.lists(st.tuples(_TOKEN, _HEADER_VALUE), max_size=3)))
    headers.pop("Content-Length", None)
    headers = {k: v for k, v in headers.items() if k.lower() not in (
        "content-length", "transfer-encoding", "host", "content-type", "expect", "connection",
        "upgrade")}
    content_type = draw(_CONTENT_TYPES)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return method, path, draw(bodies()), headers


def _fuzz(server: LiveServer, model_name: str) -> None:
    workers = sorted(server.pids())

    @settings(max_examples=250, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(req=requests())
    def run(req: tuple[str, str, bytes, dict[str, str]]) -> None:
        method, path, body, headers = req
        path = path.replace("MODEL", model_name)
        resp = server.request(method, path, body, headers, timeout=60)
        assert resp.status < 500, (method, path, headers, body[:300], resp.status, resp.body[:500])

    run()
    assert server.alive()
    assert sorted(server.pids()) == workers, "a worker died and was replaced"
    assert "exited unexpectedly" not in server.log()


def test_fuzz_params_model(params_server: LiveServer) -> None:
    _fuzz(params_server, "params")


def test_fuzz_sklearn_model(sklearn_server: LiveServer) -> None:
    _fuzz(sklearn_server, "sklearn_skops")


def test_fuzz_tensor_model(tensor_server: LiveServer) -> None:
    _fuzz(tensor_server, "tensor")


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"inputs": ' + b"[" * 5000 + b"1" + b"]" * 5000 + b"}",
    b'{"dataframe_split": {"columns": ["a"], "data": [[1e999]]}}',
    b'{"dataframe_records": [{"sepal_length": 123456789012345678901234567890}]}',
    b'{"dataframe_split": {"columns": ' + json.dumps([f"c{i}" for i in range(20000)]).encode()
    + b', "data": [[1]]}}',
    b'{"inputs": {"sepal_length": "' + b"x" * 200_000 + b'"}}',
    b'{"dataframe_split": {"columns": null, "data": null, "index": null}}',
    b'{"dataframe_records": [{"__proto__": 1, "constructor": {}}]}',
    "{\"inputs\": [\"\ud800\"]}".encode("utf-8", "surrogatepass"),
    b"\xef\xbb\xbf{}",
    '{"inputs": [1]}'.encode("utf-16"),
])
def test_hostile_bodies(sklearn_server: LiveServer, body: bytes) -> None:
    workers = sorted(sklearn_server.pids())
    resp = sklearn_server.post(body)
    assert resp.status < 500, resp.body[:500]
    assert sklearn_server.alive()
    assert sorted(sklearn_server.pids()) == workers
