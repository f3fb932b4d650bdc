"""Carry out a :class:`~deployer.spark.plan.SparkBatchPlan`: the only module that runs a job.

Order, each step for a reason:

1. a ``spark://`` master (or the ``sc://`` Spark Connect server of ``--remote``) must answer a
   TCP connection within seconds (Spark and gRPC alone retry for minutes);
2. the packed environment is built (or reused) before Spark starts, so ``spark.archives`` and
   ``spark.pyspark.python`` go into the session's conf;
3. the input's columns are checked against the signature (MLflow's own enforcement on the
   first rows): a missing column or a refused type fails before the job runs, naming the column;
4. predictions are written to a hidden sibling of ``--output`` and renamed over it only when
   the job succeeded (Hadoop FileSystem rename: local disk, HDFS...). A failed job deletes its
   staging folder; a killed one leaves only that hidden folder. The previous output is
   untouched either way. A Spark Connect session has no Hadoop FileSystem: its output is on a
   path this host shares with the server, and the rename runs here;
5. progress (stages, tasks) is read from Spark's status tracker and logged on stderr.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from deployer.errors import TargetError, UsageError
from deployer.spark.plan import PREDICTION_COLUMN, SparkBatchPlan, check_master

log = logging.getLogger("deployer")
SCHEMA_SAMPLE_ROWS = 100
_PY_ERROR = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.+)$")


@dataclass(frozen=True)
class SparkBatchResult:
    output: str
    rows: int
    seconds: float
    rows_per_second: float
    master: str
    env_manager: str
    environment: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": "spark",
            "output": self.output,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "master": self.master,
            "env_manager": self.env_manager,
            "environment": self.environment,
        }


def execute(plan: SparkBatchPlan) -> SparkBatchResult:
    from deployer.spark.udf import require_pyspark

    require_pyspark()
    if plan.remote is not None:
        from deployer.spark.connect import check_remote, require_connect_client

        require_connect_client()
        check_remote(plan.remote)
    else:
        check_master(plan.master)
    t0 = time.monotonic()
    packed = None
    conf = dict(plan.conf)
    if plan.environment is not None:
        from deployer.spark.environment import build_environment

        for warning in plan.warnings:
            log.warning(warning)
        packed = build_environment(plan.environment)
        conf.pop("spark.archives", None)
        conf.pop("spark.pyspark.python", None)
        if not plan.master.startswith("local") and plan.remote is None:
            user = dict(plan.conf).get("spark.archives", "")
            user = ",".join(a for a in user.split(",") if a and not a.startswith("<packed"))
            conf["spark.archives"] = ",".join(
                x for x in (user, f"{packed.archive}#{packed.name}") if x
            )
            conf["spark.pyspark.python"] = f"./{packed.name}/bin/python"
    connect_mode_before = "SPARK_CONNECT_MODE_ENABLED" in os.environ
    spark, owned = None, False
    try:
        spark, owned = _session(plan, conf)
        result = _run(spark, plan, packed, t0)
    finally:
        if owned and spark is not None:
            spark.stop()
        if plan.remote is not None and not connect_mode_before:
            # pyspark's builder.remote() switches the whole process to Connect mode
            os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
    return result


def _session(plan: SparkBatchPlan, conf: dict[str, str]) -> tuple[Any, bool]:
    """(session, whether this run started it). A session already active in this process
    (deployer called from a notebook or a test) is used as it is, and left running."""
    from pyspark.sql import SparkSession

    if plan.remote is not None:
        return _connect_session(plan, conf), True
    active = SparkSession.getActiveSession()
    if active is not None:
        log.info(f"using the active Spark session ({active.sparkContext.master})")
        return active, False
    if plan.master.startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        os.environ["PYSPARK_PYTHON"] = sys.executable  # local executors share the driver's Python
    builder = SparkSession.builder.master(plan.master).config(
        "spark.ui.showConsoleProgress", "false"
    )
    for key, value in conf.items():
        builder = builder.config(key, value)
    log.info(f"starting Spark ({plan.master})")
    try:
        return builder.getOrCreate(), True
    except Exception as exc:  # noqa: BLE001 - py4j / JVM start errors
        raise TargetError(
            f"Spark could not start: {_short(exc)}",
            where=f"--master {plan.master}",
            fix="check --master and --conf, and that Java 17+ is installed",
        ) from None


def _connect_session(plan: SparkBatchPlan, conf: dict[str, str]) -> Any:
    """A Spark Connect session to ``plan.remote`` (``--conf`` values are session settings);
    pyspark's process-wide Connect mode flag is dropped again when the job ends."""
    from pyspark.sql import SparkSession

    from deployer.spark.connect import shown_remote

    assert plan.remote is not None
    builder = SparkSession.builder.remote(plan.remote)
    for key, value in conf.items():
        builder = builder.config(key, value)
    log.info(f"connecting to Spark Connect at {shown_remote(plan.remote)}")
    try:
        return builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - gRPC / settings the server refuses
        raise TargetError(
            f"the Spark Connect session could not start: {_short(exc)}",
            where=f"--remote {shown_remote(plan.remote)}",
            fix="check --remote (and its ;token=...) and that --conf holds only session "
            "settings (a Connect client cannot change the server's static ones)",
        ) from None


