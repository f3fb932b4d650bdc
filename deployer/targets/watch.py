"""``deployer watch``: a long-running :mod:`deployer.targets.sync` that follows the registry.

Triggers: a poll every ``interval`` seconds (every entry), and/or MLflow 3 webhooks
(``model_version_alias.created`` / ``.deleted``: the entries whose ``models:/NAME@ALIAS`` the
event names). Deliveries are verified exactly as MLflow signs them (``X-MLflow-Signature: v1,``
base64 HMAC-SHA256 of ``{delivery id}.{timestamp}.{body}`` with the webhook's secret); a bad or
missing signature is answered 401 and logged, a delivery older than ``tolerance`` seconds (or
from the future) is refused the same way, and a delivery id seen before is ignored (replay).

Entries are synced by one loop, one entry at a time, so an endpoint never sees two deploys at
once; each decision is one JSON line on ``log_line``. A version whose deploy failed (e.g. its
image failed verification: the executor rolled the endpoint back to what it served) is not tried
again until the alias names another version. State is what the endpoints and the registry say:
the only thing kept in memory is that last failure, so a restart tries a failed version once
more. :meth:`Watch.stop` (SIGTERM) ends the loop after the deploy in flight; the CLI's handler
also asks the executor to stop that deploy before its next call
(:func:`deployer.targets.executor.interrupt`), which rolls it back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from deployer.targets.sync import (
    DEPLOY,
    DEPLOYED,
    FAILED,
    EntryPlan,
    SyncEntry,
    apply_entry,
    plan_entry,
)

log = logging.getLogger("deployer")

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"
#: The events that move what an alias names.
ALIAS_EVENTS = {("model_version_alias", "created"), ("model_version_alias", "deleted")}
MAX_BODY = 1 << 20


class WebhookRejected(Exception):
    """A delivery that must not be acted on: ``status`` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class AliasEvent:
    """A verified ``model_version_alias`` delivery."""

    delivery_id: str
    action: str
    name: str
    alias: str
    version: str | None


