"""GET /openapi.json: a valid OpenAPI 3.1 document generated from each model's signature."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from tests.serving.conftest import IRIS_COLUMNS, LiveServer


def _request_validator(doc: dict[str, Any]) -> OAS31Validator:
    """Validate request bodies against the document's own InvocationRequest schema."""
    from referencing import Registry, Resource

    registry = Registry().with_resource("urn:doc", Resource.from_contents(
        doc, default_specification=__import__("referencing.jsonschema").jsonschema.DRAFT202012))
    return OAS31Validator({"$ref": "urn:doc#/components/schemas/InvocationRequest"},
                          registry=registry)


@pytest.mark.parametrize("fixture", ["sklearn_server", "params_server", "tensor_server",
                                     "nosig_server", "failing_server"])
def test_document_is_valid_openapi(fixture: str, request: pytest.FixtureRequest) -> None:
    server: LiveServer = request.getfixturevalue(fixture)
    resp = server.get("/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    doc = resp.json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    post = doc["paths"]["/invocations"]["post"]
    assert set(post["requestBody"]["content"]) == {
        "application/json", "text/csv", "application/vnd.apache.parquet"}
    assert {"200", "400", "413", "415", "504"} <= set(post["responses"])
    assert "/v2/models/{model_name}/infer" in doc["paths"]


def test_sklearn_schemas_follow_the_signature(sklearn_server: LiveServer) -> None:
    doc = sklearn_server.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    row = schemas["Row"]
    assert list(row["properties"]) == IRIS_COLUMNS
    assert row["required"] == IRIS_COLUMNS
    assert row["properties"]["sepal_length"]["type"] == "number"
    assert schemas["Predictions"]["properties"]["predictions"]["type"] == "array"
    example = doc["paths"]["/invocations"]["post"]["requestBody"]["content"][
        "application/json"]["example"]
    assert example["dataframe_split"]["columns"] == IRIS_COLUMNS
    validator = _request_validator(doc)
    assert validator.is_valid(example)
    assert validator.is_valid({"dataframe_records": [dict.fromkeys(IRIS_COLUMNS, 1.0)]})
    assert validator.is_valid({"inputs": {c: [1.0] for c in IRIS_COLUMNS}})
    assert not validator.is_valid({"dataframe_records": [{"sepal_length": "x"}]})
    assert not validator.is_valid({"nothing": 1})


def test_params_schema_has_types_and_defaults(params_server: LiveServer) -> None:
    doc = params_server.get("/openapi.json").json()
    params = doc["components"]["schemas"]["Params"]["properties"]
    assert params["times"] == {"type": "integer", "format": "int64", "default": 1}
    assert params["upper"]["default"] is False
    assert params["weights"]["type"] == "array" and params["weights"]["default"] == [1.0, 2.0]
    row = doc["components"]["schemas"]["Row"]
    assert row["required"] == ["text"]  # "note" is optional
    validator = _request_validator(doc)
    assert validator.is_valid({"dataframe_records": [{"text": "a"}], "params": {"times": 2}})
    assert not validator.is_valid({"dataframe_records": [{"text": "a"}],
                                   "params": {"times": "x"}})


def test_tensor_schema_has_the_shape(tensor_server: LiveServer) -> None:
    doc = tensor_server.get("/openapi.json").json()
    inputs = doc["components"]["schemas"]["Inputs"]
    assert inputs["type"] == "array"
    assert inputs["items"] == {"type": "array", "items": {"type": "number"},
                               "minItems": 4, "maxItems": 4}
    validator = _request_validator(doc)
    assert validator.is_valid({"inputs": [[1, 2, 3, 4]]})
    assert not validator.is_valid({"inputs": [[1, 2, 3]]})
