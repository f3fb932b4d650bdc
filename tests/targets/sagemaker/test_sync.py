"""``deployer sync`` on SageMaker (moto's server over HTTP) following an alias of a real
``mlflow server``: v1 deployed with its provenance tags, nothing when nothing moved, v2 when the
alias moves; ``status`` shows what serves."""

from __future__ import annotations

from pathlib import Path

import boto3
from mlflow import MlflowClient

from deployer.model.provenance import Provenance
from tests.model.test_uri import log_model_dir, register
from tests.targets.sagemaker.conftest import ECR_IMAGE, ROLE, run_cli


def write_file(path: Path, name: str, model: str, bucket: str) -> Path:
    path.write_text(
        "[[endpoints]]\n"
        f'name = "{name}"\ntarget = "sagemaker"\nmodel = "{model}"\n'
        f'image_uri = "{ECR_IMAGE}"\nexecution_role_arn = "{ROLE}"\nbucket = "{bucket}"\n'
        'mode = "replace"\n'
    )
    return path


def config_tags(name: str) -> dict[str, str]:
    sm = boto3.client("sagemaker")
    config = sm.describe_endpoint(EndpointName=name)["EndpointConfigName"]
    arn = sm.describe_endpoint_config(EndpointConfigName=config)["EndpointConfigArn"]
    return {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}


def test_sync_follows_the_alias(  # type: ignore[no-untyped-def]
    sm, bucket, mlflow_env: str, sklearn_model: Path, params_model: Path, tmp_path: Path,
    monkeypatch,
) -> None:
    monkeypatch.setenv("DEPLOYER_CACHE_DIR", str(tmp_path / "cache"))
    name = "sync-sm-iris"
    run1, run2 = log_model_dir(sklearn_model), log_model_dir(params_model)
    v1, v2 = register(run1, name), register(run2, name)
    client = MlflowClient()
    client.set_registered_model_alias(name, "champion", v1)
    file = write_file(tmp_path / "deployments.toml", "iris", f"models:/{name}@champion", bucket)

    dry = run_cli("sync", "-f", str(file), "--dry-run", "--output", "json")
    assert dry.exit_code == 0, dry.stderr
    (entry,) = dry.json()["entries"]
    assert entry["decision"] == "deploy" and entry["wanted"]["version"] == v1
    assert entry["live"] is None and entry["plan"]["action"] == "create"
    assert sm.mutating_actions() == []  # a dry run changes nothing

    first = run_cli("sync", "-f", str(file), "--output", "json")
    assert first.exit_code == 0, first.stderr
    assert first.json()["entries"][0] | {"endpoint_url": None} == {
        "name": "iris", "target": "sagemaker", "result": "deployed", "version": v1,
        "action": "create", "endpoint_url": None, "error": None,
    }
    tags = config_tags("iris")
    assert tags["deployer:model-name"] == name and tags["deployer:model-version"] == v1
    assert tags["deployer:model-alias"] == "champion" and tags["deployer:model-run-id"] == run1
    assert tags["deployer:model-digest"].startswith("sha256:")

    status = run_cli("status", "--target", "sagemaker", "--name", "iris", "--output", "json")
    live = Provenance(**status.json()["details"]["provenance"])
    assert (live.registered_model, live.version, live.alias) == (name, v1, "champion")
    text = run_cli("status", "--target", "sagemaker", "--name", "iris")
    assert f"deployed from: {name} v{v1}, @champion, run {run1}, sha256:" in text.stdout

    before = sm.mutating_actions()
    again = run_cli("sync", "-f", str(file), "--output", "json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["entries"][0]["result"] == "unchanged"
    assert sm.mutating_actions() == before  # nothing moved: nothing done

    client.set_registered_model_alias(name, "champion", v2)
    moved = run_cli("sync", "-f", str(file), "--output", "json")
    assert moved.exit_code == 0, moved.stderr
    assert moved.json()["entries"][0]["result"] == "deployed"
    assert moved.json()["entries"][0]["action"] == "replace"
    tags = config_tags("iris")
    assert tags["deployer:model-version"] == v2 and tags["deployer:model-run-id"] == run2
