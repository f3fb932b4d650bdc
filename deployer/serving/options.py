"""Server options: one typed record, read from flags, environment variables and defaults.

The image entrypoint runs ``python -m deployer.serving serve`` with no flags, so every option
also has an environment variable (``DEPLOYER_SERVE_<OPTION>``); SageMaker's
``SAGEMAKER_BIND_TO_PORT`` and MLflow's ``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT`` /
``MLFLOW_MODELS_WORKERS`` are honoured too, so images behave like MLflow's where users expect
that. Precedence: flag > deployer variable > platform variable > default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from deployer.errors import UsageError

DEFAULT_PORT = 8080
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_BODY = 100 * 1024 * 1024

ENV_PREFIX = "DEPLOYER_SERVE_"

# option -> extra environment variables consulted after DEPLOYER_SERVE_<OPTION>, in order
_PLATFORM_ENV = {
    "port": ("SAGEMAKER_BIND_TO_PORT",),
    "timeout": ("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT",),
    "workers": ("MLFLOW_MODELS_WORKERS",),
}


def cpu_count() -> int:
    """CPUs this process may use (affinity/cgroup-aware where the platform says so)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ServeOptions:
    """Everything the server needs to start. ``None`` means "pick the default at start"."""

    model_dir: str
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    workers: int | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_body_bytes: int = DEFAULT_MAX_BODY
    blas_threads: int | None = None
    threads: int = 4
    graceful_timeout: float | None = None
    model_name: str | None = None
    model_version: str | None = None
    log_level: str = "info"
    batching: bool = True
    http: str = "deployer"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def effective_workers(self) -> int:
        return self.workers if self.workers else cpu_count()

    @property
    def effective_blas_threads(self) -> int:
        """BLAS/OpenMP threads per worker: workers * threads <= cores, at least 1."""
        if self.blas_threads:
            return self.blas_threads
        return max(1, cpu_count() // self.effective_workers)

    @property
    def effective_graceful_timeout(self) -> float:
        """How long SIGTERM waits for in-flight requests (SageMaker kills after 30 s)."""
        if self.graceful_timeout is not None:
            return self.graceful_timeout
        return min(self.timeout + 1.0, 25.0)

    def validate(self) -> ServeOptions:
        def bad(name: str, value: Any, expected: str) -> UsageError:
            return UsageError(
                f"invalid {name}: {value!r} (expected {expected})",
                where=f"--{name.replace('_', '-')} / {ENV_PREFIX}{name.upper()}",
                fix=f"pass {expected}",
            )

        if not 0 <= self.port <= 65535:
            raise bad("port", self.port, "a port number 0-65535")
        if self.workers is not None and self.workers < 1:
            raise bad("workers", self.workers, "a positive number of worker processes")
        if self.timeout <= 0:
            raise bad("timeout", self.timeout, "a positive number of seconds")
        if self.max_body_bytes < 1:
            raise bad("max_body_bytes", self.max_body_bytes, "a positive number of bytes")
        if self.blas_threads is not None and self.blas_threads < 1:
            raise bad("blas_threads", self.blas_threads, "a positive number of threads")
        if self.threads < 1:
            raise bad("threads", self.threads, "a positive number of threads")
        if self.http not in ("deployer", "uvicorn"):
            raise bad("http", self.http, "'deployer' (built in) or 'uvicorn'")
        return self

    def with_env(self, env: Mapping[str, str] | None = None,
                 explicit: set[str] | frozenset[str] = frozenset()) -> ServeOptions:
        """Fill options not in ``explicit`` from environment variables."""
        env = os.environ if env is None else env
        changes: dict[str, Any] = {}
        for name, kind in _FIELDS.items():
            if name in explicit:
                continue
            for var in (ENV_PREFIX + name.upper(), *_PLATFORM_ENV.get(name, ())):
                raw = env.get(var)
                if raw is None or raw == "":
                    continue
                changes[name] = _convert(name, var, raw, kind)
                break
        return replace(self, **changes) if changes else self


_FIELDS: dict[str, type] = {
    "model_dir": str,
    "host": str,
    "port": int,
    "workers": int,
    "timeout": float,
    "max_body_bytes": int,
    "blas_threads": int,
    "threads": int,
    "graceful_timeout": float,
    "model_name": str,
    "model_version": str,
    "log_level": str,
    "batching": bool,
    "http": str,
}


def _convert(name: str, var: str, raw: str, kind: type) -> Any:
    if kind is str:
        return raw
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"invalid value {raw!r} for {name}", where=f"environment variable {var}",
                         fix=f"set {var} to 1 or 0")
    try:
        return kind(raw)
    except ValueError:
        raise UsageError(
            f"invalid value {raw!r} for {name}",
            where=f"environment variable {var}",
            fix=f"set {var} to a {'whole ' if kind is int else ''}number",
        ) from None
