"""Every input format MLflow's scoring protocol accepts, against a live server, per model kind."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from tests.serving.conftest import IRIS_COLUMNS, IRIS_LABELS, IRIS_ROWS, LiveServer

RECORDS = [dict(zip(IRIS_COLUMNS, r, strict=True)) for r in IRIS_ROWS]
COLUMNAR = {c: [r[i] for r in IRIS_ROWS] for i, c in enumerate(IRIS_COLUMNS)}


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _parquet(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.to_parquet(out)
    return out.getvalue()


IRIS_FRAME = pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS)


@pytest.mark.parametrize(("body", "content_type"), [
    ({"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}, "application/json"),
    ({"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS, "index": [10, 11, 12]}},
     "application/json"),
    ({"dataframe_split": {"columns": IRIS_COLUMNS[::-1], "data": [r[::-1] for r in IRIS_ROWS]}},
     "application/json"),
    ({"dataframe_split": {"columns": [*IRIS_COLUMNS, "extra"], "data": [[*r, "x"]
                                                                       for r in IRIS_ROWS]}},
     "application/json"),
    ({"dataframe_records": RECORDS}, "application/json"),
    ({"instances": RECORDS}, "application/json"),
    ({"inputs": COLUMNAR}, "application/json"),
    ({"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}},
     "application/json; charset=utf-8"),
    ({"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}},
     "application/json; charset=UTF-8"),
    ({"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}, "params": {"x": 1}},
     "application/json"),
    (_csv(IRIS_FRAME), "text/csv"),
    (_csv(IRIS_FRAME), "text/csv; charset=utf-8"),
    (_parquet(IRIS_FRAME), "application/vnd.apache.parquet"),
])
def test_sklearn_every_format(sklearn_server: LiveServer, body: object, content_type: str
                              ) -> None:
    resp = sklearn_server.post(body, content_type)  # type: ignore[arg-type]
    assert resp.status == 200, resp.body
    assert resp.content_type == "application/json"
    assert resp.json() == {"predictions": IRIS_LABELS}


def test_sklearn_integer_values_are_cast(sklearn_server: LiveServer) -> None:
    resp = sklearn_server.post({"dataframe_split": {"columns": IRIS_COLUMNS,
                                                    "data": [[5, 3, 1, 0]]}})
    assert resp.status == 200
    assert resp.json() == {"predictions": [0]}


def test_sklearn_ten_thousand_rows(sklearn_server: LiveServer) -> None:
    rows = (IRIS_ROWS * 3334)[:10_000]
    resp = sklearn_server.post({"dataframe_split": {"columns": IRIS_COLUMNS, "data": rows}})
    assert resp.status == 200
    assert resp.json()["predictions"] == (IRIS_LABELS * 3334)[:10_000]


def test_params_model_records_with_params(params_server: LiveServer) -> None:
    resp = params_server.post({"dataframe_records": [{"text": "ab"}, {"text": "c"}],
                               "params": {"times": 2, "suffix": "!", "upper": True}})
    assert resp.status == 200, resp.body
    assert resp.json() == {"predictions": [{"output": "ABAB!", "length": 5},
                                           {"output": "CC!", "length": 3}]}


def test_params_defaults_and_unknown_params(params_server: LiveServer) -> None:
    plain = params_server.post({"dataframe_split": {"columns": ["text"], "data": [["ab"]]}})
    assert plain.json() == {"predictions": [{"output": "ab", "length": 2}]}
    unknown = params_server.post({"dataframe_split": {"columns": ["text"], "data": [["ab"]]},
                                  "params": {"nope": 3, "weights": [3.0]}})
    assert unknown.status == 200
    assert unknown.json() == plain.json()


def test_params_model_optional_column_and_formats(params_server: LiveServer) -> None:
    expected = {"predictions": [{"output": "hi", "length": 2}]}
    for body in (
        {"dataframe_split": {"columns": ["text", "note"], "data": [["hi", "n"]]}},
        {"dataframe_records": [{"text": "hi", "note": None}]},
        {"instances": [{"text": "hi"}]},
        {"inputs": {"text": ["hi"]}},
    ):
        resp = params_server.post(body)
        assert resp.status == 200, (body, resp.body)
        assert resp.json() == expected
    csv = params_server.post(b"text,note\nhi,x\n", "text/csv")
    assert csv.status == 200 and csv.json() == expected


def test_custom_model_dataframe_output(custom_server: LiveServer) -> None:
    resp = custom_server.post({"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2]]},
                               "params": {"scale": 2.0}})
    assert resp.status == 200, resp.body
    assert resp.json() == {"predictions": [{"a": 22.0, "b": 24}]}


@pytest.mark.parametrize("body", [
    {"inputs": [[1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5]]},
    {"instances": [[1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5]]},
])
def test_tensor_model_nested_lists(tensor_server: LiveServer, body: dict[str, object]) -> None:
    resp = tensor_server.post(body)
    assert resp.status == 200, resp.body
    assert resp.json() == {"predictions": [10.0, 2.0]}


def test_tensor_model_dtype_and_shape(tensor_server: LiveServer) -> None:
    wrong_shape = tensor_server.post({"inputs": [[1, 2, 3]]})
    assert wrong_shape.status == 400
    assert wrong_shape.json()["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE")
    not_numbers = tensor_server.post({"inputs": [["a", "b", "c", "d"]]})
    assert not_numbers.status == 400


def test_named_tensors_dict_input(server_pool, named_tensor_model) -> None:  # type: ignore[no-untyped-def]
    server = server_pool.deployer(named_tensor_model, "--workers", "1")
    resp = server.post({"inputs": {"a": [[1, 2], [3, 4]], "b": [[10, 20], [30, 40]]}})
    assert resp.status == 200, resp.body
    assert resp.json() == {"predictions": [[11.0, 22.0], [33.0, 44.0]]}
    rows = server.post({"instances": [{"a": [1, 2], "b": [1, 1]}]})
    assert rows.status == 200, rows.body
    assert rows.json() == {"predictions": [[2.0, 3.0]]}
    missing = server.post({"inputs": {"a": [[1, 2]]}})
    assert missing.status == 400


@pytest.mark.parametrize(("body", "content_type"), [
    ({"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}, "application/json"),
    ({"dataframe_records": RECORDS}, "application/json"),
    ({"inputs": IRIS_ROWS}, "application/json"),
    ({"instances": IRIS_ROWS}, "application/json"),
    (_csv(IRIS_FRAME), "text/csv"),
    (_parquet(IRIS_FRAME), "application/vnd.apache.parquet"),
    ({"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}, "params": {"a": 1}},
     "application/json"),
])
def test_model_without_signature_takes_every_format(nosig_server: LiveServer, body: object,
                                                    content_type: str) -> None:
    resp = nosig_server.post(body, content_type)  # type: ignore[arg-type]
    assert resp.status == 200, resp.body
    assert resp.json() == {"predictions": IRIS_LABELS}


def test_failing_model_is_a_400_like_mlflow(failing_server: LiveServer) -> None:
    resp = failing_server.post({"dataframe_split": {"columns": ["a"], "data": [[1]]}})
    assert resp.status == 400
    body = resp.json()
    assert body["error_code"] == "BAD_REQUEST"
    assert "unexpected error while evaluating the model" in body["message"]
    assert "stack_trace" not in body  # logged, not sent to clients
    assert "model failure on purpose" in failing_server.log()
    assert failing_server.alive()


def test_response_is_json_mlflow_reads_back(sklearn_server: LiveServer) -> None:
    resp = sklearn_server.post({"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}})
    assert json.loads(resp.body.decode()) == {"predictions": IRIS_LABELS}
    assert int(resp.headers["content-length"]) == len(resp.body)
