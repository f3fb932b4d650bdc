"""Deploy from a model directory: build, ECR repository + login on moto, push to a real registry."""

from __future__ import annotations

import base64
import json

import boto3
import pytest

from tests.targets.sagemaker.conftest import ROLE, run_cli

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_deploy_builds_pushes_and_is_idempotent(sm, registry, sklearn_model, base_image, tmp_path, monkeypatch):
    config = tmp_path / "docker-config"
    config.mkdir()
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    args = ["deploy", "--target", "sagemaker", "--name", "built", "-m", str(sklearn_model),
            "--base-image", base_image, "--registry-override", registry.host, "--execution-role-arn", ROLE,
            "--output", "json"]

    dry = run_cli(*args, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    ops = [f"{c['service']}:{c['operation']}" for c in dry.json()["plan"]["calls"]]
    assert ops[:3] == ["deployer:build_image", "ecr:create_repository", "docker:push"]
    assert "s3:upload_model_archive" not in ops  # the built image carries the model
    assert boto3.client("ecr").describe_repositories()["repositories"] == []

    res = run_cli(*args)
    assert res.exit_code == 0, res.stderr
    out = res.json()
    image = out["details"]["image"]
    assert image.startswith("123456789012.dkr.ecr.us-east-1.amazonaws.com/deployer/built:")
    repos = boto3.client("ecr").describe_repositories()["repositories"]
    assert [r["repositoryName"] for r in repos] == ["deployer/built"]
    model = boto3.client("sagemaker").describe_model(ModelName=out["details"]["model_name"])
    assert model["PrimaryContainer"]["Image"] == image and "ModelDataUrl" not in model["PrimaryContainer"]
    tag = image.rsplit(":", 1)[1]
    def manifest_put(r):
        return r.method == "PUT" and r.path == f"/v2/deployer/built/manifests/{tag}"
    pushed = [r for r in registry.wait_for_request(0, manifest_put) if manifest_put(r)]
    assert len(pushed) == 1

    before = len(registry.requests())
    again = run_cli(*args)
    assert again.exit_code == 0, again.stderr
    assert again.json()["action"] == "noop"
    assert [r for r in registry.requests()[before:] if r.method in ("PUT", "POST", "PATCH")] == []
