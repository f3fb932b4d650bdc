"""Fold a model's environment files into one :class:`EnvironmentSpec`.

Order of preference (it mirrors what MLflow itself does when it rebuilds a model environment,
``mlflow.utils.virtualenv._get_python_env``, plus the conda case MLflow handles separately):

1. conda file (``env.conda``, default ``conda.yaml``) declaring conda-only packages
   -> ``kind='conda'``: Python, channels, conda packages and the pip section come from it;
2. python_env file (``env.virtualenv``, default ``python_env.yaml``) -> ``kind='virtualenv'``:
   Python, build dependencies, dependencies (``-r requirements.txt`` and ``-c
   constraints.txt`` followed);
3. conda file with only python + pip + a pip list -> ``kind='virtualenv'`` (no conda needed);
4. a bare ``requirements.txt`` next to MLmodel (Python from the pyfunc flavor);
5. nothing -> ``mlflow`` plus the flavor's library, with a warning saying so.

A ``uv.lock`` next to MLmodel (MLflow copies it from the uv project the model was saved in)
does not replace these files: it becomes ``EnvironmentSpec.uv_lock``, checked here to cover
the requirements they list (:mod:`deployer.environment.uv_lock`), and the image builder
installs its versions and hashes.

Declared files that are missing are reported as warnings and the next source is tried, as
MLflow does. Every file path is checked to stay inside the model directory.
"""

from __future__ import annotations

from pathlib import Path

from deployer.environment.conda import CondaEnv, parse_conda_file
from deployer.environment.python_env import parse_python_env_file
from deployer.environment.requirements import (
    RequirementSet,
    parse_requirement_line,
    read_requirement_lines,
    read_requirements_file,
)
from deployer.environment.spec import EnvironmentSpec, IndexOptions
from deployer.environment.uv_lock import UvLock, check_covers, find_uv_lock
from deployer.model.mlmodel import MLModel
from deployer.model.paths import safe_model_path
from deployer.redact import redact_text

PYTHON_ENV_FILE = "python_env.yaml"
CONDA_FILE = "conda.yaml"
REQUIREMENTS_FILE = "requirements.txt"
CONSTRAINTS_FILE = "constraints.txt"

# loader module -> the pip package its flavor needs (used only when nothing is declared).
FLAVOR_PACKAGES = {
    "mlflow.sklearn": "scikit-learn",
    "mlflow.xgboost": "xgboost",
    "mlflow.lightgbm": "lightgbm",
    "mlflow.catboost": "catboost",
    "mlflow.pytorch": "torch",
    "mlflow.tensorflow": "tensorflow",
    "mlflow.keras": "keras",
    "mlflow.onnx": "onnxruntime",
    "mlflow.statsmodels": "statsmodels",
    "mlflow.prophet": "prophet",
    "mlflow.pmdarima": "pmdarima",
    "mlflow.spacy": "spacy",
    "mlflow.transformers": "transformers",
    "mlflow.sentence_transformers": "sentence-transformers",
    "mlflow.h2o": "h2o",
    "mlflow.paddle": "paddlepaddle",
    "mlflow.spark": "pyspark",
    "mlflow.pyfunc.model": "cloudpickle",
}


