"""deployer.errors: the Python API's errors are also MLflow's, without mlflow in the base."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException

from deployer.errors import (
    DeployerError,
    MissingDependencyError,
    ModelNotFoundError,
    UsageError,
    as_mlflow_exception,
    mlflow_api,
)

REPO = Path(__file__).resolve().parents[1]


def test_twin_is_both_and_renders_like_the_cli() -> None:
    err = as_mlflow_exception(UsageError("bad value 'x'", where="result_type", fix="use double"))
    assert isinstance(err, UsageError) and isinstance(err, MlflowException)
    assert type(err).__name__ == "UsageError" and err.exit_code == 2
    assert str(err) == err.message == "result_type: bad value 'x'\n  hint: use double"
    assert err.error_code == "INVALID_PARAMETER_VALUE" and err.get_http_status_code() == 400
    assert as_mlflow_exception(ModelNotFoundError("gone", where="m")).error_code == "RESOURCE_DOES_NOT_EXIST"
    odd = as_mlflow_exception(MissingDependencyError("pyspark", "spark", "Spark"))
    assert isinstance(odd, MissingDependencyError) and odd.error_code == "INTERNAL_ERROR"
    assert type(as_mlflow_exception(UsageError("a"))) is type(err)  # one twin class per class
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is type(err) and again.to_dict() == err.to_dict()


def test_mlflow_api_converts_only_deployer_errors() -> None:
    @mlflow_api
    def api(kind: str) -> str:
        if kind == "deployer":
            raise UsageError("no", where="here")
        if kind == "other":
            raise ValueError("plain")
        return "ok"

    assert api("fine") == "ok"
    with pytest.raises(MlflowException) as info:
        api("deployer")
    assert isinstance(info.value, DeployerError) and info.value.where == "here"
    with pytest.raises(ValueError):
        api("other")


def test_base_does_not_import_mlflow_and_works_without_it() -> None:
    code = textwrap.dedent(
        """
        import sys
        import deployer.errors as e
        assert "mlflow" not in sys.modules
        sys.modules["mlflow"] = None  # mlflow not installed
        err = e.UsageError("x")
        assert e.as_mlflow_exception(err) is err
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
