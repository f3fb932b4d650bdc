"""The HTTP adapter: a raw ASGI application over one :class:`~deployer.serving.core.ScoringCore`.

Routes (MLflow's server answers the first four the same way):

    GET  /ping, /health            200 "\\n"
    GET  /version                  200 MLflow's version string
    POST /invocations              MLflow scoring protocol (also SageMaker's contract);
                                   server-sent events for streamable models (streaming.py)
    GET  /openapi.json             OpenAPI 3.1 generated from the signature
    GET  /metrics                  Prometheus text format
    GET  /v2, /v2/health/{live,ready}, /v2/models/{name}[/versions/{v}][/ready]
    POST /v2/models/{name}[/versions/{v}]/infer        Open Inference Protocol (V2)

Several models (:mod:`deployer.serving.model_set`): the V2 routes address each by name;
``/invocations`` serves the default model, or the one named by ``X-Deployer-Target-Model``
(or SageMaker's ``X-Amzn-SageMaker-Target-Model``) - 404 naming the loaded models when no such
model is loaded, 503 with its load error when it failed to load. With the SageMaker
multi-model contract on, ``/models`` routes (:mod:`deployer.serving.sagemaker_mme`) load,
list, invoke and unload models at run time. Per-model state (the inline policy and the batch
queue below) lives with each model; a single-model server pays one dict lookup for it.

Every response carries ``X-Request-Id`` and, unless turned off, makes one access-log line
(:mod:`deployer.serving.accesslog`); with an API key configured, non-exempt routes answer 401
without it (:mod:`deployer.serving.auth`).

Why a raw ASGI callable rather than a framework: the hot path is one dict lookup, one body
read, one call into the core; a framework's routing, middleware and request objects cost more
than the model on small requests (MLflow's FastAPI server spends ~3 ms per one-row request).

Limits live here because they are transport concerns: the body limit is checked against
Content-Length before reading and counted while streaming (413 without buffering the rest),
and the request timeout (504) covers reading the body and scoring. Prediction runs in a small
thread pool so /ping and /metrics answer while a model is busy, and so a slow model can be
timed out - except small requests to a model whose fast path has proven quick, which run on
the event loop (a thread hand-off costs a third of such a request) and may be batched with
the other requests of the same loop turn (see ``_observe_fast`` and ``_batching``). The V2
infer route takes the same path (``_v2_infer``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from deployer.serving._batching import MAX_BATCH_ROWS
from deployer.serving.accesslog import RequestIds
from deployer.serving.auth import UNAUTHORIZED_BODY, UNAUTHORIZED_HEADERS
from deployer.serving.core import ScoringCore, ScoringError, ScoringResult
from deployer.serving.model_set import READY, ModelEntry, ModelSet
from deployer.serving.streaming import StreamStart, is_streamable

_logger = logging.getLogger("deployer.serving")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"
_NOT_FOUND = b'{"detail":"Not Found"}'
#: Inline policy (see ScoringApp._observe_fast).
INLINE_MAX_BODY = 64 * 1024
INLINE_MAX_SECONDS = 0.005
INLINE_STRIKES = 3
INLINE_WARMUP = 20
_NOT_ALLOWED = b'{"detail":"Method Not Allowed"}'
_INTERNAL = b'{"error_code":"INTERNAL_ERROR","message":"internal server error"}'


#: Request headers that name the model /invocations should use (ours, then SageMaker's).
TARGET_HEADERS = (b"x-deployer-target-model", b"x-amzn-sagemaker-target-model")
#: Where a handler leaves the model it served, for metrics and the access log.
MODEL_KEY = "deployer.model"


class ModelState:
    """Per-model serving state of one app: the inline policy and this loop turn's batch."""

    __slots__ = (
        "inline",
        "quick_streak",
        "slow_streak",
        "pending",
        "pending_rows",
        "streamable",
        "pooled",
    )

    def __init__(self, core: Any) -> None:
        self.inline = False
        self.quick_streak = 0
        self.slow_streak = 0
        self.pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self.pending_rows = 0
        self.streamable = is_streamable(core)
        #: the pool's work for /invocations (built once: see ScoringApp._pooled_invoke)
        self.pooled: Callable[[bytes, str | None], ScoringResult] | None = None


