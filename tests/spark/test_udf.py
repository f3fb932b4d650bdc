"""deployer.spark.spark_udf against mlflow.pyfunc.spark_udf, row for row, on one real session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _both(spark: Any, model: Path, df: Any, cols: list[Any], **kwargs: Any) -> Any:
    """Score df with deployer's and MLflow's UDF in one job; returns the pandas frame."""
    import mlflow.pyfunc

    from deployer.spark import spark_udf

    ours = spark_udf(spark, str(model), **kwargs)
    mlflows = mlflow.pyfunc.spark_udf(spark, str(model), **kwargs)
    return df.select(ours(*cols).alias("d"), mlflows(*cols).alias("m")).toPandas()


def _same(frame: Any) -> None:
    assert len(frame) > 0
    assert frame["d"].tolist() == frame["m"].tolist()


@pytest.fixture(scope="module")
def iris_df(spark: Any, iris_data: Any) -> Any:
    X, _ = iris_data
    return spark.createDataFrame(X.iloc[::3].reset_index(drop=True))


def test_sklearn_model_matches_mlflow_for_each_result_type(spark: Any, sklearn_model: Path, iris_df: Any) -> None:
    import mlflow.pyfunc

    from deployer.spark import spark_udf

    kinds = [None, "double", "float", "long", "string", "array<double>"]
    cols = []
    for i, kind in enumerate(kinds):
        cols.append(spark_udf(spark, str(sklearn_model), result_type=kind)(*IRIS).alias(f"d{i}"))
        cols.append(mlflow.pyfunc.spark_udf(spark, str(sklearn_model), result_type=kind)(*IRIS).alias(f"m{i}"))
    # no arguments: every signature column; one struct argument: its field names
    from pyspark.sql.functions import struct

    cols.append(spark_udf(spark, str(sklearn_model))().alias("noargs"))
    cols.append(spark_udf(spark, str(sklearn_model))(struct(*IRIS)).alias("struct"))
    out = iris_df.select(*cols).toPandas()
    for i, _kind in enumerate(kinds):
        got, want = out[f"d{i}"].tolist(), out[f"m{i}"].tolist()
        assert [list(x) if hasattr(x, "__len__") and not isinstance(x, str) else x for x in got] == \
            [list(x) if hasattr(x, "__len__") and not isinstance(x, str) else x for x in want], kinds[i]
    assert [list(x) for x in out["noargs"]] == [list(x) for x in out["d0"]]
    assert [list(x) for x in out["struct"]] == [list(x) for x in out["d0"]]
    assert set(out["d4"]) <= {"0", "1", "2"} and out["d1"].dtype == "float64"


def test_int_result_type_refused_like_mlflow(spark: Any, sklearn_model: Path, iris_df: Any) -> None:
    """int64 labels have no 32-bit int column: MLflow's "no compatible values" error, in both."""
    from pyspark.errors import PythonException

    from deployer.spark import spark_udf

    with pytest.raises(PythonException, match="did not produce any values compatible"):
        iris_df.select(spark_udf(spark, str(sklearn_model), result_type="int")(*IRIS)).collect()


def test_params_model_matches_mlflow(spark: Any, params_model: Path) -> None:
    df = spark.createDataFrame([("ab", "x"), ("c", None), ("", "y")], "text string, note string")
    _same(_both(spark, params_model, df, ["text", "note"], params={"times": 2, "suffix": "!"}))
    _same(_both(spark, params_model, df, ["text", "note"], result_type="string"))
    _same(_both(spark, params_model, df, ["text"], result_type="string"))  # optional column left out


def test_params_refused_on_the_driver(spark: Any, params_model: Path) -> None:
    from deployer.errors import UsageError
    from deployer.spark import spark_udf

    with pytest.raises(UsageError, match="params refused"):
        spark_udf(spark, str(params_model), params={"times": "many"})


def test_tensor_model_matches_mlflow(spark: Any, tensor_model: Path) -> None:
    from pyspark.sql.functions import array, col

    df = spark.createDataFrame([(1.0, 2.0, 3.0, 4.0), (0.5, 0.5, 0.5, 0.5)], "a float, b float, c float, d float")
    df = df.select(array(*[col(c) for c in "abcd"]).alias("x"))
    _same_answer_or_error(spark, tensor_model, df, ["x"], result_type="double")
    _same_answer_or_error(spark, tensor_model, df, ["x"], result_type="array<double>")


