"""Open Inference Protocol (V2) routes, against live servers."""

from __future__ import annotations

import pytest

from tests.serving.conftest import IRIS_COLUMNS, IRIS_LABELS, IRIS_ROWS, LiveServer


def _iris_inputs() -> list[dict[str, object]]:
    return [{"name": c, "shape": [3], "datatype": "FP64", "data": [r[i] for r in IRIS_ROWS]}
            for i, c in enumerate(IRIS_COLUMNS)]


def test_health_and_server_metadata(sklearn_server: LiveServer) -> None:
    assert sklearn_server.get("/v2/health/live").json() == {"live": True}
    assert sklearn_server.get("/v2/health/ready").json() == {"ready": True}
    meta = sklearn_server.get("/v2").json()
    assert meta["name"] == "deployer" and "version" in meta


def test_model_metadata_from_signature(sklearn_server: LiveServer) -> None:
    resp = sklearn_server.get("/v2/models/sklearn_skops")
    assert resp.status == 200
    meta = resp.json()
    assert meta["name"] == "sklearn_skops"
    assert [i["name"] for i in meta["inputs"]] == IRIS_COLUMNS
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64"}
    assert meta["outputs"][0]["datatype"] == "INT64"
    assert sklearn_server.get("/v2/models/sklearn_skops/ready").json() == {
        "name": "sklearn_skops", "ready": True}


def test_unknown_model_is_404(sklearn_server: LiveServer) -> None:
    for path in ("/v2/models/other", "/v2/models/other/ready"):
        resp = sklearn_server.get(path)
        assert resp.status == 404
        assert "sklearn_skops" in resp.json()["error"]
    resp = sklearn_server.post({"inputs": _iris_inputs()}, path="/v2/models/other/infer")
    assert resp.status == 404


def test_infer_column_model(sklearn_server: LiveServer) -> None:
    resp = sklearn_server.post({"id": "req-1", "inputs": _iris_inputs()},
                               path="/v2/models/sklearn_skops/infer")
    assert resp.status == 200, resp.body
    body = resp.json()
    assert body["model_name"] == "sklearn_skops"
    assert body["id"] == "req-1"
    assert body["outputs"] == [{"name": "predictions", "shape": [3], "datatype": "INT64",
                                "data": IRIS_LABELS}]


def test_infer_with_version_path(sklearn_server: LiveServer) -> None:
    resp = sklearn_server.post({"inputs": _iris_inputs()},
                               path="/v2/models/sklearn_skops/versions/1/infer")
    assert resp.status == 200


def test_infer_tensor_model(tensor_server: LiveServer) -> None:
    resp = tensor_server.post(
        {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                     "data": [1, 2, 3, 4, 0.5, 0.5, 0.5, 0.5]}]},
        path="/v2/models/tensor/infer")
    assert resp.status == 200, resp.body
    out = resp.json()["outputs"][0]
    assert out["shape"] == [2] and out["datatype"] == "FP32" and out["data"] == [10.0, 2.0]
    nested = tensor_server.post(
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [[1, 1, 1, 1]]}]},
        path="/v2/models/tensor/infer")
    assert nested.json()["outputs"][0]["data"] == [4.0]


def test_infer_bytes_and_parameters(params_server: LiveServer) -> None:
    resp = params_server.post(
        {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["ab", "c"]}],
         "parameters": {"times": 2, "content_type": "pd"}},
        path="/v2/models/params/infer")
    assert resp.status == 200, resp.body
    outputs = {o["name"]: o for o in resp.json()["outputs"]}
    assert outputs["output"] == {"name": "output", "shape": [2], "datatype": "BYTES",
                                 "data": ["abab", "cc"]}
    assert outputs["length"]["data"] == [4, 2]


@pytest.mark.parametrize("body", [
    {},
    {"inputs": []},
    {"inputs": [{"name": "x"}]},
    {"inputs": [{"name": "sepal_length", "shape": [2], "datatype": "FP64", "data": [1.0]}]},
    {"inputs": [{"name": "sepal_length", "shape": [1], "datatype": "FP128", "data": [1.0]}]},
    {"inputs": [{"name": "sepal_length", "shape": [-1], "datatype": "FP64", "data": [1.0]}]},
    {"inputs": [{"name": "sepal_length", "shape": [1], "datatype": "FP64", "data": ["a"]}]},
    {"inputs": [{"name": "sepal_length", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
    {"inputs": _iris_inputs(), "parameters": "x"},
    [1, 2],
])
def test_bad_infer_requests_are_400(sklearn_server: LiveServer, body: object) -> None:
    resp = sklearn_server.post(body, path="/v2/models/sklearn_skops/infer")  # type: ignore[arg-type]
    assert resp.status == 400, resp.body
    assert isinstance(resp.json()["error"], str)


def test_infer_invalid_json_is_400(sklearn_server: LiveServer) -> None:
    resp = sklearn_server.post(b"{oops", path="/v2/models/sklearn_skops/infer")
    assert resp.status == 400


def test_infer_model_failure_is_400(failing_server: LiveServer) -> None:
    resp = failing_server.post(
        {"inputs": [{"name": "a", "shape": [1], "datatype": "INT64", "data": [1]}]},
        path="/v2/models/failing/infer")
    assert resp.status == 400
    assert "error" in resp.json()
