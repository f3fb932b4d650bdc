"""What Azure ML's no-code MLflow path needs from a model's environment, checked at plan time.

``deploy --target azureml -m MODEL`` without ``--registry`` registers the model as
``mlflow_model``: Azure builds a conda environment from the model's own conda.yaml on its
curated MLflow inference image and runs its own generated scoring script
(``mlflow_score_script.py``) under ``azmlinfsrv`` in that environment. deployer's verified
image is not involved, so whatever that path needs must already be in the model. The rules,
each with where it comes from (see README, "Azure ML no-code path check"):

* **Python X.Y** must be one the scoring server runs on: azureml-inference-server-http 1.5.1
  declares ``Requires-Python >=3.9`` and classifiers 3.9-3.12, and Azure's curated MLflow
  inference images stop at py312 (azureml-assets #3607). Outside that range: **refused**.
* **The scoring script's imports** must be installable from the model's requirements:
  ``mlflow`` (it loads the model with ``mlflow.pyfunc``), ``azureml-inference-server-http`` (the
  server runs inside the model's environment; azureml-examples #3875) and
  ``azureml-ai-monitoring`` (the generated script imports ``azureml.ai.monitoring`` since the
  May 2026 image update, azureml-inference-server 1.3+: azureml-examples #3904, #3923, #4008;
  azureml-inference-server #112). Missing: a **warning** (the deployment fails to boot, 502).
* **mlflow major**: models whose mlflow requirement (or MLmodel ``mlflow_version``) is 3.x are
  not what Azure's MLflow images were made for (azureml-examples #3875 pins ``mlflow<3``): a
  **warning**.

The fix is the same for all: ``--registry REGISTRY`` deploys deployer's own image (built from
the model's locked environment, run once offline and scored before it is pushed), to which none
of these rules apply; or, for the packages, ``deployer requirements -m DIR add ...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from deployer.errors import UsageError
from deployer.intake import LoadedModel

#: Python X.Y the no-code scoring server supports (azureml-inference-server-http 1.5.1).
SUPPORTED_PYTHON = ((3, 9), (3, 10), (3, 11), (3, 12))
#: Highest mlflow major Azure's MLflow inference images are known to work with.
MLFLOW_MAJOR = 2
#: Distributions the generated scoring script imports -> why.
SCORING_PACKAGES: dict[str, str] = {
    "mlflow": "the scoring script loads the model with mlflow.pyfunc",
    "azureml-inference-server-http": "azmlinfsrv, the server Azure starts, runs inside the "
    "model's environment",
    "azureml-ai-monitoring": "the generated scoring script imports azureml.ai.monitoring "
    "(Azure's MLflow images since May 2026)",
}
_REGISTRY_FIX = (
    "deploy with --registry REGISTRY: deployer builds the model's locked environment into its "
    "own image, verifies it offline and pushes it, so Azure's no-code environment build is "
    "not used"
)


@dataclass(frozen=True)
class NoCodeCheck:
    """The findings for one model: ``warnings`` (shown in the plan and logged)."""

    python_version: str | None
    mlflow_version: str | None
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "python": self.python_version,
            "mlflow": self.mlflow_version,
            "warnings": list(self.warnings),
        }


def check_no_code(loaded: LoadedModel) -> NoCodeCheck:
    """Check the model against the no-code path; an unsupported Python is a UsageError."""
    env = loaded.environment
    names = _names(env.pip_requirements)
    python = env.python_version
    warnings: list[str] = []
    xy = _xy(python)
    if xy is None:
        warnings.append(
            "the model does not say which Python it needs: Azure's no-code build picks one; "
            + _REGISTRY_FIX
        )
    elif xy not in SUPPORTED_PYTHON:
        supported = ", ".join(f"{a}.{b}" for a, b in SUPPORTED_PYTHON)
        raise UsageError(
            f"the model needs Python {xy[0]}.{xy[1]}, and Azure ML's no-code MLflow path runs "
            f"its scoring server (azureml-inference-server-http) on Python {supported} only",
            where=f"{loaded.path} (python {python})",
            fix=_REGISTRY_FIX,
        )
    missing = [
        name
        for name in SCORING_PACKAGES
        if name not in names and not (name == "mlflow" and "mlflow-skinny" in names)
    ]
    for name in missing:
        warnings.append(
            f"the model's requirements lack {name} ({SCORING_PACKAGES[name]}): Azure's no-code "
            f"deployment will fail to boot; {_REGISTRY_FIX}, or add it: deployer requirements "
            f"-m {loaded.path} add {name}"
        )
    mlflow = _mlflow_version(names, loaded.mlmodel.mlflow_version)
    major = _major(mlflow)
    if major is not None and major > MLFLOW_MAJOR:
        warnings.append(
            f"the model needs mlflow {mlflow}; Azure ML's no-code MLflow images are made for "
            f"mlflow {MLFLOW_MAJOR}.x (mlflow 3 is reported incompatible); {_REGISTRY_FIX}"
        )
    return NoCodeCheck(python, mlflow, tuple(warnings))


def _names(lines: tuple[str, ...] | list[str]) -> dict[str, Requirement]:
    out: dict[str, Requirement] = {}
    for line in lines:
        try:
            req = Requirement(line.split(" --", 1)[0])
        except InvalidRequirement:
            continue
        out[canonicalize_name(req.name)] = req
    return out


def _xy(version: str | None) -> tuple[int, int] | None:
    match = re.match(r"^(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _mlflow_version(names: dict[str, Requirement], saved_with: str | None) -> str | None:
    """The mlflow version the model pins (``==``), else the one that saved it."""
    for name in ("mlflow", "mlflow-skinny"):
        req = names.get(name)
        if req is None:
            continue
        for spec in req.specifier:
            if spec.operator in ("==", "==="):
                return spec.version
    return saved_with


def _major(version: str | None) -> int | None:
    match = re.match(r"^(\d+)", version or "")
    return int(match.group(1)) if match else None
