"""Model signatures: the ``signature`` block of MLmodel, parsed without MLflow.

MLflow stores ``inputs``, ``outputs`` and ``params`` as JSON *strings* inside the YAML file
(``inputs: '[{"type": "double", "name": "x", "required": true}]'``). They are decoded here
into frozen dataclasses so that the server, the OpenAPI writer and ``deployer inspect`` never
touch raw JSON. The JSON layout follows ``mlflow.types.schema`` (``ColSpec.from_json_dict``,
``TensorSpec.from_json_dict``, ``ParamSpec.from_json_dict``):

* column spec: ``{"type": <scalar>, "name"?: str, "required"?: bool}``, or a nested type
  ``{"type": "array", "items": {...}}``, ``{"type": "object", "properties": {name: {...}}}``,
  ``{"type": "map", "values": {...}}``, ``{"type": "any"}`` (kept whole in ``detail``);
* tensor spec: ``{"type": "tensor", "name"?: str, "tensor-spec": {"dtype": str, "shape": [int]}}``
  where ``-1`` in the shape means "any size";
* param spec: ``{"name": str, "type"|"dtype": str, "default": value, "shape": null|[int]}``.

Every problem raises :class:`ModelFormatError` naming the field (``signature.inputs``...).
Names may contain quotes (they are data, always JSON-encoded downstream) but not control
characters, which would corrupt tables, logs and headers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from deployer.errors import ModelFormatError

SCALAR_TYPES = ("boolean", "integer", "long", "float", "double", "string", "binary", "datetime")
NESTED_TYPES = ("array", "object", "map", "any", "sparkml_vector")
# ParamSpec accepts every scalar but binary, plus object (mlflow.types.schema.ParamSpec).
PARAM_TYPES = tuple(t for t in SCALAR_TYPES if t != "binary") + ("object",)
_DTYPE = re.compile(r"^[a-z][a-z0-9_]*(\[[a-z0-9]+\])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ColSpec:
    """One column. ``type`` is a scalar type or array/object/map/any (then see ``detail``)."""

    name: str | None
    type: str
    required: bool = True
    detail: dict[str, Any] | None = (
        None  # the JSON of a nested type, e.g. {"type": "array", "items": ...}
    )

    def type_repr(self) -> str:
        """Human form of the type: ``double``, ``array<string>``, ``object{a: long, b?:
        string}``."""
        return _type_repr(self.detail) if self.detail is not None else self.type


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: numpy dtype name and shape (``-1`` = any size along that axis)."""

    name: str | None
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ParamSpec:
    """One inference parameter with its default; ``shape`` is None for scalars, (-1,) for lists."""

    name: str
    type: str
    default: object
    shape: tuple[int, ...] | None
    detail: dict[str, Any] | None = None  # object params: {"type": "object", "properties": ...}


@dataclass(frozen=True)
class Schema:
    """A column-based or tensor-based schema (MLflow does not allow mixing the two)."""

    kind: Literal["column", "tensor"]
    columns: tuple[ColSpec | TensorSpec, ...]

    @property
    def names(self) -> tuple[str | None, ...]:
        return tuple(c.name for c in self.columns)


@dataclass(frozen=True)
class Signature:
    inputs: Schema | None
    outputs: Schema | None
    params: tuple[ParamSpec, ...] = ()


