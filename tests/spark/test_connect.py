"""Spark Connect: ``spark_udf`` and ``batch --target spark --remote`` against the real Connect
server that ships in the pyspark distribution (``SparkConnectServer`` through spark-submit,
``local[2]``, 127.0.0.1, a free port), compared with the classic local[2] session.

The Connect *client* runs in a subprocess (a notebook's or a job's process): pyspark's Connect
mode is process-wide (``SPARK_CONNECT_MODE_ENABLED``), and this test process holds the shared
classic session. Two servers:

* ``connect_server``: workers run this venv's Python and import this checkout's deployer
  (``env_manager="local"``: the executors' Python has the model's packages);
* ``bare_connect_server``: workers run a venv with pandas, numpy and pyarrow only (what any
  PySpark worker has), no scikit-learn, no MLflow: only ``env_manager="virtualenv"`` can score
  there, through the packed environment shipped with ``spark.addArtifacts``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import deployer
from deployer.cli import cli
from tests.spark.conftest import free_port

pytestmark = pytest.mark.slow

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
#: this checkout (the deployer the workers and the client subprocesses import)
ROOT = str(Path(deployer.__file__).resolve().parent.parent)
#: what every PySpark worker needs for pandas/Arrow UDFs (and their own dependencies)
WORKER_PACKAGES = ("numpy", "pandas", "pyarrow", "dateutil", "six", "pytz", "tzdata")

CLIENT = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    from pyspark.sql import SparkSession
    from deployer.spark import spark_udf

    args = json.loads(sys.argv[1])
    spark = SparkSession.builder.remote(args["remote"]).getOrCreate()
    udf = spark_udf(spark, args["model"], result_type="double", env_manager=args["env_manager"])
    df = spark.createDataFrame(pd.read_parquet(args["input"]))
    got = df.withColumn("prediction", udf()).toPandas()
    got.attrs = {}  # Connect's plan metrics, which Parquet metadata cannot hold
    got.to_parquet(args["output"])
    print(json.dumps({"session": type(spark).__module__}))
    """
)


@dataclass(frozen=True)
class ConnectServer:
    url: str
    local_dir: Path  # spark.local.dir: where the server keeps each session's artifacts
    log: Path

    def shipped(self, pattern: str) -> list[Path]:
        """Files the server unpacked for a Connect session (its own directory)."""
        return sorted(self.local_dir.glob(f"spark-*/userFiles-*/*/{pattern}"))


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _start_server(root: Path, python: str, pythonpath: str | None) -> Iterator[ConnectServer]:
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    port = free_port()
    local_dir = root / "local"
    local_dir.mkdir(parents=True)
    env = dict(os.environ, SPARK_HOME=str(spark_home), SPARK_LOCAL_IP="127.0.0.1",
               PYSPARK_PYTHON=python)
    env.pop("SPARK_REMOTE", None)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(spark_home / "bin" / "spark-submit"), "--class",
             "org.apache.spark.sql.connect.service.SparkConnectServer", "--master", "local[2]",
             "--conf", f"spark.connect.grpc.binding.port={port}",
             "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
             "--conf", f"spark.local.dir={local_dir}", "--conf", "spark.ui.enabled=false",
             "--conf", "spark.sql.shuffle.partitions=2", "spark-internal"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    try:
        deadline = time.monotonic() + 180
        while not _accepts(port):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the Spark Connect server did not start:\n" + log.read_text()[-3000:])
            time.sleep(1)
        yield ConnectServer(f"sc://127.0.0.1:{port}", local_dir, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectServer]:
    yield from _start_server(tmp_path_factory.mktemp("connect"), sys.executable, ROOT)