def _run(spark: Any, plan: SparkBatchPlan, packed: Any, t0: float) -> SparkBatchResult:
    from deployer.spark.connect import shown_remote
    from deployer.spark.udf import make_udf, model_metadata

    if packed is not None and not plan.master.startswith("local") and plan.remote is None:
        from deployer.spark.shipping import _ADDED

        _ADDED.add((id(spark.sparkContext), str(packed.archive)))  # already in spark.archives
    df = _read(spark, plan)
    meta = model_metadata(plan.model_dir)
    columns = select_columns(plan, df, meta)
    check_schema(df, columns, meta)
    if PREDICTION_COLUMN in df.columns:
        raise UsageError(
            f"the input already has a column {PREDICTION_COLUMN!r}",
            where=plan.input,
            fix=f"rename or drop the input's {PREDICTION_COLUMN!r} column",
        )
    python_exec = None
    if packed is not None:
        from deployer.spark.environment import python_for

        python_exec = python_for(spark, packed)
    udf = make_udf(spark, str(plan.model_dir), plan.result_type, None, python_exec)
    if plan.partitions:
        df = df.repartition(plan.partitions)
    out = _flatten_for_csv(df.withColumn(PREDICTION_COLUMN, udf(*columns)), plan)
    _write_atomically(spark, out, plan)
    rows = _count(spark, plan)
    seconds = time.monotonic() - t0
    log.info(f"wrote {rows} predictions to {plan.output} in {seconds:.1f} s")
    return SparkBatchResult(
        plan.output,
        rows,
        seconds,
        rows / seconds if seconds else 0.0,
        shown_remote(plan.remote) if plan.remote else plan.master,
        plan.env_manager,
        str(packed.archive) if packed else None,
    )


def _read(spark: Any, plan: SparkBatchPlan) -> Any:
    try:
        if plan.input_format == "csv":
            return spark.read.csv(plan.input, header=True, inferSchema=True)
        return spark.read.parquet(plan.input)
    except Exception as exc:  # noqa: BLE001 - AnalysisException: path not found, bad file
        raise UsageError(
            f"cannot read the input: {_short(exc)}",
            where=plan.input,
            fix=f"pass an existing {plan.input_format} file or folder (--input-format parquet|csv)",
        ) from None


