"""`deployer build-and-push` verifies before it pushes: a failing image never reaches the registry
(the registry's own access log shows no write), a passing one is pushed with its labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from deployer.cli import cli

pytestmark = [pytest.mark.docker, pytest.mark.slow]

WRITES = ("PUT", "POST", "PATCH", "DELETE")
CASES = [
    ("skops_unlisted_model", True, "/invocations"),
    ("no_signature_model", True, "/ping"),
    ("load_context_fails_model", False, "load_context failure on purpose"),
    ("example_fails_model", False, "model failure on purpose"),
]


@pytest.mark.parametrize("fixture, passes, shown", CASES, ids=[c[0] for c in CASES])
def test_build_and_push_pushes_only_verified_images(request: pytest.FixtureRequest, registry: Any, base_image: str,
                                                    docker_config: Path, fixture: str, passes: bool,
                                                    shown: str) -> None:
    model: Path = request.getfixturevalue(fixture)
    before = len(registry.requests())
    res = CliRunner().invoke(cli, [
        "build-and-push", "-m", str(model), "--base-image", base_image, "--registry", f"{registry.host}/verify",
        "--username", registry.username, "--password-stdin", "--output", "json"],
        input=registry.password + "\n", catch_exceptions=False)
    writes = [r for r in registry.requests()[before:] if r.method in WRITES]
    if not passes:
        assert res.exit_code == 1, res.output
        assert "image verification failed" in res.stderr and shown in res.stderr
        assert "internal error" not in res.stderr  # the container log may hold the model's traceback
        assert writes == []  # nothing pushed: not a blob, not a manifest
        return
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["pushed"] is True and out["verification"]["status"] == "passed"
    assert out["verification"]["route"] == shown
    tag = out["image"].rsplit(":", 1)[1]
    assert any(r.method == "PUT" and r.path.endswith(f"/manifests/{tag}") for r in writes)


def test_no_auto_deps_fails_before_anything_is_built_or_pushed(registry: Any, base_image: str, docker_config: Path,
                                                               skops_unlisted_model: Path) -> None:
    before = len(registry.requests())
    res = CliRunner().invoke(cli, [
        "build-and-push", "-m", str(skops_unlisted_model), "--base-image", base_image, "--no-auto-deps",
        "--registry", f"{registry.host}/verify", "--username", registry.username, "--password-stdin"],
        input=registry.password + "\n", catch_exceptions=False)
    assert res.exit_code == 1, res.output
    assert "flavors.sklearn.serialization_format: skops" in res.stderr and "--no-auto-deps" in res.stderr
    assert registry.requests()[before:] == []  # not even a look at the registry


def test_a_verified_local_image_is_pushed_without_verifying_again(registry: Any, base_image: str,
                                                                  docker_config: Path, tensor_model: Path) -> None:
    """`build` verified it (label status=passed); build-and-push of the same content reuses it."""
    built = CliRunner().invoke(cli, ["build", "-m", str(tensor_model), "--base-image", base_image,
                                     "--output", "json"], catch_exceptions=False)
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["verification"]["status"] == "passed"
    res = CliRunner().invoke(cli, [
        "build-and-push", "-m", str(tensor_model), "--base-image", base_image, "--registry", f"{registry.host}/verify",
        "--username", registry.username, "--password-stdin", "--output", "json"],
        input=registry.password + "\n", catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["built"] is False and out["pushed"] is True
    check = out["verification"]
    assert check["status"] == "passed" and check["seconds"] == 0.0  # read from the labels, not run again
    assert "verifying the image" not in res.stderr
