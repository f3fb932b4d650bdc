"""Spark Connect sessions: how deployer recognizes them and ships files through them.

A Connect session (``SparkSession.builder.remote("sc://host:port")``, pyspark >= 3.4) is a
gRPC client: it has no ``sparkContext``, so neither ``SparkContext.addArchive`` /
``addPyFile`` nor a per-UDF interpreter exist. Files go to the server with
``spark.addArtifacts(path, archive=True | pyfile=True)``; the server keeps them in a
directory of the client's session, which is also the Python workers' ``SparkFiles`` root and
working directory, so an archive shipped as ``<file>#<name>`` is found on the workers exactly
as one added with ``addArchive`` (``SparkFiles.get(name)``): :mod:`deployer.spark._worker`
needs no Connect case.

Nothing here imports pyspark's Connect client at import time (it needs grpcio,
grpcio-status, googleapis-common-protos and zstandard: ``deployer[spark-connect]``).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from deployer.errors import MissingDependencyError, TargetError, UsageError

#: The port of ``sc://host`` without one (Spark Connect's default).
DEFAULT_PORT = 15002
#: How long ``deployer batch --remote`` waits for the server to accept a connection.
CONNECT_TIMEOUT = 5.0
#: (session id, path) already added: each artifact once per Connect session.
_ADDED: set[tuple[str, str]] = set()


def is_connect_session(spark: Any) -> bool:
    """Whether ``spark`` is a Spark Connect (client) session rather than a classic one."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def add_artifact(spark: Any, path: Path, *, name: str | None = None, kind: str) -> None:
    """Ship ``path`` to the Connect server once per session: ``kind`` ``"archive"``
    (unpacked on the workers as ``name``) or ``"pyfile"`` (on the workers' ``sys.path``)."""
    if kind not in ("archive", "pyfile"):
        raise ValueError(kind)
    target = f"{path}#{name}" if name else str(path)
    key = (str(spark.session_id), target)
    if key in _ADDED:
        return
    try:
        spark.addArtifacts(target, **{kind: True})
    except Exception as exc:  # noqa: BLE001 - gRPC / server errors, reported with the file
        raise TargetError(
            f"the Spark Connect server refused {path.name}: {_first_line(exc)}",
            where="spark.addArtifacts",
            fix="check the server's log and its spark.connect.* size limits",
        ) from None
    _ADDED.add(key)


def shown_remote(url: str) -> str:
    """``url`` without its ``;token=...`` parameters and user info (for plans, logs, errors)."""
    from deployer.redact import redact_url

    return redact_url(url.split(";")[0].rstrip("/"))


def require_connect_client() -> None:
    """pyspark's Connect client and its gRPC dependencies (``pyspark[connect]``)."""
    try:
        import pyspark.sql.connect.session  # noqa: F401 - checks grpcio & co. on import
    except ImportError as exc:
        package = getattr(exc, "name", None) or "pyspark[connect]"
        raise MissingDependencyError(package, "spark-connect", "Spark Connect") from None


def check_remote(url: str, timeout: float = CONNECT_TIMEOUT) -> tuple[str, int]:
    """:func:`parse_remote`, and the server must accept a TCP connection within ``timeout``
    seconds (gRPC alone retries for minutes)."""
    host, port = parse_remote(url)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise TargetError(
            f"cannot reach the Spark Connect server {host}:{port} ({exc.strerror or exc})",
            where="--remote",
            fix="check the host and port (the server's log says 'Spark Connect server started "
            "at ...'), or start one: $SPARK_HOME/sbin/start-connect-server.sh",
        ) from None
    return host, port


def parse_remote(url: str) -> tuple[str, int]:
    """``sc://host[:port][/;params]`` -> (host, port), refusing another form."""
    parsed = urlparse(url)
    if parsed.scheme != "sc" or not parsed.hostname:
        raise UsageError(
            f"--remote {shown_remote(url)!r} is not a Spark Connect URL",
            where="--remote",
            fix="pass sc://HOST:PORT (e.g. sc://localhost:15002)",
        )
    try:
        port = parsed.port or DEFAULT_PORT
    except ValueError:
        raise UsageError(
            f"--remote {shown_remote(url)!r} has a bad port",
            where="--remote",
            fix="pass sc://HOST:PORT (e.g. sc://localhost:15002)",
        ) from None
    return parsed.hostname, port


def _first_line(exc: BaseException, limit: int = 400) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]
