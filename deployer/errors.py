"""One exception tree for everything deployer reports to a user.

    DeployerError                 exit 1   base: what went wrong, where, how to fix it
    ├── UsageError                exit 2   bad command-line usage / option values
    ├── ConfigError               exit 2   deployer.toml / [tool.deployer] / DEPLOYER_* problems
    ├── MissingDependencyError    exit 1   an optional extra is not installed
    ├── ModelError                exit 1   anything about the model itself
    │   ├── ModelNotFoundError             no model / no MLmodel at the location
    │   ├── ModelFormatError               MLmodel (or a file it names) is malformed
    │   ├── UnsafePathError                a path escapes the model directory
    │   └── ModelURIError                  unsupported URI / download failure
    ├── EnvironmentSpecError      exit 1   python_env.yaml / requirements / conda.yaml problems
    │   └── EnvironmentConflictError       models that cannot share one environment
    ├── RenderError               exit 1   a value cannot be rendered safely into a template
    ├── BuildError                exit 1   the image build failed
    ├── RegistryError             exit 1   push / pull / login failures
    │   └── RegistryAuthError
    ├── ServingError              exit 1   the scoring server could not start / load the model
    └── TargetError               exit 1   a deployment target (SageMaker, Azure ML...) failed

Every error carries three parts, rendered by :meth:`DeployerError.format_message`:
``what`` (the problem, echoing the rejected input), ``where`` (file / field / URI) and
``fix`` (the next step for the user). Messages never include secret values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])


class DeployerError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.where = where
        self.fix = fix

    def format_message(self) -> str:
        head = f"{self.where}: {self.what}" if self.where else self.what
        return f"{head}\n  hint: {self.fix}" if self.fix else head

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "message": self.what,
            "where": self.where,
            "fix": self.fix,
        }

    def __str__(self) -> str:
        return self.format_message()


class UsageError(DeployerError):
    exit_code = 2


class ConfigError(DeployerError):
    exit_code = 2


class MissingDependencyError(DeployerError):
    """An optional dependency (extra) is needed for this feature."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the Python package '{package}', which is not installed",
            fix=f"pip install 'deployer[{extra}]'",
        )


class ModelError(DeployerError):
    pass


class ModelNotFoundError(ModelError):
    pass


class ModelFormatError(ModelError):
    pass


class UnsafePathError(ModelError):
    pass


class ModelURIError(ModelError):
    pass


class EnvironmentSpecError(DeployerError):
    pass


class EnvironmentConflictError(EnvironmentSpecError):
    """Several models asked to share one environment (one image, one server) need different
    ones. ``conflicts``: what each model needs that the others refuse (objects with
    ``to_dict()``: :class:`deployer.environment.shared.Conflict`)."""

    def __init__(
        self,
        what: str,
        *,
        conflicts: tuple[Any, ...] = (),
        where: str | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(what, where=where, fix=fix)
        self.conflicts = conflicts

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "conflicts": [c.to_dict() for c in self.conflicts]}


class RenderError(DeployerError):
    pass


class BuildError(DeployerError):
    pass


class RegistryError(DeployerError):
    pass


class RegistryAuthError(RegistryError):
    pass


class ServingError(DeployerError):
    pass


class TargetError(DeployerError):
    pass


# ------------------------------------------------------------------ the Python API and MLflow
#: deployer error class -> its twin that is also an ``mlflow.exceptions.MlflowException``
_MLFLOW_TWINS: dict[type, type] = {}


def as_mlflow_exception(error: DeployerError) -> DeployerError:
    """``error`` as an instance of a class deriving from both its own class and
    ``mlflow.exceptions.MlflowException`` (when mlflow is importable; else ``error`` itself).

    For the Python API that stands in for MLflow's (``deployer.spark.spark_udf``): code written
    for MLflow catches ``MlflowException``, code written for deployer catches its classes; both
    catch this. The twin keeps the class name, ``what`` / ``where`` / ``fix``, ``exit_code`` and
    the what/where/hint rendering; its MLflow ``message`` is that rendering and its
    ``error_code`` is MLflow's for the kind of error. mlflow is imported only here, lazily.
    """
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:
        return error
    if isinstance(error, MlflowException):
        return error
    base = type(error)
    twin_class = _MLFLOW_TWINS.get(base)
    if twin_class is None:
        twin_class = _MLFLOW_TWINS[base] = type(
            base.__name__,
            (base, MlflowException),
            {
                "__module__": base.__module__,
                "__qualname__": base.__qualname__,
                "__doc__": base.__doc__,
                "__reduce__": _reduce_twin,
            },
        )
    twin = twin_class.__new__(twin_class)
    MlflowException.__init__(twin, error.format_message(), error_code=_mlflow_error_code(error))
    twin.__dict__.update({k: v for k, v in vars(error).items() if k in ("what", "where", "fix")})
    twin.__cause__ = error.__cause__
    twin.__suppress_context__ = error.__suppress_context__
    return twin


def _mlflow_error_code(error: DeployerError) -> int:
    from mlflow.protos.databricks_pb2 import (
        INTERNAL_ERROR,
        INVALID_PARAMETER_VALUE,
        RESOURCE_DOES_NOT_EXIST,
    )

    if isinstance(error, (UsageError, ConfigError, ModelURIError)):
        return INVALID_PARAMETER_VALUE
    if isinstance(error, ModelNotFoundError):
        return RESOURCE_DOES_NOT_EXIST
    return INTERNAL_ERROR


def _reduce_twin(self: DeployerError) -> tuple[object, tuple[object, ...]]:
    """Twins pickle (Spark and multiprocessing pickle exceptions) as their deployer class."""
    base = type(self).__mro__[1]
    return _rebuild_twin, (base, self.what, self.where, self.fix)


def _rebuild_twin(base: type, what: str, where: str | None, fix: str | None) -> DeployerError:
    error = base.__new__(base)
    DeployerError.__init__(error, what, where=where, fix=fix)
    return as_mlflow_exception(error)


def mlflow_api(function: _F) -> _F:
    """Decorate a Python-API entry point that mirrors an MLflow function: the deployer errors it
    raises are also ``MlflowException`` (:func:`as_mlflow_exception`)."""
    import functools

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except DeployerError as exc:
            twin = as_mlflow_exception(exc)
            if twin is exc:
                raise
            raise twin.with_traceback(exc.__traceback__) from exc.__cause__

    return wrapper  # type: ignore[return-value]
