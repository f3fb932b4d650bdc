"""Streaming predictions: a pyfunc's ``predict_stream`` as server-sent events.

When: the model's pyfunc is streamable (MLflow saved ``streamable: true``: ChatModel,
ChatAgent, ResponsesAgent, LangChain, a PythonModel with ``predict_stream``) and a JSON
``POST /invocations`` asks for it, with ``"stream": true`` in the body (MLflow's and OpenAI's
request shapes) or ``Accept: text/event-stream`` (SageMaker's InvokeEndpointWithResponseStream
forwards the client's ``X-Amzn-SageMaker-Accept`` as ``Accept``). Any other request, and any
request to a model that cannot stream, is answered as one JSON body, as MLflow's server does.

Wire format (what MLflow's own streaming client, ``mlflow.deployments`` ``predict_stream``,
and OpenAI's clients read): one ``data: <json>\\n\\n`` event per chunk, in the chunk's own
shape - ``chat.completion.chunk`` objects for a ChatModel (OpenAI's chat streaming format),
``ChatAgentChunk`` / ``ResponsesAgentStreamEvent`` dicts for agents, whatever a custom model
yields (JSON-encoded) - then ``data: [DONE]\\n\\n``, except for ResponsesAgent models, whose
format (OpenAI's Responses API) ends with the stream itself. An error after the first chunk
ends the stream with ``data: {"error": {"code": ..., "message": ...}}`` and no ``[DONE]``;
an error before it is an ordinary HTTP error response (400/504), as for ``predict``.

The model's generator runs in the prediction thread pool one ``next()`` at a time; the
request timeout bounds the wait for each chunk; when the client goes away the generator is
closed (``GeneratorExit`` inside the model) once its current ``next()`` returns. Each
``next()`` may run on another pool thread, so the generator is always advanced inside one
:class:`contextvars.Context` of its own (:class:`_InContext`): MLflow's ``predict_stream``
sets its prediction context variable at the first chunk and resets it at the last, and a
reset from another thread's context raises ``ValueError`` at the end of the stream.
"""

from __future__ import annotations

import contextvars
import json
import logging
import traceback
from collections.abc import Iterator
from typing import Any

import orjson

from deployer.serving.core import (
    CONTENT_TYPE_JSON,
    ScoringCore,
    ScoringError,
    bad_request,
    check_content_type,
    decode_json,
)

_logger = logging.getLogger("deployer.serving")

EVENT_STREAM = "text/event-stream"
DONE = b"data: [DONE]\n\n"
#: Loader modules whose stream format has no ``[DONE]`` terminator.
_NO_DONE = frozenset({"mlflow.pyfunc.loaders.responses_agent"})


class End:
    """Returned by :func:`next_chunk` when the generator is exhausted."""


END = End()


def is_streamable(core: ScoringCore) -> bool:
    """MLflow loaded a ``predict_stream`` for this model."""
    return getattr(core.pyfunc_model, "_predict_stream_fn", None) is not None


def ends_with_done(core: ScoringCore) -> bool:
    return core.flavor not in _NO_DONE


def wants_stream(payload: Any, accept: str | None) -> bool:
    if not isinstance(payload, dict):
        return False
    flag = payload.get("stream")
    if flag is True:
        return True
    return flag is None and accept is not None and EVENT_STREAM in accept


class StreamStart:
    """A started stream: its first chunk (already produced) and the rest of the generator."""

    __slots__ = ("first", "chunks", "done")

    def __init__(self, first: Any, chunks: Iterator[Any], done: bool) -> None:
        self.first = first
        self.chunks = chunks
        self.done = done


def start_stream(
    core: ScoringCore, body: bytes, content_type: str | None, accept: str | None
) -> StreamStart | None:
    """In the pool: a :class:`StreamStart` if this request streams, else None.

    Raises :class:`ScoringError` for requests that ask to stream but cannot (bad input,
    the model failing before its first chunk)."""
    if b'"stream"' not in body and (accept is None or EVENT_STREAM not in accept):
        return None
    mime, refusal = check_content_type(content_type)
    if refusal is not None or mime != CONTENT_TYPE_JSON:
        return None
    try:
        payload = decode_json(body)
    except ScoringError:
        return None  # the ordinary path answers with MLflow's error
    if not wants_stream(payload, accept):
        return None
    data, params = core.parse_json_payload(payload)
    if isinstance(data, dict) and "stream" in data and not _schema_has(core, "stream"):
        data = {k: v for k, v in data.items() if k != "stream"}  # not the model's input
    context = contextvars.copy_context()
    chunks = _call(
        lambda: _InContext(
            context.run(lambda: iter(core.pyfunc_model.predict_stream(data, params=params))),
            context,
        )
    )
    first = next_chunk(chunks)  # may be END: an empty stream
    return StreamStart(first, chunks, ends_with_done(core))


class _InContext:
    """The model's generator, advanced and closed always in the same ``context``."""

    __slots__ = ("_chunks", "_context")

    def __init__(self, chunks: Iterator[Any], context: contextvars.Context) -> None:
        self._chunks = chunks
        self._context = context

    def __iter__(self) -> _InContext:
        return self

    def __next__(self) -> Any:
        return self._context.run(next, self._chunks)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            self._context.run(close)


def next_chunk(chunks: Iterator[Any]) -> Any:
    """The generator's next chunk, :data:`END`, or a :class:`ScoringError` raised."""
    return _call(lambda: next(chunks, END))


def _call(fn: Any) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return fn()
    except ScoringError:
        raise
    except MlflowException as exc:
        _logger.warning("streaming prediction failed: %s", exc.message)
        raise ScoringError.from_mlflow(exc) from None
    except Exception as exc:  # noqa: BLE001 - the model's failure becomes a client error
        _logger.warning("model raised while streaming:\n%s", traceback.format_exc())
        raise bad_request(
            f"The model raised {type(exc).__name__} while streaming its prediction. Verify"
            " that the request is compatible with the model; the server log has the details."
        ) from None


def close_quietly(chunks: Iterator[Any]) -> None:
    """Close the model's generator (runs its ``finally`` blocks); in the pool."""
    close = getattr(chunks, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:  # noqa: BLE001 - a generator failing on close must not matter
        _logger.debug("error closing a prediction stream", exc_info=True)


def event(chunk: Any) -> bytes:
    """One server-sent event holding the chunk as JSON."""
    return b"data: " + _dumps(chunk) + b"\n\n"


def error_event(error_code: str, message: str) -> bytes:
    return b"data: " + orjson.dumps({"error": {"code": error_code, "message": message}}) + b"\n\n"


def _dumps(chunk: Any) -> bytes:
    try:
        return orjson.dumps(chunk, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        from mlflow.utils.proto_json_utils import _get_jsonable_obj

        return json.dumps(_get_jsonable_obj(chunk, pandas_orient="records"), default=str).encode()


def _schema_has(core: ScoringCore, name: str) -> bool:
    schema = core.input_schema
    if schema is None:
        return True  # no schema: pass the body through untouched, as MLflow does
    try:
        return name in (schema.input_names() or [])
    except Exception:  # noqa: BLE001 - unnamed (tensor) schemas
        return True