def select_columns(plan: SparkBatchPlan, df: Any, meta: Any) -> list[str]:
    """The input columns passed to the UDF, positionally (MLflow's naming rule applies)."""
    import difflib

    schema = meta.get_input_schema()
    have = list(df.columns)
    if plan.columns is not None:
        wanted, optional = list(plan.columns), set()
    elif schema is not None and schema.has_input_names():
        wanted = [str(n) for n in schema.input_names()]
        optional = set(schema.optional_input_names())
    else:
        return have  # no signature (or tensors without names): every column, in order
    missing = [c for c in wanted if c not in have and c not in optional]
    if missing:
        col = missing[0]
        close = difflib.get_close_matches(col, have, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(
            f"the input has no column {col!r}"
            + (f" (nor {', '.join(map(repr, missing[1:]))})" if missing[1:] else "")
            + f"; the model needs {wanted}; the input has {have}",
            where=plan.input,
            fix=hint
            + "rename the input's columns, or map them in signature order with --columns a,b,...",
        )
    if optional:
        # optional columns that are absent are left out from their position on (MLflow passes
        # columns positionally, so only a trailing run of optional columns can be omitted)
        cut = next((i for i, c in enumerate(wanted) if c not in have), len(wanted))
        wanted = wanted[:cut]
    return wanted


def check_schema(df: Any, columns: list[str], meta: Any) -> None:
    """MLflow's enforcement on the input's first rows, as the UDF will receive them (Arrow ->
    pandas): a type the signature refuses fails here, before the job, naming the column. (An
    empty frame is not enough: MLflow accepts an empty object column for any type.)"""
    schema = meta.get_input_schema()
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return
    from mlflow.exceptions import MlflowException
    from mlflow.models.utils import _enforce_schema

    names = [str(n) for n in schema.input_names()][: len(columns)]
    sample = df.select(*columns).limit(SCHEMA_SAMPLE_ROWS).toPandas()
    sample.columns = names
    try:
        _enforce_schema(sample, schema)
    except MlflowException as exc:
        message = exc.message
        spark_types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
        col = next(
            (
                c
                for c, n in zip(columns, names, strict=False)
                if re.search(rf"\b{re.escape(n)}\b", message)
            ),
            None,
        )
        where = f"input column {col!r} ({spark_types.get(col, '?')})" if col else "input columns"
        raise UsageError(
            f"the model's signature refuses the input: {message}",
            where=where,
            fix="cast the column to the signature's type in the input (e.g. "
            "CAST(col AS DOUBLE)), or pass the right columns with --columns",
        ) from None


def _flatten_for_csv(out: Any, plan: SparkBatchPlan) -> Any:
    if plan.input_format != "csv":
        return out
    from pyspark.sql.functions import col
    from pyspark.sql.types import ArrayType, MapType, StructType

    dtype = out.schema[PREDICTION_COLUMN].dataType
    if isinstance(dtype, StructType):
        fields = [
            col(f"{PREDICTION_COLUMN}.{f.name}").alias(f"{PREDICTION_COLUMN}_{f.name}")
            for f in dtype.fields
        ]
        out = out.select(*[c for c in out.columns if c != PREDICTION_COLUMN], *fields)
        dtype = out.schema
    nested = [
        f.name
        for f in out.schema.fields
        if isinstance(f.dataType, (ArrayType, MapType, StructType))
    ]
    if nested:
        raise UsageError(
            f"CSV cannot hold the array/map predictions of column(s) {nested}",
            where="--result-type",
            fix="use Parquet input (the output has the input's format), or a scalar --result-type",
        )
    return out


def _write_atomically(spark: Any, out: Any, plan: SparkBatchPlan) -> None:
    fs, jvm_path = _filesystem(spark, plan.output)
    staging = jvm_path(plan.staging_output)
    # "error" is errorifexists, spelled as both classic and Spark Connect sessions accept it
    writer = out.write.mode("error")
    stop = threading.Event()
    progress = threading.Thread(target=_progress, args=(spark, stop), daemon=True)
    if plan.remote is None:
        progress.start()
    try:
        if plan.input_format == "csv":
            writer.option("header", True).csv(plan.staging_output)
        else:
            writer.parquet(plan.staging_output)
    except Exception as exc:  # noqa: BLE001 - the job failed: report the model's own message
        fs.delete(staging, True)
        raise job_error(exc) from None
    finally:
        stop.set()
        if progress.is_alive():
            progress.join(timeout=5)
    target = jvm_path(plan.output)
    backup = jvm_path(plan.staging_output + ".previous")
    had_previous = fs.exists(target)
    if had_previous and not fs.rename(target, backup):
        fs.delete(staging, True)
        raise TargetError(
            "could not move the previous output aside",
            where=plan.output,
            fix="check permissions on the output's folder",
        )
    if not fs.rename(staging, target):
        if had_previous:
            fs.rename(backup, target)
        fs.delete(staging, True)
        raise TargetError(
            "could not rename the finished output into place",
            where=plan.output,
            fix="check permissions on the output's folder",
        )
    if had_previous:
        fs.delete(backup, True)


def _filesystem(spark: Any, path: str) -> tuple[Any, Any]:
    from deployer.spark.connect import is_connect_session

    if is_connect_session(spark):
        return _SharedDisk(), lambda p: p.removeprefix("file://")
    jvm = spark.sparkContext._jvm
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()

    def jvm_path(p: str) -> Any:
        return jvm.org.apache.hadoop.fs.Path(p)

    return jvm_path(path).getFileSystem(hadoop_conf), jvm_path


class _SharedDisk:
    """The Hadoop FileSystem calls of :func:`_write_atomically` on this host's disk (Spark
    Connect: the server wrote to a path this host shares with it)."""

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def rename(self, src: str, dst: str) -> bool:
        if not os.path.exists(src):
            raise TargetError(
                f"the Spark Connect server wrote {src}, which this host cannot see",
                where="--output",
                fix="with --remote, write to a path this host shares with the server (the "
                "finished output is renamed into place from here)",
            )
        try:
            os.rename(src, dst)
        except OSError:
            return False
        return True

    def delete(self, path: str, recursive: bool) -> bool:
        import shutil

        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)
        return True


