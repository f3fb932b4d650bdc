"""Real Spark for tests/spark: one local[2] session per test run, and a real standalone cluster.

* ``spark``: a ``local[2]`` SparkSession shared by every test (a JVM start costs 20-40 s on
  a loaded 2-core machine). ``SPARK_LOCAL_IP=127.0.0.1``; the workers' Python is this venv's.
* ``spark_cluster``: a Spark master and one worker started with ``spark-class`` on 127.0.0.1
  (free ports), torn down at the end. Jobs reach it through the CLI in a subprocess (a
  process holds one SparkContext), whose executors run a *bare* venv: no pandas, no
  scikit-learn, so only ``--env-manager virtualenv`` can score there.
* Models of their own (code shipped with the model through ``code_paths``): one that
  records every load (pid) in a file, one that raises on some rows.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("pyspark")

SPARK_CODE = textwrap.dedent(
    '''
    """Model code for tests/spark (shipped with the models through code_paths)."""
    import os

    import mlflow.pyfunc
    import pandas as pd


    class CountsLoads(mlflow.pyfunc.PythonModel):
        """a + b; every load appends this process's pid to the file named by an artifact."""

        def load_context(self, context):
            with open(context.artifacts["log_path"]) as fh:
                path = fh.read().strip()
            with open(path, "a") as fh:
                fh.write(f"{os.getpid()}\\n")

        def predict(self, context, model_input, params=None):
            return model_input["a"] + model_input["b"]


    class FailsOnNegative(mlflow.pyfunc.PythonModel):
        """Raises on a batch holding a negative a (the model's own error)."""

        def predict(self, context, model_input, params=None):
            bad = model_input[model_input["a"] < 0]
            if len(bad):
                raise ValueError(f"negative input on purpose: a={bad['a'].iloc[0]}")
            return model_input["a"] * 2
    '''
)


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def spark_code(models_root: Path) -> Path:
    path = models_root / "spark_code" / "spark_test_models.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SPARK_CODE)
    return path


def _import(code: Path):  # type: ignore[no-untyped-def]
    import importlib

    if str(code.parent) not in sys.path:
        sys.path.insert(0, str(code.parent))
    return importlib.import_module(code.stem)


def _ab_signature():  # type: ignore[no-untyped-def]
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("double", "a"), ColSpec("double", "b")]),
                          outputs=Schema([ColSpec("double")]))


@dataclass(frozen=True)
class CountingModel:
    path: Path
    log: Path

    def loads(self) -> list[int]:
        return [int(x) for x in self.log.read_text().split()] if self.log.exists() else []


@pytest.fixture(scope="session")
def counting_model(models_root: Path, spark_code: Path) -> CountingModel:
    import mlflow.pyfunc

    log = models_root / "loads.txt"
    pointer = models_root / "loads_pointer.txt"
    pointer.write_text(str(log))
    path = models_root / "counts_loads"
    mlflow.pyfunc.save_model(str(path), python_model=_import(spark_code).CountsLoads(),
                             artifacts={"log_path": str(pointer)}, code_paths=[str(spark_code)],
                             signature=_ab_signature())
    return CountingModel(path, log)


@pytest.fixture(scope="session")
def fails_on_negative_model(models_root: Path, spark_code: Path) -> Path:
    import mlflow.pyfunc

    path = models_root / "fails_on_negative"
    mlflow.pyfunc.save_model(str(path), python_model=_import(spark_code).FailsOnNegative(),
                             code_paths=[str(spark_code)], signature=_ab_signature())
    return path


# ---------------------------------------------------------------------------- the cluster
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class SparkCluster:
    master: str
    bare_python: str  # the executors' Python: a venv with no pandas / scikit-learn
    logs: Path


def _alive_workers(ui_port: int) -> int:
    import json

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as resp:
            return int(json.loads(resp.read()).get("aliveworkers", 0))
    except OSError:
        return 0


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    import pyspark

    root = tmp_path_factory.mktemp("spark-cluster")
    bare = root / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    spark_home = Path(pyspark.__file__).parent
    env = dict(os.environ, SPARK_HOME=str(spark_home), SPARK_LOCAL_IP="127.0.0.1",
               SPARK_WORKER_DIR=str(root / "work"), SPARK_NO_DAEMONIZE="1")
    port, ui, worker_ui = free_port(), free_port(), free_port()
    spark_class = str(spark_home / "bin" / "spark-class")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (root / "master.log").open("wb") as out:
            procs.append(subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                 "--port", str(port), "--webui-port", str(ui)], env=env, stdout=out, stderr=subprocess.STDOUT))
        with (root / "worker.log").open("wb") as out:
            procs.append(subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}",
                 "--host", "127.0.0.1", "--webui-port", str(worker_ui), "--cores", "1", "--memory", "1g"],
                env=env, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 180
        while _alive_workers(ui) < 1:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("the Spark cluster did not start:\n"
                                   + (root / "master.log").read_text()[-2000:]
                                   + (root / "worker.log").read_text()[-2000:])
            time.sleep(1)
        yield SparkCluster(f"spark://127.0.0.1:{port}", str(bare / "bin" / "python"), root)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
