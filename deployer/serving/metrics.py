"""Prometheus metrics for the scoring server (``GET /metrics``), via prometheus-client.

Several worker processes serve one port, and a scrape lands on any one of them, so per-process
counters would be wrong. The server therefore runs prometheus-client's *multiprocess mode*
whenever it has more than one worker: every worker writes its values to mmap'ed files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` (from any worker) sums the files. The supervisor
creates that directory (unless the user set one), and calls ``mark_process_dead`` for a worker
that exits so the in-flight gauge forgets it. The variable must be set before prometheus-client
is imported (it picks its value class at import time): see :func:`prepare_multiprocess_dir`.

Exported (all prefixed ``deployer_``):

    requests_total{route,method,status,model}  counter
    request_errors_total{route,status,model}   counter, status >= 400
    request_duration_seconds{route,model}      histogram
    requests_in_flight                        gauge (summed over live workers)
    batch_size                                histogram: requests per batched predict call
    model_info{name,version,flavor}           gauge, always 1, one per loaded model

``model`` is the model a request was for ("" for routes that are not a model's, such as
``/ping``); gRPC calls count too, with routes named ``grpc:<Rpc>`` and method ``GRPC``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    float("inf"),
)


def prepare_multiprocess_dir() -> str:
    """Make sure ``PROMETHEUS_MULTIPROC_DIR`` names an empty-enough directory; return it.

    Call before anything imports prometheus_client. A directory we create is private to this
    server; a user-provided one is used as is (their files, their cleanup).
    """
    path = os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())
    if not path:
        path = tempfile.mkdtemp(prefix="deployer-metrics-")
        os.environ[MULTIPROC_ENV] = path
    os.makedirs(path, exist_ok=True)
    return path


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()))


def mark_process_dead(pid: int) -> None:
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class Metrics:
    """Per-process metric objects; ``render()`` reports the whole server."""

    def __init__(
        self, *, model_name: str = "", model_version: str | None = None, flavor: str = ""
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self._multiprocess = multiprocess_enabled()
        # In multiprocess mode values live in files; registering would double-report them.
        registry = None if self._multiprocess else CollectorRegistry(auto_describe=True)
        self._registry = registry
        kw: dict[str, Any] = {"registry": registry}
        self._requests = Counter(
            "deployer_requests",
            "HTTP requests answered.",
            ["route", "method", "status", "model"],
            **kw,
        )
        self._errors = Counter(
            "deployer_request_errors",
            "HTTP requests answered with an error status (>= 400).",
            ["route", "status", "model"],
            **kw,
        )
        self._latency = Histogram(
            "deployer_request_duration_seconds",
            "Time from request start to response sent.",
            ["route", "model"],
            buckets=BUCKETS,
            **kw,
        )
        self._in_flight = Gauge(
            "deployer_requests_in_flight",
            "Requests being processed.",
            multiprocess_mode="livesum",
            **kw,
        )
        self._batch = Histogram(
            "deployer_batch_size",
            "Requests scored together by one "
            "batched predict call (see deployer.serving._batching).",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64, float("inf")),
            **kw,
        )
        self._info = Gauge(
            "deployer_model_info",
            "The model this server serves (value is 1).",
            ["name", "version", "flavor"],
            multiprocess_mode="max",
            **kw,
        )
        if model_name:
            self.model_loaded(model_name, model_version, flavor)
        self._children: dict[tuple[str, str, int, str], tuple[Any, Any, Any]] = {}

    def model_loaded(self, name: str, version: str | None, flavor: str) -> None:
        self._info.labels(name, version or "", flavor).set(1)

    def model_unloaded(self, name: str, version: str | None, flavor: str) -> None:
        """Forget an unloaded model's info series (one process: the multi-model endpoint)."""
        if not self._multiprocess:
            with contextlib.suppress(KeyError):
                self._info.remove(name, version or "", flavor)

    def started(self) -> None:
        self._in_flight.inc()

    def finished(
        self, route: str, method: str, status: int, seconds: float, model: str = ""
    ) -> None:
        key = (route, method, status, model)
        children = self._children.get(key)
        if children is None:
            if len(self._children) > 512:  # hostile methods must not grow this forever
                method = "OTHER"
                key = (route, method, status, model)
            children = (
                self._requests.labels(route, method, str(status), model),
                self._errors.labels(route, str(status), model) if status >= 400 else None,
                self._latency.labels(route, model),
            )
            self._children[key] = children
        requests, errors, latency = children
        requests.inc()
        if errors is not None:
            errors.inc()
        latency.observe(seconds)
        self._in_flight.dec()

    def batched(self, size: int) -> None:
        self._batch.observe(size)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self._multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        assert self._registry is not None
        return generate_latest(self._registry), CONTENT_TYPE_LATEST
