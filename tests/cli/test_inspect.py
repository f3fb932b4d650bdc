"""`deployer inspect`: correct facts for every fixture model, stable JSON, short errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from deployer.cli import cli
from deployer.cli.inspect_cmd import command as inspect_command
from tests.environment.conftest import PYTHON_VERSION, SKLEARN_VERSION
from tests.fixtures.models import ALL_SAVED_MODELS
from tests.model._edit import altered, copy_model

DEPLOYER = Path(sys.executable).parent / "deployer"
TOP_KEYS = {
    "schema_version", "uri", "path", "flavors", "loader_module", "python_version", "model", "pyfunc",
    "environment", "signature", "input_example", "loader_requirements", "auto_deps", "warnings",
    "load_mode", "system_packages", "requirement_variants", "unused_requirements",
}  # fmt: skip


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def inspect_json(model: Path) -> dict:
    result = run("inspect", "-m", str(model), "--output", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _reqs(model: Path) -> list[str]:
    return [line for line in (model / "requirements.txt").read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("fixture", ALL_SAVED_MODELS)
def test_json_facts_for_every_saved_model(fixture: str, request: pytest.FixtureRequest) -> None:
    model: Path = request.getfixturevalue(fixture)
    data = inspect_json(model)
    mlmodel = __import__("yaml").safe_load((model / "MLmodel").read_text())
    assert set(data) == TOP_KEYS
    assert data["schema_version"] == 1
    assert data["path"] == str(model.resolve())
    assert data["flavors"] == sorted(mlmodel["flavors"])
    assert data["loader_module"] == mlmodel["flavors"]["python_function"]["loader_module"]
    assert data["python_version"] == PYTHON_VERSION
    assert data["model"]["model_uuid"] == mlmodel["model_uuid"]
    assert data["model"]["mlflow_version"] == "3.17.2"
    env = data["environment"]
    assert env["kind"] == "virtualenv"
    assert env["pip_requirements"] == _reqs(model)
    assert env["conda_packages"] == []
    assert env["index_options"] == {"index_url": None, "extra_index_urls": [], "find_links": []}
    assert (data["signature"] is None) == ("signature" not in mlmodel)
    assert data["input_example"]["present"] == (model / "input_example.json").is_file()


def test_sklearn_text_output(sklearn_model: Path) -> None:
    result = run("inspect", "-m", str(sklearn_model))
    assert result.exit_code == 0
    out = result.stdout
    assert "Flavors:        python_function, sklearn" in out
    assert "Loader:         mlflow.sklearn (predict_fn: predict)" in out
    assert f"Python:         {PYTHON_VERSION}" in out
    assert f"scikit-learn=={SKLEARN_VERSION}" in out
    assert "Conda-only packages: (none)" in out
    assert "Inputs (column-based):" in out
    assert [line.split() for line in out.splitlines() if "sepal_length" in line] == [["sepal_length", "double", "yes"]]
    assert "Input example:  yes (dataframe, input_example.json)" in out
    assert "Warnings" not in out


def test_tensor_signature(tensor_model: Path) -> None:
    data = inspect_json(tensor_model)
    assert data["signature"]["inputs"] == {"kind": "tensor", "columns": [{"name": None, "dtype": "float32", "shape": [-1, 4]}]}
    assert data["input_example"]["type"] == "ndarray"
    text = run("inspect", "-m", str(tensor_model)).stdout
    assert "float32  (-1, 4)" in text


def test_params_and_optional_columns(params_model: Path) -> None:
    data = inspect_json(params_model)
    cols = data["signature"]["inputs"]["columns"]
    assert [(c["name"], c["type"], c["required"]) for c in cols] == [("text", "string", True), ("note", "string", False)]
    assert data["signature"]["params"] == [
        {"name": "times", "type": "long", "default": 1, "shape": None},
        {"name": "suffix", "type": "string", "default": "", "shape": None},
        {"name": "upper", "type": "boolean", "default": False, "shape": None},
        {"name": "weights", "type": "double", "default": [1.0, 2.0], "shape": [-1]},
    ]
    assert data["input_example"]["present"] is False
    text = run("inspect", "-m", str(params_model)).stdout
    assert [line.split() for line in text.splitlines() if line.strip().startswith("weights")] == [
        ["weights", "double", "[1.0,", "2.0]", "(-1)"]
    ]


def test_no_signature_warning(no_signature_model: Path) -> None:
    data = inspect_json(no_signature_model)
    assert data["signature"] is None
    assert any("no signature" in w for w in data["warnings"])
    assert "Signature:      (none)" in run("inspect", "-m", str(no_signature_model)).stdout


def test_custom_pyfunc(custom_pyfunc_model: Path) -> None:
    data = inspect_json(custom_pyfunc_model)
    assert data["pyfunc"]["code"] == "code"
    assert data["pyfunc"]["env"] == {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    assert data["signature"]["params"] == [{"name": "scale", "type": "double", "default": 1.0, "shape": None}]


def test_legacy_models(legacy_2018_model: Path, legacy_data_env_model: Path) -> None:
    old = inspect_json(legacy_2018_model)
    assert old["environment"]["source"] == "fallback"
    assert old["environment"]["pip_requirements"] == ["mlflow", "scikit-learn"]
    assert old["python_version"] is None
    assert any("falling back" in w for w in old["warnings"])
    assert old["model"]["utc_time_created"] == "2018-05-25T17:28:53.35"
    conda = inspect_json(legacy_data_env_model)
    assert conda["environment"]["kind"] == "conda"
    assert conda["environment"]["conda_packages"] == ["scikit-learn=0.19.1"]
    assert conda["pyfunc"]["env"] == {"conda": "mlflow_env.yml", "virtualenv": None}
    text = run("inspect", "-m", str(legacy_data_env_model)).stdout
    assert "Conda-only packages:\n    scikit-learn=0.19.1" in text
    assert "Warnings:\n  - the model has no signature" in text


def test_index_credentials_redacted(tmp_path: Path, sklearn_model: Path) -> None:
    model = copy_model(sklearn_model, tmp_path / "m")
    with (model / "requirements.txt").open("a") as fh:
        fh.write("\n--index-url https://ci-bot:ghp_SECRETTOKEN@pkgs.example.org/simple\n--find-links https://wheels.example.org/\n")
    for output in ("text", "json"):
        result = run("inspect", "-m", str(model), "--output", output, "-v")
        assert result.exit_code == 0
        assert "SECRETTOKEN" not in result.stdout + result.stderr
        assert "ci-bot" not in result.stdout + result.stderr
    data = inspect_json(model)
    assert data["environment"]["index_options"] == {
        "index_url": "https://***@pkgs.example.org/simple",
        "extra_index_urls": [],
        "find_links": ["https://wheels.example.org/"],
    }
    assert "--index-url https://***@pkgs.example.org/simple" in run("inspect", "-m", str(model)).stdout


def test_every_json_key_is_documented() -> None:
    doc = inspect_command.help or ""
    for key in TOP_KEYS:
        assert f"  {key}" in doc or f", {key}" in doc, key


def test_json_is_stable_across_runs(sklearn_model: Path) -> None:
    first = run("inspect", "-m", str(sklearn_model), "--output", "json").stdout
    second = run("inspect", "-m", str(sklearn_model), "--output", "json").stdout
    assert first == second


# --- errors ---------------------------------------------------------------------------------


def _assert_short_error(result: Result, code: int, *needles: str) -> None:
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if not line.startswith("inspecting ")]
    assert 1 <= len(errors) <= 2, result.stderr
    assert errors[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr


def test_missing_model_directory(tmp_path: Path) -> None:
    _assert_short_error(run("inspect", "-m", str(tmp_path / "nope")), 1, "does not exist")


def test_no_mlmodel(tmp_path: Path) -> None:
    _assert_short_error(run("inspect", "-m", str(tmp_path)), 1, "no MLmodel file", "hint:")


def test_bad_yaml(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("flavors: [\n")
    _assert_short_error(run("inspect", "-m", str(tmp_path)), 1, "YAML does not parse")


def test_no_pyfunc(tmp_path: Path, sklearn_model: Path) -> None:
    model = altered(sklearn_model, tmp_path / "m", lambda d: d["flavors"].pop("python_function"))
    _assert_short_error(run("inspect", "-m", str(model)), 1, "flavors present: sklearn", "needs the pyfunc flavor")


def test_unsafe_path(tmp_path: Path, sklearn_model: Path) -> None:
    model = altered(sklearn_model, tmp_path / "m", lambda d: d["flavors"]["python_function"].update(data="/etc/passwd"))
    _assert_short_error(run("inspect", "-m", str(model)), 1, "absolute path")


def test_bad_requirements(tmp_path: Path, sklearn_model: Path) -> None:
    model = copy_model(sklearn_model, tmp_path / "m")
    (model / "requirements.txt").write_text("numpy\n`curl evil`\n")
    _assert_short_error(run("inspect", "-m", str(model)), 1, "requirements.txt:2")


def test_error_as_json(tmp_path: Path) -> None:
    result = run("inspect", "-m", str(tmp_path), "--output", "json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["error"] == "ModelNotFoundError"
    assert payload["where"] == str(tmp_path)
    assert payload["fix"]


# --- through the installed console script -----------------------------------------------------


def test_console_script_json(sklearn_model: Path) -> None:
    proc = subprocess.run([str(DEPLOYER), "inspect", "-m", str(sklearn_model), "--output", "json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["loader_module"] == "mlflow.sklearn"
    assert data["environment"]["pip_requirements"] == _reqs(sklearn_model)
    assert "inspecting" in proc.stderr  # logs go to stderr, never stdout


def test_console_script_error(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("flavors:\n  sklearn: not-a-mapping\n")
    proc = subprocess.run([str(DEPLOYER), "inspect", "-m", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "error: " in proc.stderr and "flavor 'sklearn' must be a mapping" in proc.stderr
    assert "Traceback" not in proc.stderr