def model_state(entry: ModelEntry) -> ModelState:
    state = entry.serving
    if state is None:
        state = entry.serving = ModelState(entry.core)
    return state  # type: ignore[no-any-return]


class _Disconnected(Exception):
    """The client went away while we were reading its body."""


class _TooLarge(Exception):
    pass


class ScoringApp:
    """ASGI 3 application over a :class:`~deployer.serving.model_set.ModelSet` (or one
    :class:`ScoringCore`). ``metrics`` is a :class:`deployer.serving.metrics.Metrics` or None;
    ``multi_model`` a :class:`deployer.serving.sagemaker_mme.MultiModelEndpoint` or None."""

    def __init__(
        self,
        models: ModelSet | ScoringCore,
        *,
        max_body_bytes: int = 100 * 1024 * 1024,
        timeout: float = 60.0,
        threads: int = 4,
        metrics: Any = None,
        batching: bool = True,
        access_log: Any = None,
        auth: Any = None,
        multi_model: Any = None,
    ) -> None:
        from mlflow.version import VERSION

        from deployer.serving.v2 import V2Router

        if not isinstance(models, ModelSet):
            models = ModelSet.single(models)
        self.models = models
        self.max_body_bytes = max_body_bytes
        self.timeout = timeout
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="predict")
        self._version = VERSION.encode()
        self._openapi: bytes | None = None
        self.batching = batching
        self._v2 = V2Router(models)
        self.multi_model = multi_model
        #: an :class:`~deployer.serving.accesslog.AccessLog` or None (--no-access-log)
        self.access_log = access_log
        #: an :class:`~deployer.serving.auth.ApiKeyAuth` or None (no key configured)
        self.auth = auth
        self.request_ids = RequestIds()
        # path -> {method: handler}; handlers return (status, body, content_type, headers)
        self._routes: dict[str, dict[str, Any]] = {
            "/invocations": {"POST": self._invocations},
            "/ping": {"GET": self._ping},
            "/health": {"GET": self._ping},
            "/version": {"GET": self._get_version},
            "/openapi.json": {"GET": self._get_openapi},
            "/metrics": {"GET": self._get_metrics},
            "/v2": {"GET": self._v2_get},
            "/v2/health/live": {"GET": self._v2_get},
            "/v2/health/ready": {"GET": self._v2_get},
        }
        self._v2_infer_methods: dict[str, Any] = {"POST": self._v2_infer}
        self._v2_get_methods: dict[str, Any] = {"GET": self._v2_get}
        if multi_model is not None:
            self._routes["/models"] = multi_model.methods(self)
            self._models_routes = multi_model.model_routes(self)

    @property
    def core(self) -> ScoringCore | None:
        """The default model's core (None when there is no default or it is not ready)."""
        entry = self.models.default
        return entry.core if entry is not None else None

    # ------------------------------------------------------------------ ASGI entry
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await _lifespan(receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        metrics = self.metrics
        start = time.perf_counter()
        if metrics is not None:
            metrics.started()
        status = 500
        nbytes = 0
        route = "other"
        sent_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                sent_id = value
                break
        request_id = self.request_ids.pick(sent_id)
        try:
            methods: dict[str, Any] | None = self._routes.get(path)
            headers: Any = ()
            route = path
            auth = self.auth
            if methods is None:
                route = "other"
                if path.startswith("/v2/models/"):
                    kind = self._v2.route(path)
                    if kind == "infer":
                        methods, route = self._v2_infer_methods, "/v2/models/infer"
                    elif kind == "get":
                        methods, route = self._v2_get_methods, "/v2/models"
                elif path.startswith("/models/") and self.multi_model is not None:
                    found = self.multi_model.route(path, self._models_routes)
                    if found is not None:
                        methods, route = found
            if auth is not None and not auth.exempt(path) and not auth.allowed(scope["headers"]):
                status, body, ctype, headers = 401, UNAUTHORIZED_BODY, JSON, UNAUTHORIZED_HEADERS
            elif methods is None:
                status, body, ctype, headers = 404, _NOT_FOUND, JSON, ()
            else:
                handler = methods.get(method)
                if handler is None:
                    allow = ", ".join(methods).encode()
                    status, body, ctype, headers = 405, _NOT_ALLOWED, JSON, ((b"allow", allow),)
                else:
                    status, body, ctype, headers = await handler(scope, receive)
            if body.__class__ is StreamStart:  # a stream: counted once it ends
                nbytes = await self._send_stream(send, receive, body, request_id)
                if nbytes < 0:
                    status, nbytes = 499, -nbytes
            else:
                # Count the request before answering it: a client that reads /metrics right
                # after its response (possibly from another worker) must already see it.
                if metrics is not None:
                    metrics.finished(
                        route,
                        method,
                        status,
                        time.perf_counter() - start,
                        scope.get(MODEL_KEY, ""),
                    )
                    metrics = None
                nbytes = len(body)
                await _respond(send, status, body, ctype, headers, request_id)
        except _Disconnected:
            status = 499
        except Exception:  # noqa: BLE001 - the last line of defence: answer, never die
            _logger.exception("unhandled error on %s %s", method, path)
            status = 500
            try:
                await _respond(send, 500, _INTERNAL, JSON, (), request_id)
                nbytes = len(_INTERNAL)
            except Exception:  # noqa: BLE001 - response already started / client gone
                pass
        finally:
            if metrics is not None:
                metrics.finished(
                    route, method, status, time.perf_counter() - start, scope.get(MODEL_KEY, "")
                )
            if self.access_log is not None:
                self.access_log.record(
                    method,
                    scope.get("raw_path") or path.encode(),
                    status,
                    nbytes,
                    time.perf_counter() - start,
                    request_id,
                    scope.get(MODEL_KEY, ""),
                )

    # ------------------------------------------------------------------ body + limits
    async def _read_body(self, scope: Scope, receive: Receive, deadline: float) -> bytes:
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    if int(value) > limit:
                        raise _TooLarge
                except ValueError:
                    pass
                break
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        body = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise _TooLarge
            return body  # type: ignore[no-any-return]
        chunks = [body]
        total = len(body)
        loop = asyncio.get_running_loop()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError
            message = await asyncio.wait_for(receive(), remaining)
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def read_request_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body within the limits (None: larger than ``max_body_bytes``)."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            return await self._read_body(scope, receive, deadline)
        except _TooLarge:
            return None

    async def _score(
        self, scope: Scope, receive: Receive, work: Callable[[bytes, str | None], Any]
    ) -> tuple[Any, ...]:
        """Read the body and run ``work(body, content_type)`` in the pool, within the limits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            body = await self._read_body(scope, receive, deadline)
            content_type = _header(scope, b"content-type")
            future = loop.run_in_executor(self._executor, work, body, content_type)
            return await asyncio.wait_for(future, max(deadline - loop.time(), 0.001))
        except _TooLarge:
            message = (
                f"Request body is larger than the limit of {self.max_body_bytes} bytes. "
                "Send fewer rows per request, or raise the limit with --max-body-bytes "
                "(DEPLOYER_SERVE_MAX_BODY_BYTES)."
            )
            body = orjson.dumps({"error_code": "RESOURCE_EXHAUSTED", "message": message})
            return 413, body, JSON, ((b"connection", b"close"),)
        except asyncio.TimeoutError:
            return _timeout_response(self.timeout)

    # ------------------------------------------------------------------ handlers
    async def _invocations(self, scope: Scope, receive: Receive) -> tuple[Any, ...]:
        models = self.models
        if models.multi:
            name = _target_model(scope)
            entry = models.get(name) if name is not None else models.default
            if entry is None:
                return self.unknown_model(name)
            entry.last_used = time.monotonic()
        else:
            entry = models.default
            if entry is None:
                return self.unknown_model(None)
        return await self.invoke_model(entry, scope, receive)

    def unknown_model(self, name: str | None) -> tuple[Any, ...]:
        """404 for ``/invocations`` when no such model (or no default) is loaded."""
        if name is None:
            message = (
                "no default model: name one with the X-Deployer-Target-Model or "
                "X-Amzn-SageMaker-Target-Model header; "
                + self.models.unknown_message("").split("; ", 1)[1]
            )
        else:
            message = self.models.unknown_message(name)
        body = orjson.dumps(
            {
                "error_code": "RESOURCE_DOES_NOT_EXIST",
                "message": message,
                "models": self.models.names(),
            }
        )
        return 404, body, JSON, ()

    async def invoke_model(
        self, entry: ModelEntry, scope: Scope, receive: Receive
    ) -> tuple[Any, ...]:
        """``/invocations`` semantics for one model of the set (also the multi-model
        endpoint's ``/models/{name}/invoke``)."""
        scope[MODEL_KEY] = entry.name
        if entry.state != READY:
            body = orjson.dumps(
                {"error_code": "TEMPORARILY_UNAVAILABLE", "message": entry.error_message()}
            )
            return 503, body, JSON, ()
        state = entry.serving or model_state(entry)
        if state.streamable:
            return await self._invocations_streamable(entry, scope, receive)
        pooled = state.pooled
        if pooled is None:
            pooled = state.pooled = self._pooled_invoke(entry)
        if state.inline and _content_length(scope) <= min(INLINE_MAX_BODY, self.max_body_bytes):
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                result = await self._inline_invoke(
                    entry, message.get("body", b""), _header(scope, b"content-type")
                )
            else:
                result = await self._score(scope, _replaying(message, receive), pooled)
        else:
            result = await self._score(scope, receive, pooled)
        if isinstance(result, ScoringResult):
            return result.status, result.body, result.content_type.encode(), ()
        return result  # type: ignore[no-any-return]

    async def _invocations_streamable(
        self, entry: ModelEntry, scope: Scope, receive: Receive
    ) -> tuple[Any, ...]:
        """A model with ``predict_stream``: a stream if the request asks for one (see
        :mod:`deployer.serving.streaming`), else the ordinary answer."""
        from deployer.serving.streaming import EVENT_STREAM, start_stream

        accept = _header(scope, b"x-amzn-sagemaker-accept") or _header(scope, b"accept")
        pooled = self._pooled_invoke(entry)

        def work(body: bytes, content_type: str | None) -> Any:
            try:
                started = start_stream(entry.core, body, content_type, accept)
            except ScoringError as exc:
                return exc.to_result()
            return started if started is not None else pooled(body, content_type)

        result = await self._score(scope, receive, work)
        if isinstance(result, StreamStart):
            return 200, result, EVENT_STREAM.encode(), ()
        if isinstance(result, ScoringResult):
            return result.status, result.body, result.content_type.encode(), ()
        return result  # type: ignore[no-any-return]

    async def _send_stream(
        self, send: Send, receive: Receive, stream: Any, request_id: bytes
    ) -> int:
        """Send a started stream as server-sent events; returns the bytes sent (negative if
        the client went away first)."""
        from deployer.serving import streaming

        loop = asyncio.get_running_loop()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                    (b"x-request-id", request_id),
                ],
            }
        )
        sent = 0
        chunks = stream.chunks
        pending: asyncio.Future[Any] | None = None
        gone = loop.create_task(_wait_disconnect(receive))
        try:
            chunk = stream.first
            while True:
                if chunk is streaming.END:
                    tail = streaming.DONE if stream.done else b""
                    break
                data = streaming.event(chunk)
                sent += len(data)
                await send({"type": "http.response.body", "body": data, "more_body": True})
                pending = asyncio.ensure_future(
                    loop.run_in_executor(self._executor, streaming.next_chunk, chunks)
                )
                done, _ = await asyncio.wait(
                    {pending, gone}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if gone in done:
                    _logger.info("client went away during a stream: closing the model's generator")
                    return -sent
                if not done:
                    tail = streaming.error_event(
                        "DEADLINE_EXCEEDED",
                        f"The model produced no chunk within {self.timeout:g} s. Raise the "
                        "limit with --timeout (DEPLOYER_SERVE_TIMEOUT).",
                    )
                    break
                try:
                    chunk = pending.result()
                except ScoringError as exc:
                    tail = streaming.error_event(exc.error_code, exc.message)
                    break
                pending = None
            sent += len(tail)
            await send({"type": "http.response.body", "body": tail, "more_body": False})
            return sent
        finally:
            gone.cancel()
            self._close_stream(chunks, pending)

    def _close_stream(self, chunks: Any, pending: Any) -> None:
        """Close the model's generator once no ``next()`` is running on it."""
        from deployer.serving.streaming import close_quietly

        def close(_: Any = None) -> None:
            try:
                self._executor.submit(close_quietly, chunks)
            except RuntimeError:  # pool shut down: the server is stopping
                close_quietly(chunks)

        if pending is not None and not pending.done():
            pending.add_done_callback(close)
        else:
            close()

    async def _inline_invoke(self, entry: ModelEntry, body: bytes, content_type: str | None) -> Any:
        """A small request for a proven-quick model, on the event loop (batched if allowed)."""
        core = entry.core
        if self.batching and core.batchable:
            prepared = core.try_prepare(body, content_type)
            if isinstance(prepared, ScoringResult):
                return prepared
            if prepared is not None:
                return await self._enqueue(entry, prepared)
        started = time.perf_counter()
        result = core.try_fast(body, content_type)
        self._observe_fast(entry, started, result is not None)
        if result is None:
            result = await self._run(core.invoke_general, body, content_type)
        return result

    async def _enqueue(self, entry: ModelEntry, prepared: Any) -> Any:
        """Wait for ``prepared``'s share of this loop turn's batch (of this model)."""
        state = entry.serving
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        state.pending.append((prepared, future))
        state.pending_rows += prepared.matrix.shape[0]
        if len(state.pending) == 1:
            loop.call_soon(self._flush, entry)
        if state.pending_rows >= MAX_BATCH_ROWS:
            self._flush(entry)
        return await future

    def _flush(self, entry: ModelEntry) -> None:
        """Score every request for ``entry`` parsed in this event-loop turn in one call."""
        state = entry.serving
        batch, state.pending, state.pending_rows = state.pending, [], 0
        if not batch:
            return
        started = time.perf_counter()
        try:
            results = entry.core.run_batch([prepared for prepared, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - never leave a request hanging
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self._observe_fast(entry, started, True)
        if self.metrics is not None:
            self.metrics.batched(len(batch))
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _pooled_invoke(self, entry: ModelEntry) -> Callable[[bytes, str | None], ScoringResult]:
        """In the pool: fast path (timed, to decide about inlining) then MLflow's path."""
        core = entry.core

        def run(body: bytes, content_type: str | None) -> ScoringResult:
            if core.has_fast_path:
                started = time.perf_counter()
                result = core.try_fast(body, content_type)
                self._observe_fast(entry, started, result is not None)
                if result is not None:
                    return result
            return core.invoke_general(body, content_type)  # type: ignore[no-any-return]

        return run

    def _observe_fast(self, entry: ModelEntry, started: float, answered: bool) -> None:
        """Inline policy: run the fast path on the event loop only while it is proven quick.

        Thread hand-off costs ~70 us per request, a third of a one-row request's cost. But a
        call on the event loop cannot be timed out, so it is reserved for models whose fast
        path is plain scikit-learn arithmetic (``core.inline_safe``: user Python code may
        sleep, do I/O or hang, and must stay where a timeout can answer for it) and that
        answered INLINE_WARMUP requests in a row within INLINE_MAX_SECONDS. INLINE_STRIKES
        slow calls in a row send the worker back to the pool until another warm-up streak (a
        single one is more likely this process losing the CPU for a moment than the model).
        """
        if not answered:
            return
        state = entry.serving
        if time.perf_counter() - started > INLINE_MAX_SECONDS:
            state.quick_streak = 0
            state.slow_streak += 1
            if state.slow_streak >= INLINE_STRIKES or not state.inline:
                state.inline = False
            return
        state.slow_streak = 0
        if not state.inline:
            state.quick_streak += 1
            if state.quick_streak >= INLINE_WARMUP and entry.core.inline_safe:
                state.inline = True

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._executor, fn, *args), self.timeout
            )
        except asyncio.TimeoutError:
            return _timeout_response(self.timeout)

    async def _ping(self, scope: Scope, receive: Receive) -> tuple[Any, ...]:
        return 200, b"\n", JSON, ()

    async def _get_version(self, scope: Scope, receive: Receive) -> tuple[Any, ...]:
        return 200, self._version, JSON, ()

    async def _get_openapi(self, scope: Scope, receive: Receive) -> tuple[Any, ...]:
        """The default model's API (no default model: 404)."""
        if self._openapi is None:
            from deployer.serving.openapi import openapi_document

            core = self.core
            if core is None:
                return 404, _NOT_FOUND, JSON, ()
            self._openapi = orjson.dumps(openapi_document(core, self))
        return 200, self._openapi, JSON, ()

    async def _get_metrics(self, scope: Scope, receive: Receive) -> tuple[Any, ...]:
        if self.metrics is None:
            return 404, _NOT_FOUND, JSON, ()
        body, ctype = self.metrics.render()
        return 200, body, ctype.encode(), ()

    async def _v2_get(self, scope: Scope, receive: Receive) -> tuple[Any, ...]:
        path = scope["path"]
        if path.startswith("/v2/models/"):
            name = self._v2.model_name(path)
            if self.models.get(name) is not None:  # known names only: labels, log lines
                scope[MODEL_KEY] = name
        status, body = self._v2.get(path)
        return status, body, JSON, ()

    async def _v2_infer(self, scope: Scope, receive: Receive) -> tuple[Any, ...]:
        """``POST /v2/models/{name}/infer``: the same path as ``/invocations`` - inline and
        batched while the fast path is proven quick, else the pool (fast path timed there)."""
        path = scope["path"]
        entry = self._v2.entry(path)
        if entry.__class__ is not ModelEntry:  # the refusal (unknown / not ready)
            return entry.status, entry.body, JSON, ()  # type: ignore[union-attr]
        scope[MODEL_KEY] = entry.name
        if self.models.multi:
            entry.last_used = time.monotonic()
        state = entry.serving or model_state(entry)
        pooled = self._v2_pooled(entry, path)
        if state.inline and _content_length(scope) <= min(INLINE_MAX_BODY, self.max_body_bytes):
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                result = await self._inline_v2(entry, path, message.get("body", b""))
            else:
                result = await self._score(scope, _replaying(message, receive), pooled)
        else:
            result = await self._score(scope, receive, pooled)
        if isinstance(result, ScoringResult):
            return result.status, result.body, result.content_type.encode(), ()
        return result  # type: ignore[no-any-return]

    def _v2_pooled(
        self, entry: ModelEntry, path: str
    ) -> Callable[[bytes, str | None], ScoringResult]:
        """In the pool: the V2 fast path (timed, for the inline policy), then MLflow's path."""
        v2 = entry.v2

        def run(body: bytes, content_type: str | None) -> ScoringResult:
            if entry.core.has_fast_path:
                started = time.perf_counter()
                result = v2.try_fast(path, body)
                self._observe_fast(entry, started, result is not None)
                if result is not None:
                    return result  # type: ignore[no-any-return]
            return v2.infer_general(path, body)  # type: ignore[no-any-return]

        return run

    async def _inline_v2(self, entry: ModelEntry, path: str, body: bytes) -> Any:
        """A small V2 request for a proven-quick model, on the event loop, batched with the
        other requests (V2 and ``/invocations``) of the same model and loop turn."""
        v2 = entry.v2
        if self.batching and entry.core.batchable:
            prepared = v2.prepare(path, body)
            if isinstance(prepared, ScoringResult):
                return prepared
            if prepared is not None:
                return await self._enqueue(entry, prepared)
        started = time.perf_counter()
        result = v2.try_fast(path, body)
        self._observe_fast(entry, started, result is not None)
        if result is None:
            result = await self._run(v2.infer_general, path, body)
        return result

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _timeout_response(timeout: float) -> tuple[Any, ...]:
    message = (
        f"Request processing time exceeded limit ({timeout:g} s). Send fewer rows "
        "per request, or raise the limit with --timeout (DEPLOYER_SERVE_TIMEOUT)."
    )
    return 504, orjson.dumps({"error_code": "DEADLINE_EXCEEDED", "message": message}), JSON, ()


def _content_length(scope: Scope) -> int:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 1 << 62
    return 1 << 62  # chunked: unknown size, never inline


def _replaying(first: dict[str, Any], receive: Receive) -> Receive:
    """A receive() that yields ``first`` again, then continues with the real stream."""
    pending = [first]

    async def replay() -> dict[str, Any]:
        if pending:
            return pending.pop()
        return await receive()

    return replay


def _target_model(scope: Scope) -> str | None:
    """The model a request names in a target-model header (ours wins over SageMaker's)."""
    found = None
    for key, value in scope["headers"]:
        if key in TARGET_HEADERS:
            name = value.decode("latin-1").strip()
            if key == TARGET_HEADERS[0]:
                return name
            found = name
    return found


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes, headers: Any, request_id: bytes = b""
) -> None:
    raw = [
        (b"content-type", content_type),
        (b"content-length", b"%d" % len(body)),
        (b"x-request-id", request_id),
    ]
    if headers:
        raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
