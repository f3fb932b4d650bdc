"""Benchmark: ``deployer.spark.spark_udf`` against ``mlflow.pyfunc.spark_udf`` on one Spark session.

Run with one command (a few minutes on 2 cores)::

    .venv/bin/python benchmarks/spark.py                 # table
    .venv/bin/python benchmarks/spark.py --rows 200000   # quicker
    .venv/bin/python benchmarks/spark.py --json          # one JSON document on stdout

What it does, and why each choice:

* Saves an sklearn iris classifier with real MLflow (skops format, signature, input
  example), so both UDFs load the very same files.
* ``local[2]`` (``SPARK_LOCAL_IP=127.0.0.1``, the workers' Python = this venv's)
  and one 2M-row, 4-column Parquet table in 8 files, written once: both UDFs read and score
  the same rows, with the same Arrow batch size and the same Python workers.
* Each UDF scores every row into Spark's ``noop`` sink (full evaluation, no output I/O)
  six times: rows/s = rows / wall time of a job. The first full run still pays for Python
  workers that have not loaded the model yet (imports ~5 s per worker here); the warm rows/s
  (best of the next five: the machine is shared, and a best-of-N is what filters other
  processes' bursts out) is the steady state of a long job, where loading is amortized. The same job without any UDF is timed too (the
  floor: reading the table), and shown, so the table says how much of the time is scoring.
* Before anything is timed, ``JVM_WARMUP_JOBS`` untimed identity-UDF jobs (pandas and
  Arrow) let the JVM compile its hot paths: the SparkContexts are fresh, the JVM is not,
  and the UDF measured first would otherwise pay the JIT warm-up alone.
* Each UDF gets a fresh SparkContext (same conf): new Python workers, started by a trivial
  pandas UDF before anything is timed, so neither pays for nor profits from the other's
  imports, loaded models or memory.
* Time to first result: ``limit(1).collect()`` on a UDF just created (model resolution and
  shipping, the model's imports and load, the first batch).
* Peak Python worker RSS: /proc sampled every 0.2 s during the full run (the largest
  ``pyspark.daemon`` worker process).
* The transport floors: an identity pandas UDF and (pyspark >= 4.1) an identity Arrow UDF
  over the same 4 columns, each timed warm in each fresh context (the smallest is shown).
  Every pandas UDF (MLflow's) pays the first; deployer's Arrow transport pays the second
  (which transport deployer used is printed), so ``wall - floor`` is what each UDF itself
  costs above moving its rows through Python.
* Paired warm runs: the machine is shared, and other processes' load can change between the
  two fresh-context blocks above (seen: the same code measured 0.9x and 2.7x an hour apart).
  So, at the end, both UDFs run in one context, alternately (deployer, mlflow, deployer, ...
  ``PAIRS`` times, after one warm-up job each): the best of each and the median of the
  back-to-back ratios, which a burst of load hits on both sides.
* Checks that both return identical predictions on 20,000 rows, so a fast wrong answer
  cannot pass.

Target (issue 11): rows/s >= 1.5x MLflow's. The machine is shared: absolute numbers are noisy;
the ratio is what the run compares (both in the same session, one after the other).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

WARM_RUNS = 5
PAIRS = 5
JVM_WARMUP_JOBS = 6
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def save_model(root: Path) -> Path:
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    X = pd.DataFrame(data.data, columns=COLUMNS)
    clf = LogisticRegression(max_iter=500).fit(X, data.target)
    path = root / "iris"
    mlflow.sklearn.save_model(clf, str(path), signature=infer_signature(X, clf.predict(X)),
                              input_example=X.head(3))
    return path


def worker_rss_mb() -> float:
    """The largest RSS among PySpark's Python worker processes (MB)."""
    best = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"pyspark.daemon" not in cmd and b"pyspark.worker" not in cmd:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    best = max(best, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return best


class PeakRss:
    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, worker_rss_mb())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def measure(name: str, df: Any, make_udf: Any, rows: int) -> dict[str, Any]:
    log = lambda msg: print(f"[{name}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    udf = make_udf()
    df.withColumn("p", udf(*COLUMNS)).limit(1).collect()
    first = time.perf_counter() - t0
    log(f"first result after {first:.1f} s")
    runs = []
    with PeakRss() as rss:
        for _ in range(1 + WARM_RUNS):
            t0 = time.perf_counter()
            df.withColumn("p", udf(*COLUMNS)).write.format("noop").mode("overwrite").save()
            runs.append(time.perf_counter() - t0)
    warm = min(runs[1:])
    log(f"{rows} rows: first full run {runs[0]:.1f} s, warm {warm:.1f} s (runs {runs}), "
        f"peak worker RSS {rss.peak:.0f} MB")
    return {"seconds": runs[0], "rows_per_second": rows / runs[0], "warm_seconds": warm,
            "warm_rows_per_second": rows / warm, "first_result_s": first, "peak_worker_rss_mb": rss.peak}


def paired(df: Any, ours: Any, theirs: Any, rows: int) -> dict[str, Any]:
    """Warm jobs alternating the two UDFs in one context (see the module docstring)."""
    def job(udf: Any) -> float:
        t0 = time.perf_counter()
        df.withColumn("p", udf(*COLUMNS)).write.format("noop").mode("overwrite").save()
        return time.perf_counter() - t0

    job(ours), job(theirs)  # both models loaded in these Python workers
    d, m = [], []
    for _ in range(PAIRS):
        d.append(job(ours))
        m.append(job(theirs))
    ratios = sorted(b / a for a, b in zip(d, m, strict=True))
    print(f"[paired] deployer {[f'{x:.2f}' for x in d]}, mlflow {[f'{x:.2f}' for x in m]}",
          file=sys.stderr, flush=True)
    return {"deployer_warm_rows_per_second": rows / min(d), "mlflow_warm_rows_per_second": rows / min(m),
            "deployer_runs_s": d, "mlflow_runs_s": m, "median_pair_ratio": ratios[len(ratios) // 2]}


def render(rows: int, d: dict[str, Any], m: dict[str, Any], floor: float, transport: float,
           arrow_transport: float | None, pair: dict[str, Any]) -> str:
    ratio = d["warm_rows_per_second"] / m["warm_rows_per_second"]
    cold = d["rows_per_second"] / m["rows_per_second"]
    lines = [
        f"Spark batch scoring, {rows:,} rows x 4 doubles, local[2], iris LogisticRegression (skops)",
        "",
        "| metric | deployer | mlflow.pyfunc.spark_udf | ratio | target |",
        "|---|---|---|---|---|",
        f"| rows/s, warm (best of {WARM_RUNS} more full runs) | {d['warm_rows_per_second']:,.0f} | "
        f"{m['warm_rows_per_second']:,.0f} | {ratio:.2f}x | >= 1.5x {'PASS' if ratio >= 1.5 else 'FAIL'} |",
        f"| rows/s, warm, alternating in one context (best of {PAIRS} each) | "
        f"{pair['deployer_warm_rows_per_second']:,.0f} | {pair['mlflow_warm_rows_per_second']:,.0f} | "
        f"{pair['deployer_warm_rows_per_second'] / pair['mlflow_warm_rows_per_second']:.2f}x | "
        f"{'PASS' if pair['deployer_warm_rows_per_second'] >= 1.5 * pair['mlflow_warm_rows_per_second'] else 'FAIL'} |",
        f"| median ratio of the {PAIRS} back-to-back pairs | | | {pair['median_pair_ratio']:.2f}x | "
        f"{'PASS' if pair['median_pair_ratio'] >= 1.5 else 'FAIL'} |",
        f"| rows/s, first full run after the first result | {d['rows_per_second']:,.0f} | "
        f"{m['rows_per_second']:,.0f} | {cold:.2f}x | |",
        f"| wall time, warm / first | {d['warm_seconds']:.1f} / {d['seconds']:.1f} s | "
        f"{m['warm_seconds']:.1f} / {m['seconds']:.1f} s | | |",
        f"| time to first result | {d['first_result_s']:.1f} s | {m['first_result_s']:.1f} s | "
        f"{m['first_result_s'] / d['first_result_s']:.2f}x | |",
        f"| peak Python worker RSS | {d['peak_worker_rss_mb']:.0f} MB | {m['peak_worker_rss_mb']:.0f} MB | "
        f"{d['peak_worker_rss_mb'] / max(m['peak_worker_rss_mb'], 1):.2f}x | |",
        f"| floor: read the table, no UDF | {floor:.1f} s | | | |",
        f"| floor: an identity pandas UDF on the 4 columns (Arrow <-> pandas transport) | {transport:.1f} s | | | |",
    ]
    if arrow_transport is not None:
        lines.append(f"| floor: an identity Arrow UDF on the 4 columns (no pandas) | {arrow_transport:.1f} s | | | |")
    lines += ["", f"deployer's UDF: {d['transport']} transport (eval type {d['eval_type']})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    import mlflow.pyfunc
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import rand
    from pyspark.util import PythonEvalType

    from deployer.spark import spark_udf

    def session() -> Any:
        spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
                 .config("spark.ui.showConsoleProgress", "false").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        return spark

    transport: list[float] = []
    arrow_transport: list[float] = []

    def identity_udfs() -> tuple[Any, Any]:
        """An identity pandas UDF and (pyspark >= 4.1, else None) an identity Arrow UDF over the
        4 columns: what moving the rows through Python costs, with nothing scored."""
        import pandas as pd
        from pyspark.sql.functions import pandas_udf

        def identity(a: Any, b: Any, c: Any, d: Any) -> Any:
            return a

        identity.__annotations__ = {**dict.fromkeys("abcd", pd.Series), "return": pd.Series}
        pandas_identity = pandas_udf(identity, "double")  # type: ignore[call-overload]
        try:
            import pyarrow as pa
            from pyspark.sql.functions import arrow_udf
        except ImportError:  # pyspark < 4.1: no Arrow UDFs, deployer uses a pandas UDF too
            return pandas_identity, None

        def arrow_identity(a: Any, b: Any, c: Any, d: Any) -> Any:
            return a

        arrow_identity.__annotations__ = {**dict.fromkeys("abcd", pa.Array), "return": pa.Array}
        return pandas_identity, arrow_udf(arrow_identity, "double")

    def fresh(spark: Any, table: str) -> tuple[Any, Any]:
        """A new SparkContext (new Python workers: nothing loaded or imported by the other
        UDF), with its workers started by a trivial pandas UDF before anything is timed."""
        spark.stop()
        spark = session()
        df = spark.read.parquet(table)
        warm, same = identity_udfs()
        df.withColumn("p", warm(*COLUMNS)).write.format("noop").mode("overwrite").save()
        t0 = time.perf_counter()  # the same again, timed: what any pandas UDF pays for transport
        df.withColumn("p", warm(*COLUMNS)).write.format("noop").mode("overwrite").save()
        transport.append(time.perf_counter() - t0)
        if same is None:
            return spark, df
        best = []
        for _ in range(2):  # best of two; both warm (the workers were started above)
            t0 = time.perf_counter()
            df.withColumn("p", same(*COLUMNS)).write.format("noop").mode("overwrite").save()
            best.append(time.perf_counter() - t0)
        arrow_transport.append(min(best))
        return spark, df

    def jvm_warmup(df: Any) -> None:
        """Untimed jobs through both transports before anything is measured: the JVM compiles
        its hot paths (Parquet scan, Arrow batches, the Python runner) during its first jobs,
        and the UDF timed first would otherwise pay for that (seen: deployer's warm job 1.05 s
        when timed first in the JVM, 0.85 s later in the same run)."""
        udfs = [udf for udf in identity_udfs() if udf is not None]
        for _ in range(JVM_WARMUP_JOBS):
            for udf in udfs:
                df.withColumn("p", udf(*COLUMNS)).write.format("noop").mode("overwrite").save()

    with tempfile.TemporaryDirectory(prefix="deployer-spark-bench-") as tmp:
        root = Path(tmp)
        model = save_model(root)
        spark = session()
        table = str(root / "table.parquet")
        spark.range(args.rows, numPartitions=8).select(
            *[(rand(seed=i) * 8).alias(c) for i, c in enumerate(COLUMNS)]).write.parquet(table)
        spark, df = fresh(spark, table)
        jvm_warmup(df)
        t0 = time.perf_counter()
        df.write.format("noop").mode("overwrite").save()
        floor = time.perf_counter() - t0
        made: list[Any] = []

        def deployer_udf() -> Any:
            made.append(spark_udf(spark, str(model), result_type="double"))
            return made[-1]

        d = measure("deployer", df, deployer_udf, args.rows)
        d["eval_type"] = made[-1].evalType
        d["transport"] = ("arrow" if made[-1].evalType == getattr(PythonEvalType, "SQL_SCALAR_ARROW_ITER_UDF", None)
                          else "pandas")
        spark, df = fresh(spark, table)
        theirs: list[Any] = []

        def mlflow_udf() -> Any:
            theirs.append(mlflow.pyfunc.spark_udf(spark, str(model), result_type="double"))
            return theirs[-1]

        m = measure("mlflow", df, mlflow_udf, args.rows)
        pair = paired(df, spark_udf(spark, str(model), result_type="double"), theirs[-1], args.rows)
        sample = df.limit(20_000)
        got = sample.select(spark_udf(spark, str(model), result_type="double")(*COLUMNS).alias("d"),
                            mlflow.pyfunc.spark_udf(spark, str(model), result_type="double")(*COLUMNS)
                            .alias("m")).toPandas()
        spark.stop()
    if not (got["d"] == got["m"]).all():
        print("error: deployer and mlflow returned different predictions", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"rows": args.rows, "deployer": d, "mlflow": m, "floor_s": floor,
                          "identity_pandas_udf_s": min(transport),
                          "identity_arrow_udf_s": min(arrow_transport, default=None), "paired": pair},
                         indent=2))
    else:
        print(render(args.rows, d, m, floor, min(transport), min(arrow_transport, default=None), pair))
    return 0


if __name__ == "__main__":
    sys.exit(main())
