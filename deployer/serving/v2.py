"""Open Inference Protocol (V2, as spoken by KServe and MLServer) over the scoring core.

Request tensors are mapped onto the model's signature the way MLServer's MLflow runtime does:

* column signature  -> a DataFrame, one column per input tensor (``[n]`` or ``[n, 1]``);
* tensor signature  -> the one ndarray (unnamed spec) or ``{name: ndarray}`` (named specs);
* no signature      -> one input: the ndarray; several: a DataFrame when they are columns of
  equal length, else ``{name: ndarray}``.

The model then runs through :meth:`ScoringCore.predict_raw`, i.e. MLflow's own schema
enforcement and error mapping; only the envelope differs (V2 errors are ``{"error": "..."}``).

Except where that enforcement has nothing to do: a column model whose tensors are exactly its
columns, with the columns' dtypes, goes through the same fast path as ``/invocations``
(:meth:`ScoringCore.fast_columns` / :meth:`~ScoringCore.fast_predict`: the frame enforcement
would produce, the scikit-learn matrix shortcut where it applies), and small requests are
batched with the others of the same event-loop turn (:meth:`V2Adapter.prepare`). The answer is
the same either way (tests/serving/test_v2_fastpath.py replays both paths).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson

from deployer.serving._fastpath import NO_ANSWER
from deployer.serving.core import Prepared, ScoringError, ScoringResult, decode_json

_DTYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
_COLSPEC_TO_V2 = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}
# Request-level parameters MLServer/KServe use for transport, never model params.
_RESERVED_PARAMETERS = {"content_type", "headers"}
_JSON = "application/json"


def _error(status: int, message: str) -> ScoringResult:
    return ScoringResult(status, orjson.dumps({"error": message}), _JSON)


def parse_model_path(path: str) -> tuple[str, str | None, list[str]] | None:
    """``/v2/models/{name}[/versions/{v}][/ready|/infer]`` -> (name, version, rest), or None."""
    parts = path[len("/v2/models/") :].split("/")
    name, rest, version = parts[0], parts[1:], None
    if not name:
        return None
    if rest[:1] == ["versions"]:
        if len(rest) < 2 or not rest[1]:
            return None
        version, rest = rest[1], rest[2:]
    if rest not in ([], ["ready"], ["infer"]):
        return None
    return name, version, rest


def route_kind(path: str) -> str | None:
    """ "infer", "get" or None (no such V2 route) for a /v2/models/... path."""
    parsed = parse_model_path(path)
    if parsed is None:
        return None
    return "infer" if parsed[2] == ["infer"] else "get"


def server_get(path: str, ready: bool = True) -> tuple[int, bytes] | None:
    """The server-level V2 GET routes (None: not one of them)."""
    if path == "/v2":
        from deployer import __version__

        return 200, orjson.dumps({"name": "deployer", "version": __version__, "extensions": []})
    if path == "/v2/health/live":
        return 200, b'{"live":true}'
    if path == "/v2/health/ready":
        return (200, b'{"ready":true}') if ready else (503, b'{"ready":false}')
    return None


class V2Router:
    """The V2 protocol over a :class:`~deployer.serving.model_set.ModelSet`: server routes,
    then each model's routes by its :class:`V2Adapter`. An unknown model is a 404, a model
    that failed to load a 503 carrying its load error (its ready route: ``ready: false``)."""

    def __init__(self, models: Any) -> None:
        self.models = models

    route = staticmethod(route_kind)

    @staticmethod
    def model_name(path: str) -> str:
        parsed = parse_model_path(path)
        return parsed[0] if parsed else ""

    def entry(self, path: str) -> Any:
        """The ready model a ``/v2/models/...`` path addresses, or the refusal (a
        :class:`ScoringResult`)."""
        from deployer.serving.model_set import READY

        parsed = parse_model_path(path)
        if parsed is None:
            return _error(404, f"no route {path}")
        entry = self.models.get(parsed[0])
        if entry is None:
            served = ", ".join(f"'{n}'" for n in self.models.names()) or "no model"
            return _error(404, f"Model '{parsed[0]}' not found; this server serves {served}")
        if entry.state != READY:
            return _error(503, entry.error_message())
        return entry

    def get(self, path: str) -> tuple[int, bytes]:
        answer = server_get(path, self.models.ready)
        if answer is not None:
            return answer
        entry = self.entry(path)
        if isinstance(entry, ScoringResult):
            parsed = parse_model_path(path)
            if entry.status == 503 and parsed is not None and parsed[2] == ["ready"]:
                error = orjson.loads(entry.body)["error"]
                body = {"name": parsed[0], "ready": False, "error": error}
                return 503, orjson.dumps(body)
            return entry.status, entry.body
        return entry.v2.get(path)  # type: ignore[no-any-return]

    def ready(self, name: str) -> bool:
        from deployer.serving.model_set import READY

        entry = self.models.get(name)
        return entry is not None and entry.state == READY

    def infer(self, path: str, body: bytes | dict[str, Any]) -> ScoringResult:
        entry = self.entry(path)
        if isinstance(entry, ScoringResult):
            return entry
        return entry.v2.infer(path, body)  # type: ignore[no-any-return]


class V2Adapter:
    """The V2 routes of one model (its core)."""

    def __init__(self, core: Any) -> None:
        self.core = core

    # ------------------------------------------------------------------ routing
    _parse = staticmethod(parse_model_path)
    route = staticmethod(route_kind)

    def _check_model(self, name: str, version: str | None) -> str | None:
        if name != self.core.model_name:
            return f"Model '{name}' not found; this server serves '{self.core.model_name}'"
        if version is not None and self.core.model_version not in (None, version):
            return (
                f"Version '{version}' of model '{name}' not found; this server serves "
                f"version '{self.core.model_version}'"
            )
        return None

    # ------------------------------------------------------------------ GET routes
    def get(self, path: str) -> tuple[int, bytes]:
        answer = server_get(path)
        if answer is not None:
            return answer
        parsed = self._parse(path)
        if parsed is None:
            return 404, orjson.dumps({"error": f"no route {path}"})
        name, version, rest = parsed
        problem = self._check_model(name, version)
        if problem:
            return 404, orjson.dumps({"error": problem})
        if rest == ["ready"]:
            return 200, orjson.dumps({"name": name, "ready": True})
        return 200, orjson.dumps(self.metadata())

    def metadata(self) -> dict[str, Any]:
        core = self.core
        out: dict[str, Any] = {
            "name": core.model_name,
            "versions": [core.model_version] if core.model_version else [],
            "platform": f"mlflow:{core.flavor}",
            "inputs": _schema_tensors(core.input_schema, "input"),
            "outputs": _schema_tensors(getattr(core.signature, "outputs", None), "output"),
        }
        params = core.params_schema
        if params is not None:
            out["parameters"] = {
                "params": [
                    {
                        "name": p.name,
                        "datatype": _COLSPEC_TO_V2.get(
                            str(getattr(p.dtype, "name", p.dtype)), "BYTES"
                        ),
                        "shape": list(p.shape) if p.shape else [],
                        "default": _plain(p.default),
                    }
                    for p in params.params
                ]
            }
        return out

    # ------------------------------------------------------------------ infer
    def infer_function(self, path: str) -> Callable[[bytes, str | None], ScoringResult]:
        def run(body: bytes, content_type: str | None) -> ScoringResult:
            return self.infer(path, body)

        return run

    def infer(self, path: str, body: bytes | dict[str, Any]) -> ScoringResult:
        """One infer request: the fast path when it settles it, else MLflow's enforcement."""
        return self.try_fast(path, body) or self.infer_general(path, body)

    def infer_general(self, path: str, body: bytes | dict[str, Any]) -> ScoringResult:
        """One infer request through MLflow's enforcement (the fast path not tried)."""
        result = self._infer(path, body, fast=False)
        assert result is not None
        return result

    def try_fast(self, path: str, body: bytes | dict[str, Any]) -> ScoringResult | None:
        """The answer when the fast path (or a cheap refusal) settles it, else None: a column
        model whose tensors are exactly its columns' dtypes, through the same fast path as
        ``/invocations`` (:meth:`ScoringCore.fast_columns`). Bounded for small bodies."""
        return self._infer(path, body, fast=True)

    def _infer(
        self, path: str, body: bytes | dict[str, Any], *, fast: bool
    ) -> ScoringResult | None:
        request = self._request(path, body)
        if isinstance(request, ScoringResult):
            return request
        payload, tensors, params = request
        try:
            raw = self._fast_raw(tensors, params) if fast else NO_ANSWER
            if raw is NO_ANSWER:
                if fast:
                    return None
                raw = self.core.predict_raw(self._to_model_input(tensors), params)
            return self.answer(payload, raw)
        except ScoringError as exc:
            return _error(exc.status, exc.message)
        except _BadTensor as exc:
            return _error(400, str(exc))

    def prepare(self, path: str, body: bytes) -> Any:
        """For batching (see :meth:`ScoringCore.run_batch`): a :class:`Prepared` request with
        the V2 answer as its encoding, a final answer (a refusal), or None (answer it alone)."""
        if not self.core.batchable:
            return None
        request = self._request(path, body)
        if isinstance(request, ScoringResult):
            return request
        payload, tensors, params = request
        if params is not None:
            return None
        frame = self._fast_frame(tensors, params)
        if frame is None:
            return None
        return Prepared(
            frame.matrix(),
            body,
            None,
            encode=lambda raw: self.answer(payload, raw),
            fallback=lambda: self.infer(path, body),
        )

    def _request(self, path: str, body: bytes | dict[str, Any]) -> Any:
        """(payload, tensors, params), or the error answer. ``body``: the JSON request, or the
        object it decodes to."""
        parsed = self._parse(path)
        if parsed is None:  # pragma: no cover - routed here only when parse succeeded
            return _error(404, f"no route {path}")
        name, version, _ = parsed
        problem = self._check_model(name, version)
        if problem:
            return _error(404, problem)
        try:
            # gRPC (deployer.serving.grpc.service) hands over the payload it decoded itself.
            payload = body if isinstance(body, dict) else decode_json(body)
            tensors, params = self.request_tensors(payload)
        except ScoringError as exc:
            return _error(exc.status, exc.message)
        except _BadTensor as exc:
            return _error(400, str(exc))
        return payload, tensors, params

    def _fast_frame(self, tensors: dict[str, Any], params: Any) -> Any:
        schema = self.core.input_schema
        if schema is None or schema.is_tensor_spec():
            return None
        columns = {name: _as_column(arr) for name, arr in tensors.items()}
        if not all(hasattr(col, "ndim") for col in columns.values()):
            return None
        return self.core.fast_columns(columns, params)

    def _fast_raw(self, tensors: dict[str, Any], params: Any) -> Any:
        frame = self._fast_frame(tensors, params)
        return NO_ANSWER if frame is None else self.core.fast_predict(frame, params)

    def answer(self, payload: dict[str, Any], raw: Any) -> ScoringResult:
        """The V2 response for the model's raw predictions."""
        try:
            outputs = predictions_to_outputs(raw, self.core.signature)
        except ScoringError as exc:
            return _error(exc.status, exc.message)
        response: dict[str, Any] = {"model_name": self.core.model_name, "outputs": outputs}
        if self.core.model_version:
            response["model_version"] = self.core.model_version
        if isinstance(payload.get("id"), str):
            response["id"] = payload["id"]
        try:
            encoded = orjson.dumps(response)
        except TypeError:
            encoded = orjson.dumps(response, default=str)
        return ScoringResult(200, encoded, _JSON)

    def request_tensors(self, payload: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The request's tensors (name -> ndarray, cast to their datatype) and params."""
        import numpy as np

        if not isinstance(payload, dict):
            raise _BadTensor("The request body must be a JSON object with an 'inputs' list")
        inputs = payload.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise _BadTensor("The request must have a non-empty 'inputs' list of tensors")
        tensors: dict[str, Any] = {}
        for index, spec in enumerate(inputs):
            arr = _tensor(spec, index, np)
            tensors[spec["name"]] = arr
        params = payload.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise _BadTensor("'parameters' must be a JSON object")
        params = {k: v for k, v in (params or {}).items() if k not in _RESERVED_PARAMETERS}
        return tensors, (params or None)

    def request_to_input(self, payload: Any) -> tuple[Any, dict[str, Any] | None]:
        """The request as the model input MLflow's enforcement receives, and its params."""
        tensors, params = self.request_tensors(payload)
        return self._to_model_input(tensors), params

    def _to_model_input(self, tensors: dict[str, Any]) -> Any:
        import pandas as pd

        schema = self.core.input_schema
        if schema is not None and schema.is_tensor_spec():
            if schema.has_input_names():
                return tensors
            return next(iter(tensors.values())) if len(tensors) == 1 else tensors
        if schema is None and len(tensors) == 1:
            return next(iter(tensors.values()))
        columns = {name: _as_column(arr) for name, arr in tensors.items()}
        lengths = {len(col) for col in columns.values()}
        if len(lengths) != 1:
            if schema is None:
                return tensors
            raise _BadTensor(
                "All input tensors must have the same first dimension (one row per element)"
                f" for this column-based model; got lengths {sorted(lengths)}"
            )
        return pd.DataFrame(columns)


class _BadTensor(ValueError):
    pass


def _tensor(spec: Any, index: int, np: Any) -> Any:
    where = f"inputs[{index}]"
    if not isinstance(spec, dict):
        raise _BadTensor(f"{where} must be an object with name, shape, datatype and data")
    name, shape, datatype = spec.get("name"), spec.get("shape"), spec.get("datatype")
    data = spec.get("data")
    if not isinstance(name, str) or not name:
        raise _BadTensor(f"{where}.name must be a non-empty string")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _BadTensor(f"{where}.shape must be a list of non-negative integers, got {shape!r}")
    if datatype not in _DTYPES:
        raise _BadTensor(f"{where}.datatype {datatype!r} is not one of {sorted(_DTYPES)}")
    if not isinstance(data, list):
        data = [data]
    try:
        if datatype == "BYTES":
            flat = _flatten(data)
            if not all(isinstance(x, str) for x in flat):
                raise _BadTensor(f"{where}: BYTES data must be strings")
            arr = np.array(flat, dtype=object)
        else:
            arr = np.asarray(data, dtype=_DTYPES[datatype]).ravel()
    except _BadTensor:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise _BadTensor(f"{where}: data does not match datatype {datatype}: {exc}") from None
    expected = math.prod(shape)
    if arr.size != expected:
        raise _BadTensor(f"{where}: shape {shape} needs {expected} elements, data has {arr.size}")
    return arr.reshape(shape)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _as_column(arr: Any) -> Any:
    if arr.ndim == 0:
        return arr.reshape(1)
    if arr.ndim == 1:
        return arr
    if arr.ndim == 2 and arr.shape[1] == 1:
        return arr.reshape(-1)
    return list(arr.tolist())


def _v2_datatype(dtype: Any) -> str:
    kind = dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return f"{'U' if kind == 'u' else ''}INT{dtype.itemsize * 8}"
    if kind == "f":
        return f"FP{dtype.itemsize * 8}"
    return "BYTES"


def _tensor_out(name: str, arr: Any) -> dict[str, Any]:
    import numpy as np

    arr = np.asarray(arr)
    datatype = _v2_datatype(arr.dtype)
    if datatype == "BYTES":
        data = [
            x
            if isinstance(x, str) or x is None
            else (x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x))
            for x in arr.ravel().tolist()
        ]
    elif arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ScoringError(
            400,
            "BAD_REQUEST",
            f"output '{name}' has NaN/Infinity values, which V2 JSON cannot carry",
        )
    else:
        data = arr.ravel().tolist()
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": data}


