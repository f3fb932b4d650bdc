"""``deployer batch --target spark``: the job as data, decided before Spark starts.

:func:`plan_batch` resolves the model URI (once, on the driver), reads its signature, plans the
packed environment (``--env-manager virtualenv``), and fixes the Spark conf, the input and
output paths and the temporary output path; ``--dry-run`` prints it. :mod:`deployer.spark.run`
carries it out.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.errors import TargetError, UsageError
from deployer.spark.connect import shown_remote

INPUT_FORMATS = ("parquet", "csv")
PREDICTION_COLUMN = "prediction"
#: How long `deployer batch` waits for a spark://host:port master to accept a connection.
MASTER_CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class SparkBatchPlan:
    model_uri: str  # credentials stripped
    model_dir: Path
    input: str
    input_format: str
    output: str
    staging_output: str  # written first, renamed to ``output`` on success
    master: str
    columns: tuple[str, ...] | None  # None: the signature's input names
    result_type: str | None  # None: from the model's output schema (MLflow's rule)
    env_manager: str
    partitions: int | None
    conf: tuple[tuple[str, str], ...]
    environment: Any = None  # deployer.spark.environment.EnvironmentPlan, virtualenv only
    warnings: tuple[str, ...] = field(default=())
    udf_transport: str = (
        "pandas"  # "arrow" (pyspark >= 4.1) or "pandas": see spark.udf.udf_transport
    )
    remote: str | None = None  # sc://host:port: a Spark Connect server instead of a master

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": "spark",
            "model_uri": self.model_uri,
            "model_dir": str(self.model_dir),
            "input": self.input,
            "input_format": self.input_format,
            "output": self.output,
            "staging_output": self.staging_output,
            "master": None if self.remote else self.master,
            "remote": shown_remote(self.remote) if self.remote else None,
            "columns": list(self.columns) if self.columns is not None else "signature inputs",
            "result_type": self.result_type or "from the model's output schema (else double)",
            "env_manager": self.env_manager,
            "partitions": self.partitions,
            "spark_conf": dict(self.conf),
            "environment": self.environment.to_dict() if self.environment is not None else None,
            "udf_transport": self.udf_transport,
            "warnings": list(self.warnings),
        }


def parse_conf(items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"--conf {item!r} is not KEY=VALUE",
                where="--conf",
                fix="pass e.g. --conf spark.executor.memory=4g",
            )
        out[key.strip()] = value
    return tuple(out.items())


def staging_path(output: str) -> str:
    """A sibling of ``output`` (same filesystem, so the final rename is atomic)."""
    head, _, tail = output.rstrip("/").rpartition("/")
    name = f".{tail}.deployer-tmp-{uuid.uuid4().hex[:12]}"
    return f"{head}/{name}" if head or output.startswith("/") else name


def plan_batch(
    model_uri: str,
    *,
    input: str,
    output: str,
    master: str = "local[*]",
    input_format: str | None = None,
    columns: tuple[str, ...] | None = None,
    result_type: str | None = None,
    env_manager: str = "local",
    partitions: int | None = None,
    conf: tuple[str, ...] = (),
    build_options: Any = None,
    remote: str | None = None,
) -> SparkBatchPlan:
    """``build_options``: the build-option group (``--pip``, ``--lock``...) for the packed
    environment of ``env_manager="virtualenv"``. ``remote``: a Spark Connect server
    (``sc://host:port``) runs the job instead of ``master``; its output must be on a
    filesystem this host shares with the server (see :func:`check_remote_output`)."""
    from deployer.building.host_env import ISOLATED_ENV_MANAGERS, check_env_manager
    from deployer.building.plan import strip_credentials
    from deployer.model.uri import resolve_model_uri
    from deployer.spark.udf import udf_transport

    check_env_manager(env_manager)
    fmt = input_format or _format_of(input)
    if fmt not in INPUT_FORMATS:
        raise UsageError(
            f"unknown input format {fmt!r}",
            where="--input-format",
            fix=f"use one of: {', '.join(INPUT_FORMATS)}",
        )
    if partitions is not None and partitions < 1:
        raise UsageError(
            f"--partitions {partitions} must be at least 1",
            where="--partitions",
            fix="pass a positive number of partitions",
        )
    if _norm(input) == _norm(output):
        raise UsageError(
            "--output is the same path as --input",
            where="--output",
            fix="write the predictions to another path",
        )
    if remote is not None:
        from deployer.spark.connect import parse_remote

        parse_remote(remote)
        check_remote_output(output)
    transport = udf_transport()  # a bad DEPLOYER_SPARK_UDF_TRANSPORT fails here, before any job
    model_dir = resolve_model_uri(model_uri)
    spark_conf = dict(parse_conf(conf))
    if remote is None:  # a Connect session cannot name the server's application
        spark_conf.setdefault("spark.app.name", f"deployer batch {model_dir.name}")
    environment = None
    warnings: list[str] = []
    if env_manager in ISOLATED_ENV_MANAGERS:  # "uv": the same packed environment
        from deployer.spark.environment import plan_environment

        environment = plan_environment(model_dir, options=build_options)
        warnings += environment.warnings
        if not master.startswith("local") and remote is None:
            spark_conf["spark.archives"] = ",".join(
                x
                for x in (
                    spark_conf.get("spark.archives"),
                    "<packed environment>#deployer-env-<key>",
                )
                if x
            )
            spark_conf["spark.pyspark.python"] = "./deployer-env-<key>/bin/python"
    return SparkBatchPlan(
        model_uri=strip_credentials(model_uri),
        model_dir=model_dir,
        input=input,
        input_format=fmt,
        output=output,
        staging_output=staging_path(output),
        master=master,
        columns=tuple(c for c in columns if c) if columns else None,
        result_type=result_type,
        env_manager=env_manager,
        partitions=partitions,
        conf=tuple(spark_conf.items()),
        environment=environment,
        warnings=tuple(dict.fromkeys(warnings)),
        udf_transport=transport,
        remote=remote,
    )


def check_remote_output(output: str) -> None:
    """With Spark Connect the output must be a local path (or ``file://``) that this host
    shares with the server: the rename that makes the output appear only once complete
    runs here (a Connect session has no Hadoop FileSystem to rename with)."""
    scheme = output.partition("://")[0] if "://" in output else ""
    if scheme not in ("", "file"):
        raise UsageError(
            f"with --remote the output must be a path on a filesystem this host shares with "
            f"the Spark Connect server, not a {scheme}:// URI",
            where="--output",
            fix="write to a shared local/NFS path, or use --master (a classic session renames "
            "on any Hadoop filesystem)",
        )


def _format_of(path: str) -> str:
    lowered = path.lower().rstrip("/")
    return "csv" if lowered.endswith((".csv", ".csv.gz")) else "parquet"


def _norm(path: str) -> str:
    return path.rstrip("/").removeprefix("file://")


def check_master(master: str, timeout: float = MASTER_CONNECT_TIMEOUT) -> None:
    """A ``spark://host:port`` master must accept a TCP connection within ``timeout`` seconds
    (Spark itself retries for minutes before it gives up on an unreachable master)."""
    if not master.startswith("spark://"):
        return
    for hostport in master[len("spark://") :].split(","):
        host, _, port = hostport.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except (OSError, ValueError):
            continue
    raise TargetError(
        f"cannot reach the Spark master {master} (no answer within {timeout:.0f} s)",
        where="--master",
        fix="check the host and port (the master's log says 'Starting Spark master at "
        "spark://...'), or use --master local[*]",
    )