def parse_signature(raw: object, *, where: str) -> Signature | None:
    """Parse the ``signature`` mapping of an MLmodel file (None when there is no signature)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ModelFormatError(
            f"'signature' must be a mapping with inputs/outputs/params, got {type(raw).__name__}",
            where=where,
            fix="save the model again with mlflow, or remove the broken 'signature' block",
        )
    inputs = _parse_schema(
        _decode(raw.get("inputs"), "signature.inputs", where), "signature.inputs", where
    )
    outputs = _parse_schema(
        _decode(raw.get("outputs"), "signature.outputs", where), "signature.outputs", where
    )
    params = _parse_params(_decode(raw.get("params"), "signature.params", where), where)
    return Signature(inputs=inputs, outputs=outputs, params=params)


def _bad(field: str, what: str, where: str) -> ModelFormatError:
    return ModelFormatError(
        f"unreadable {field}: {what}",
        where=where,
        fix="save the model again with mlflow (mlflow.models.infer_signature), or fix the JSON by "
        "hand",
    )


def _decode(value: object, field: str, where: str) -> object:
    """MLflow writes JSON strings; hand-written files sometimes use YAML lists. Accept both."""
    if value is None or isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise _bad(field, f"expected a JSON string, got {type(value).__name__}", where)
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise _bad(
            field, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", where
        ) from exc


def _name(item: dict[str, Any], field: str, where: str, *, required: bool = False) -> str | None:
    name = item.get("name")
    if name is None:
        if required:
            raise _bad(field, f"an entry has no 'name': {item!r}", where)
        return None
    if not isinstance(name, (str, int)) or isinstance(name, bool):
        raise _bad(field, f"name must be a string, got {name!r}", where)
    name = str(name)
    if _CONTROL.search(name):
        raise _bad(field, f"name {name!r} contains control characters", where)
    return name


def _parse_schema(items: object, field: str, where: str) -> Schema | None:
    if items is None:
        return None
    if not isinstance(items, list) or not items:
        raise _bad(field, "expected a non-empty JSON list of column or tensor specs", where)
    specs: list[ColSpec | TensorSpec] = []
    for item in items:
        if not isinstance(item, dict) or "type" not in item:
            raise _bad(field, f"each spec must be an object with a 'type', got {item!r}", where)
        if item["type"] == "tensor":
            specs.append(_tensor(item, field, where))
        else:
            specs.append(_column(item, field, where))
    kinds = {isinstance(s, TensorSpec) for s in specs}
    if len(kinds) > 1:
        raise _bad(field, "mixes column specs and tensor specs, which MLflow does not allow", where)
    named = {s.name is not None for s in specs}
    if len(named) > 1:
        raise _bad(field, "mixes named and unnamed specs, which MLflow does not allow", where)
    names = [s.name for s in specs if s.name is not None]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise _bad(field, f"duplicate names {dupes}", where)
    return Schema(kind="tensor" if kinds == {True} else "column", columns=tuple(specs))


def _column(item: dict[str, Any], field: str, where: str) -> ColSpec:
    type_ = item["type"]
    required = item.get("required", True)
    if required is None:  # MLflow's from_json_dict passes None through for nested types
        required = True
    if not isinstance(required, bool):
        raise _bad(field, f"'required' must be true or false, got {required!r}", where)
    name = _name(item, field, where)
    if type_ in SCALAR_TYPES:
        return ColSpec(name=name, type=type_, required=required)
    if type_ in NESTED_TYPES:
        detail = {k: v for k, v in item.items() if k not in ("name", "required")}
        _check_nested(detail, field, where)
        return ColSpec(name=name, type=type_, required=required, detail=detail)
    raise _bad(
        field,
        f"unknown column type {type_!r} (expected one of {', '.join(SCALAR_TYPES + NESTED_TYPES)} "
        "or tensor)",
        where,
    )


def _check_nested(node: object, field: str, where: str) -> None:
    """Validate array/object/map JSON the way mlflow.types.schema does (recursively)."""
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        raise _bad(field, f"nested type must be an object with a 'type', got {node!r}", where)
    t = node["type"]
    if t in SCALAR_TYPES or t in ("any", "sparkml_vector"):
        return
    if t == "array":
        if "items" not in node:
            raise _bad(field, "array type without 'items'", where)
        _check_nested(node["items"], field, where)
    elif t == "map":
        if "values" not in node:
            raise _bad(field, "map type without 'values'", where)
        _check_nested(node["values"], field, where)
    elif t == "object":
        props = node.get("properties")
        if not isinstance(props, dict) or not props:
            raise _bad(field, "object type without 'properties'", where)
        for key, prop in props.items():
            if _CONTROL.search(str(key)):
                raise _bad(field, f"property name {key!r} contains control characters", where)
            _check_nested(prop, field, where)
            req = prop.get("required", True)
            if not isinstance(req, bool):
                raise _bad(field, f"property {key!r}: 'required' must be true or false", where)
    else:
        raise _bad(field, f"unknown nested type {t!r}", where)


def _type_repr(node: dict[str, Any]) -> str:
    t = node["type"]
    if t == "array":
        return f"array<{_type_repr(node['items'])}>"
    if t == "map":
        return f"map<string, {_type_repr(node['values'])}>"
    if t == "object":
        fields = ", ".join(
            f"{k}{'' if v.get('required', True) else '?'}: {_type_repr(v)}"
            for k, v in node["properties"].items()
        )
        return f"object{{{fields}}}"
    return str(t)


def _shape(value: object, field: str, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in value
    ):
        raise _bad(field, f"shape must be a list of integers, got {value!r}", where)
    if any(d < -1 for d in value):
        raise _bad(field, f"shape {value!r} has a dimension below -1 (-1 means any size)", where)
    return tuple(value)


def _tensor(item: dict[str, Any], field: str, where: str) -> TensorSpec:
    spec = item.get("tensor-spec")
    if not isinstance(spec, dict) or "dtype" not in spec or "shape" not in spec:
        raise _bad(
            field, f"tensor spec needs 'tensor-spec' with 'dtype' and 'shape', got {item!r}", where
        )
    dtype = spec["dtype"]
    if not isinstance(dtype, str) or not _DTYPE.match(dtype):
        raise _bad(field, f"tensor dtype {dtype!r} is not a numpy dtype name", where)
    return TensorSpec(
        name=_name(item, field, where), dtype=dtype, shape=_shape(spec["shape"], field, where)
    )


def _parse_params(items: object, where: str) -> tuple[ParamSpec, ...]:
    field = "signature.params"
    if items is None:
        return ()
    if not isinstance(items, list):
        raise _bad(field, "expected a JSON list of param specs", where)
    params: list[ParamSpec] = []
    for item in items:
        if not isinstance(item, dict):
            raise _bad(field, f"each param must be an object, got {item!r}", where)
        type_ = item.get("type", item.get("dtype"))
        if "default" not in item or type_ is None:
            raise _bad(
                field, f"param needs 'name', 'type' and 'default', got keys {sorted(item)}", where
            )
        name = _name(item, field, where, required=True)
        assert name is not None
        if type_ not in PARAM_TYPES:
            raise _bad(
                field,
                f"param {name!r} has unsupported type {type_!r} (expected one of "
                f"{', '.join(PARAM_TYPES)})",
                where,
            )
        shape = item.get("shape")
        shape_t = None if shape is None else _shape(shape, field, where)
        detail = None
        if type_ == "object":
            detail = {k: v for k, v in item.items() if k in ("type", "properties")}
            _check_nested(detail, field, where)
        params.append(
            ParamSpec(name=name, type=type_, default=item["default"], shape=shape_t, detail=detail)
        )
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise _bad(
            field,
            f"duplicate param names {sorted({n for n in names if names.count(n) > 1})}",
            where,
        )
    return tuple(params)
