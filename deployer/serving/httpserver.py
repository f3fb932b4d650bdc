"""A small HTTP/1.1 server for one ASGI application: httptools on uvloop.

Why not uvicorn (which ``--http uvicorn`` still selects): measured here on a one-row
request, uvicorn's per-request machinery costs ~35 us of CPU more than a bare httptools
protocol - two ``send()`` syscalls per response (head, then body), an ASGI middleware layer,
a ``RequestResponseCycle`` with flow-control objects - and the model itself only needs
~30 us per request once batched. This server keeps the ASGI contract (the app is the same
``ScoringApp``) but writes each response with one syscall and keeps the per-request Python
work to a few attribute sets.

What it does, and nothing more: HTTP/1.1 and 1.0, keep-alive, pipelining (requests are
answered in order, one app task at a time per connection), ``Expect: 100-continue``,
streamed request bodies with read back-pressure, write back-pressure, a 64 KiB header limit
(431), a keep-alive/idle timeout that also bounds how long headers may take to arrive,
``400`` on unparsable input, and graceful shutdown (stop accepting, close idle
connections, let in-flight requests finish, then close). No TLS, no HTTP/2, no websockets:
the server sits behind SageMaker/Azure/Kubernetes front ends that terminate those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections import deque
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

_logger = logging.getLogger("deployer.serving")

MAX_HEADER_BYTES = 64 * 1024
READ_HIGH_WATER = 1024 * 1024  # buffered request body bytes before we stop reading
MAX_PIPELINED = 16
LINGER_SECONDS = 2.0
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_CLOSE = b"connection: close\r\n"


def _simple_response(status: int, body: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, _REASONS.get(status, b""), len(body), body)
    )


class _State:
    def __init__(self) -> None:
        self.connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()


class _Cycle:
    """One request/response on a connection: the ASGI ``receive`` and ``send`` callables."""

    __slots__ = (
        "proto",
        "scope",
        "keep_alive",
        "expect_continue",
        "chunks",
        "buffered",
        "complete",
        "disconnected",
        "waiter",
        "head",
        "started",
        "finished",
        "head_only",
        "delivered",
        "chunked",
    )

    def __init__(
        self, proto: HttpProtocol, scope: dict[str, Any], keep_alive: bool, expect_continue: bool
    ) -> None:
        self.proto = proto
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.complete = False
        self.disconnected = False
        self.waiter: asyncio.Future[None] | None = None
        self.head: bytes | None = None
        self.started = False
        self.finished = False
        self.head_only = scope["method"] == "HEAD"
        self.delivered = False  # the whole body was handed to the app
        self.chunked = False  # response framed with Transfer-Encoding: chunked

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        if self.disconnected or self.finished:
            return {"type": "http.disconnect"}
        if self.delivered:
            # ASGI: once the body is read, receive() waits for the client to go away (a
            # streaming response watches it to stop the model's generator)
            while not self.disconnected and not self.finished:
                self.waiter = self.proto.loop.create_future()
                await self.waiter
                self.waiter = None
            return {"type": "http.disconnect"}
        if self.expect_continue:
            self.expect_continue = False
            if not self.complete and not self.chunks:
                self.proto.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not self.chunks and not self.complete and not self.disconnected:
            self.proto.resume_reading()
            self.waiter = self.proto.loop.create_future()
            await self.waiter
            self.waiter = None
        if not self.chunks and self.disconnected:
            return {"type": "http.disconnect"}
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks = []
        self.buffered = 0
        self.proto.resume_reading()
        if self.complete:
            self.delivered = True
        return {"type": "http.request", "body": body, "more_body": not self.complete}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("response already started")
            self.started = True
            status = int(message["status"])
            lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
            for name, value in message.get("headers", ()):
                if name.lower() == b"connection" and b"close" in value.lower():
                    self.keep_alive = False
                lines.append(b"%s: %s\r\n" % (name, value))
            self.head = b"".join(lines)
            return
        if kind != "http.response.body" or not self.started or self.finished:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self.head is not None:
            # ScoringApp sends content-length with every whole response; a response without
            # it and with more body to come (a stream) is sent with chunked framing on
            # HTTP/1.1, or delimited by closing the connection on HTTP/1.0.
            has_length = b"\ncontent-length:" in self.head.lower()
            if not has_length and not more:
                self.head += b"content-length: %d\r\n" % len(body)
            elif not has_length:
                if self.scope["http_version"] == "1.1" and not self.head_only:
                    self.chunked = True
                    self.head += b"transfer-encoding: chunked\r\n"
                else:
                    self.keep_alive = False
            if not more and not self.complete:
                self.keep_alive = False  # unread body: the connection cannot be reused
            head = self.head + (
                b"\r\n" if self.keep_alive and self.proto.accepting else _CLOSE + b"\r\n"
            )
            self.head = None
            if self.chunked:
                body = _frame(body, more)
            self.proto.write(head if self.head_only else head + body)
        elif self.chunked:
            self.proto.write(_frame(body, more))
        elif body and not self.head_only:
            self.proto.write(body)
        if not more:
            self.finished = True
            self.wake()
        elif self.proto.write_paused:
            await self.proto.drain()

    async def run(self, app: Any) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except Exception:  # noqa: BLE001 - one request's failure stays that request's
            _logger.exception(
                "error in ASGI app for %s %s", self.scope["method"], self.scope["path"]
            )
            if not self.started and not self.proto.closed:
                self.proto.write(_simple_response(500, b"Internal Server Error"))
            self.keep_alive = False
            self.finished = True
        finally:
            if not self.finished:
                self.keep_alive = False
            self.proto.cycle_done(self)


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(
        self, app: Any, state: _State, loop: asyncio.AbstractEventLoop, keep_alive_timeout: float
    ) -> None:
        self.app = app
        self.state = state
        self.loop = loop
        self.keep_alive_timeout = keep_alive_timeout
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.parsing: _Cycle | None = None
        self.active: _Cycle | None = None
        self.queue: deque[_Cycle] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.read_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.accepting = True
        self.closed = False
        self.discarding = False

    # ---------------------------------------------------------------- transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server = _addr(transport.get_extra_info("sockname"))
        self.client = _addr(transport.get_extra_info("peername"))
        self.state.connections.add(self)
        self._arm_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connections.discard(self)
        self._disarm_timer()
        for cycle in (self.active, self.parsing, *self.queue):
            if cycle is not None:
                cycle.disconnected = True
                cycle.wake()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, b"Upgrade is not supported")
        except Exception as exc:  # noqa: BLE001 - parse errors, errors raised in callbacks
            if isinstance(exc, _HeaderTooLarge) or isinstance(exc.__context__, _HeaderTooLarge):
                self._reject(431, b"Request headers too large")
            else:
                if not isinstance(exc, httptools.HttpParserError):
                    _logger.exception("unexpected error parsing a request")
                self._reject(400, b"Invalid HTTP request")

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            self.drain_waiter = self.loop.create_future()
            await self.drain_waiter

    # ---------------------------------------------------------------- parser callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise _HeaderTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise _HeaderTooLarge
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": parser.get_http_version(),
            "server": self.server,
            "client": self.client,
            "scheme": "http",
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": unquote(raw_path.decode("ascii", "replace")),
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "headers": self.headers,
        }
        expect = any(n == b"expect" and v.lower() == b"100-continue" for n, v in self.headers)
        cycle = _Cycle(self, scope, parser.should_keep_alive(), expect)
        self.parsing = cycle
        if self.active is None:
            self._start(cycle)
        else:
            self.queue.append(cycle)
            if len(self.queue) >= MAX_PIPELINED:
                self.pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is None or cycle.finished:
            return  # the app answered already (e.g. 413); the rest is discarded
        cycle.chunks.append(body)
        cycle.buffered += len(body)
        if cycle.buffered > READ_HIGH_WATER:
            self.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self.parsing
        if cycle is not None:
            cycle.complete = True
            cycle.wake()
        self.parsing = None

    # ---------------------------------------------------------------- request flow
    def _start(self, cycle: _Cycle) -> None:
        self._disarm_timer()
        self.active = cycle
        task = self.loop.create_task(cycle.run(self.app))
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    def cycle_done(self, cycle: _Cycle) -> None:
        self.active = None
        if self.closed:
            return
        if not cycle.complete:
            self._linger()
            return
        if not cycle.keep_alive or not self.accepting:
            self.close()
            return
        if self.queue:
            self._start(self.queue.popleft())
        else:
            self._arm_timer()
        self.resume_reading()

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def _linger(self) -> None:
        """Answered before the body was read (413, 504): send FIN after the response but keep
        reading (and dropping) for a moment, so the client sees the answer rather than the
        connection reset a close with unread data would cause."""
        self.discarding = True
        self.queue.clear()
        self.resume_reading()
        transport = self.transport
        if transport is not None and transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                transport.write_eof()
        self._disarm_timer()
        self.timer = self.loop.call_later(LINGER_SECONDS, self.close)

    def shutdown(self) -> None:
        """Graceful stop: idle connections close now, busy ones after their response."""
        self.accepting = False
        if self.active is None:
            self.close()

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    def _reject(self, status: int, message: bytes) -> None:
        if self.active is None:
            self.write(_simple_response(status, message))
            self.close()
        else:  # answer the request in progress, then hang up
            self.accepting = False
            self.pause_reading()
            self.queue.clear()

    def _arm_timer(self) -> None:
        self._disarm_timer()
        self.timer = self.loop.call_later(self.keep_alive_timeout, self._idle)

    def _disarm_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _idle(self) -> None:
        if self.active is None:
            self.close()


def _frame(body: bytes, more: bool) -> bytes:
    """One chunk of a chunked response (and the last-chunk marker when the body ends)."""
    out = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
    return out if more else out + b"0\r\n\r\n"


class _HeaderTooLarge(Exception):
    pass


def _addr(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


async def serve(
    app: Any,
    sock: socket.socket,
    *,
    graceful_timeout: float = 25.0,
    keep_alive_timeout: float = 75.0,
    handle_signals: bool = True,
    stop_requested: Any = None,
) -> None:
    """Serve ``app`` on the listening ``sock`` until SIGTERM/SIGINT, then stop gracefully.

    ``stop_requested()`` reports a signal caught before this loop took over signals.
    """
    loop = asyncio.get_running_loop()
    state = _State()
    server = await loop.create_server(
        lambda: HttpProtocol(app, state, loop, keep_alive_timeout), sock=sock, backlog=2048
    )
    stop = asyncio.Event()
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    if stop_requested is not None and stop_requested():
        stop.set()
    try:
        await stop.wait()
    finally:
        server.close()
        for conn in list(state.connections):
            conn.shutdown()
        deadline = time.monotonic() + graceful_timeout
        while (state.connections or state.tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(state.connections):
            if conn.transport is not None:
                conn.transport.abort()
        for task in list(state.tasks):
            task.cancel()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