def resolve_environment(model_dir: Path, mlmodel: MLModel) -> EnvironmentSpec:
    """Resolve what ``mlmodel`` (saved in ``model_dir``) needs installed."""
    model_dir = Path(model_dir)
    warnings: list[str] = []
    pyfunc = mlmodel.pyfunc
    declared_venv = pyfunc.env.virtualenv if pyfunc else None
    declared_conda = pyfunc.env.conda if pyfunc else None
    mlmodel_where = str(model_dir / "MLmodel")

    venv_path = _locate(
        model_dir, declared_venv, PYTHON_ENV_FILE, "env.virtualenv", mlmodel_where, warnings
    )
    conda_path = _locate(
        model_dir, declared_conda, CONDA_FILE, "env.conda", mlmodel_where, warnings
    )
    conda = parse_conda_file(conda_path) if conda_path else None
    if conda:
        warnings.extend(conda.warnings)

    if conda is not None and conda_path is not None and conda.conda_packages:
        spec = _from_conda(model_dir, conda_path, conda, kind="conda")
        if venv_path:
            warnings.append(
                f"{conda_path.name} declares conda packages ({', '.join(conda.conda_packages)}); "
                f"the environment is built with conda from it and {venv_path.name} is not used"
            )
    elif venv_path is not None:
        spec = _from_python_env(model_dir, venv_path)
    elif conda is not None and conda_path is not None:
        spec = _from_conda(model_dir, conda_path, conda, kind="virtualenv")
    elif (model_dir / REQUIREMENTS_FILE).is_file():
        reqs = read_requirements_file(
            REQUIREMENTS_FILE, model_dir=model_dir, base_dir=model_dir, where=mlmodel_where
        )
        spec = _spec("virtualenv", None, reqs, source=REQUIREMENTS_FILE)
    else:
        spec = None

    if spec is None or (not spec.pip_requirements and spec.kind == "virtualenv"):
        spec = _fallback(mlmodel, spec, warnings)

    warnings.extend(spec.warnings)
    python = spec.python_version
    flavor_python = pyfunc.python_version if pyfunc else None
    if python is None and flavor_python:
        python = flavor_python
        warnings.append(
            f"no Python version in the environment files; using {flavor_python} from MLmodel"
        )
    elif python is None:
        warnings.append("no Python version declared anywhere; the builder's default Python is used")
    elif (
        flavor_python
        and not flavor_python.startswith(python)
        and not python.startswith(flavor_python)
    ):
        warnings.append(
            f"{spec.source} asks for Python {python} but MLmodel says the model was saved with "
            f"Python {flavor_python}; {python} is used"
        )
    _warn_unused_constraints(model_dir, spec, warnings)
    uv_lock = _uv_lock(model_dir, spec, python, mlmodel_where, warnings)
    return EnvironmentSpec(
        kind=spec.kind,
        python_version=python,
        pip_requirements=spec.pip_requirements,
        constraints=spec.constraints,
        conda_packages=spec.conda_packages,
        conda_channels=spec.conda_channels,
        build_dependencies=spec.build_dependencies,
        index_options=spec.index_options,
        source=spec.source,
        warnings=tuple(dict.fromkeys(redact_text(w) for w in warnings)),
        uv_lock=uv_lock,
    )


def _uv_lock(
    model_dir: Path, spec: EnvironmentSpec, python: str | None, where: str, warnings: list[str]
) -> UvLock | None:
    """The model's uv.lock when it is the lock of a pip environment that it covers."""
    lock = find_uv_lock(model_dir, where)
    if lock is None:
        return None
    if spec.kind != "virtualenv":
        warnings.append(
            f"{lock.relpath} is not used: the environment is built with conda from {spec.source}"
        )
        return None
    if python is not None:
        check_covers(lock, spec.pip_requirements, python, source=spec.source)
    return lock


def _locate(
    model_dir: Path, declared: str | None, default: str, field: str, where: str, warnings: list[str]
) -> Path | None:
    """The file the flavor declares (must exist, else a warning), or the default name if present."""
    if declared is not None:
        path = safe_model_path(
            model_dir, declared, field=f"flavors.python_function.{field}", where=where
        )
        if path.is_file():
            return path
        warnings.append(
            f"MLmodel names {field} file '{declared}', which is not in the model directory"
        )
        return None
    path = safe_model_path(model_dir, default, field=default, where=where)
    return path if path.is_file() else None


