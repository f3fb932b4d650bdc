"""Signatures: JSON strings inside YAML, as MLflow writes them, decoded without MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import ModelFormatError
from deployer.model.mlmodel import parse_mlmodel
from deployer.model.signature import (
    ColSpec,
    ParamSpec,
    Schema,
    Signature,
    TensorSpec,
    parse_signature,
)
from tests.model._edit import altered

W = "MLmodel"


def _mlflow_signature_dict(inputs=None, outputs=None, params=None) -> dict:  # type: ignore[no-untyped-def]
    """What MLflow writes into MLmodel for a signature (ModelSignature.to_dict: JSON strings)."""
    from mlflow.models.signature import ModelSignature

    return ModelSignature(inputs=inputs, outputs=outputs, params=params).to_dict()


def test_column_signature_of_saved_model(sklearn_model: Path) -> None:
    sig = parse_mlmodel(sklearn_model).signature
    assert sig is not None
    assert sig.inputs == Schema(
        kind="column",
        columns=tuple(
            ColSpec(n, "double", True)
            for n in ("sepal_length", "sepal_width", "petal_length", "petal_width")
        ),
    )
    assert sig.outputs == Schema(kind="tensor", columns=(TensorSpec(None, "int64", (-1,)),))
    assert sig.params == ()


def test_tensor_signature_of_saved_model(tensor_model: Path) -> None:
    sig = parse_mlmodel(tensor_model).signature
    assert sig == Signature(
        inputs=Schema("tensor", (TensorSpec(None, "float32", (-1, 4)),)),
        outputs=Schema("tensor", (TensorSpec(None, "float32", (-1,)),)),
        params=(),
    )


def test_params_and_optional_columns_of_saved_model(params_model: Path) -> None:
    sig = parse_mlmodel(params_model).signature
    assert sig is not None and sig.inputs is not None
    assert sig.inputs.columns == (ColSpec("text", "string", True), ColSpec("note", "string", False))
    assert sig.params == (
        ParamSpec("times", "long", 1, None),
        ParamSpec("suffix", "string", "", None),
        ParamSpec("upper", "boolean", False, None),
        ParamSpec("weights", "double", [1.0, 2.0], (-1,)),
    )


def test_no_signature(no_signature_model: Path) -> None:
    assert parse_mlmodel(no_signature_model).signature is None


def test_every_scalar_column_type() -> None:
    from mlflow.types.schema import ColSpec as MCol
    from mlflow.types.schema import Schema as MSchema

    types = ["boolean", "integer", "long", "float", "double", "string", "binary", "datetime"]
    raw = _mlflow_signature_dict(
        inputs=MSchema([MCol(t, f"c_{t}", required=(t != "binary")) for t in types])
    )
    sig = parse_signature(raw, where=W)
    assert sig is not None and sig.inputs is not None
    assert [(c.name, c.type, c.required) for c in sig.inputs.columns] == [
        (f"c_{t}", t, t != "binary") for t in types
    ]


def test_array_object_map_any_columns() -> None:
    from mlflow.types.schema import AnyType, Array, Map, Object, Property
    from mlflow.types.schema import ColSpec as MCol
    from mlflow.types.schema import Schema as MSchema

    schema = MSchema(
        [
            MCol(Array("string"), "tags"),
            MCol(Array(Array("double")), "matrix", required=False),
            MCol(Object([Property("a", "long"), Property("b", "string", required=False)]), "obj"),
            MCol(Map("double"), "scores"),
            MCol(AnyType(), "anything"),
            MCol(
                Array(Object([Property("role", "string"), Property("content", "string")])),
                "messages",
            ),
        ]
    )
    sig = parse_signature(_mlflow_signature_dict(inputs=schema), where=W)
    assert sig is not None and sig.inputs is not None
    cols = {c.name: c for c in sig.inputs.columns}  # type: ignore[union-attr]
    assert isinstance(cols["tags"], ColSpec)
    assert cols["tags"].type == "array" and cols["tags"].detail == {
        "type": "array",
        "items": {"type": "string"},
    }
    assert cols["tags"].type_repr() == "array<string>"
    assert cols["matrix"].required is False  # type: ignore[union-attr]
    assert cols["matrix"].type_repr() == "array<array<double>>"  # type: ignore[union-attr]
    assert cols["obj"].type == "object"  # type: ignore[union-attr]
    assert cols["obj"].type_repr() == "object{a: long, b?: string}"  # type: ignore[union-attr]
    assert cols["scores"].type_repr() == "map<string, double>"  # type: ignore[union-attr]
    assert cols["anything"].type == "any"  # type: ignore[union-attr]
    # MLflow sorts object properties by name when it serializes them
    assert cols["messages"].type_repr() == "array<object{content: string, role: string}>"  # type: ignore[union-attr]


def test_named_tensors_and_several_dtypes() -> None:
    import numpy as np
    from mlflow.types.schema import Schema as MSchema
    from mlflow.types.schema import TensorSpec as MTensor

    schema = MSchema(
        [
            MTensor(np.dtype("float32"), (-1, 28, 28), "image"),
            MTensor(np.dtype("int64"), (-1,), "label"),
            MTensor(np.dtype("bool"), (3,), "mask"),
            MTensor(np.dtype("str"), (-1,), "text"),
        ]
    )
    sig = parse_signature(_mlflow_signature_dict(inputs=schema), where=W)
    assert sig is not None and sig.inputs is not None
    assert sig.inputs.kind == "tensor"
    assert sig.inputs.columns == (
        TensorSpec("image", "float32", (-1, 28, 28)),
        TensorSpec("label", "int64", (-1,)),
        TensorSpec("mask", "bool", (3,)),
        TensorSpec("text", "str", (-1,)),
    )


def test_unnamed_columns() -> None:
    from mlflow.types.schema import ColSpec as MCol
    from mlflow.types.schema import Schema as MSchema

    sig = parse_signature(
        _mlflow_signature_dict(inputs=MSchema([MCol("double"), MCol("double")])), where=W
    )
    assert sig is not None and sig.inputs is not None
    assert sig.inputs.names == (None, None)


def test_params_of_every_type_and_object_param() -> None:
    import datetime as dt

    from mlflow.types.schema import ColSpec as MCol
    from mlflow.types.schema import Object, ParamSchema, Property
    from mlflow.types.schema import ParamSpec as MParam
    from mlflow.types.schema import Schema as MSchema

    params = ParamSchema(
        [
            MParam("b", "boolean", True),
            MParam("i", "integer", 3),
            MParam("l", "long", 4),
            MParam("f", "float", 0.5),
            MParam("d", "double", 1.5),
            MParam("s", "string", "x"),
            MParam("t", "datetime", dt.datetime(2024, 1, 2, 3, 4, 5)),
            MParam("ls", "string", ["a", "b"], (-1,)),
            MParam("cfg", Object([Property("temperature", "double")]), {"temperature": 0.2}),
        ]
    )
    raw = _mlflow_signature_dict(inputs=MSchema([MCol("string", "q")]), params=params)
    sig = parse_signature(raw, where=W)
    assert sig is not None
    by_name = {p.name: p for p in sig.params}
    assert [p.type for p in sig.params] == [
        "boolean",
        "integer",
        "long",
        "float",
        "double",
        "string",
        "datetime",
        "string",
        "object",
    ]
    assert by_name["ls"].shape == (-1,) and by_name["ls"].default == ["a", "b"]
    assert by_name["t"].default == "2024-01-02T03:04:05"
    assert by_name["cfg"].default == {"temperature": 0.2}
    assert by_name["cfg"].detail == {
        "type": "object",
        "properties": {"temperature": {"type": "double", "required": True}},
    }
    assert by_name["b"].shape is None


def test_yaml_lists_instead_of_json_strings() -> None:
    """Hand-written MLmodel files sometimes hold the lists directly."""
    sig = parse_signature({"inputs": [{"type": "long", "name": "x"}], "outputs": None}, where=W)
    assert sig == Signature(
        inputs=Schema("column", (ColSpec("x", "long"),)), outputs=None, params=()
    )


def test_names_may_hold_quotes() -> None:
    sig = parse_signature({"inputs": '[{"type": "string", "name": "it\'s \\"quoted\\""}]'}, where=W)
    assert sig is not None and sig.inputs is not None
    assert sig.inputs.names == ('it\'s "quoted"',)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"inputs": "[{not json"}, "not valid JSON"),
        ({"inputs": "{}"}, "non-empty JSON list"),
        ({"inputs": "[]"}, "non-empty JSON list"),
        ({"inputs": 42}, "expected a JSON string"),
        ({"inputs": '[{"name": "x"}]'}, "must be an object with a 'type'"),
        ({"inputs": '[{"type": "decimal", "name": "x"}]'}, "unknown column type 'decimal'"),
        (
            {"inputs": '[{"type": "double", "name": "x", "required": "yes"}]'},
            "'required' must be true or false",
        ),
        ({"inputs": '[{"type": "array", "name": "x"}]'}, "array type without 'items'"),
        (
            {"inputs": '[{"type": "object", "name": "x", "properties": {}}]'},
            "object type without 'properties'",
        ),
        ({"inputs": '[{"type": "map", "name": "x"}]'}, "map type without 'values'"),
        (
            {"inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float32"}}]'},
            "needs 'tensor-spec'",
        ),
        (
            {"inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-2]}}]'},
            "below -1",
        ),
        (
            {
                "inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": "(-1,)"}}]'
            },
            "list of integers",
        ),
        (
            {
                "inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float32; rm", "shape": [1]}}]'
            },
            "not a numpy dtype",
        ),
        (
            {
                "inputs": '[{"type": "double", "name": "a"}, {"type": "tensor", "name": "b", "tensor-spec": {"dtype": "int8", "shape": [1]}}]'
            },
            "mixes column specs and tensor specs",
        ),
        (
            {"inputs": '[{"type": "double", "name": "a"}, {"type": "double"}]'},
            "mixes named and unnamed",
        ),
        (
            {"inputs": '[{"type": "double", "name": "a"}, {"type": "long", "name": "a"}]'},
            "duplicate names",
        ),
        ({"inputs": '[{"type": "double", "name": "a\\nb"}]'}, "control characters"),
        ({"outputs": "nope"}, "signature.outputs"),
        ({"params": '[{"name": "p", "type": "double"}]'}, "needs 'name', 'type' and 'default'"),
        (
            {"params": '[{"name": "p", "type": "binary", "default": "x"}]'},
            "unsupported type 'binary'",
        ),
        (
            {"params": '[{"name": "p", "type": "long", "default": 1, "shape": [1.5]}]'},
            "list of integers",
        ),
        ({"params": '{"name": "p"}'}, "expected a JSON list"),
        (
            {
                "params": '[{"name": "p", "type": "long", "default": 1}, {"name": "p", "type": "long", "default": 2}]'
            },
            "duplicate param",
        ),
    ],
)
def test_bad_signatures(raw: dict, message: str) -> None:
    with pytest.raises(ModelFormatError) as exc:
        parse_signature(raw, where=W)
    assert message in exc.value.what
    assert exc.value.where == W and exc.value.fix


def test_signature_not_a_mapping() -> None:
    with pytest.raises(ModelFormatError, match="'signature' must be a mapping"):
        parse_signature("inputs: x", where=W)


def test_bad_signature_in_a_model_names_the_file(tmp_path: Path, params_model: Path) -> None:
    model = altered(params_model, tmp_path / "m", lambda d: d["signature"].update(params="[{"))
    with pytest.raises(ModelFormatError) as exc:
        parse_mlmodel(model)
    assert exc.value.where == str(model / "MLmodel")
    assert "signature.params" in exc.value.what
