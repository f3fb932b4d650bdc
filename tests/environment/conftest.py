"""Extra model variants for environment tests, saved by real MLflow (once per session)."""

from __future__ import annotations

import importlib
import platform
import sys
from pathlib import Path

import pytest

INDEX_WITH_SECRET = "https://deploy-user:s3cr3t-t0ken@pkgs.example.org/simple"


def _custom(model_code_dir: Path):  # type: ignore[no-untyped-def]
    if str(model_code_dir) not in sys.path:
        sys.path.insert(0, str(model_code_dir))
    return importlib.import_module("fixture_custom_models")


@pytest.fixture(scope="session")
def constraints_model(models_root: Path, model_code_dir: Path) -> Path:
    """pip_requirements with -c (MLflow copies constraints.txt in) and a private index with credentials."""
    import mlflow.pyfunc

    src = models_root / "constraints_src.txt"
    src.write_text("numpy<3\npandas>=2\n")
    path = models_root / "with_constraints"
    mlflow.pyfunc.save_model(
        str(path),
        python_model=_custom(model_code_dir).Fails(),
        code_paths=[str(model_code_dir / "fixture_custom_models.py")],
        pip_requirements=[f"-c {src}", f"--extra-index-url {INDEX_WITH_SECRET}", "pandas"],
    )
    return path


@pytest.fixture(scope="session")
def conda_packages_model(models_root: Path, model_code_dir: Path) -> Path:
    """A conda_env with a real conda-only package (cudatoolkit) besides python and pip."""
    import mlflow.pyfunc

    path = models_root / "with_conda_packages"
    mlflow.pyfunc.save_model(
        str(path),
        python_model=_custom(model_code_dir).Fails(),
        code_paths=[str(model_code_dir / "fixture_custom_models.py")],
        conda_env={
            "name": "gpu-env",
            "channels": ["conda-forge", "nvidia"],
            "dependencies": [f"python={platform.python_version()}", "pip<=24.0", "cudatoolkit=11.8", "conda-forge::libgomp",
                             {"pip": ["mlflow==3.17.2", "pandas==3.1.1"]}],
        },
    )
    return path


# What MLflow writes into the fixture models depends on the environment that saved them (the
# test venv): read those versions from it instead of hard-coding one machine's.
def _versions() -> tuple[str, str, tuple[str, ...]]:
    from importlib.metadata import version

    from mlflow.utils.environment import _PythonEnv

    return (platform.python_version(), version("scikit-learn"),
            tuple(_PythonEnv.current().build_dependencies))


PYTHON_VERSION, SKLEARN_VERSION, MLFLOW_BUILD_DEPS = _versions()
PIP_CAP = f"pip<={__import__('importlib.metadata').metadata.version('pip')}"
