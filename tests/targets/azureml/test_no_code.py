"""The no-code path check (deployer/targets/azureml/no_code.py), at plan time, through the real
azure-ai-ml SDK against the fake ARM transport: nothing is created, no cloud is needed.

Models are saved by MLflow; their environments are changed with ``deployer requirements`` (the
edit MLflow's update-pip-requirements makes) or by setting the Python version in the files
MLflow wrote."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from deployer.environment.edit import apply_requirements_edit, plan_requirements_edit
from deployer.errors import UsageError
from deployer.targets.azureml.no_code import SCORING_PACKAGES, SUPPORTED_PYTHON
from deployer.targets.base import DeployRequest

EP = "nocode-ep"


def no_code_request(model: Path, **options: object) -> DeployRequest:
    return DeployRequest(EP, model_uri=str(model), image_uri=None,
                         options={"instance_type": "Standard_DS3_v2", "instance_count": 1, "model_name": "m",
                                  **options})


def with_python(src: Path, dest: Path, version: str) -> Path:
    """A copy of ``src`` whose python_env.yaml and conda.yaml ask for Python ``version``."""
    model = Path(shutil.copytree(src, dest))
    env = yaml.safe_load((model / "python_env.yaml").read_text())
    env["python"] = version
    (model / "python_env.yaml").write_text(yaml.safe_dump(env, sort_keys=False))
    conda = (model / "conda.yaml").read_text()
    (model / "conda.yaml").write_text(re.sub(r"python=[0-9.]+", f"python={version}", conda))
    return model


def test_a_model_as_mlflow_3_saves_it_gets_the_warnings_with_the_fix(make_target, arm, sklearn_model: Path) -> None:  # type: ignore[no-untyped-def]
    plan = make_target().plan(no_code_request(sklearn_model))
    found = plan.facts["no_code_check"]
    assert found["python"].startswith("3.11") and found["mlflow"].startswith("3.")
    text = "\n".join(found["warnings"])
    for name in ("azureml-ai-monitoring", "azureml-inference-server-http"):
        assert f"lack {name}" in text and f"add {name}" in text
    assert "lack mlflow " not in text  # MLflow lists itself
    assert "mlflow 3" in text and all("--registry" in w for w in found["warnings"])
    assert [c.operation for c in plan.calls][1] == "models.create_or_update"  # still planned
    assert arm.calls(include_reads=False) == []


def test_a_model_with_what_the_path_needs_passes(make_target, sklearn_model: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = Path(shutil.copytree(sklearn_model, tmp_path / "m"))
    apply_requirements_edit(plan_requirements_edit(
        model, "add", ["mlflow==2.16.2", "azureml-inference-server-http", "azureml-ai-monitoring"]))
    plan = make_target().plan(no_code_request(model))
    assert plan.facts["no_code_check"] == {"python": plan.facts["no_code_check"]["python"],
                                           "mlflow": "2.16.2", "warnings": []}


@pytest.mark.parametrize("python", ["3.8.18", "3.13.1"])
def test_a_python_the_scoring_server_does_not_run_on_is_refused(make_target, arm, sklearn_model: Path,  # type: ignore[no-untyped-def]
                                                                 tmp_path: Path, python: str) -> None:
    model = with_python(sklearn_model, tmp_path / "m", python)
    with pytest.raises(UsageError) as info:
        make_target().plan(no_code_request(model))
    xy = ".".join(python.split(".")[:2])
    assert f"needs Python {xy}" in info.value.what
    assert ", ".join(f"{a}.{b}" for a, b in SUPPORTED_PYTHON) in info.value.what
    assert "--registry" in (info.value.fix or "")
    assert arm.calls(include_reads=False) == []


@pytest.mark.parametrize(("a", "b"), [(3, 9), (3, 12)])
def test_the_supported_range_edges_pass(make_target, sklearn_model: Path, tmp_path: Path, a: int, b: int) -> None:  # type: ignore[no-untyped-def]
    model = with_python(sklearn_model, tmp_path / "m", f"{a}.{b}.1")
    assert make_target().plan(no_code_request(model)).facts["no_code_check"]["python"] == f"{a}.{b}.1"


def test_the_rules_match_the_installed_scoring_server() -> None:
    """The Python range is the one azureml-inference-server-http declares (its metadata)."""
    from importlib.metadata import metadata

    meta = metadata("azureml-inference-server-http")
    classifiers = {c.rsplit(" :: ", 1)[1] for c in meta.get_all("Classifier") or ()
                   if c.startswith("Programming Language :: Python :: 3.")}
    assert classifiers == {f"{a}.{b}" for a, b in SUPPORTED_PYTHON}
    assert meta["Requires-Python"] == f">={SUPPORTED_PYTHON[0][0]}.{SUPPORTED_PYTHON[0][1]}"
    assert "azureml-inference-server-http" in SCORING_PACKAGES


def test_other_sources_are_not_checked(make_target, sklearn_model: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A pushed image (--image-uri) brings its own environment: no check, even for Python 3.13."""
    model = with_python(sklearn_model, tmp_path / "m", "3.13.1")
    request = DeployRequest(EP, model_uri=str(model), image_uri="myregistry.azurecr.io/iris:1",
                            options={"instance_type": "Standard_DS3_v2", "instance_count": 1})
    assert "no_code_check" not in make_target().plan(request).facts


def test_findings_are_logged_as_warnings(make_target, sklearn_model: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """What the plan's facts hold (``--dry-run --output json``) is also on stderr as warnings."""
    with caplog.at_level("WARNING", logger="deployer"):
        plan = make_target().plan(no_code_request(sklearn_model))
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert all(w in logged for w in plan.facts["no_code_check"]["warnings"])