def _count(spark: Any, plan: SparkBatchPlan) -> int:
    reader = (
        spark.read.option("header", True).csv if plan.input_format == "csv" else spark.read.parquet
    )
    return int(reader(plan.output).count())


def _progress(spark: Any, stop: threading.Event, every: float = 2.0) -> None:
    tracker = spark.sparkContext.statusTracker()
    last: dict[int, tuple[int, int]] = {}
    while not stop.wait(every):
        try:
            for stage_id in tracker.getActiveStageIds():
                info = tracker.getStageInfo(stage_id)
                if info is None:
                    continue
                state = (info.numCompletedTasks, info.numTasks)
                if last.get(stage_id) != state:
                    last[stage_id] = state
                    log.info(
                        f"stage {stage_id}: {info.numCompletedTasks}/{info.numTasks} tasks done"
                        + (f", {info.numActiveTasks} running" if info.numActiveTasks else "")
                    )
        except Exception:  # noqa: BLE001 - progress must never break the job
            return


def job_error(exc: BaseException) -> TargetError:
    """A failed Spark job -> TargetError with the model's (Python worker's) own message."""
    text = str(exc)
    found = [m for line in text.splitlines() if (m := _PY_ERROR.match(line.strip()))]
    python = [m for m in found if not m.group(1).startswith(("org.", "java.", "py4j", "scala."))]
    if python:
        name, message = python[-1].group(1), python[-1].group(2)
        return TargetError(
            f"the Spark job failed: the model raised {name}: {message}",
            where="spark job (a Python worker)",
            fix="fix the rows or the model; nothing was written and any previous output is intact",
        )
    return TargetError(
        f"the Spark job failed: {_short(exc)}",
        where="spark job",
        fix="see the Spark log above; nothing was written and any previous output is intact",
    )


def _short(exc: BaseException, limit: int = 600) -> str:
    text = str(exc).strip().splitlines()
    first = next((line for line in text if line.strip()), type(exc).__name__)
    return first[:limit]
