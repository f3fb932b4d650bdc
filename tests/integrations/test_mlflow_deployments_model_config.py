"""``-C model_config=...`` in the MLflow plugin: the real ``mlflow deployments`` command line and
``get_deploy_client`` in Python (a mapping as MLflow users pass it), planned (dry run) against
moto's SageMaker: the config reaches the image build exactly as ``deploy --model-config`` does."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from mlflow.deployments import get_deploy_client
from mlflow.exceptions import MlflowException

import deployer
from tests.integrations.test_mlflow_deployments import MLFLOW, URI
from tests.targets.sagemaker.conftest import ROLE, run_cli

CONFIG = {"x": "from the plugin", "scale": 2.0}


def mlflow_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``mlflow ARGS`` in a subprocess importing this checkout's deployer (the plugin's entry
    point names the module; the module comes from the path)."""
    root = str(Path(deployer.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([MLFLOW, *args], capture_output=True, text=True, timeout=300, env=env)


def _build_step(plan: dict) -> dict:
    return next(c for c in plan["calls"] if c["operation"] == "build_image")["params"]["Build"]


def test_mapping_and_text_and_file_reach_the_build_like_the_cli(sm, bucket, config_model: Path,  # type: ignore[no-untyped-def]
                                                                tmp_path: Path) -> None:
    cli = run_cli("deploy", "--target", "sagemaker", "--name", "cfg", "-m", str(config_model),
                  "--execution-role-arn", ROLE, "--bucket", bucket, "--dry-run", "--output", "json",
                  "--model-config", json.dumps(CONFIG))
    assert cli.exit_code == 0, cli.stderr
    expected = _build_step(cli.json()["plan"])
    assert json.loads(expected["model_config"]) == CONFIG
    config_file = tmp_path / "config.yaml"
    config_file.write_text("x: from the plugin\nscale: 2.0\n")
    client = get_deploy_client(URI)
    for value in (CONFIG, json.dumps(CONFIG), str(config_file)):
        plugin = client.create_deployment("cfg", str(config_model), config={
            "execution_role_arn": ROLE, "bucket": bucket, "dry_run": True, "model_config": value})
        assert _build_step(plugin["plan"]) == expected
    assert sm.mutating_actions() == []


def test_mlflow_command_line_takes_it(sm, bucket, config_model: Path) -> None:  # type: ignore[no-untyped-def]
    res = mlflow_cli("deployments", "create", "-t", URI, "--name", "cfg", "-m", str(config_model),
                     "-C", f"execution_role_arn={ROLE}", "-C", f"bucket={bucket}", "-C", "dry_run=true",
                     "-C", "model_config=" + json.dumps(CONFIG))
    assert res.returncode == 0, res.stderr
    assert "dry run: nothing was changed" in res.stderr
    bad = mlflow_cli("deployments", "create", "-t", URI, "--name", "cfg", "-m", str(config_model),
                     "-C", f"execution_role_arn={ROLE}", "-C", f"bucket={bucket}", "-C", "dry_run=true",
                     "-C", "model_config={oops")
    assert bad.returncode != 0
    assert "-C model_config" in bad.stderr and "not valid JSON" in bad.stderr
    assert sm.mutating_actions() == []


@pytest.mark.parametrize(("value", "what"), [("[1, 2]", "JSON object"), (5, "expected a mapping"),
                                             ("no-such-config.yaml", "does not exist")])
def test_bad_values_are_mlflow_exceptions(sm, bucket, config_model: Path, value: object, what: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MlflowException, match=what):
        get_deploy_client(URI).create_deployment("cfg", str(config_model), config={
            "execution_role_arn": ROLE, "bucket": bucket, "dry_run": True, "model_config": value})


def test_azure_no_code_path_refuses_it_with_the_registry_fix(config_model: Path) -> None:
    """Without -C registry Azure builds the environment itself and runs its own scoring script:
    no image of deployer's to carry the config."""
    with pytest.raises(MlflowException, match="only with -C registry"):
        get_deploy_client("deployer-azureml:/local").create_deployment(
            "x", str(config_model), config={"model_config": json.dumps(CONFIG), "dry_run": True})
