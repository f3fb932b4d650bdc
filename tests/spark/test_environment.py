"""``env_manager="virtualenv"``: the packed environment, and a real standalone cluster whose
executors' Python has none of the model's packages."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def packed(sklearn_model: Path) -> Any:
    from deployer.spark.environment import build_environment, plan_environment

    return build_environment(plan_environment(sklearn_model))


def _private_certs() -> set[str]:
    """Certificates of this host's CA bundle that are not public ones (certifi's): the TLS
    proxy's CA and the like, which must never be copied anywhere."""
    import certifi

    def certs(path: str) -> set[str]:
        text = Path(path).read_text(errors="replace") if path and Path(path).is_file() else ""
        return {re.sub(r"\s", "", c) for c in re.findall(
            r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)}

    host: set[str] = set()
    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE"):
        host |= certs(os.environ.get(var, ""))
    return host - certs(certifi.where())


def _host_secrets() -> list[str]:
    """Values on this host that must not travel: proxy/token/password variables, and every
    index URL or credential in the pip configuration."""
    from tests.fixtures.services import FAKE_AWS_ENV

    # (the suite's own fake AWS credentials, "testing", are set for the whole session once an
    # AWS test ran: a common word, not a host secret, found in any package's text)
    values = [v for k, v in os.environ.items()
              if re.search(r"proxy|token|secret|password|^PIP_|^UV_", k, re.I) and len(v) > 6
              and v != FAKE_AWS_ENV.get(k)]
    conf = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    for line in conf.stdout.splitlines():
        _, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        values += [v for v in value.split() if len(v) > 6]
    return values


def test_archive_is_cached_by_lock_and_holds_no_credentials(packed: Any, sklearn_model: Path) -> None:
    from deployer.spark.environment import build_environment, plan_environment

    again = build_environment(plan_environment(sklearn_model))
    assert again.reused and again.archive == packed.archive and again.lock_digest == packed.lock_digest

    secrets = _host_secrets()
    private = _private_certs()
    names = []
    with tarfile.open(packed.archive) as tar:
        for member in tar:
            names.append(member.name)
            assert not re.search(r"(^|/)(pip\.conf|pip\.ini|\.netrc|\.pypirc|uv\.toml)$", member.name), member.name
            if not member.isfile() or member.size > 2_000_000:
                continue
            data = tar.extractfile(member).read().decode("utf-8", "replace")  # type: ignore[union-attr]
            assert not any(s in data for s in secrets), member.name
            squashed = re.sub(r"\s", "", data) if "BEGIN CERTIFICATE" in data else ""
            assert not any(c in squashed for c in private), member.name
    assert "bin/python" in names and any("/sklearn/" in n for n in names) and any("/pyarrow/" in n for n in names)
    # deployer's own code ships apart (a small zip), so the environment is keyed by the lock only
    assert not any("/deployer/" in n for n in names)
    import zipfile

    with zipfile.ZipFile(packed.runtime) as zf:
        assert {"deployer/spark/_worker.py", "deployer/serving/core.py"} <= set(zf.namelist())


def test_cluster_executors_score_only_with_the_shipped_environment(
        spark_cluster: Any, packed: Any, sklearn_model: Path, iris_data: Any, tmp_path: Path) -> None:
    """A real master + worker; the executors' Python is a bare venv (no pandas, no sklearn)."""
    import mlflow.pyfunc
    import pandas as pd

    bare = spark_cluster.bare_python
    assert subprocess.run([bare, "-c", "import sklearn"], capture_output=True).returncode != 0
    X, _ = iris_data
    src = tmp_path / "in.parquet"
    X.to_parquet(src)
    out = tmp_path / "out.parquet"
    env = dict(os.environ, PYSPARK_PYTHON=bare, SPARK_LOCAL_IP="127.0.0.1")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "deployer"), "--output", "json", "batch", "--target", "spark",
         "-m", str(sklearn_model), "--input", str(src), "--output", str(out), "--master", spark_cluster.master,
         "--env-manager", "virtualenv", "--result-type", "double", "--partitions", "2",
         "--conf", "spark.executor.memory=512m", "--conf", "spark.driver.host=127.0.0.1"],
        capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout)["rows"] == 150
    assert "reusing the packed environment" in proc.stderr  # built once by the fixture, by lock
    got = pd.read_parquet(out)
    want = mlflow.pyfunc.load_model(str(sklearn_model)).predict(X)
    merged = got.merge(X.assign(want=want.astype(float)), on=IRIS)
    assert len(merged) >= 150 and (merged["prediction"] == merged["want"]).all()
    # the executor really ran the shipped archive, unpacked in its work directory
    unpacked = list((spark_cluster.logs / "work").glob(f"app-*/*/{packed.name}/bin/python"))
    assert unpacked, sorted(str(p) for p in (spark_cluster.logs / "work").rglob("*"))[:50]


