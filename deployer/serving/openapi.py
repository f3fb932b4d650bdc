"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the model's signature.

Clients (and API gateways) get the request shapes this particular model accepts - one schema
per MLflow JSON format, the params schema with defaults, the response shape from the output
signature - and the example request saved with the model. JSON only: no Swagger UI, so the
image carries no static assets. A model without a signature gets the generic MLflow shapes.
"""

from __future__ import annotations

from typing import Any

from deployer.serving.core import CONTENT_TYPE_PARQUET, parquet_supported

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def datatype_schema(dtype: Any) -> dict[str, Any]:
    """JSON Schema of one MLflow type (DataType, Array, Object, Map, AnyType)."""
    from mlflow.types.schema import Array, DataType, Map, Object

    if isinstance(dtype, DataType):
        return {
            "boolean": {"type": "boolean"},
            "integer": {"type": "integer", "format": "int32"},
            "long": {"type": "integer", "format": "int64"},
            "float": {"type": "number", "format": "float"},
            "double": {"type": "number", "format": "double"},
            "string": {"type": "string"},
            "binary": {"type": "string", "contentEncoding": "base64"},
            "datetime": {"type": "string", "format": "date-time"},
        }.get(dtype.name, {})
    if isinstance(dtype, Array):
        return {"type": "array", "items": datatype_schema(dtype.dtype)}
    if isinstance(dtype, Object):
        return {
            "type": "object",
            "properties": {p.name: datatype_schema(p.dtype) for p in dtype.properties},
            "required": [p.name for p in dtype.properties if p.required],
        }
    if isinstance(dtype, Map):
        return {"type": "object", "additionalProperties": datatype_schema(dtype.value_type)}
    return {}  # AnyType / unknown: anything


def _numpy_schema(dtype: Any) -> dict[str, Any]:
    import numpy as np

    kind = np.dtype(dtype).kind
    if kind == "b":
        return {"type": "boolean"}
    if kind in "iu":
        return {"type": "integer"}
    if kind == "f":
        return {"type": "number"}
    return {"type": "string"}


def _tensor_schema(spec: Any, *, skip_batch: bool = False) -> dict[str, Any]:
    schema = _numpy_schema(spec.type)
    shape = list(spec.shape or [])
    if skip_batch and shape:
        shape = shape[1:]
    for dim in reversed(shape):
        schema = {"type": "array", "items": schema}
        if isinstance(dim, int) and dim >= 0:
            schema["minItems"] = schema["maxItems"] = dim
    return schema


def _nullable(schema: dict[str, Any], required: bool) -> dict[str, Any]:
    return schema if required else {"anyOf": [schema, {"type": "null"}]}


def _column_schemas(schema: Any) -> dict[str, Any]:
    """Row / column shapes for a column-based signature (named or not)."""
    specs = schema.inputs
    names = [spec.name if spec.name is not None else str(i) for i, spec in enumerate(specs)]
    cell = {
        n: _nullable(datatype_schema(s.type), s.required) for n, s in zip(names, specs, strict=True)
    }
    required = [n for n, s in zip(names, specs, strict=True) if s.required]
    row = {"type": "object", "properties": cell, "required": required}
    any_cell = (
        {"anyOf": list({repr(v): v for v in cell.values()}.values())}
        if len(cell) > 1
        else next(iter(cell.values()), {})
    )
    return {
        "Row": row,
        "DataframeSplit": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}, "examples": [names]},
                "index": {"type": "array"},
                "data": {"type": "array", "items": {"type": "array", "items": any_cell}},
            },
            "additionalProperties": False,
        },
        "DataframeRecords": {"type": "array", "items": _ref("Row")},
        "Instances": {"type": "array", "items": _ref("Row")},
        "Inputs": {
            "type": "object",
            "properties": {n: {"type": "array", "items": c} for n, c in cell.items()},
            "required": required,
        },
    }


def _tensor_schemas(schema: Any) -> dict[str, Any]:
    specs = schema.inputs
    if schema.has_input_names():
        whole = {
            "type": "object",
            "properties": {s.name: _tensor_schema(s) for s in specs},
            "required": [s.name for s in specs if s.required],
        }
        rows = {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {s.name: _tensor_schema(s, skip_batch=True) for s in specs},
            },
        }
    else:
        whole = _tensor_schema(specs[0])
        rows = whole
    generic = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "columns": {"type": "array"},
            "index": {"type": "array"},
            "data": {"type": "array"},
        },
    }
    return {
        "DataframeSplit": generic,
        "DataframeRecords": {"type": "array", "items": {"type": "object"}},
        "Instances": rows,
        "Inputs": whole,
    }


def _generic_schemas() -> dict[str, Any]:
    return {
        "DataframeSplit": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "columns": {"type": "array"},
                "index": {"type": "array"},
                "data": {"type": "array"},
            },
        },
        "DataframeRecords": {"type": "array", "items": {"type": "object"}},
        "Instances": {"type": "array"},
        "Inputs": {},
    }


def _params_schema(params: Any) -> dict[str, Any]:
    from deployer.serving.v2 import _plain

    if params is None:
        return {
            "type": "object",
            "description": "This model declares no params; any given are ignored.",
        }
    props = {}
    for spec in params.params:
        item = datatype_schema(spec.dtype)
        if spec.shape:
            item = {"type": "array", "items": item}
        item = dict(item)
        item["default"] = _plain(spec.default)
        props[spec.name] = item
    return {
        "type": "object",
        "properties": props,
        "description": "Optional. Absent params take their defaults; unknown ones are ignored.",
    }


def _predictions_schema(outputs: Any) -> dict[str, Any]:
    if outputs is None:
        return {}
    if outputs.is_tensor_spec():
        if outputs.has_input_names() and len(outputs.inputs) > 1:
            return {
                "type": "object",
                "properties": {s.name: _tensor_schema(s) for s in outputs.inputs},
            }
        return _tensor_schema(outputs.inputs[0])
    specs = outputs.inputs
    if len(specs) == 1 and specs[0].name is None:
        return {"type": "array", "items": datatype_schema(specs[0].type)}
    return {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {str(s.name): datatype_schema(s.type) for s in specs},
        },
    }


def _json(schema: dict[str, Any] | str, description: str) -> dict[str, Any]:
    body = _ref(schema) if isinstance(schema, str) else schema
    return {"description": description, "content": {"application/json": {"schema": body}}}


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


def _v2_tensor() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {
                "type": "string",
                "enum": [
                    "BOOL",
                    "UINT8",
                    "UINT16",
                    "UINT32",
                    "UINT64",
                    "INT8",
                    "INT16",
                    "INT32",
                    "INT64",
                    "FP16",
                    "FP32",
                    "FP64",
                    "BYTES",
                ],
            },
            "data": {"type": "array"},
            "parameters": {"type": "object"},
        },
    }


def openapi_document(core: Any, app: Any = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``core``'s model (``app`` supplies limits, optional)."""
    from deployer import __version__

    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{core.model_name} scoring API",
            "version": core.model_version or "1",
            "description": f"MLflow model served by deployer {__version__} (flavor {core.flavor}).",
        },
        "paths": {**_invocations_path(core, app), **_service_paths(), **_v2_paths(core)},
        "components": {"schemas": _components(core)},
    }


