"""`deploy --target sagemaker -m` verifies the image it builds before any push or cloud call.

A model that cannot serve fails the deploy in seconds, on this machine: no ECR repository is
created, no image pushed (the registry's access log), no SageMaker call made (moto's log).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.targets.sagemaker.conftest import ROLE, run_cli

pytestmark = [pytest.mark.docker, pytest.mark.slow]

WRITES = ("PUT", "POST", "PATCH", "DELETE")
CASES = [
    ("skops_unlisted_model", True, ()),
    ("no_signature_model", True, ()),
    ("load_context_fails_model", False, ("image verification failed", "load_context failure on purpose")),
    ("example_fails_model", False, ("image verification failed", "model failure on purpose")),
    ("skops_unlisted_model", False, ("--no-auto-deps", "flavors.sklearn.serialization_format: skops")),
]


@pytest.mark.parametrize("fixture, passes, shown", CASES,
                         ids=["skops-auto-added", "health-only", "load-context-fails", "example-fails",
                              "no-auto-deps"])
def test_deploy_makes_no_cloud_call_for_an_image_that_fails(
        request: pytest.FixtureRequest, sm: Any, registry: Any, base_image: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, fixture: str, passes: bool, shown: tuple[str, ...]) -> None:
    model: Path = request.getfixturevalue(fixture)
    config = tmp_path / "docker-config"
    config.mkdir()
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    name = f"verify-{request.node.callspec.id}"
    extra = ["--no-auto-deps"] if "--no-auto-deps" in shown else []
    before = len(registry.requests())
    res = run_cli("deploy", "--target", "sagemaker", "--name", name, "-m", str(model), "--base-image", base_image,
                  "--registry-override", registry.host, "--execution-role-arn", ROLE, "--output", "json", *extra)
    writes = [r for r in registry.requests()[before:] if r.method in WRITES]
    if passes:
        assert res.exit_code == 0, res.stderr
        assert "CreateModel" in sm.mutating_actions() and writes
        return
    assert res.exit_code == 1, res.stderr
    for text in shown:
        assert text in res.stderr
    assert "internal error" not in res.stderr  # (the container log may hold the model's traceback)
    assert sm.mutating_actions() == []
    assert boto3.client("ecr").describe_repositories()["repositories"] == []
    assert writes == []
