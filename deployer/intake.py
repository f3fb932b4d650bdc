"""Model intake, ``load_model(uri)``: the one entry point every command uses to take in a model.

URI -> local directory (:mod:`deployer.model.uri`) -> parsed MLmodel -> resolved environment,
all validated. Deployment needs the ``python_function`` flavor, so a model without it is
refused here (``parse_mlmodel`` itself accepts any flavor set, for tools that only read).

``LoadedModel.warnings`` holds everything worth telling the user (model-level findings first,
then the environment's); load_model does not log them, the caller decides how to show them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from deployer.environment.resolve import resolve_environment
from deployer.environment.spec import EnvironmentSpec
from deployer.environment.uv_lock import UvLock
from deployer.errors import ModelFormatError
from deployer.model.mlmodel import PYFUNC, MLModel, describe_flavors, parse_mlmodel
from deployer.model.uri import model_uri_text, resolve_model_uri

log = logging.getLogger("deployer")


@dataclass(frozen=True)
class LoadedModel:
    uri: str
    path: Path
    mlmodel: MLModel
    environment: EnvironmentSpec
    warnings: tuple[str, ...] = ()

    @property
    def uv_lock(self) -> UvLock | None:
        """The model's uv.lock (MLflow copies it from the uv project the model was saved in),
        checked to cover the requirements; when present it pins the image's model packages."""
        return self.environment.uv_lock

    @property
    def input_example_path(self) -> Path | None:
        """The saved input example file, when the model has one and it exists."""
        info = self.mlmodel.saved_input_example_info
        if info is None or not info.artifact_path:
            return None
        path = self.path / info.artifact_path
        return path if path.is_file() else None

    @property
    def serving_input_path(self) -> Path | None:
        """The saved serving-input example (a ready-made /invocations body), if present."""
        info = self.mlmodel.saved_input_example_info
        if info is None or not info.serving_input_path:
            return None
        path = self.path / info.serving_input_path
        return path if path.is_file() else None


def require_pyfunc(mlmodel: MLModel, where: str) -> None:
    if mlmodel.pyfunc is None:
        raise ModelFormatError(
            f"the model has no '{PYFUNC}' flavor (flavors present: "
            f"{describe_flavors(mlmodel.flavors)}); "
            "deployment needs the pyfunc flavor to load and score the model",
            where=where,
            fix="save the model with an MLflow flavor that adds python_function (e.g. "
            "mlflow.sklearn, "
            "mlflow.pyfunc), or wrap it in an mlflow.pyfunc.PythonModel",
        )


def _model_warnings(path: Path, mlmodel: MLModel) -> list[str]:
    warnings: list[str] = []
    pyfunc = mlmodel.pyfunc
    assert pyfunc is not None
    for key in ("data", "model_path", "code"):
        value = getattr(pyfunc, key)
        if value is not None and not (path / value).exists():
            warnings.append(
                f"MLmodel names python_function.{key} '{value}', which is not in the model "
                "directory"
            )
    info = mlmodel.saved_input_example_info
    if info is not None:
        for key in ("artifact_path", "serving_input_path"):
            value = getattr(info, key)
            if value and not (path / value).is_file():
                warnings.append(
                    f"MLmodel names an input example file '{value}' ({key}), which is missing"
                )
    if mlmodel.signature is None:
        warnings.append("the model has no signature: request data is passed to the model unchecked")
    return warnings


def load_model(uri: str | os.PathLike[str], *, cache_dir: Path | None = None) -> LoadedModel:
    """Resolve ``uri``, parse and validate the model and its environment."""
    uri = model_uri_text(uri)
    path = resolve_model_uri(uri, cache_dir=cache_dir)
    mlmodel = parse_mlmodel(path)
    require_pyfunc(mlmodel, str(path / "MLmodel"))
    environment = resolve_environment(path, mlmodel)
    warnings = tuple(dict.fromkeys([*_model_warnings(path, mlmodel), *environment.warnings]))
    log.debug("loaded model %s from %s (%d warnings)", uri, path, len(warnings))
    return LoadedModel(
        uri=uri, path=path, mlmodel=mlmodel, environment=environment, warnings=warnings
    )


__all__ = ["LoadedModel", "load_model"]
