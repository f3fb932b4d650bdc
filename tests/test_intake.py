"""load_model: URI -> validated model + environment, for every fixture model."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import ModelFormatError, ModelNotFoundError
from deployer.intake import LoadedModel, load_model
from tests.fixtures.models import ALL_SAVED_MODELS
from tests.model._edit import altered


@pytest.mark.parametrize("fixture", ALL_SAVED_MODELS)
def test_every_saved_model_loads(fixture: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fixture)
    model = load_model(str(path))
    assert isinstance(model, LoadedModel)
    assert model.path == path.resolve()
    assert model.uri == str(path)
    assert model.mlmodel.pyfunc is not None
    assert model.environment.kind == "virtualenv"
    assert model.environment.python_version == model.mlmodel.pyfunc.python_version
    assert "mlflow==3.17.2" in model.environment.pip_requirements


def test_file_uri(sklearn_model: Path) -> None:
    model = load_model(sklearn_model.resolve().as_uri())
    assert model.path == sklearn_model.resolve()


def test_input_example_paths(sklearn_model: Path, params_model: Path) -> None:
    with_example = load_model(str(sklearn_model))
    assert with_example.input_example_path == sklearn_model.resolve() / "input_example.json"
    assert with_example.serving_input_path == sklearn_model.resolve() / "serving_input_example.json"
    without = load_model(str(params_model))
    assert without.input_example_path is None and without.serving_input_path is None


def test_no_signature_is_a_warning(no_signature_model: Path) -> None:
    model = load_model(str(no_signature_model))
    assert any("no signature" in w for w in model.warnings)


def test_missing_files_named_by_mlmodel_are_warnings(tmp_path: Path, sklearn_model: Path) -> None:
    model_dir = altered(sklearn_model, tmp_path / "m", lambda d: None)
    (model_dir / "model.skops").unlink()
    (model_dir / "input_example.json").unlink()
    model = load_model(str(model_dir))
    assert any("model_path 'model.skops'" in w for w in model.warnings)
    assert any("input_example.json" in w for w in model.warnings)
    assert model.input_example_path is None


def test_no_pyfunc_flavor(tmp_path: Path, sklearn_model: Path) -> None:
    model_dir = altered(
        sklearn_model, tmp_path / "m", lambda d: d["flavors"].pop("python_function")
    )
    with pytest.raises(ModelFormatError) as exc:
        load_model(str(model_dir))
    assert "no 'python_function' flavor" in exc.value.what
    assert "flavors present: sklearn" in exc.value.what
    assert "deployment needs the pyfunc flavor" in exc.value.what
    assert exc.value.fix


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        load_model(str(tmp_path / "nope"))


def test_legacy_models_load(legacy_2018_model: Path, legacy_data_env_model: Path) -> None:
    old = load_model(str(legacy_2018_model))
    assert old.environment.source == "fallback"
    older = load_model(str(legacy_data_env_model))
    assert older.environment.kind == "conda"


def test_public_api_is_pinned() -> None:
    import deployer.environment
    import deployer.intake
    import deployer.model

    assert sorted(deployer.intake.__all__) == ["LoadedModel", "load_model"]
    assert not hasattr(deployer.model, "load_model")  # intake sits above model and environment
    assert sorted(deployer.environment.__all__) == [
        "EnvironmentSpec",
        "IndexOptions",
        "parse_requirement_line",
        "resolve_environment",
    ]


def test_intake_does_not_import_mlflow(sklearn_model: Path) -> None:
    """deployer inspect must work where mlflow is not installed: intake never imports it."""
    import subprocess
    import sys

    code = (
        "import sys; from deployer.intake import load_model; "
        f"load_model({str(sklearn_model)!r}); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'numpy', 'pandas', 'boto3')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