def _components(core: Any) -> dict[str, Any]:
    """The schemas: the request formats for this signature, params, predictions, errors."""
    schema = core.input_schema
    if schema is None:
        formats = _generic_schemas()
    elif schema.is_tensor_spec():
        formats = _tensor_schemas(schema)
    else:
        formats = _column_schemas(schema)
    keys = {
        "dataframe_split": "DataframeSplit",
        "dataframe_records": "DataframeRecords",
        "instances": "Instances",
        "inputs": "Inputs",
    }
    requests = [
        {
            "type": "object",
            "title": key,
            "required": [key],
            "properties": {key: _ref(name), "params": _ref("Params")},
        }
        for key, name in keys.items()
    ]
    return {
        **formats,
        "Params": _params_schema(core.params_schema),
        "InvocationRequest": {
            "oneOf": requests,
            "description": "Exactly one of "
            "dataframe_split, dataframe_records, instances, inputs; plus "
            "optional params.",
        },
        "Predictions": {
            "type": "object",
            "required": ["predictions"],
            "properties": {
                "predictions": _predictions_schema(getattr(core.signature, "outputs", None))
            },
        },
        "Error": {
            "type": "object",
            "required": ["error_code", "message"],
            "properties": {
                "error_code": {
                    "type": "string",
                    "examples": ["BAD_REQUEST", "INVALID_PARAMETER_VALUE"],
                },
                "message": {"type": "string"},
            },
        },
        "V2Tensor": _v2_tensor(),
    }


