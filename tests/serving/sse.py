"""A small server-sent-events client for the streaming tests (stdlib http.client)."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stream:
    status: int
    headers: dict[str, str]
    events: list[str] = field(default_factory=list)  # each event's data, in order
    arrival: list[float] = field(default_factory=list)  # seconds since the request
    body: bytes = b""  # the whole body when the answer is not a stream

    def chunks(self) -> list[Any]:
        return [json.loads(e) for e in self.events if e != "[DONE]"]

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1] == "[DONE]"


def read_events(resp: http.client.HTTPResponse, limit: int | None = None,
                started: float | None = None) -> tuple[list[str], list[float]]:
    """Read ``data:`` events until the stream ends (or ``limit`` events)."""
    events: list[str] = []
    arrival: list[float] = []
    started = time.monotonic() if started is None else started
    data: list[str] = []
    while limit is None or len(events) < limit:
        line = resp.readline()
        if not line:
            break
        text = line.decode().rstrip("\r\n")
        if text.startswith("data:"):
            data.append(text[5:].lstrip(" "))
        elif text == "" and data:
            events.append("\n".join(data))
            arrival.append(time.monotonic() - started)
            data = []
    return events, arrival


def open_stream(host: str, port: int, body: dict[str, Any] | bytes,
                headers: dict[str, str] | None = None, path: str = "/invocations",
                timeout: float = 60.0) -> tuple[http.client.HTTPConnection,
                                                http.client.HTTPResponse]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", path, body=payload,
                 headers={"Content-Type": "application/json", **(headers or {})})
    return conn, conn.getresponse()


def stream(host: str, port: int, body: dict[str, Any] | bytes,
           headers: dict[str, str] | None = None, timeout: float = 60.0) -> Stream:
    started = time.monotonic()
    conn, resp = open_stream(host, port, body, headers, timeout=timeout)
    try:
        out = Stream(resp.status, {k.lower(): v for k, v in resp.getheaders()})
        if out.headers.get("content-type", "").startswith("text/event-stream"):
            out.events, out.arrival = read_events(resp, started=started)
            assert resp.read() == b""
        else:
            out.body = resp.read()
        return out
    finally:
        conn.close()
