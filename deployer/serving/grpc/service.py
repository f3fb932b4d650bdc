"""``inference.GRPCInferenceService`` over the REST V2 adapter: one V2 implementation, two wires.

Each RPC is translated into the REST V2 request it stands for and answered by
:class:`~deployer.serving.v2.V2Adapter` (the same routing, model check, tensor decoding, fast
path, MLflow enforcement and output encoding as ``POST /v2/models/{name}/infer``), then the JSON
answer is translated back: typed ``contents`` or ``raw_input_contents`` in, ``raw_output_contents``
out (what Triton answers and its clients read), and the REST status as a gRPC status code
(400 -> INVALID_ARGUMENT, 404 -> NOT_FOUND, 503 -> UNAVAILABLE, 504 -> DEADLINE_EXCEEDED,
otherwise INTERNAL).

Models are addressed by ``model_name`` over the server's one
:class:`~deployer.serving.model_set.ModelSet` (:class:`~deployer.serving.v2.V2Router`): an
unknown model is NOT_FOUND, one that failed to load UNAVAILABLE (ModelReady: ``ready=false``).
Every RPC is counted in ``/metrics`` (route ``grpc:<Rpc>``, method ``GRPC``, the REST status it
stands for, the model) and makes an access-log line, like an HTTP request.

Where it runs (see :func:`deployer.serving.server.run_worker`): in every HTTP worker process,
started after the worker has its model, all workers binding the one port with SO_REUSEPORT so
the kernel spreads gRPC connections across them as the inherited socket spreads HTTP ones. A
server in the supervisor instead would have to fork workers after gRPC started its threads
(which gRPC does not survive) and would score on one process's cores only. Before a worker
has its model nothing listens on the port: clients get UNAVAILABLE, as gRPC says for "not yet".
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import orjson

from deployer.serving.grpc import grpc_predict_v2_pb2 as pb
from deployer.serving.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from deployer.serving.v2 import V2Router

_logger = logging.getLogger("deployer.serving")

SERVICE_NAME = "inference.GRPCInferenceService"

# V2 datatype -> (the InferTensorContents field, the little-endian dtype of its raw bytes).
_TYPED = {
    "BOOL": ("bool_contents", "?"),
    "UINT8": ("uint_contents", "<u1"),
    "UINT16": ("uint_contents", "<u2"),
    "UINT32": ("uint_contents", "<u4"),
    "UINT64": ("uint64_contents", "<u8"),
    "INT8": ("int_contents", "<i1"),
    "INT16": ("int_contents", "<i2"),
    "INT32": ("int_contents", "<i4"),
    "INT64": ("int64_contents", "<i8"),
    "FP16": (None, "<f2"),  # raw only: protobuf has no 16-bit float
    "FP32": ("fp32_contents", "<f4"),
    "FP64": ("fp64_contents", "<f8"),
    "BYTES": ("bytes_contents", None),
}
_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class BadRequest(ValueError):
    """A protobuf request that has no REST V2 equivalent (INVALID_ARGUMENT)."""


def model_path(name: str, version: str, suffix: str = "") -> str:
    """The REST V2 path a (model name, version) RPC stands for."""
    path = f"/v2/models/{name}"
    if version:
        path += f"/versions/{version}"
    return path + suffix


def _parameters(params: Any) -> dict[str, Any]:
    return {
        key: getattr(value, value.WhichOneof("parameter_choice"))
        for key, value in params.items()
        if value.WhichOneof("parameter_choice")
    }


def _decode_bytes_elements(raw: bytes, where: str) -> list[str]:
    out, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise BadRequest(f"{where}: truncated BYTES element length")
        size = int.from_bytes(raw[offset : offset + 4], "little")
        offset += 4
        if offset + size > len(raw):
            raise BadRequest(f"{where}: BYTES element overruns the raw contents")
        out.append(_text(raw[offset : offset + size], where))
        offset += size
    return out


def _text(value: bytes, where: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{where}: BYTES elements must be UTF-8 text") from None


def _tensor_data(tensor: Any, raw: bytes | None, where: str) -> Any:
    """The tensor's flat elements, as the REST request's ``data`` would hold them."""
    if tensor.datatype not in _TYPED:
        return []  # the REST adapter refuses the datatype with its own message
    field, dtype = _TYPED[tensor.datatype]
    if raw is not None:
        if dtype is None:
            return _decode_bytes_elements(raw, where)
        if len(raw) % np.dtype(dtype).itemsize:
            raise BadRequest(
                f"{where}: raw contents of {len(raw)} bytes are not whole {tensor.datatype} "
                "elements"
            )
        return np.frombuffer(raw, dtype=dtype)
    if field is None:
        raise BadRequest(f"{where}: FP16 tensors must be sent as raw_input_contents")
    values = getattr(tensor.contents, field)
    if tensor.datatype == "BYTES":
        return [_text(v, where) for v in values]
    # Python numbers, as JSON gives them: the REST adapter casts them, refusing what does not
    # fit the datatype (300 as INT8) as it does for JSON.
    return list(values)


def request_to_rest(request: Any) -> tuple[str, dict[str, Any]]:
    """The REST V2 infer request (path, decoded JSON body) a ``ModelInferRequest`` stands for;
    raw numeric ``data`` as a flat little-endian ndarray (the REST adapter casts it as it casts
    a JSON list)."""
    raws = list(request.raw_input_contents)
    if raws and len(raws) != len(request.inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raws)} entries for {len(request.inputs)} inputs "
            "(one per input, in order)"
        )
    inputs = []
    for index, tensor in enumerate(request.inputs):
        where = f"inputs[{index}] ({tensor.name})"
        if raws and tensor.HasField("contents"):
            raise BadRequest(f"{where}: contents given with raw_input_contents (use one)")
        inputs.append(
            {
                "name": tensor.name,
                "shape": list(tensor.shape),
                "datatype": tensor.datatype,
                "data": _tensor_data(tensor, raws[index] if raws else None, where),
            }
        )
    payload: dict[str, Any] = {"inputs": inputs}
    if request.id:
        payload["id"] = request.id
    params = _parameters(request.parameters)
    if params:
        payload["parameters"] = params
    return model_path(request.model_name, request.model_version, "/infer"), payload


def _raw_output(output: dict[str, Any]) -> bytes:
    datatype, data = output["datatype"], output["data"]
    if datatype == "BYTES":
        chunks = []
        for item in data:
            encoded = ("" if item is None else str(item)).encode("utf-8")
            chunks += [len(encoded).to_bytes(4, "little"), encoded]
        return b"".join(chunks)
    return np.asarray(data, dtype=_TYPED[datatype][1]).tobytes()


def response_from_rest(answer: dict[str, Any]) -> Any:
    """The ``ModelInferResponse`` for a REST V2 infer answer."""
    response = pb.ModelInferResponse(
        model_name=answer["model_name"],
        model_version=answer.get("model_version", ""),
        id=answer.get("id", ""),
    )
    for output in answer["outputs"]:
        response.outputs.add(
            name=output["name"], datatype=output["datatype"], shape=output["shape"]
        )
        response.raw_output_contents.append(_raw_output(output))
    return response


_outcome = threading.local()  # the REST status of the RPC running on this thread


def _observed(rpc: Callable[..., Any]) -> Callable[..., Any]:
    """Count the RPC in /metrics and the access log, as the HTTP app does for a request."""
    route = f"grpc:{rpc.__name__}"
    raw_path = route.encode()

    @functools.wraps(rpc)
    def run(self: InferenceServicer, request: Any, context: Any) -> Any:
        started = time.perf_counter()
        _outcome.status = 500
        metrics, access_log = self.metrics, self.access_log
        if metrics is not None:
            metrics.started()
        nbytes = 0
        try:
            response = rpc(self, request, context)
            _outcome.status = 200
            nbytes = response.ByteSize()
            return response
        finally:
            seconds = time.perf_counter() - started
            name = getattr(request, "model_name", None) or getattr(request, "name", "")
            model = name if name and self.v2.models.get(name) is not None else ""
            if metrics is not None:
                metrics.finished(route, "GRPC", _outcome.status, seconds, model)
            if access_log is not None:
                with self._log_lock:
                    access_log.record(
                        "GRPC",
                        raw_path,
                        _outcome.status,
                        nbytes,
                        seconds,
                        self.request_ids.pick(_request_id(context)),
                        model,
                    )

    return run


def _request_id(context: Any) -> bytes | None:
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            return value.encode("latin-1") if isinstance(value, str) else value
    return None


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The six RPCs, each answered by the REST V2 routes of the model set."""

    def __init__(self, v2: V2Router, *, metrics: Any = None, access_log: Any = None) -> None:
        from deployer.serving.accesslog import RequestIds

        self.v2 = v2
        self.stopping = threading.Event()
        self.metrics = metrics
        self.access_log = access_log
        self.request_ids = RequestIds()
        self._log_lock = threading.Lock()

    def _get(self, path: str, context: Any) -> dict[str, Any]:
        status, body = self.v2.get(path)
        if status != 200:
            _abort(context, status, body)
        return orjson.loads(body)

    @_observed
    def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 - the RPC's name
        return pb.ServerLiveResponse(live=self._get("/v2/health/live", context)["live"])

    @_observed
    def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        ready = self._get("/v2/health/ready", context)["ready"] and not self.stopping.is_set()
        return pb.ServerReadyResponse(ready=ready)

    @_observed
    def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        path = model_path(request.name, request.version, "/ready")
        if self.v2.models.get(request.name) is not None and not self.v2.ready(request.name):
            return pb.ModelReadyResponse(ready=False)  # failed to load / still loading
        ready = self._get(path, context)["ready"] and not self.stopping.is_set()
        return pb.ModelReadyResponse(ready=ready)

    @_observed
    def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        meta = self._get("/v2", context)
        return pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    @_observed
    def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        meta = self._get(model_path(request.name, request.version), context)
        response = pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"]
        )
        for kind in ("inputs", "outputs"):
            for tensor in meta[kind]:
                getattr(response, kind).add(
                    name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"]
                )
        return response

    @_observed
    def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            path, payload = request_to_rest(request)
        except BadRequest as exc:
            _outcome.status = 400
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if self.v2.route(path) != "infer":
            _outcome.status = 404
            context.abort(grpc.StatusCode.NOT_FOUND, f"no model {request.model_name!r}")
        result = self.v2.infer(path, payload)
        if result.status != 200:
            _abort(context, result.status, result.body)
        return response_from_rest(orjson.loads(result.body))


