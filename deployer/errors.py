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

    def to_dict(self) -> dict[str, str | None]:
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