@pytest.fixture(scope="module")
def bare_worker_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A venv whose only packages are pandas, numpy, pyarrow (linked from this venv)."""
    import pandas

    root = tmp_path_factory.mktemp("bare-worker")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(pandas.__file__).resolve().parent.parent
    linked = root / "site"
    linked.mkdir()
    for entry in site.iterdir():
        if entry.name.split(".")[0] in WORKER_PACKAGES and not entry.name.endswith("-info"):
            (linked / entry.name).symlink_to(entry)
    python = str(venv / "bin" / "python")
    venv_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    Path(venv_site, "worker-packages.pth").write_text(str(linked) + "\n")
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def imports(module: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, cwd=root,
                              env=clean)

    probe = imports("pandas, pyarrow, numpy")
    assert probe.returncode == 0, probe.stderr
    for absent in ("sklearn", "mlflow", "deployer"):
        assert imports(absent).returncode != 0, absent
    return python


@pytest.fixture(scope="module")
def bare_connect_server(tmp_path_factory: pytest.TempPathFactory, bare_worker_python: str) -> Iterator[ConnectServer]:
    yield from _start_server(tmp_path_factory.mktemp("connect-bare"), bare_worker_python, None)


def _client_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=ROOT, SPARK_LOCAL_IP="127.0.0.1")
    env.pop("SPARK_REMOTE", None)
    return env


def _run_client(server: ConnectServer, model: Path, env_manager: str, frame: Any, tmp_path: Path) -> Any:
    import pandas as pd

    src, out = tmp_path / "connect-in.parquet", tmp_path / "connect-out.parquet"
    frame.to_parquet(src)
    args = {"remote": server.url, "model": str(model), "env_manager": env_manager,
            "input": str(src), "output": str(out)}
    proc = subprocess.run([sys.executable, "-c", CLIENT, json.dumps(args)], capture_output=True,
                          text=True, env=_client_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:] + "\n--- server log ---\n" + server.log.read_text()[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["session"].startswith("pyspark.sql.connect")
    return pd.read_parquet(out)


def _classic(spark: Any, model: Path, frame: Any) -> Any:
    from deployer.spark import spark_udf

    udf = spark_udf(spark, str(model), result_type="double")
    return spark.createDataFrame(frame).withColumn("prediction", udf()).toPandas()


def _same_rows(a: Any, b: Any) -> None:
    import pandas as pd

    key = [*IRIS, "prediction"]
    pd.testing.assert_frame_equal(a[key].sort_values(key).reset_index(drop=True),
                                  b[key].sort_values(key).reset_index(drop=True))


# ------------------------------------------------------------------------------- spark_udf
def test_spark_udf_over_connect_scores_the_rows_of_a_classic_session(
        spark: Any, connect_server: ConnectServer, sklearn_model: Path, iris_data: Any, tmp_path: Path) -> None:
    import mlflow.pyfunc

    X, _ = iris_data
    got = _run_client(connect_server, sklearn_model, "local", X, tmp_path)
    _same_rows(got, _classic(spark, sklearn_model, X))
    want = mlflow.pyfunc.load_model(str(sklearn_model)).predict(X).astype(float)
    merged = got.merge(X.assign(want=want), on=IRIS)
    assert len(merged) >= 150 and (merged["prediction"] == merged["want"]).all()
    # no shared disk assumed: the model went out as an artifact of the client's session
    assert connect_server.shipped("deployer-model-*/MLmodel"), connect_server.log.read_text()[-2000:]


def test_virtualenv_over_connect_scores_on_workers_without_the_models_packages(
        spark: Any, bare_connect_server: ConnectServer, sklearn_model: Path, iris_data: Any,
        tmp_path: Path) -> None:
    X, _ = iris_data
    got = _run_client(bare_connect_server, sklearn_model, "virtualenv", X, tmp_path)
    _same_rows(got, _classic(spark, sklearn_model, X))
    # the packed environment and deployer's runtime went out as the session's artifacts and
    # were unpacked on the server: the workers (no scikit-learn) scored through them
    assert bare_connect_server.shipped("deployer-env-*/bin/python")
    assert bare_connect_server.shipped("deployer-runtime-*.zip")


def test_virtualenv_over_connect_reports_the_models_own_error(
        bare_connect_server: ConnectServer, sklearn_model: Path, iris_data: Any, tmp_path: Path) -> None:
    """An input the signature refuses fails in the environment's process; the job fails with
    MLflow's message (not a hang, not a bare 'worker crashed')."""
    X, _ = iris_data
    bad = X.head(10).assign(sepal_length="not a number")
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    bad.to_parquet(src)
    args = {"remote": bare_connect_server.url, "model": str(sklearn_model), "env_manager": "virtualenv",
            "input": str(src), "output": str(out)}
    proc = subprocess.run([sys.executable, "-c", CLIENT, json.dumps(args)], capture_output=True,
                          text=True, env=_client_env(), timeout=600)
    assert proc.returncode != 0 and not out.exists()
    assert "BridgeError: MlflowException" in proc.stderr and "sepal_length" in proc.stderr, proc.stderr[-3000:]


def test_local_over_connect_fails_on_workers_without_the_models_packages(
        bare_connect_server: ConnectServer, sklearn_model: Path, iris_data: Any, tmp_path: Path) -> None:
    """The other half of the proof above: the same job with env_manager='local' cannot run
    there (the workers have no deployer, no MLflow, no scikit-learn)."""
    X, _ = iris_data
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    X.to_parquet(src)
    args = {"remote": bare_connect_server.url, "model": str(sklearn_model), "env_manager": "local",
            "input": str(src), "output": str(out)}
    proc = subprocess.run([sys.executable, "-c", CLIENT, json.dumps(args)], capture_output=True,
                          text=True, env=_client_env(), timeout=600)
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, proc.stderr[-3000:]