def _abort(context: Any, status: int, body: bytes) -> None:
    try:
        message = orjson.loads(body).get("error", "")
    except (orjson.JSONDecodeError, AttributeError):
        message = body.decode("utf-8", "replace")
    _outcome.status = status
    context.abort(_STATUS.get(status, grpc.StatusCode.INTERNAL), str(message))


class GrpcServer:
    """A started gRPC server for one worker; :meth:`stop` is the graceful shutdown."""

    def __init__(self, server: Any, servicer: InferenceServicer, port: int) -> None:
        self.server, self.servicer, self.port = server, servicer, port

    def stop(self, grace: float) -> None:
        """Refuse new RPCs (and answer not-ready), finish the running ones for up to ``grace``
        seconds."""
        self.servicer.stopping.set()
        self.server.stop(grace).wait()


def start(
    models: Any,
    host: str,
    port: int,
    *,
    threads: int,
    max_message_bytes: int,
    metrics: Any = None,
    access_log: Any = None,
) -> GrpcServer:
    """Serve ``inference.GRPCInferenceService`` for ``models`` (a
    :class:`~deployer.serving.model_set.ModelSet`, or one core) on ``host:port``
    (SO_REUSEPORT, so every worker can bind the same port), and log where. ``metrics`` and
    ``access_log``: the HTTP app's (one /metrics, one log)."""
    from concurrent.futures import ThreadPoolExecutor

    from deployer.serving.model_set import ModelSet

    if not isinstance(models, ModelSet):
        models = ModelSet.single(models)
    servicer = InferenceServicer(V2Router(models), metrics=metrics, access_log=access_log)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="grpc"),
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
        ],
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if not bound:
        raise OSError(f"gRPC could not bind {address}")
    server.start()
    shown = f"[{host}]" if ":" in host else host
    _logger.info("grpc listening on %s:%d (%s)", shown, bound, SERVICE_NAME)
    return GrpcServer(server, servicer, bound)