def _spec(
    kind: str,
    python: str | None,
    reqs: RequirementSet,
    *,
    source: str,
    build: tuple[str, ...] = (),
    conda: CondaEnv | None = None,
) -> EnvironmentSpec:
    return EnvironmentSpec(
        kind=kind,  # type: ignore[arg-type]
        python_version=python,
        pip_requirements=tuple(reqs.requirements),
        constraints=tuple(reqs.constraints),
        conda_packages=conda.conda_packages if conda and kind == "conda" else (),
        conda_channels=conda.channels if conda and kind == "conda" else (),
        build_dependencies=build,
        index_options=IndexOptions(
            index_url=reqs.index_url,
            extra_index_urls=tuple(reqs.extra_index_urls),
            find_links=tuple(reqs.find_links),
        ),
        source=" + ".join(dict.fromkeys([source, *reqs.files])),
        warnings=tuple(reqs.warnings),
    )


def _from_python_env(model_dir: Path, path: Path) -> EnvironmentSpec:
    env = parse_python_env_file(path)
    build = tuple(
        b
        for b in (
            parse_requirement_line(dep, where=f"{path} (build_dependencies[{i}])")  # type: ignore[arg-type]
            for i, dep in enumerate(env.build_dependencies)
        )
        if b
    )
    reqs = read_requirement_lines(
        list(env.dependencies),
        model_dir=model_dir,
        base_dir=model_dir,
        where=lambda n: f"{path} (dependencies[{n - 1}])",
    )
    reqs.warnings[:0] = env.warnings
    return _spec("virtualenv", env.python_version, reqs, source=_rel(model_dir, path), build=build)


def _from_conda(model_dir: Path, path: Path, conda: CondaEnv, *, kind: str) -> EnvironmentSpec:
    reqs = read_requirement_lines(
        list(conda.pip),
        model_dir=model_dir,
        base_dir=model_dir,
        where=lambda n: f"{path} (pip[{n - 1}])",
    )
    build = tuple(
        b for b in (parse_requirement_line(p, where=str(path)) for p in conda.build_packages) if b
    )
    return _spec(
        kind, conda.python_version, reqs, source=_rel(model_dir, path), build=build, conda=conda
    )


def _fallback(
    mlmodel: MLModel, found: EnvironmentSpec | None, warnings: list[str]
) -> EnvironmentSpec:
    loader = mlmodel.pyfunc.loader_module if mlmodel.pyfunc else None
    packages = ["mlflow"]
    lib = FLAVOR_PACKAGES.get(loader or "")
    if lib:
        packages.append(lib)
    if found is None:
        what = (
            "the model declares no environment (no python_env.yaml, conda.yaml or requirements.txt)"
        )
    else:
        what = f"{found.source} lists no pip requirements"
    hint = f" for loader {loader}" if loader else ""
    warnings.append(
        f"{what}; falling back to {' + '.join(packages)}{hint}, unpinned. Save the model with a "
        "recent MLflow (or add requirements.txt) to pin versions"
    )
    base = found or EnvironmentSpec(kind="virtualenv", python_version=None, pip_requirements=())
    return EnvironmentSpec(
        kind="virtualenv",
        python_version=base.python_version,
        pip_requirements=tuple(packages),
        constraints=base.constraints,
        build_dependencies=base.build_dependencies,
        index_options=base.index_options,
        source="fallback" if found is None else f"{found.source} + fallback",
        warnings=base.warnings,
    )


def _warn_unused_constraints(model_dir: Path, spec: EnvironmentSpec, warnings: list[str]) -> None:
    if (model_dir / CONSTRAINTS_FILE).is_file() and CONSTRAINTS_FILE not in spec.source.split(
        " + "
    ):
        warnings.append(
            f"{CONSTRAINTS_FILE} is in the model directory but no requirement file references it "
            "with '-c constraints.txt'; it is not applied"
        )


def _rel(model_dir: Path, path: Path) -> str:
    try:
        return path.relative_to(model_dir.resolve()).as_posix()
    except ValueError:
        return path.name
