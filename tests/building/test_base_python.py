"""The up-front base-image Python check reports the real cause when `docker run` itself fails.

A first run on a new machine must not lie: when the engine cannot start any container (a
runc/cgroup error, a runtime refusing the container's config), the message is the engine's
own, not "the base image has no usable python3", and nothing is cached from such a run.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deployer.building.execute import check_base_python
from deployer.building.plan import BuildOptions, plan_build
from deployer.errors import BuildError
from deployer.intake import load_model

pytestmark = pytest.mark.docker


def _python_of(docker_client, image: str) -> str:  # type: ignore[no-untyped-def]
    return docker_client.containers.run(
        image, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        entrypoint=[], remove=True).decode().strip()


def _derived_image(docker_client, base_image: str, tag: str, line: str):  # type: ignore[no-untyped-def]
    docker_client.images.build(fileobj=io.BytesIO(f"FROM {base_image}\n{line}\n".encode()), tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def unrunnable_base(docker_client, base_image: str) -> str:  # type: ignore[no-untyped-def]
    """The session's base image with a USER that does not exist: the image is fine, but the
    runtime refuses to start any container from it ("unable to find user ...")."""
    yield from _derived_image(docker_client, base_image, "deployer-test/unrunnable-base:1", "USER no-such-user-4711")


@pytest.fixture(scope="module")
def no_python_base(docker_client, base_image: str) -> str:  # type: ignore[no-untyped-def]
    """An image without python3 (the base with it deleted)."""
    yield from _derived_image(docker_client, base_image, "deployer-test/no-python-base:1",
                              "RUN rm -f /usr/bin/python3 /usr/bin/python3.* /usr/bin/python")


def _check(docker_client, base_image: str, image: str, model: Path, cache: Path) -> BuildError:  # type: ignore[no-untyped-def]
    plan = plan_build(load_model(str(model)),
                      BuildOptions(base_image=image, python_version=_python_of(docker_client, base_image)))
    with pytest.raises(BuildError) as info:
        check_base_python(docker_client, plan, cache_root=cache)
    return info.value


def test_engine_error_is_reported_and_nothing_is_cached(  # type: ignore[no-untyped-def]
        docker_client, base_image: str, unrunnable_base: str, sklearn_model: Path, tmp_path: Path) -> None:
    err = _check(docker_client, base_image, unrunnable_base, sklearn_model, tmp_path)
    assert "could not run a container" in err.what, err.what
    assert "no-such-user-4711" in err.what, "the engine's own message must be in the error"
    assert "no usable python3" not in err.what and "has no python3" not in err.what
    assert err.where == "Docker engine"
    assert err.fix and "engine" in err.fix
    assert not (tmp_path / "base-python.json").exists(), "nothing may be cached from a failed run"
    left = docker_client.containers.list(all=True, filters={"ancestor": unrunnable_base})
    assert not left, "the container the engine failed to start must be removed"


def test_image_without_python3_says_so(  # type: ignore[no-untyped-def]
        docker_client, base_image: str, no_python_base: str, sklearn_model: Path, tmp_path: Path) -> None:
    err = _check(docker_client, base_image, no_python_base, sklearn_model, tmp_path)
    assert f"the base image {no_python_base} has no python3" in err.what
    assert err.where == "--base-image" and "--base-image" in (err.fix or "")
    assert not (tmp_path / "base-python.json").exists()


def test_matching_base_is_cached_once(  # type: ignore[no-untyped-def]
        docker_client, base_image: str, sklearn_model: Path, tmp_path: Path) -> None:
    have = _python_of(docker_client, base_image)
    plan = plan_build(load_model(str(sklearn_model)), BuildOptions(base_image=base_image, python_version=have))
    check_base_python(docker_client, plan, cache_root=tmp_path)
    image_id = docker_client.images.get(base_image).id
    assert json.loads((tmp_path / "base-python.json").read_text()) == {image_id: have}


def test_unreachable_engine_is_named_in_one_line(sklearn_model: Path, tmp_path: Path) -> None:
    """No engine at DOCKER_HOST: exit 1, the engine address and its error, no traceback."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "DEPLOYER_BUILD_CACHE": str(tmp_path / "c")}
    proc = subprocess.run([sys.executable, "-c", "from deployer.cli import main; main()", "build",
                           "-m", str(sklearn_model)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"cannot reach a Docker engine at unix://{tmp_path}/no-engine.sock" in proc.stderr
    assert not (tmp_path / "c" / "wheels").exists()
