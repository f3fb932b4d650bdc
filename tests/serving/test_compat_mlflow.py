"""Side by side with MLflow's own server: same requests, same status, same JSON / error_code.

``mlflow models serve --env-manager local`` (MLflow 3.17, this venv) and deployer's server load
the same model directories; every case of PROTOCOLS.md is sent to both.

Deliberate differences, not compared here: a request with no Content-Type header (MLflow
answers 500 from a crash, deployer 415); error *messages* (deployer quotes at most 1,000 bytes
of a rejected body and never sends stack traces); whitespace in JSON.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.serving.conftest import IRIS_COLUMNS, IRIS_ROWS, LiveServer, ServerPool

pytestmark = pytest.mark.slow

J = "application/json"
RECORDS = [dict(zip(IRIS_COLUMNS, r, strict=True)) for r in IRIS_ROWS]


def _parquet(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.to_parquet(out)
    return out.getvalue()


def _dump(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


COMMON_ERRORS: list[tuple[str, Any]] = [
    ("text/plain", {"dataframe_split": {"columns": ["a"], "data": [[1]]}}),
    ("application/json; charset=latin-1", {"inputs": [1]}),
    ("application/json; format=pandas-split", {"inputs": [1]}),
    ("text/csv; charset=utf-16", b"a\n1\n"),
    ("application/xml", b"<a/>"),
    (J, b"{not json"),
    (J, b"[1, 2]"),
    (J, b"7"),
    (J, b"{}"),
    (J, {"columns": ["a"], "data": [[1]]}),
    (J, {"dataframe_split": {"columns": ["a"], "data": [[1]]},
         "dataframe_records": [{"a": 1}]}),
    (J, {"dataframe_split": [[1, 2]]}),
    (J, {"dataframe_records": {"a": [1]}}),
    (J, {"dataframe_split": {"columns": ["a"], "index": [1, 2, 3], "data": [[1], [2]]}}),
    ("text/csv", b""),
    ("application/vnd.apache.parquet", b"not parquet"),
]

SKLEARN_CASES: list[tuple[str, Any]] = [
    (J, {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}),
    (J, {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS, "index": [5, 6, 7]}}),
    (J, {"dataframe_split": {"columns": [*IRIS_COLUMNS, "x"], "data": [[*r, 1] for r in IRIS_ROWS]}}),
    (J, {"dataframe_split": {"columns": IRIS_COLUMNS, "data": [[5, 3, 1, 0]]}}),
    (J, {"dataframe_records": RECORDS}),
    (J, {"instances": RECORDS}),
    (J, {"inputs": {c: [r[i] for r in IRIS_ROWS] for i, c in enumerate(IRIS_COLUMNS)}}),
    ("application/json; charset=UTF-8", {"dataframe_records": RECORDS, "params": {"p": 1}}),
    ("text/csv", pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS).to_csv(index=False).encode()),
    ("application/vnd.apache.parquet", _parquet(pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS))),
    (J, {"dataframe_split": {"columns": IRIS_COLUMNS[:2], "data": [[1.0, 2.0]]}}),
    (J, {"dataframe_split": {"columns": IRIS_COLUMNS, "data": [["foo", 1.0, 1.0, 1.0]]}}),
    (J, {"dataframe_split": {"columns": IRIS_COLUMNS, "data": [[None, 1.0, 1.0, 1.0]]}}),
    (J, {"dataframe_split": {"columns": IRIS_COLUMNS, "data": [[True, 1.0, 1.0, 1.0]]}}),
    (J, {"dataframe_split": {"columns": IRIS_COLUMNS, "data": [["1.5", 1.0, 1.0, 1.0]]}}),
    (J, {"inputs": {c: ["1.5"] for c in IRIS_COLUMNS}}),
    (J, {"instances": [[1, 2, 3, 4]]}),
    ("text/csv", b"sepal_length,sepal_width\n1,2\n"),
    ("text/csv", b"sepal_length,sepal_width,petal_length,petal_width\nfoo,1,1,1\n"),
    (J, b'{"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length",'
        b' "petal_width"], "data": [[NaN, 1.0, 1.0, 1.0]]}}'),
    *COMMON_ERRORS,
]

PARAMS_CASES: list[tuple[str, Any]] = [
    (J, {"dataframe_records": [{"text": "ab"}], "params": {"times": 3, "suffix": "?"}}),
    (J, {"dataframe_split": {"columns": ["text", "note"], "data": [["a", "b"]]}}),
    (J, {"dataframe_records": [{"text": "ab"}], "params": {"unknown": 1}}),
    (J, {"dataframe_records": [{"text": "ab"}], "params": {"times": "x"}}),
    (J, {"dataframe_records": [{"text": "ab"}], "params": {"upper": "yes"}}),
    (J, {"dataframe_records": [{"text": "ab"}], "params": {"weights": [1, 2.5]}}),
    (J, {"dataframe_records": [{"text": "ab"}], "params": {"weights": 3}}),
    (J, {"dataframe_records": [{"text": "ab"}], "params": "nope"}),
    (J, {"dataframe_records": [{"note": "ab"}]}),
    (J, {"dataframe_records": [{"text": 5}]}),
    (J, {"instances": [{"text": "a"}, {"text": "b"}]}),
    (J, {"inputs": {"text": ["a", "b"]}}),
    (J, {"inputs": ["a", "b"]}),
    ("text/csv", b"text\nhello\n"),
    *COMMON_ERRORS,
]

TENSOR_CASES: list[tuple[str, Any]] = [
    (J, {"inputs": [[1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5]]}),
    (J, {"instances": [[1, 2, 3, 4]]}),
    (J, {"inputs": [[1, 2, 3]]}),
    (J, {"inputs": [["a", "b", "c", "d"]]}),
    (J, {"inputs": {"x": [[1, 2, 3, 4]]}}),
    (J, {"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, 3, 4]]}}),
    ("text/csv", b"a,b,c,d\n1,2,3,4\n"),
    *COMMON_ERRORS,
]

NOSIG_CASES: list[tuple[str, Any]] = [
    (J, {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}),
    (J, {"dataframe_records": RECORDS}),
    (J, {"inputs": IRIS_ROWS}),
    (J, {"instances": IRIS_ROWS}),
    (J, {"inputs": [[1, 2]]}),
    (J, {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}, "params": {"a": 1}}),
    ("text/csv", pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS).to_csv(index=False).encode()),
    *COMMON_ERRORS,
]

FAILING_CASES: list[tuple[str, Any]] = [
    (J, {"dataframe_split": {"columns": ["a"], "data": [[1]]}}),
    (J, {"inputs": [1, 2]}),
    ("text/csv", b"a\n1\n"),
    *COMMON_ERRORS,
]


def _same_json(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    return a == b


def compare(deployer: LiveServer, mlflow: LiveServer, cases: list[tuple[str, Any]]) -> None:
    mismatches = []
    for content_type, body in cases:
        data = _dump(body)
        ours = deployer.post(data, content_type)
        theirs = mlflow.post(data, content_type)
        label = f"{content_type} {data[:120]!r}"
        if ours.status != theirs.status:
            mismatches.append(f"{label}: status {ours.status} != mlflow {theirs.status} "
                              f"({ours.body[:200]!r} / {theirs.body[:200]!r})")
            continue
        if ours.content_type.split(";")[0] != theirs.content_type.split(";")[0]:
            mismatches.append(f"{label}: content type {ours.content_type} != "
                              f"{theirs.content_type}")
            continue
        if theirs.status == 200:
            if not _same_json(ours.json(), theirs.json()):
                mismatches.append(f"{label}: body {ours.body[:300]!r} != {theirs.body[:300]!r}")
        elif theirs.content_type.startswith("application/json"):
            if ours.json().get("error_code") != theirs.json().get("error_code"):
                mismatches.append(f"{label}: error_code {ours.json().get('error_code')} != "
                                  f"{theirs.json().get('error_code')}")
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize(("model_fixture", "cases"), [
    ("sklearn_model", SKLEARN_CASES),
    ("params_model", PARAMS_CASES),
    ("tensor_model", TENSOR_CASES),
    ("no_signature_model", NOSIG_CASES),
    ("failing_model", FAILING_CASES),
])
def test_same_answers_as_mlflow(server_pool: ServerPool, request: pytest.FixtureRequest,
                                model_fixture: str, cases: list[tuple[str, Any]]) -> None:
    model: Path = request.getfixturevalue(model_fixture)
    deployer = server_pool.deployer(model, "--workers", "1")
    mlflow = server_pool.mlflow(model)
    compare(deployer, mlflow, cases)


def test_routes_match_mlflow(server_pool: ServerPool, sklearn_model: Path) -> None:
    deployer = server_pool.deployer(sklearn_model, "--workers", "1")
    mlflow = server_pool.mlflow(sklearn_model)
    for method, path in [("GET", "/ping"), ("GET", "/health"), ("GET", "/version"),
                         ("GET", "/invocations"), ("PUT", "/invocations"), ("GET", "/nope"),
                         ("POST", "/ping")]:
        ours = deployer.request(method, path)
        theirs = mlflow.request(method, path)
        assert ours.status == theirs.status, (method, path)
        assert ours.body == theirs.body, (method, path, ours.body, theirs.body)
        assert ours.content_type == theirs.content_type, (method, path)
