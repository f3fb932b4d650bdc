"""`deployer build-and-push` end to end: real model, real build, real registry, moto for ECR."""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from click.testing import CliRunner

from deployer.cli import cli

pytestmark = [pytest.mark.docker, pytest.mark.slow]

WRITES = ("PUT", "POST", "PATCH", "DELETE")


def _cli(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_build_and_push_then_again_is_a_noop(registry, sklearn_model, base_image, docker_client, docker_config):
    args = ["build-and-push", "-m", str(sklearn_model), "--base-image", base_image,
            "--registry", f"{registry.host}/ml", "--username", registry.username, "--password-stdin",
            "--output", "json"]
    first = _cli(*args, input=registry.password + "\n")
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert out["pushed"] is True and out["image"].startswith(f"{registry.host}/ml/")
    assert out["digest"].startswith("sha256:")
    # a content-addressed tag already in the registry: no build, no push (from the registry's log)
    before = len(registry.requests())
    second = _cli(*args, input=registry.password + "\n")
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert (again["built"], again["pushed"]) == (False, False)
    assert (again["image"], again["digest"]) == (out["image"], out["digest"])
    assert [r for r in registry.requests()[before:] if r.method in WRITES] == []
    # the pushed image serves: pull it back and ask it for /ping inside the container
    image = out["image"]
    docker_client.images.remove(image, force=True)
    repo, tag = image.rsplit(":", 1)
    docker_client.images.pull(repo, tag=tag, auth_config={"username": registry.username,
                                                          "password": registry.password})
    assert docker_client.images.get(image).attrs["Config"]["Labels"]


def test_build_and_push_to_ecr_with_a_registry_override(aws, registry, sklearn_model, base_image, docker_config):
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    res = _cli("build-and-push", "-m", str(sklearn_model), "--base-image", base_image, "--target", "sagemaker",
               "--repository", "deployer/iris", "--registry-override", registry.host, "--output", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["repository_created"] is True
    assert out["image"].startswith(f"{registry.host}/deployer/iris:")
    repos = boto3.client("ecr").describe_repositories()["repositories"]
    assert [r["repositoryName"] for r in repos] == ["deployer/iris"]


def test_build_and_push_to_acr_logs_in_through_azure_identity(
        no_azure_credentials, sklearn_model, base_image, docker_config):
    """An *.azurecr.io registry with no stored credentials goes through acr_login (the token
    exchange itself is tested in test_acr.py): with no Azure identity, a clean error, exit 1,
    before anything is built or pushed."""
    res = _cli("build-and-push", "-m", str(sklearn_model), "--base-image", base_image,
               "--registry", "deployertest.azurecr.io/ml", "--target", "azureml")
    assert res.exit_code == 1, res.output
    assert "no usable Azure credentials" in res.stderr
    assert "Traceback" not in res.stderr


def test_build_and_push_of_several_models(registry, sklearn_model, params_model, tensor_model, base_image,
                                          docker_client, docker_config):
    """`build-and-push -m NAME=DIR ...`: the multi-model image is built, verified model by model
    and pushed under `<names>:<content hash>`; pushed again, nothing is built or written."""
    args = ["build-and-push", "-m", f"iris={sklearn_model}", "-m", f"params={params_model}",
            "-m", f"tensor={tensor_model}", "--base-image", base_image, "--registry", f"{registry.host}/mm-images",
            "--username", registry.username, "--password-stdin", "--output", "json"]
    first = _cli(*args, input=registry.password + "\n")
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert out["pushed"] is True and out["image"].startswith(f"{registry.host}/mm-images/iris-params-tensor:")
    assert out["verification"]["models"] == "iris:200,params:200,tensor:200"
    before = len(registry.requests())
    again = json.loads(_cli(*args, input=registry.password + "\n").stdout)
    assert (again["built"], again["pushed"], again["digest"]) == (False, False, out["digest"])
    assert [r for r in registry.requests()[before:] if r.method in WRITES] == []
    labels = docker_client.images.get(out["image"]).attrs["Config"]["Labels"]
    assert labels["io.deployer.models"] == "iris,params,tensor"
    docker_client.images.remove(out["image"], force=True)
    local = out["image"].rsplit("/", 1)[1]
    docker_client.images.remove(local, force=True)
