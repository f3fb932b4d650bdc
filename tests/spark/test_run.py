"""``deployer batch --target spark``, in process (the shared local[2] session is used as is)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from deployer.cli import cli

pytestmark = pytest.mark.slow

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _batch(*args: str) -> Any:
    return CliRunner().invoke(cli, ["--output", "json", "batch", "--target", "spark", *args])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "deployer-tmp" in p.name)


@pytest.fixture
def iris_parquet(tmp_path: Path, iris_data: Any) -> Path:
    X, _ = iris_data
    path = tmp_path / "in.parquet"
    X.to_parquet(path)
    return path


def test_scores_into_output_atomically_and_replaces_previous(spark: Any, sklearn_model: Path, iris_parquet: Path,
                                                              iris_data: Any, tmp_path: Path) -> None:
    import mlflow.pyfunc
    import pandas as pd

    out = tmp_path / "out.parquet"
    out.mkdir()
    (out / "previous.txt").write_text("old")
    result = _batch("-m", str(sklearn_model), "--input", str(iris_parquet), "--output", str(out),
                    "--result-type", "double", "--partitions", "3")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 150 and summary["output"] == str(out) and summary["rows_per_second"] > 0
    assert not (out / "previous.txt").exists() and _leftovers(tmp_path) == []
    got = pd.read_parquet(out)
    X, _ = iris_data
    want = mlflow.pyfunc.load_model(str(sklearn_model)).predict(X)
    merged = got.merge(X.assign(want=want.astype(float)), on=IRIS)
    assert len(merged) >= 150 and (merged["prediction"] == merged["want"]).all()


def test_csv_in_csv_out_with_struct_flattened(spark: Any, multi_output_model: Path, tmp_path: Path) -> None:
    import pandas as pd

    src = tmp_path / "in.csv"
    pd.DataFrame({"x": [0.25, 1.0], "y": [0.5, 2.5]}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    result = _batch("-m", str(multi_output_model), "--input", str(src), "--output", str(out), "--columns", "x,y")
    assert result.exit_code == 0, result.output
    got = pd.read_csv(next(out.glob("part-*.csv"))).sort_values("x")
    assert got["prediction_label"].tolist() == ["small", "big"]
    assert got["prediction_count"].tolist() == [8, 35]


def test_missing_column_fails_before_the_job(spark: Any, sklearn_model: Path, iris_data: Any, tmp_path: Path) -> None:
    X, _ = iris_data
    src = tmp_path / "in.parquet"
    X.rename(columns={"petal_width": "petal_widht"}).to_parquet(src)
    out = tmp_path / "out.parquet"
    result = _batch("-m", str(sklearn_model), "--input", str(src), "--output", str(out))
    assert result.exit_code == 2
    assert "no column 'petal_width'" in result.stderr and "did you mean 'petal_widht'" in result.stderr
    assert not out.exists() and _leftovers(tmp_path) == []


def test_type_the_signature_refuses_fails_before_the_job(spark: Any, sklearn_model: Path, iris_data: Any,
                                                         tmp_path: Path) -> None:
    X, _ = iris_data
    src = tmp_path / "in.parquet"
    X.assign(sepal_width=X["sepal_width"].astype(str)).to_parquet(src)
    result = _batch("-m", str(sklearn_model), "--input", str(src), "--output", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "input column 'sepal_width' (string)" in result.stderr
    assert "CAST(col AS DOUBLE)" in result.stderr and not (tmp_path / "out").exists()


def test_model_raising_on_some_rows_fails_the_job_and_keeps_previous_output(
        spark: Any, fails_on_negative_model: Path, tmp_path: Path) -> None:
    import pandas as pd

    src = tmp_path / "in.parquet"
    pd.DataFrame({"a": [1.0, 2.0, -7.0, 4.0] * 50, "b": 0.0}).to_parquet(src)
    out = tmp_path / "out.parquet"
    out.mkdir()
    (out / "previous.txt").write_text("old")
    result = _batch("-m", str(fails_on_negative_model), "--input", str(src), "--output", str(out),
                    "--result-type", "double")
    assert result.exit_code == 1
    assert "the model raised ValueError: negative input on purpose: a=-7.0" in result.stderr
    assert json.loads(result.stdout)["error"] == "TargetError"
    assert sorted(p.name for p in out.iterdir()) == ["previous.txt"] and _leftovers(tmp_path) == []


def test_unreachable_master_is_a_clear_error_in_bounded_time(sklearn_model: Path, iris_parquet: Path,
                                                            tmp_path: Path) -> None:
    from tests.spark.conftest import free_port

    master = f"spark://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    result = _batch("-m", str(sklearn_model), "--input", str(iris_parquet), "--output", str(tmp_path / "o"),
                    "--master", master)
    assert result.exit_code == 1 and time.monotonic() - t0 < 30
    assert f"cannot reach the Spark master {master}" in result.stderr


def test_dry_run_prints_the_plan(sklearn_model: Path, iris_parquet: Path, tmp_path: Path) -> None:
    result = _batch("-m", str(sklearn_model), "--input", str(iris_parquet), "--output", str(tmp_path / "o"),
                    "--master", "spark://10.0.0.1:7077", "--conf", "spark.executor.memory=2g", "--dry-run")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["plan"]
    assert plan["model_dir"] == str(sklearn_model) and plan["input_format"] == "parquet"
    assert plan["spark_conf"]["spark.executor.memory"] == "2g"
    assert plan["staging_output"].startswith(str(tmp_path / ".o.deployer-tmp-"))
    assert plan["udf_transport"] == "arrow"  # pyspark 4.x has Arrow UDFs
    assert not (tmp_path / "o").exists()


def test_udf_transport_setting_is_checked_before_the_job(sklearn_model: Path, iris_parquet: Path,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["-m", str(sklearn_model), "--input", str(iris_parquet), "--output", str(tmp_path / "o"), "--dry-run"]
    monkeypatch.setenv("DEPLOYER_SPARK_UDF_TRANSPORT", "pandas")
    result = _batch(*base)
    assert result.exit_code == 0 and json.loads(result.stdout)["plan"]["udf_transport"] == "pandas"
    monkeypatch.setenv("DEPLOYER_SPARK_UDF_TRANSPORT", "fast")
    result = _batch(*base)
    assert result.exit_code == 2 and "DEPLOYER_SPARK_UDF_TRANSPORT" in result.stderr, result.output


def test_options_are_checked(sklearn_model: Path, iris_parquet: Path, tmp_path: Path) -> None:
    base = ["-m", str(sklearn_model), "--input", str(iris_parquet)]
    result = CliRunner().invoke(cli, ["batch", "--target", "sagemaker", *base, "--output", "s3://b/o",
                                      "--master", "local[2]"])
    assert result.exit_code == 2 and "--master is an option of target spark" in result.stderr
    result = _batch(*base, "--output", str(tmp_path / "o"), "--conf", "novalue", "--dry-run")
    assert result.exit_code == 2 and "KEY=VALUE" in result.stderr
    result = _batch(*base, "--output", str(iris_parquet), "--dry-run")
    assert result.exit_code == 2 and "same path as --input" in result.stderr
    result = _batch(*base, "--output", str(tmp_path / "o"), "--name", "job", "--dry-run")
    assert result.exit_code == 2 and "--name is not an option of target spark" in result.stderr


def test_env_manager_uv_plans_the_virtualenv_job(sklearn_model: Path, iris_parquet: Path, tmp_path: Path) -> None:
    """`--env-manager uv` (MLflow 3's name) is the same packed environment as virtualenv, and
    takes the environment options virtualenv takes."""
    base = ["-m", str(sklearn_model), "--input", str(iris_parquet), "--output", str(tmp_path / "o"), "--dry-run"]
    plans = {}
    for manager in ("virtualenv", "uv"):
        result = _batch(*base, "--env-manager", manager, "--pip", "six")
        assert result.exit_code == 0, result.output
        plans[manager] = json.loads(result.stdout)["plan"]
    assert plans["uv"]["environment"] and plans["uv"]["environment"] == plans["virtualenv"]["environment"]
    result = _batch(*base, "--pip", "six")
    assert result.exit_code == 2 and "--env-manager virtualenv" in result.stderr
