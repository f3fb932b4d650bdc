"""A model saved from a uv project builds into an image with exactly its uv.lock versions (real
uv, real MLflow, real Docker): the index also offers newer releases, which requirement
resolution would pick."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.building.conftest import build_with_cli
from tests.fixtures.uv_projects import UvProject

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SCRIPT = """
import importlib.metadata as m, importlib.util
print(m.version("uvpinned")); print(m.version("uvdep")); print(importlib.util.find_spec("uvdevonly") is None)
print(open("/opt/venv/deployer-requirements.lock").read())
"""


def test_image_has_the_uv_lock_versions_and_files(docker_client, base_image: str, uv_model: Path,  # type: ignore[no-untyped-def]
                                                  uv_project: UvProject, build_cache: Path) -> None:
    env = {**os.environ, "DEPLOYER_BUILD_CACHE": str(build_cache)}
    built = build_with_cli(uv_model, "deployer-test/uv-locked:1", base_image, env)
    labels = docker_client.images.get(built.tag).attrs["Config"]["Labels"]
    assert labels["io.deployer.lock.source"] == "uv.lock"
    assert labels["io.deployer.verify.status"] == "passed"  # scored once in the image, offline
    out = docker_client.containers.run(built.tag, ["/opt/venv/bin/python", "-c", SCRIPT], remove=True,
                                       entrypoint=[]).decode().split("\n")
    assert out[:3] == ["1.0", "0.5", "True"]  # uv.lock's versions; the dev group is not installed
    installed_lock = "\n".join(out[3:]).replace("\\\n", " ")
    for name, (version, hashes) in uv_project.locked().items():
        if name == "uvdevonly":
            continue
        (line,) = [x for x in installed_lock.splitlines() if x.startswith(f"{name}==")]
        assert line.startswith(f"{name}=={version} ") and line.split("sha256:")[1].split()[0] in hashes