def _same_answer_or_error(spark: Any, model: Path, df: Any, cols: list[Any], **kwargs: Any) -> None:
    """Both UDFs give the same values, or both fail with the same exception type and message."""
    import mlflow.pyfunc

    from deployer.spark import spark_udf

    outcomes = []
    for make in (spark_udf, mlflow.pyfunc.spark_udf):
        try:
            rows = df.select(make(spark, str(model), **kwargs)(*cols).alias("p")).collect()
            outcomes.append(("ok", [r.p for r in rows]))
        except Exception as exc:  # noqa: BLE001 - compared below
            last = [line for line in str(exc).splitlines() if "Error" in line or "Exception" in line]
            outcomes.append(("error", last[-1] if last else type(exc).__name__))
    assert outcomes[0] == outcomes[1]


def test_no_signature_model_matches_mlflow(spark: Any, no_signature_model: Path, iris_df: Any) -> None:
    """Without a signature, positional columns are named "0".."3" (which this estimator, fitted
    on named columns, refuses in both UDFs); a struct argument passes the real names."""
    from pyspark.errors import PythonException
    from pyspark.sql.functions import struct

    _same(_both(spark, no_signature_model, iris_df, [struct(*IRIS)]))
    from deployer.spark import spark_udf

    with pytest.raises(PythonException, match="feature names"):
        iris_df.select(spark_udf(spark, str(no_signature_model))(*IRIS)).collect()


def test_multi_output_model_struct_result_matches_mlflow(spark: Any, multi_output_model: Path) -> None:
    df = spark.createDataFrame([(0.25, 0.5), (1.0, 2.5), (-1.0, 0.0)], "a double, b double")
    frame = _both(spark, multi_output_model, df, ["a", "b"])
    rows = [[r.asDict() if hasattr(r, "asDict") else dict(r) for r in frame[c]] for c in ("d", "m")]
    assert rows[0] == rows[1]
    assert rows[0][1] == {"total": 3.5, "label": "big", "count": 35}


def test_model_loaded_once_per_python_worker(spark: Any, counting_model: Any) -> None:
    import os

    from deployer.spark import spark_udf

    df = spark.range(0, 160_000, numPartitions=8).selectExpr("cast(id as double) as a", "1.0 as b")
    udf = spark_udf(spark, str(counting_model.path), result_type="double")
    for _ in range(2):  # two jobs: 16 tasks, 32 Arrow batches of 10,000 rows
        out = df.select(udf("a", "b").alias("p")).toPandas()
        assert out["p"].sum() == sum(range(160_000)) + 160_000
    loads = [pid for pid in counting_model.loads() if pid != os.getpid()]  # saving loads once here
    # no process loaded the model twice (not per batch, not per task or job in a reused
    # Python worker). How many processes Spark uses is its choice: a fresh session reuses its
    # 2 workers for all 16 tasks; late in a long session it was seen starting one per task.
    assert loads and len(loads) == len(set(loads)) and len(loads) < 32, loads


def test_model_error_reaches_the_driver(spark: Any, fails_on_negative_model: Path) -> None:
    from pyspark.errors import PythonException

    from deployer.spark import spark_udf

    df = spark.createDataFrame([(1.0, 0.0), (-3.0, 0.0)], "a double, b double")
    with pytest.raises(PythonException, match="negative input on purpose: a=-3.0"):
        df.select(spark_udf(spark, str(fails_on_negative_model), result_type="double")("a", "b")).collect()


def test_bad_arguments_are_usage_errors(spark: Any, sklearn_model: Path, no_signature_model: Path) -> None:
    from deployer.errors import UsageError
    from deployer.spark import spark_udf

    with pytest.raises(UsageError, match="not supported"):
        spark_udf(spark, str(sklearn_model), result_type="map<int,double>")
    with pytest.raises(UsageError, match="cannot parse result type"):
        spark_udf(spark, str(sklearn_model), result_type="doubel")
    with pytest.raises(UsageError, match="env_manager"):
        spark_udf(spark, str(sklearn_model), env_manager="conda")
    with pytest.raises(UsageError, match="no signature"):
        spark_udf(spark, str(no_signature_model))()


