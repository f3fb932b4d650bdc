"""Foreign-platform builds and --gpu: refused early and clearly where the engine cannot do them.

This machine's engine is x86_64 with no buildx plugin, no QEMU binfmt entry and no NVIDIA
runtime, so the real-engine tests observe the error paths; the detection itself is checked
with fake binfmt_misc directories.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployer.building.plan import DEFAULT_GPU_BASE, BuildOptions, plan_build
from deployer.building.platform_check import (
    binfmt_registered,
    engine_platform,
    missing_for_cross_build,
    normalize_platform,
)
from deployer.cli import cli
from deployer.intake import load_model


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def _binfmt(tmp_path: Path, name: str, state: str) -> Path:
    d = tmp_path / "binfmt_misc"
    d.mkdir(exist_ok=True)
    (d / "register").write_text("")
    (d / "status").write_text("enabled\n")
    (d / name).write_text(f"{state}\ninterpreter /usr/bin/qemu-aarch64-static\nflags: F\noffset 0\n")
    return d


def test_platform_names_are_normalized() -> None:
    assert normalize_platform("linux", "x86_64") == "linux/amd64"
    assert normalize_platform("linux", "aarch64") == "linux/arm64"
    assert normalize_platform("Linux", "arm64") == "linux/arm64"


def test_cross_build_detection_with_fake_binfmt(tmp_path: Path) -> None:
    empty = tmp_path / "none"
    empty.mkdir()
    assert missing_for_cross_build("linux/amd64", "linux/amd64", buildx=False, binfmt_dir=empty) == []
    missing = missing_for_cross_build("linux/arm64", "linux/amd64", buildx=False, binfmt_dir=empty)
    assert len(missing) == 2 and "buildx" in missing[0] and "QEMU" in missing[1]

    enabled = _binfmt(tmp_path, "qemu-aarch64", "enabled")
    assert binfmt_registered("linux/arm64", enabled)
    assert not binfmt_registered("linux/amd64", enabled)
    assert missing_for_cross_build("linux/arm64", "linux/amd64", buildx=True, binfmt_dir=enabled) == []
    assert missing_for_cross_build("linux/arm64", "linux/amd64", buildx=False, binfmt_dir=enabled) == [
        "a docker CLI with the buildx plugin"]

    (tmp_path / "d").mkdir()
    disabled = _binfmt(tmp_path / "d", "qemu-aarch64", "disabled")
    assert not binfmt_registered("linux/arm64", disabled)
    assert missing_for_cross_build("linux/arm64", "linux/amd64", buildx=True, binfmt_dir=disabled)


def test_lock_and_dry_run_for_arm64_need_no_engine(sklearn_model: Path) -> None:
    code, out, err = _run("build", "-m", str(sklearn_model), "--dry-run", "--platform", "linux/arm64",
                          "--output", "json")
    assert code == 0, err
    assert json.loads(out)["plan"]["platform"]["platform"] == "linux/arm64"


@pytest.mark.docker
def test_arm64_build_is_refused_before_any_download(sklearn_model: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    if engine_platform(docker_client) == "linux/arm64":
        pytest.skip("the engine is arm64: linux/arm64 is native here")
    if not missing_for_cross_build("linux/arm64", engine_platform(docker_client), buildx=True):
        pytest.skip("QEMU for aarch64 is registered here; the refusal path cannot be observed")
    t0 = time.monotonic()
    code, out, err = _run("build", "-m", str(sklearn_model), "--platform", "linux/arm64", "-t", "deployer-arm64:x")
    elapsed = time.monotonic() - t0
    assert code == 1, out + err
    assert "Traceback" not in err
    assert "cannot build a linux/arm64 image on this linux/amd64 Docker engine" in err
    assert "QEMU" in err and "buildx" in err and "deployer lock --platform linux/arm64" in err
    assert "resolving" not in err.lower() and "downloading" not in err.lower()
    assert elapsed < 60, f"refusal took {elapsed:.0f}s: something was resolved or built first"
    with pytest.raises(Exception, match="deployer-arm64"):
        docker_client.images.get("deployer-arm64:x")


def test_gpu_dry_run_uses_the_cuda_base_and_records_gpu(sklearn_model: Path) -> None:
    code, out, err = _run("build", "-m", str(sklearn_model), "--dry-run", "--gpu", "--output", "json")
    assert code == 0, err
    plan = json.loads(out)["plan"]
    assert plan["base_image"] == DEFAULT_GPU_BASE
    assert plan["gpu"] is True and plan["labels"]["io.deployer.gpu"] == "true"
    code, out, err = _run("build", "-m", str(sklearn_model), "--dry-run", "--gpu", "--base-image",
                          "my/cuda-py:3.11")
    assert code == 0, err
    assert "my/cuda-py:3.11  (gpu)" in out
    cpu = plan_build(load_model(str(sklearn_model)), BuildOptions())
    gpu = plan_build(load_model(str(sklearn_model)), BuildOptions(gpu=True, base_image=cpu.base_image))
    assert "io.deployer.gpu" not in dict(cpu.labels) and gpu.fingerprint != cpu.fingerprint


@pytest.mark.docker
def test_gpu_build_without_the_cuda_base_fails_cleanly(sklearn_model: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    try:
        docker_client.images.get(DEFAULT_GPU_BASE)
        pytest.skip(f"{DEFAULT_GPU_BASE} is present here; the missing-base path cannot be observed")
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound: the case under test
        pass
    code, out, err = _run("build", "-m", str(sklearn_model), "--gpu")
    assert code == 1, out + err
    assert "Traceback" not in err
    assert DEFAULT_GPU_BASE in err and "--base-image" in err and "Python 3." in err


@pytest.mark.docker
def test_gpu_build_checks_the_base_python(sklearn_model: Path, docker_client, base_image: str) -> None:  # type: ignore[no-untyped-def]
    """The base's python3 X.Y must be the model's: checked up front by running it in the base
    (the session's Debian-built base image stands in for a CUDA image with Python)."""
    from deployer.building.execute import check_base_python
    from deployer.errors import BuildError

    have = docker_client.containers.run(
        base_image, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        entrypoint=[], remove=True).decode().strip()
    ok = plan_build(load_model(str(sklearn_model)), BuildOptions(gpu=True, base_image=base_image,
                                                                 python_version=have))
    check_base_python(docker_client, ok)  # matching X.Y passes
    other = "3.9" if have != "3.9" else "3.10"
    bad = plan_build(load_model(str(sklearn_model)), BuildOptions(gpu=True, base_image=base_image,
                                                                  python_version=other))
    with pytest.raises(BuildError, match=f"has Python {have}, the model needs Python {other}") as info:
        check_base_python(docker_client, bad)
    assert "--base-image" in (info.value.fix or "")


@pytest.mark.docker
def test_run_local_gpu_without_nvidia_runtime_is_refused(sklearn_model: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    if "nvidia" in (docker_client.info().get("Runtimes") or {}):
        pytest.skip("this engine has the NVIDIA runtime")
    t0 = time.monotonic()
    code, out, err = _run("run-local", "-m", str(sklearn_model), "--gpu", "-p", "0", "--name", "gpu-refused")
    assert code == 1, out + err
    assert "Traceback" not in err
    assert "no NVIDIA GPU runtime" in err and "nvidia-container-toolkit" in err
    assert time.monotonic() - t0 < 60
    assert not docker_client.containers.list(all=True, filters={"name": "deployer-gpu-refused"})


@pytest.mark.docker
def test_every_build_checks_the_base_python_first_once_per_image(  # type: ignore[no-untyped-def]
        sklearn_model: Path, docker_client, base_image: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only --gpu: a base whose python3 is not the model's X.Y fails before any download,
    and the answer is cached by image ID (one `docker run` per base, ever)."""
    from deployer.building.execute import check_base_python

    cache = tmp_path / "cache"
    monkeypatch.setenv("DEPLOYER_BUILD_CACHE", str(cache))
    have = docker_client.containers.run(
        base_image, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        entrypoint=[], remove=True).decode().strip()
    other = "3.9" if have != "3.9" else "3.10"
    code, _out, err = _run("build", "-m", str(sklearn_model), "--base-image", base_image,
                           "--python", other)
    assert code == 1, err
    assert f"has Python {have}, the model needs Python {other}" in err
    assert f"python:{other}-slim" in err and "--base-image" in err
    assert not (cache / "wheels").exists()  # failed before resolving or downloading anything
    image_id = docker_client.images.get(base_image).id
    assert json.loads((cache / "base-python.json").read_text()) == {image_id: have}

    # the cached answer is what later builds use: no container runs for a known image ID
    (cache / "base-python.json").write_text(json.dumps({image_id: other}))
    plan = plan_build(load_model(str(sklearn_model)), BuildOptions(base_image=base_image, python_version=other))
    check_base_python(docker_client, plan, cache_root=cache)
