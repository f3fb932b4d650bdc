"""``--model-config FILE|JSON``: parsed once (serving/model_config.py), honoured wherever a model
is loaded for serving, with MLflow as the oracle: the server's answer equals
``mlflow.pyfunc.load_model(path, model_config=...).predict(...)``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deployer.errors import UsageError
from deployer.serving.azure import AzureScorer
from deployer.serving.core import ScoringCore
from deployer.serving.model_config import (
    ENV,
    ignored_keys,
    model_config_json,
    parse_model_config,
)
from deployer.serving.options import ServeOptions
from tests.fixtures.models import SAVED_MODEL_CONFIG
from tests.serving.conftest import ServerPool, start_deployer

ROWS = {"dataframe_split": {"columns": ["a"], "data": [[1.0], [2.5]]}}
CONFIG = {"x": "from the config", "scale": 3.0}


def mlflow_predictions(model_dir: Path, config: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The oracle: MLflow's own load_model + predict, as records."""
    import mlflow.pyfunc
    import pandas as pd

    kwargs = {"model_config": config} if config is not None else {}
    model = mlflow.pyfunc.load_model(str(model_dir), **kwargs)
    out = model.predict(pd.DataFrame({"a": [1.0, 2.5]}))
    return json.loads(out.to_json(orient="records"))


# ----------------------------------------------------------------------------- parsing
def test_json_object_yaml_file_and_json_file_give_the_same_mapping(tmp_path: Path) -> None:
    yaml_file = tmp_path / "config.yaml"
    yaml_file.write_text("x: from the config\nscale: 3.0\n")
    json_file = tmp_path / "config.json"
    json_file.write_text(json.dumps(CONFIG))
    assert parse_model_config(json.dumps(CONFIG), where="--model-config") == CONFIG
    assert parse_model_config(str(yaml_file), where="--model-config") == CONFIG
    assert parse_model_config(json_file, where="--model-config") == CONFIG
    assert parse_model_config(CONFIG, where="-C model_config") == CONFIG


