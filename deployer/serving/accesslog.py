"""Request ids and the access log: one line per request on stderr.

Text: ``2026-12-03T18:00:00Z access POST /invocations 200 25B 1.23ms id=4f2a...-1c model=iris``
JSON (``--log-format json``): ``{"ts": ..., "type": "access", "method": ..., "path": ...,
"status": ..., "bytes": ..., "ms": ..., "request_id": ..., "model": ...}``.

``model`` is the model the request was for (names are checked: no spaces or control
characters); text lines leave the field out, and JSON lines say null, for routes that are not a
model's (``/ping``, ``/metrics``). gRPC calls are logged too, with method ``GRPC`` and the
RPC as the path (``grpc:ModelInfer``).

Why it is built this way: the server answers a one-row request in ~150 us, so a per-request
``logging`` call (a LogRecord, a formatter, a lock, a write syscall: ~10 us) would be a visible
tax. Lines are formatted with plain string operations, the timestamp is reformatted once a
second, and the lines of one event-loop turn are written together with one ``os.write`` (in
pieces of at most PIPE_BUF bytes at line boundaries, so workers sharing stderr never
interleave within a line). Nothing here reads headers other than ``X-Request-Id``: credentials
cannot reach the log. Paths are logged as the client sent them (percent-encoded), with
anything unprintable escaped, so a request cannot forge log lines.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from typing import Any

import orjson

#: A client's X-Request-Id is echoed only if it looks like an id (no log or header injection).
_SANE_ID = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")
_PIPE_BUF = 4096
_MAX_PATH = 256


class RequestIds:
    """``X-Request-Id`` values: the client's if sane, else ``<process prefix>-<counter>``.

    A random per-process prefix plus a counter is unique across workers and restarts and
    costs a fraction of a uuid4 per request."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex().encode()
        self._counter = itertools.count(1)

    def pick(self, sent: bytes | None) -> bytes:
        if sent is not None and _SANE_ID.fullmatch(sent):
            return sent
        return b"%s-%x" % (self._prefix, next(self._counter))


class AccessLog:
    """Buffers access lines and writes them once per event-loop turn to ``fd``."""

    def __init__(self, fmt: str = "text", fd: int = 2) -> None:
        self.json = fmt == "json"
        self.fd = fd
        self._lines: list[bytes] = []
        self._second = -1
        self._stamp = ""

    def _now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        return self._stamp

    def record(
        self,
        method: str,
        raw_path: bytes,
        status: int,
        nbytes: int,
        seconds: float,
        request_id: bytes,
        model: str = "",
    ) -> None:
        path = _printable(raw_path)
        ms = round(seconds * 1000.0, 3)
        if self.json:
            line = (
                orjson.dumps(
                    {
                        "ts": self._now(),
                        "type": "access",
                        "method": method,
                        "path": path,
                        "status": status,
                        "bytes": nbytes,
                        "ms": ms,
                        "request_id": request_id.decode("ascii"),
                        "model": model or None,
                    }
                )
                + b"\n"
            )
        else:
            line = (
                f"{self._now()} access {method} {path} {status} {nbytes}B {ms:.2f}ms "
                f"id={request_id.decode('ascii')}{' model=' + model if model else ''}\n"
            ).encode()
        self._lines.append(line)
        if len(self._lines) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (tests calling the app synchronously)
                self.flush()

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        piece: list[bytes] = []
        size = 0
        for line in lines:
            if size + len(line) > _PIPE_BUF and piece:
                _write(self.fd, b"".join(piece))
                piece, size = [], 0
            piece.append(line)
            size += len(line)
        if piece:
            _write(self.fd, b"".join(piece))


def _write(fd: int, data: bytes) -> None:
    try:
        while data:
            written = os.write(fd, data)
            data = data[written:]
    except OSError:  # stderr closed: serving goes on without the access log
        pass


def _printable(raw_path: Any) -> str:
    text = raw_path.decode("latin-1") if isinstance(raw_path, (bytes, bytearray)) else str(raw_path)
    if len(text) > _MAX_PATH:
        text = text[:_MAX_PATH] + "..."
    if text.isascii() and text.isprintable() and " " not in text:
        return text
    return text.encode("unicode_escape").decode("ascii").replace(" ", "%20")