def test_local_session_runs_the_udf_in_the_packed_environment(spark: Any, packed: Any, sklearn_model: Path,
                                                              iris_data: Any) -> None:
    """env_manager="virtualenv" in local mode: the UDF's workers run the environment's own
    interpreter in place (and find deployer through the runtime zip)."""
    import mlflow.pyfunc
    from pyspark.sql.functions import pandas_udf

    from deployer.spark import spark_udf

    X, _ = iris_data
    df = spark.createDataFrame(X.iloc[::5].reset_index(drop=True))
    ours = spark_udf(spark, str(sklearn_model), result_type="double", env_manager="virtualenv")
    theirs = mlflow.pyfunc.spark_udf(spark, str(sklearn_model), result_type="double")
    out = df.select(ours(*IRIS).alias("d"), theirs(*IRIS).alias("m")).toPandas()
    assert len(out) == 30 and out["d"].tolist() == out["m"].tolist()

    def where(s: Any) -> Any:
        import sys

        return s.map(lambda _: sys.executable)

    import pandas as pd

    where.__annotations__ = {"s": pd.Series, "return": pd.Series}
    probe = pandas_udf(where, "string")
    # an ordinary UDF of the same session keeps the session's interpreter
    assert df.select(probe("sepal_length").alias("x")).first()["x"] == sys.executable