def test_yaml_file_reads_as_mlflow_reads_it(tmp_path: Path) -> None:
    """MLflow's load_model(model_config=PATH) reads the file with yaml.safe_load: same mapping."""
    from mlflow.utils.model_utils import _validate_and_get_model_config_from_file

    path = tmp_path / "c.yml"
    path.write_text("x: 'quoted: yes'\nscale: 2\nnested:\n  list: [1, two, null]\n")
    assert parse_model_config(str(path), where="w") == _validate_and_get_model_config_from_file(
        str(path)
    )


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ('{"x": ', "not valid JSON"),
        ("[1, 2]", "must be a JSON object, got a JSON list"),
        ('"text"', "must be a JSON object, got a JSON string"),
        ("", "empty"),
        ("no/such/config.yaml", "does not exist"),
    ],
)
def test_bad_values_are_usage_errors_with_where_and_fix(value: str, what: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_model_config(value, where="--model-config")
    assert what in info.value.what
    assert info.value.where and info.value.where.startswith("--model-config")
    assert info.value.fix
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("- a\n- b\n", "holds a list, not a mapping"),
        ("x: [unclosed\n", "is not valid YAML/JSON at line"),
        ("when: 2024-01-01\n", "not JSON-serializable"),
        ("1: one\n", "keys must be text"),
    ],
)
def test_bad_files_are_usage_errors(tmp_path: Path, text: str, what: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        parse_model_config(str(path), where="--model-config")
    assert what in info.value.what


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a file"):
        parse_model_config(str(tmp_path), where="--model-config")


def test_canonical_json_is_stable_and_has_no_raw_control_or_separator_characters() -> None:
    config = {"b": "line\nbreak \u2028 $HOME \"q\" \\", "a": 1}
    text = model_config_json(config)
    assert text == model_config_json(dict(reversed(list(config.items()))))
    assert "\n" not in text and "\u2028" not in text and text.isascii()
    assert json.loads(text) == config


def test_ignored_keys_are_those_the_model_did_not_save() -> None:
    assert ignored_keys({"x": 1, "typo": 2}, SAVED_MODEL_CONFIG) == ["typo"]
    assert ignored_keys({"x": 1}, None) == ["x"]


# ----------------------------------------------------------------------------- loading
def test_scoring_core_with_config_equals_mlflow(config_model: Path) -> None:
    core = ScoringCore.load(config_model, model_config=dict(CONFIG))
    out = core.invoke(json.dumps(ROWS).encode(), "application/json")
    assert json.loads(out.body)["predictions"] == mlflow_predictions(config_model, CONFIG)
    assert json.loads(out.body)["predictions"][0]["x"] == "from the config"


def test_bad_serving_model_config_variable_is_a_usage_error(
    config_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "{not json")
    with pytest.raises(UsageError) as info:
        ScoringCore.load(config_model)
    assert info.value.where == f"environment variable {ENV}"


def test_azure_score_py_path_loads_with_the_deployment_variable(
    config_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Azure ML's score.py (AzureScorer.from_environment) reads SERVING_MODEL_CONFIG, which
    images and exported deployments carry."""
    root = tmp_path / "azureml-models"
    (root).mkdir()
    (root / "model").symlink_to(config_model, target_is_directory=True)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(root))
    monkeypatch.setenv(ENV, model_config_json(CONFIG))
    scorer = AzureScorer.from_environment()
    outcome = scorer.score(json.dumps(ROWS))
    assert outcome.status == 200
    assert outcome.payload == mlflow_predictions(config_model, CONFIG)


def test_serve_options_validate_the_config_before_loading() -> None:
    with pytest.raises(UsageError) as info:
        ServeOptions(model_config="[1]").validate()
    assert info.value.where == "--model-config / DEPLOYER_SERVE_MODEL_CONFIG / SERVING_MODEL_CONFIG"


# ----------------------------------------------------------------------------- servers
def test_image_entrypoint_serves_the_config_s_answer(
    server_pool: ServerPool, config_model: Path
) -> None:
    server = server_pool.deployer(config_model, "--workers", "1", "--model-config", json.dumps(CONFIG))
    got = server.post(ROWS).json()["predictions"]
    assert got == mlflow_predictions(config_model, CONFIG)
    # without it, the model's saved config (MLflow's answer without model_config)
    plain = server_pool.deployer(config_model, "--workers", "1").post(ROWS).json()["predictions"]
    assert plain == mlflow_predictions(config_model, None) != got


def test_mlflow_s_variable_is_honoured_by_the_server(
    server_pool: ServerPool, config_model: Path
) -> None:
    server = server_pool.deployer(config_model, "--workers", "2", env={ENV: json.dumps(CONFIG)})
    assert server.post(ROWS).json()["predictions"] == mlflow_predictions(config_model, CONFIG)


def test_deployer_serve_cli_with_a_yaml_file(
    config_model: Path, tmp_path: Path
) -> None:
    config_file = tmp_path / "override.yaml"
    config_file.write_text("x: from a file\nscale: 0.5\n")
    argv = [sys.executable, "-c", "from deployer.cli import main; main()", "serve", "-m", str(config_model), "--port", "0",
            "--workers", "1", "--model-config", str(config_file)]
    server = start_deployer(config_model, tmp_path / "logs", argv=argv)
    try:
        got = server.post(ROWS).json()["predictions"]
        assert got == mlflow_predictions(config_model, {"x": "from a file", "scale": 0.5})
    finally:
        server.stop()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from deployer.cli import main; main()", *args], capture_output=True,
                          text=True, timeout=120)


def test_serve_dry_run_shows_the_parsed_config(config_model: Path) -> None:
    proc = _cli("serve", "-m", str(config_model), "--model-config", '{"x": "dry"}', "--dry-run",
                "--output", "json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["model_config"] == '{"x": "dry"}'
    assert shown["model_config_mapping"] == {"x": "dry"}


@pytest.mark.parametrize(
    ("value", "what"),
    [("{bad", "not valid JSON"), ("missing-config.yaml", "does not exist"), ("[1]", "JSON object")],
)
def test_serve_cli_bad_config_exits_2_with_what_where_fix(
    config_model: Path, value: str, what: str
) -> None:
    proc = _cli("serve", "-m", str(config_model), "--model-config", value)
    assert proc.returncode == 2, proc.stderr
    assert what in proc.stderr and "--model-config" in proc.stderr
    assert "fix:" in proc.stderr.lower() or "hint" in proc.stderr.lower(), proc.stderr
    assert "Traceback" not in proc.stderr
