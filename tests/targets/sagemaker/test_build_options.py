"""The build-option group on SageMaker's deploy and batch (moto over HTTP): every option
reaches the planned build step (``deployer:build_image``'s ``Build`` parameters, which the
build handler turns back into the same BuildOptions), and an option that changes the
image's content changes the image it plans to push. See tests/cli/test_build_options.py
for the other commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployer.building.plan import BuildOptions
from tests.fixtures.build_option_cases import OPTION_CASES, OptionCase
from tests.targets.sagemaker.conftest import ROLE, run_cli


def _build_step(command: str, model: Path, extra: list[str]) -> dict[str, Any]:
    if command == "deploy":
        args = ["deploy", "--target", "sagemaker", "--name", "group-test", "-m", str(model),
                "--execution-role-arn", ROLE, "--dry-run", "--output", "json"]
    else:
        args = ["batch", "--target", "sagemaker", "-m", str(model), "--execution-role-arn", ROLE,
                "--bucket", "models", "--input", "s3://data/in/", "--output", "s3://data/out/",
                "--dry-run", "--format", "json"]
    res = run_cli(*args, *extra)
    assert res.exit_code == 0, res.stderr
    return next(c for c in res.json()["plan"]["calls"] if c["operation"] == "build_image")["params"]


@pytest.mark.parametrize("command", ["deploy", "batch"])
@pytest.mark.parametrize("case", OPTION_CASES, ids=lambda c: c.id)
def test_each_option_reaches_the_build_step(command: str, case: OptionCase, sm: Any, bucket: str,
                                            sklearn_model: Path, option_files: Path) -> None:
    base = _build_step(command, sklearn_model, [])
    got = _build_step(command, sklearn_model, case.args(option_files))
    assert got["Build"][case.name] == case.expected(option_files)
    assert got["Build"]["target"] == "sagemaker" and case.name not in base["Build"]
    assert (got["LocalImage"] != base["LocalImage"]) is case.changes_tag
    options = BuildOptions.from_params(got["Build"])  # what the build handler builds with
    assert options.target == "sagemaker" and options.to_params() == got["Build"]
    assert sm.mutating_actions() == []


def test_image_env_is_baked_and_env_is_the_models(sm: Any, sklearn_model: Path) -> None:
    """On deploy, --image-env goes into the image, --env into SageMaker's Model environment."""
    res = run_cli("deploy", "--target", "sagemaker", "--name", "env-test", "-m", str(sklearn_model),
                  "--execution-role-arn", ROLE, "--dry-run", "--output", "json",
                  "--image-env", "BAKED=1", "--env", "RUNTIME=2")
    assert res.exit_code == 0, res.stderr
    calls = res.json()["plan"]["calls"]
    build = next(c for c in calls if c["operation"] == "build_image")["params"]
    model = next(c for c in calls if c["operation"] == "create_model")["params"]
    assert build["Build"]["env"] == [["BAKED", "1"]]
    env = model["PrimaryContainer"]["Environment"]
    assert env["RUNTIME"] == "2" and "BAKED" not in env