def _invocations_path(core: Any, app: Any) -> dict[str, Any]:
    """``POST /invocations``: the content types this server takes, its limits, the example."""
    json_request: dict[str, Any] = {"schema": _ref("InvocationRequest")}
    example = core.serving_input_example
    if example is not None:
        json_request["example"] = example
    limit = getattr(app, "max_body_bytes", None)
    timeout = getattr(app, "timeout", None)
    request_content: dict[str, Any] = {
        "application/json": json_request,
        "text/csv": {"schema": {"type": "string"}},
    }
    if parquet_supported():  # an image built without --parquet refuses it (415)
        request_content[CONTENT_TYPE_PARQUET] = {
            "schema": {"type": "string", "contentMediaType": CONTENT_TYPE_PARQUET}
        }
    return {
        "/invocations": {
            "post": {
                "summary": "Score a batch of rows (MLflow scoring protocol)",
                "operationId": "invocations",
                "requestBody": {"required": True, "content": request_content},
                "responses": {
                    "200": _json("Predictions", "Predictions"),
                    "400": _error(
                        "Bad request, schema mismatch, or the model failed on this input"
                    ),
                    "413": _error(f"Body larger than {limit} bytes" if limit else "Body too large"),
                    "415": {
                        "description": "Unsupported content type or charset",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "504": _error(
                        f"Scoring took longer than {timeout:g} s"
                        if timeout
                        else "Scoring timed out"
                    ),
                },
            }
        }
    }


def _service_paths() -> dict[str, Any]:
    """Health, version, metrics and this document."""
    plain = {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
    return {
        "/ping": {
            "get": {
                "summary": "Liveness (SageMaker)",
                "operationId": "ping",
                "responses": {"200": {"description": "Healthy"}},
            }
        },
        "/health": {
            "get": {
                "summary": "Liveness",
                "operationId": "health",
                "responses": {"200": {"description": "Healthy"}},
            }
        },
        "/version": {
            "get": {
                "summary": "MLflow version of the server",
                "operationId": "version",
                "responses": {"200": plain},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {"200": plain},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "OpenAPI")},
            }
        },
    }


def _v2_paths(core: Any) -> dict[str, Any]:
    """The Open Inference Protocol (V2) routes."""
    v2_error = _json({"type": "object", "properties": {"error": {"type": "string"}}}, "Error")
    return {
        "/v2/health/live": {
            "get": {
                "operationId": "v2_live",
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"live": {"type": "boolean"}}}, "Live"
                    )
                },
            }
        },
        "/v2/health/ready": {
            "get": {
                "operationId": "v2_ready",
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"ready": {"type": "boolean"}}}, "Ready"
                    )
                },
            }
        },
        "/v2/models/{model_name}": {
            "get": {
                "operationId": "v2_model_metadata",
                "parameters": [_model_name_param(core.model_name)],
                "responses": {"200": _json({"type": "object"}, "Model metadata"), "404": v2_error},
            }
        },
        "/v2/models/{model_name}/ready": {
            "get": {
                "operationId": "v2_model_ready",
                "parameters": [_model_name_param(core.model_name)],
                "responses": {"200": _json({"type": "object"}, "Ready"), "404": v2_error},
            }
        },
        "/v2/models/{model_name}/infer": {
            "post": {
                "summary": "Score (Open Inference Protocol V2)",
                "operationId": "v2_infer",
                "parameters": [_model_name_param(core.model_name)],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["inputs"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "parameters": {"type": "object"},
                                    "inputs": {"type": "array", "items": _ref("V2Tensor")},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "model_name": {"type": "string"},
                                "model_version": {"type": "string"},
                                "id": {"type": "string"},
                                "outputs": {"type": "array", "items": _ref("V2Tensor")},
                            },
                        },
                        "Outputs",
                    ),
                    "400": v2_error,
                    "404": v2_error,
                    "413": _error("Body too large"),
                    "504": _error("Timed out"),
                },
            }
        },
    }


def _model_name_param(name: str) -> dict[str, Any]:
    return {
        "name": "model_name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [name]},
    }