# ------------------------------------------------------------------------------ transports
ARROW_ITER, PANDAS_ITER = 251, 204  # PythonEvalType.SQL_SCALAR_ARROW_ITER_UDF / _PANDAS_ITER_UDF


def _plan(frame: Any) -> str:
    return str(frame._jdf.queryExecution().executedPlan().toString())


def _eval_types(frame: Any) -> list[int]:
    """The eval type of each ArrowEvalPython node of the physical plan (its last field)."""
    import re

    return [int(x) for x in re.findall(r"ArrowEvalPython \[.*\], \[.*\], (\d+)", _plan(frame))]


def test_arrow_transport_is_taken_when_pyspark_has_it(spark: Any, sklearn_model: Path, iris_df: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """pyspark >= 4.1 (this venv's 4.x): an Arrow iterator UDF, in the UDF and in the plan."""
    from pyspark.util import PythonEvalType

    from deployer.spark import spark_udf

    assert PythonEvalType.SQL_SCALAR_ARROW_ITER_UDF == ARROW_ITER
    monkeypatch.delenv("DEPLOYER_SPARK_UDF_TRANSPORT", raising=False)
    udf = spark_udf(spark, str(sklearn_model), result_type="double")
    assert udf.evalType == ARROW_ITER  # type: ignore[attr-defined]
    assert _eval_types(iris_df.select(udf(*IRIS))) == [ARROW_ITER]
    monkeypatch.setenv("DEPLOYER_SPARK_UDF_TRANSPORT", "arrow")
    assert spark_udf(spark, str(sklearn_model)).evalType == ARROW_ITER  # type: ignore[attr-defined]


def test_pandas_transport_forced_matches_mlflow(spark: Any, sklearn_model: Path, params_model: Path,
                                                multi_output_model: Path, iris_df: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """DEPLOYER_SPARK_UDF_TRANSPORT=pandas: the pandas iterator UDF (the path taken by pyspark
    < 4.1), still row for row MLflow's answers."""
    from pyspark.sql.functions import struct

    from deployer.spark import spark_udf

    monkeypatch.setenv("DEPLOYER_SPARK_UDF_TRANSPORT", "pandas")
    udf = spark_udf(spark, str(sklearn_model), result_type="double")
    assert udf.evalType == PANDAS_ITER  # type: ignore[attr-defined]
    assert _eval_types(iris_df.select(udf(*IRIS))) == [PANDAS_ITER]
    for kind in ("double", "string", "array<double>"):
        _same(_both(spark, sklearn_model, iris_df, IRIS, result_type=kind))
    _same(_both(spark, sklearn_model, iris_df, [struct(*IRIS)], result_type="long"))
    text = spark.createDataFrame([("ab", "x"), ("c", None), ("", "y")], "text string, note string")
    _same(_both(spark, params_model, text, ["text", "note"], params={"times": 2, "suffix": "!"}))
    ab = spark.createDataFrame([(0.25, 0.5), (1.0, 2.5), (-1.0, 0.0)], "a double, b double")
    frame = _both(spark, multi_output_model, ab, ["a", "b"])
    rows = [[r.asDict() if hasattr(r, "asDict") else dict(r) for r in frame[c]] for c in ("d", "m")]
    assert rows[0] == rows[1] and rows[0][1] == {"total": 3.5, "label": "big", "count": 35}


def test_both_transports_agree_on_nulls_ints_and_structs(spark: Any, counting_model: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The batches the Arrow transport takes natively (double columns with nulls, a struct of
    doubles) and those it converts (a float column, a struct with a null row, a long column
    the signature refuses) give what the pandas transport and MLflow give: NaN predictions
    become null, and the same schema error, in all three."""
    import mlflow.pyfunc
    from pyspark.sql.functions import col, struct, when

    from deployer.spark import spark_udf

    df = spark.createDataFrame([(1.0, None, 1), (None, 2.0, 2), (3.0, 4.0, 3), (0.5, -0.5, None)],
                               "a double, b double, n long")
    model = str(counting_model.path)
    udfs = {}
    for transport in ("arrow", "pandas"):
        monkeypatch.setenv("DEPLOYER_SPARK_UDF_TRANSPORT", transport)
        udfs[transport] = spark_udf(spark, model, result_type="double")
    assert [u.evalType for u in udfs.values()] == [ARROW_ITER, PANDAS_ITER]
    udfs["mlflow"] = mlflow.pyfunc.spark_udf(spark, model, result_type="double")
    cases = {
        "doubles": ["a", "b"],
        "float": [col("a").cast("float"), "b"],
        "struct": [struct("a", "b")],
        "null struct": [when(col("n") != 2, struct("a", "b"))],
    }
    for case, cols in cases.items():
        out = df.select(*[u(*cols).alias(name) for name, u in udfs.items()]).toPandas()
        got = {name: [None if v is None or v != v else v for v in out[name]] for name in udfs}
        assert got["arrow"] == got["pandas"] == got["mlflow"], (case, got)
    assert [None if v != v else v for v in df.select(udfs["arrow"]("a", "b").alias("p")).toPandas()["p"]] \
        == [None, None, 7.0, 0.0]
    from pyspark.errors import PythonException

    for udf in udfs.values():
        with pytest.raises(PythonException, match="Can not safely convert int64 to float64"):
            df.select(udf(col("n"), "b")).collect()


def test_unknown_transport_is_a_usage_error(spark: Any, sklearn_model: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from deployer.errors import UsageError
    from deployer.spark import spark_udf

    monkeypatch.setenv("DEPLOYER_SPARK_UDF_TRANSPORT", "arow")
    with pytest.raises(UsageError, match="DEPLOYER_SPARK_UDF_TRANSPORT"):
        spark_udf(spark, str(sklearn_model))


# ------------------------------------------------------------ MLflow 3.17's call surface
LOAD_CONTEXT_CODE = '''
"""A model reporting, per row, what it saw when it loaded (an environment variable, its
model_config) and the variable while predicting (tests/spark/test_udf.py)."""
import os

import mlflow.pyfunc


class ReportsLoad(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.env_at_load = os.environ.get("DEPLOYER_TEST_SETTING", "<unset>")
        self.config = dict(context.model_config or {})

    def predict(self, context, model_input, params=None):
        now = os.environ.get("DEPLOYER_TEST_SETTING", "<unset>")
        config = ",".join(f"{k}={self.config[k]}" for k in sorted(self.config))
        return [f"{self.env_at_load}|{now}|{config}|{a}" for a in model_input.iloc[:, 0]]
'''


@pytest.fixture(scope="module")
def reports_load_model(models_root: Path) -> Path:
    import importlib
    import sys

    import mlflow.pyfunc

    code = models_root / "reports_load_code" / "reports_load_model.py"
    code.parent.mkdir(parents=True, exist_ok=True)
    code.write_text(LOAD_CONTEXT_CODE)
    sys.path.insert(0, str(code.parent))
    try:
        module = importlib.import_module(code.stem)
    finally:
        sys.path.remove(str(code.parent))
    path = models_root / "reports_load"
    if not path.exists():
        mlflow.pyfunc.save_model(str(path), python_model=module.ReportsLoad(), code_paths=[str(code)],
                                 model_config={"greeting": "saved", "size": 1})
    return path


def test_path_model_uri_extra_env_and_model_config_match_mlflow(spark: Any, reports_load_model: Path,
                                                                tmp_path: Path) -> None:
    """The same rows through both UDFs, with a pathlib.Path URI, extra_env (seen at load and at
    predict, restored after: the driver's environment keeps no trace) and model_config as a
    dict, a YAML file (str and Path) and a JSON file; each UDF loads with its own config."""
    import os

    import mlflow.pyfunc

    from deployer.spark import spark_udf

    yaml_file = tmp_path / "config.yaml"
    yaml_file.write_text("greeting: from-yaml\nsize: 3\n")
    json_file = tmp_path / "config.json"
    json_file.write_text('{"greeting": "from-json", "extra": [1, 2]}')
    df = spark.createDataFrame([("x",), ("y",), ("z",)], "a string")
    cases: list[dict[str, Any]] = [
        {},
        {"extra_env": {"DEPLOYER_TEST_SETTING": "on the workers"}},
        {"model_config": {"greeting": "hello", "size": 2}},
        {"model_config": str(yaml_file), "extra_env": {"DEPLOYER_TEST_SETTING": "both"}},
        {"model_config": json_file},
    ]
    assert "DEPLOYER_TEST_SETTING" not in os.environ
    cols = []
    for i, kwargs in enumerate(cases):
        ours = spark_udf(spark, reports_load_model, result_type="string", **kwargs)
        mlflow_kwargs = dict(kwargs)
        if isinstance(mlflow_kwargs.get("model_config"), Path):  # MLflow reads str paths only
            mlflow_kwargs["model_config"] = str(mlflow_kwargs["model_config"])
        theirs = mlflow.pyfunc.spark_udf(spark, str(reports_load_model), result_type="string",
                                         **mlflow_kwargs)
        cols += [ours("a").alias(f"d{i}"), theirs("a").alias(f"m{i}")]
    out = df.select(*cols).toPandas()
    for i, kwargs in enumerate(cases):
        assert out[f"d{i}"].tolist() == out[f"m{i}"].tolist(), kwargs
    assert out["d0"].tolist() == ["<unset>|<unset>|greeting=saved,size=1|x", "<unset>|<unset>|greeting=saved,size=1|y",
                                  "<unset>|<unset>|greeting=saved,size=1|z"]
    assert out["d1"][0] == "on the workers|on the workers|greeting=saved,size=1|x"
    assert out["d2"][0] == "<unset>|<unset>|greeting=hello,size=2|x"
    assert out["d3"][0] == "both|both|greeting=from-yaml,size=3|x"
    # MLflow's rule, in both: an override replaces the saved keys it names, adds no others
    assert out["d4"][0] == "<unset>|<unset>|greeting=from-json,size=1|x"
    assert "DEPLOYER_TEST_SETTING" not in os.environ


def _refusals(spark: Any, sklearn_model: Path, no_signature_model: Path, tensor_model: Path,
              params_model: Path) -> dict[str, Any]:
    """MLflow 3.17's spark_udf error cases that apply outside Databricks: (make the UDF, call
    it) for both functions."""
    return {
        "timestamp result type": lambda f: f(spark, str(sklearn_model), result_type="timestamp"),
        "map with int keys": lambda f: f(spark, str(sklearn_model), result_type="map<int,double>"),
        "unknown env_manager": lambda f: f(spark, str(sklearn_model), env_manager="venv"),
        "prebuilt env with env_manager=local": lambda f: f(spark, str(sklearn_model), env_manager="local",
                                                           prebuilt_env_uri="/tmp/env.tar.gz"),
        "params outside the schema": lambda f: f(spark, str(params_model), params={"times": "many"}),
        "no columns, optional columns": lambda f: f(spark, str(params_model))(),
        "no columns, unnamed tensor input": lambda f: f(spark, str(tensor_model))(),
        "no columns, no signature": lambda f: f(spark, str(no_signature_model))(),
    }


def test_every_error_case_is_an_mlflow_exception_in_both(spark: Any, sklearn_model: Path, no_signature_model: Path,
                                                         tensor_model: Path, params_model: Path) -> None:
    """The same bad call through MLflow's spark_udf and deployer's: both are caught by
    ``except MlflowException``; deployer's is also its typed error with a where and a hint."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from deployer.errors import DeployerError, UsageError
    from deployer.spark import spark_udf

    for case, call in _refusals(spark, sklearn_model, no_signature_model, tensor_model, params_model).items():
        caught = []
        for function in (mlflow.pyfunc.spark_udf, spark_udf):
            try:
                call(function)
            except MlflowException as exc:
                caught.append(exc)
        assert len(caught) == 2, (case, caught)
        mlflows, ours = caught
        assert isinstance(ours, UsageError) and isinstance(ours, DeployerError), case
        assert ours.where and ours.fix and "hint:" in str(ours), case
        # (MLflow's prebuilt-env refusal carries INTERNAL_ERROR; deployer's says invalid value)
        assert ours.error_code == "INVALID_PARAMETER_VALUE" and mlflows.error_code, case
        assert ours.message == ours.format_message(), case


def test_mlflow_compatible_errors_keep_the_cli_format(spark: Any, sklearn_model: Path) -> None:
    """The class name, exit code and what/where/hint rendering are deployer's; the error
    pickles (Spark and multiprocessing do) as the same two-sided class."""
    import pickle

    from mlflow.exceptions import MlflowException

    from deployer.errors import UsageError
    from deployer.spark import spark_udf

    with pytest.raises(UsageError) as info:
        spark_udf(spark, sklearn_model, result_type="timestamp")
    err = info.value
    assert type(err).__name__ == "UsageError" and err.exit_code == 2
    assert err.to_dict() == {"error": "UsageError", "message": "result type timestamp is not supported",
                             "where": "result_type", "fix": err.fix}
    assert str(err).startswith("result_type: result type timestamp is not supported\n  hint: use one of int")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is type(err) and isinstance(again, MlflowException) and str(again) == str(err)


def test_driver_side_refusals_name_the_argument(spark: Any, sklearn_model: Path, tmp_path: Path) -> None:
    """What MLflow only finds on a worker (or not at all) deployer refuses on the driver."""
    from mlflow.exceptions import MlflowException

    from deployer.errors import UsageError
    from deployer.spark import spark_udf

    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    bad = {
        "model_config": [dict(model_config=tmp_path / "missing.yaml"), dict(model_config=str(tmp_path / "list.yaml")),
                         dict(model_config=42)],
        "extra_env": [dict(extra_env={"A": 1}), dict(extra_env={"A=B": "x"}), dict(extra_env=["A"])],
        "env_manager": [dict(env_manager="conda")],
        "prebuilt_env_uri": [dict(prebuilt_env_uri="dbfs:/Volumes/envs/env.tar.gz"),
                             dict(prebuilt_env_uri=tmp_path / "missing.tar.gz")],
        "model_uri": [dict(model_uri=tmp_path / "no-model")],
    }
    for argument, calls in bad.items():
        for kwargs in calls:
            kwargs.setdefault("model_uri", sklearn_model)
            with pytest.raises(MlflowException) as info:
                spark_udf(spark, **kwargs)
            assert isinstance(info.value, UsageError if argument != "model_uri" else Exception), kwargs
            assert argument in str(info.value) or str(tmp_path) in str(info.value), (kwargs, str(info.value))
    with pytest.raises(MlflowException, match="extra_env\\['A'\\] must be a string") as info:
        spark_udf(spark, sklearn_model, extra_env={"A": 12345678})
    assert "12345678" not in str(info.value)  # values may be secrets: never echoed


def test_uv_env_manager_is_accepted_like_mlflow(sklearn_model: Path, tmp_path: Path) -> None:
    """MLflow 3 accepts uv next to virtualenv; deployer runs both in one packed environment
    (the UDF itself: tests/spark/test_environment.py), in spark_udf and in a batch plan."""
    from mlflow.utils import env_manager as mlflow_env_managers

    from deployer.errors import UsageError
    from deployer.spark.plan import plan_batch
    from deployer.spark.udf import check_env_manager

    plans = {m: plan_batch(str(sklearn_model), input=str(tmp_path / "in.parquet"), output=str(tmp_path / "out"),
                           env_manager=m) for m in ("uv", "virtualenv")}
    assert plans["uv"].environment is not None
    assert plans["uv"].environment.to_dict() == plans["virtualenv"].environment.to_dict()

    assert check_env_manager("uv", None) == "uv"
    mlflow_env_managers.validate("uv")
    with pytest.raises(UsageError, match="'conda' is not supported"):
        check_env_manager("conda", None)
    assert check_env_manager(None, None) == "local"
    assert check_env_manager(None, "/some/env.tar.gz") == "virtualenv"
    assert check_env_manager("uv", "/some/env.tar.gz") == "uv"


def test_every_mlflow_argument_is_accepted() -> None:
    """deployer's spark_udf takes every argument of MLflow's, by the same names and order."""
    import inspect

    import mlflow.pyfunc

    from deployer.spark import spark_udf

    theirs = list(inspect.signature(mlflow.pyfunc.spark_udf).parameters)
    ours = list(inspect.signature(spark_udf).parameters)
    assert ours == theirs