def predictions_to_outputs(raw: Any, signature: Any = None) -> list[dict[str, Any]]:
    import numpy as np
    import pandas as pd

    if isinstance(raw, pd.DataFrame):
        return [_tensor_out(str(col), raw[col].to_numpy()) for col in raw.columns]
    if isinstance(raw, pd.Series):
        return [
            _tensor_out(str(raw.name) if raw.name is not None else "predictions", raw.to_numpy())
        ]
    if isinstance(raw, dict):
        return [_tensor_out(str(k), v) for k, v in raw.items()]
    name = "predictions"
    outputs = getattr(signature, "outputs", None)
    if outputs is not None and len(outputs.inputs) == 1 and outputs.has_input_names():
        name = outputs.input_names()[0]
    return [_tensor_out(str(name), np.asarray(raw))]


def _schema_tensors(schema: Any, prefix: str) -> list[dict[str, Any]]:
    if schema is None:
        return []
    out = []
    for index, spec in enumerate(schema.inputs):
        name = spec.name if spec.name else f"{prefix}-{index}"
        if schema.is_tensor_spec():
            import numpy as np

            out.append(
                {
                    "name": name,
                    "datatype": _v2_datatype(np.dtype(spec.type)),
                    "shape": list(spec.shape),
                }
            )
        else:
            type_name = str(getattr(spec.type, "name", "")) or "object"
            entry: dict[str, Any] = {
                "name": name,
                "datatype": _COLSPEC_TO_V2.get(type_name, "BYTES"),
                "shape": [-1],
            }
            if not getattr(spec, "required", True):
                entry["parameters"] = {"optional": True}
            out.append(entry)
    return out


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