class WebhookVerifier:
    """Checks MLflow's signature, the delivery's age, and that its id is new."""

    def __init__(
        self, secret: str, *, tolerance: float = 300.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = secret.encode()
        self.tolerance = tolerance
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def sign(self, delivery_id: str, timestamp: str, body: bytes) -> str:
        content = f"{delivery_id}.{timestamp}.".encode() + body
        digest = hmac.new(self._secret, content, hashlib.sha256).digest()
        return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"

    def verify(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any] | None:
        """The delivery's JSON payload; None for a replay (already handled: ignore it).
        Raises :class:`WebhookRejected` (401) for a bad signature or a stale timestamp."""
        get = {k.lower(): v for k, v in headers.items()}.get
        delivery_id = get(DELIVERY_ID_HEADER.lower()) or ""
        timestamp = get(TIMESTAMP_HEADER.lower()) or ""
        signature = get(SIGNATURE_HEADER.lower()) or ""
        if not (delivery_id and timestamp and signature):
            raise WebhookRejected(401, "unsigned delivery (signature, timestamp or id missing)")
        expected = self.sign(delivery_id, timestamp, body)
        if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
            raise WebhookRejected(401, "bad signature")
        try:
            sent = int(timestamp)
        except ValueError:
            raise WebhookRejected(401, "bad timestamp") from None
        now = self._clock()
        if abs(now - sent) > self.tolerance:
            raise WebhookRejected(401, f"stale delivery (timestamp {sent}, now {int(now)})")
        with self._lock:
            self._seen = {k: t for k, t in self._seen.items() if now - t <= 2 * self.tolerance}
            if delivery_id in self._seen:
                return None
            self._seen[delivery_id] = now
        try:
            payload = json.loads(body)
        except ValueError:
            raise WebhookRejected(400, "the body is not JSON") from None
        if not isinstance(payload, dict):
            raise WebhookRejected(400, "the body is not a JSON object")
        return payload


def alias_event(delivery_id: str, payload: Mapping[str, Any]) -> AliasEvent | None:
    """The alias change a payload describes (None: another kind of event)."""
    if (payload.get("entity"), payload.get("action")) not in ALIAS_EVENTS:
        return None
    data = payload.get("data") or {}
    if not isinstance(data, dict) or not data.get("name") or not data.get("alias"):
        return None
    version = data.get("version")
    return AliasEvent(
        delivery_id,
        str(payload["action"]),
        str(data["name"]),
        str(data["alias"]),
        None if version is None else str(version),
    )


def entries_for(event: AliasEvent, entries: Iterable[SyncEntry]) -> list[str]:
    """Names of the entries whose model URI is the event's ``models:/NAME@ALIAS``."""
    uri = f"models:/{event.name}@{event.alias}"
    return [e.name for e in entries if e.model_uri == uri]


class Watch:
    """The watch loop over ``entries`` (see module docstring)."""

    def __init__(
        self,
        entries: Sequence[SyncEntry],
        *,
        interval: float | None,
        log_line: Callable[[dict[str, Any]], None],
    ) -> None:
        self.entries = list(entries)
        self.interval = interval
        self.log_line = log_line
        self._pending: set[str] = {e.name for e in self.entries}  # the first round: all
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.in_flight: str | None = None
        """The entry whose deploy is running (None: none)."""
        self.failed: dict[str, str] = {}
        """entry -> the version whose deploy failed (not retried until the alias moves)."""

    # -------------------------------------------------------------- triggers
    def request(self, names: Iterable[str]) -> None:
        with self._lock:
            self._pending.update(names)
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def emit(self, event: str, **fields: Any) -> None:
        line = {"time": datetime.now(timezone.utc).isoformat(), "event": event, **fields}
        self.log_line(line)

    # -------------------------------------------------------------- the loop
    def run(self) -> None:
        """Sync what is pending until :meth:`stop`; a poll marks every entry pending."""
        self.emit("started", entries=[e.name for e in self.entries], interval=self.interval)
        while not self.stopping:
            with self._lock:
                names, self._pending = self._pending, set()
                self._wake.clear()
            for entry in self.entries:
                if self.stopping:
                    break
                if entry.name in names:
                    self.sync_entry(entry)
            if self.stopping:
                break
            if not self._wake.wait(self.interval) and not self.stopping:
                self.request(e.name for e in self.entries)  # the interval passed: poll
        self.emit("stopped")

    def sync_entry(self, entry: SyncEntry) -> None:
        planned = plan_entry(entry)
        version = (planned.wanted or {}).get("version")
        fields = _fields(planned)
        if planned.decision == DEPLOY and self.failed.get(entry.name) == version:
            self.emit(
                "decision",
                **fields,
                decision="skip",
                reason=f"version {version} failed before; waiting for the alias to move",
            )
            return
        if planned.decision == DEPLOY and self.stopping:
            self.emit("decision", **fields, decision="skip", reason="stopping")
            return
        self.emit("decision", **fields, decision=planned.decision)
        if planned.decision != DEPLOY:
            return
        self.in_flight = entry.name
        try:
            result = apply_entry(planned)
        finally:
            self.in_flight = None
        if result.result == FAILED and version is not None:
            self.failed[entry.name] = version
        elif result.result == DEPLOYED:
            self.failed.pop(entry.name, None)
        self.emit(
            "result",
            entry=entry.name,
            target=entry.target,
            version=version,
            result=result.result,
            action=result.action,
            error=result.error,
        )

    # -------------------------------------------------------------- webhooks
    def serve_webhooks(
        self, verifier: WebhookVerifier, host: str, port: int
    ) -> ThreadingHTTPServer:
        """Start the webhook receiver (a daemon thread); returns the server (``server_port``)."""
        watch = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._answer(413, "body too large")
                    return
                body = self.rfile.read(length)
                delivery = self.headers.get(DELIVERY_ID_HEADER)
                try:
                    payload = verifier.verify(dict(self.headers.items()), body)
                except WebhookRejected as exc:
                    watch.emit("webhook", delivery=delivery, accepted=False, reason=exc.reason)
                    self._answer(exc.status, exc.reason)
                    return
                if payload is None:
                    watch.emit("webhook", delivery=delivery, accepted=False, reason="replayed")
                    self._answer(200, "already handled")
                    return
                event = alias_event(str(delivery), payload)
                names = entries_for(event, watch.entries) if event else []
                watch.emit(
                    "webhook",
                    delivery=delivery,
                    accepted=True,
                    entity=payload.get("entity"),
                    action=payload.get("action"),
                    entries=names,
                )
                if names:
                    watch.request(names)
                self._answer(200, "ok")

            def _answer(self, status: int, text: str) -> None:
                data = json.dumps({"status": status, "message": text}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("webhook receiver: " + format, *args)

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="deployer-webhooks", daemon=True).start()
        return server


def _fields(planned: EntryPlan) -> dict[str, Any]:
    wanted = planned.wanted or {}
    return {
        "entry": planned.name,
        "target": planned.target,
        "model": planned.model_uri,
        "version": wanted.get("version"),
        "live_version": planned.live.version if planned.live else None,
        "live_digest": planned.live.digest if planned.live else None,
        "error": planned.error,
    }