def test_build_options_shape_the_packed_environment(sklearn_model: Path, iris_data: Any,
                                                    tmp_path: Path) -> None:
    """`batch --target spark --env-manager virtualenv` takes the build-option group's
    environment options (--pip here): the dry-run plan lists them, and the packed environment
    built from the same options has the package, in its own archive (another lock)."""
    from click.testing import CliRunner

    from deployer.building.plan import BuildOptions
    from deployer.cli import cli
    from deployer.spark.environment import build_environment, plan_environment

    iris_parquet = tmp_path / "in.parquet"
    iris_data[0].to_parquet(iris_parquet)
    result = CliRunner().invoke(cli, [
        "batch", "--target", "spark", "-m", str(sklearn_model), "--input", str(iris_parquet),
        "--output", str(tmp_path / "o"), "--env-manager", "virtualenv", "--pip", "six==1.16.0",
        "--dry-run", "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    environment = json.loads(result.stdout)["plan"]["environment"]
    assert environment["options"] == {"pip": ["six==1.16.0"]}
    assert "six==1.16.0" in environment["requirements"]["requirements"]

    packed = build_environment(plan_environment(sklearn_model, options=BuildOptions(pip=("six==1.16.0",))))
    plain = build_environment(plan_environment(sklearn_model))
    assert packed.archive != plain.archive and packed.lock_digest != plain.lock_digest
    probe = subprocess.run([str(packed.prefix / "bin" / "python"), "-c", "import six; print(six.__version__)"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "1.16.0", probe.stderr


# ------------------------------------------------------------------ prebuilt_env_uri
def test_prebuilt_env_uri_scores_with_the_given_archive_and_builds_nothing(
        spark: Any, packed: Any, sklearn_model: Path, iris_data: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive a build packed (what `deployer prepare-env` prints), copied elsewhere and
    given to spark_udf(prebuilt_env_uri=...) with an empty cache: no resolution, no wheel, no
    install; it is unpacked where the same build would be and scores as MLflow does. uv and
    virtualenv are the same environment."""
    import shutil

    import mlflow.pyfunc

    from deployer.spark import spark_udf
    from deployer.spark.environment import MANIFEST, read_env_manifest

    with tarfile.open(packed.archive) as tar:
        assert tar.getmembers()[0].name == MANIFEST
    manifest = read_env_manifest(packed.archive)
    assert manifest["key"] == packed.key and manifest["lock_digest"] == packed.lock_digest
    assert manifest["python"] == "{}.{}".format(*sys.version_info[:2])
    assert manifest["base_python"] == os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    copied = tmp_path / "from-ci" / "env.tar.gz"
    copied.parent.mkdir()
    shutil.copy(packed.archive, copied)
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEPLOYER_BUILD_CACHE", str(cache))
    X, _ = iris_data
    df = spark.createDataFrame(X.iloc[::7].reset_index(drop=True))
    udfs = {
        "path": spark_udf(spark, sklearn_model, result_type="double", prebuilt_env_uri=copied),
        "uv": spark_udf(spark, sklearn_model, result_type="double", prebuilt_env_uri=str(copied), env_manager="uv"),
        "file uri": spark_udf(spark, sklearn_model, result_type="double", prebuilt_env_uri=copied.as_uri(),
                              env_manager="virtualenv"),
        "mlflow": mlflow.pyfunc.spark_udf(spark, str(sklearn_model), result_type="double"),
    }
    out = df.select(*[u(*IRIS).alias(n) for n, u in udfs.items()]).toPandas()
    assert len(out) == 22
    for name in ("path", "uv", "file uri"):
        assert out[name].tolist() == out["mlflow"].tolist(), name
    # unpacked where the same environment built here would be; no wheels, no lock, no build
    assert (cache / "envs" / packed.key / "env" / "bin" / "python").exists()
    assert sorted(p.name for p in cache.iterdir()) == ["envs", "runtime"]
    assert [p.name for p in (cache / "envs").iterdir()] == [packed.key]
    assert [p.name for p in (cache / "envs" / packed.key).iterdir()] == ["env"]


def _with_manifest(path: Path, manifest: dict[str, Any]) -> Path:
    import io

    data = json.dumps(manifest).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("deployer-env.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_prebuilt_env_uri_refusals_say_what_to_do(spark: Any, packed: Any, sklearn_model: Path,
                                                  tmp_path: Path) -> None:
    """An archive that cannot run this model on this driver is refused before any job, with
    the fix; as deployer's UsageError and as MLflow's MlflowException."""
    from mlflow.exceptions import MlflowException

    from deployer.errors import UsageError
    from deployer.spark import spark_udf
    from deployer.spark.environment import read_env_manifest

    real = read_env_manifest(packed.archive)
    (tmp_path / "notes.txt").write_text("not an archive")
    with tarfile.open(tmp_path / "other.tar.gz", "w:gz") as tar:
        tar.add(str(sklearn_model / "MLmodel"), arcname="MLmodel")
    cases = {
        "does not exist": tmp_path / "missing.tar.gz",
        "cannot read": tmp_path / "notes.txt",
        "not a packed environment": tmp_path / "other.tar.gz",
        "format 'deployer-spark-env-v1'": _with_manifest(
            tmp_path / "v1.tar.gz", {**real, "format": "deployer-spark-env-v1"}),
        "is for Python 3.7": _with_manifest(tmp_path / "py37.tar.gz", {**real, "python": "3.7"}),
        "is for linux/s390x": _with_manifest(tmp_path / "s390x.tar.gz", {**real, "machine": "s390x"}),
        "links to the interpreter /nowhere/python3": _with_manifest(
            tmp_path / "base.tar.gz", {**real, "base_python": "/nowhere/python3"}),
        # the model's lock is known here (the fixture resolved it): another lock is refused
        "but this model's lock is": _with_manifest(
            tmp_path / "lock.tar.gz", {**real, "lock_digest": "sha256:" + "0" * 64}),
    }
    for expected, archive in cases.items():
        with pytest.raises(MlflowException) as info:
            spark_udf(spark, sklearn_model, prebuilt_env_uri=archive)
        err = info.value
        assert isinstance(err, UsageError) and expected in err.what, (expected, str(err))
        assert err.where == str(archive) and err.fix, expected
        assert "prepare-env" in err.fix, expected