# ------------------------------------------------------------------------------------ CLI
def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from deployer.cli import main; main()", "--output", "json",
                           "batch", "--target", "spark", *args], capture_output=True, text=True,
                          env=env or _client_env(), timeout=900)


def test_cli_remote_writes_the_output_of_a_classic_session(
        spark: Any, connect_server: ConnectServer, sklearn_model: Path, iris_data: Any, tmp_path: Path) -> None:
    import pandas as pd

    X, _ = iris_data
    src = tmp_path / "in.parquet"
    X.to_parquet(src)
    classic, remote = tmp_path / "classic.parquet", tmp_path / "remote.parquet"
    result = CliRunner().invoke(cli, ["--output", "json", "batch", "--target", "spark", "-m", str(sklearn_model),
                                      "--input", str(src), "--output", str(classic), "--result-type", "double"])
    assert result.exit_code == 0, result.output
    remote.mkdir()
    (remote / "previous.txt").write_text("old")  # replaced only once the new output is complete
    proc = _cli("-m", str(sklearn_model), "--input", str(src), "--output", str(remote), "--result-type", "double",
                "--remote", connect_server.url)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout)
    assert summary["rows"] == 150 and summary["master"] == connect_server.url
    assert not (remote / "previous.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if "deployer-tmp" in p.name) == []
    _same_rows(pd.read_parquet(remote), pd.read_parquet(classic))


def test_cli_takes_the_server_from_spark_remote(
        connect_server: ConnectServer, sklearn_model: Path, iris_data: Any, tmp_path: Path) -> None:
    import mlflow.pyfunc
    import pandas as pd

    X, _ = iris_data
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    X.head(20).to_csv(src, index=False)
    proc = _cli("-m", str(sklearn_model), "--input", str(src), "--output", str(out), "--result-type", "long",
                env=dict(_client_env(), SPARK_REMOTE=connect_server.url))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout)["rows"] == 20 and "Spark Connect" in proc.stderr
    got = pd.concat(pd.read_csv(part) for part in out.glob("part-*.csv"))
    want = mlflow.pyfunc.load_model(str(sklearn_model)).predict(X.head(20))
    assert sorted(got["prediction"]) == sorted(want.tolist())


def test_cli_unreachable_server_is_a_clear_error_within_seconds(sklearn_model: Path, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    result = CliRunner().invoke(cli, ["batch", "--target", "spark", "-m", str(sklearn_model), "--input",
                                      str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.parquet"),
                                      "--remote", f"sc://127.0.0.1:{port}/;token=s3cr3t-value"])
    assert result.exit_code == 1, result.output
    assert time.monotonic() - t0 < 15
    assert f"cannot reach the Spark Connect server 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output and "s3cr3t" not in result.output
    assert "SPARK_CONNECT_MODE_ENABLED" not in os.environ  # this process stays classic


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["--remote", "sc://127.0.0.1:15002", "--master", "local[2]"], {}, "--master and --remote"),
    (["--master", "local[2]"], {"SPARK_REMOTE": "sc://127.0.0.1:15002"}, "--master and SPARK_REMOTE"),
    (["--remote", "http://127.0.0.1:15002"], {}, "is not a Spark Connect URL"),
    (["--remote", "sc://127.0.0.1:15002", "--output", "s3a://bucket/out.parquet"], {}, "not a s3a:// URI"),
])
def test_cli_refuses_bad_remote_usage(args: list[str], env: dict[str, str], needle: str, sklearn_model: Path,
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    src = tmp_path / "in.parquet"
    src.write_bytes(b"")
    base = ["batch", "--target", "spark", "-m", str(sklearn_model), "--input", str(src)]
    if "--output" not in args:
        base += ["--output", str(tmp_path / "out.parquet")]
    result = CliRunner().invoke(cli, [*base, *args])
    assert result.exit_code == 2 and needle in result.output, result.output


def test_dry_run_shows_the_remote_without_its_token(sklearn_model: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--output", "json", "batch", "--target", "spark", "-m", str(sklearn_model),
                                      "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "o.parquet"),
                                      "--remote", "sc://spark.example:15002/;token=s3cr3t-value", "--dry-run",
                                      "--env-manager", "virtualenv"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["plan"]
    assert plan["remote"] == "sc://spark.example:15002" and plan["master"] is None
    # no spark.archives / spark.pyspark.python: a Connect session ships with addArtifacts
    assert "spark.archives" not in plan["spark_conf"] and "spark.app.name" not in plan["spark_conf"]
    assert "s3cr3t" not in result.output
