"""`deployer build`, `generate`, `lock` and `run-local` from the command line."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployer.cli import cli
from deployer.environment.lock import read_lock
from tests.building.conftest import build_cache  # noqa: F401 - session wheel cache fixture
from tests.fixtures.processes import ctrl_c_enabled


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_build_dry_run_prints_the_plan(sklearn_model: Path) -> None:
    code, out, _err = _run("build", "-m", str(sklearn_model), "--dry-run", "--target", "sagemaker")
    assert code == 0, out
    assert "mlflow-skinny==" in out and "5. model" in out and "runs as    1000:1000" in out
    code, out, _err = _run("build", "-m", str(sklearn_model), "--dry-run", "--output", "json", "--run-as-root")
    plan = json.loads(out)["plan"]
    assert plan["user"] == "root" and plan["layers"][-1]["name"] == "model"
    assert plan["labels"]["io.deployer.target"] == "local"


@pytest.mark.parametrize("args, code, message", [
    (["--env", "AWS_SECRET_ACCESS_KEY=abc"], 1, "refusing to bake"),
    (["--env", "NOEQUALS"], 2, "not KEY=VALUE"),
    (["--base-image", "python:3.11 AS evil"], 1, "not a valid image reference"),
    (["--target", "sagemker"], 2, "sagemker"),
    (["--label", "io.deployer.version=9"], 2, "reserved"),
])
def test_build_refuses_bad_input_without_traceback(sklearn_model: Path, args: list[str], code: int,
                                                   message: str) -> None:
    result = CliRunner().invoke(cli, ["build", "-m", str(sklearn_model), "--dry-run", *args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert "abc" not in result.output or "refusing" not in message  # secret values are not echoed


def test_generate_refuses_a_non_empty_directory(sklearn_model: Path, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["generate", "-m", str(sklearn_model), "-o", str(tmp_path)])
    assert result.exit_code == 2 and "not empty" in result.output
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_lock_then_build_with_it(tensor_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYER_BUILD_CACHE", str(tmp_path / "cache"))
    lock_file = tmp_path / "model.lock"
    code, out, _ = _run("lock", "-m", str(tensor_model), "-o", str(lock_file), "--output", "json")
    assert code == 0, out
    lock = read_lock(lock_file)
    names = {p.name for p in lock.packages}
    assert {"mlflow-skinny", "numpy", "pandas", "cloudpickle", "dumb-init", "uvicorn"} <= names
    assert "mlflow" not in names and "uv" not in names and lock.find("uv") is not None
    assert json.loads(out)["digest"] == lock.digest
    code, out, _ = _run("build", "-m", str(tensor_model), "--lock", str(lock_file), "--dry-run", "--output", "json")
    assert json.loads(out)["plan"]["lock"]["digest"] == lock.digest


# ---------------------------------------------------------------- on the engine
@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.usefixtures("build_cache")
def test_generated_context_builds_with_plain_docker(tensor_model: Path, tmp_path: Path, docker_client,  # type: ignore[no-untyped-def]
                                                    base_image: str) -> None:
    """`deployer generate` output builds with the classic builder (no BuildKit, no deployer)."""
    ctx = tmp_path / "ctx"
    code, out, _ = _run("generate", "-m", str(tensor_model), "-o", str(ctx), "--base-image", base_image,
                        "--output", "json")
    assert code == 0, out
    files = set(json.loads(out)["files"])
    assert {"Dockerfile", ".dockerignore", "wheels", "runtime", "model", "deployer-build"} <= files
    assert "RUN --mount" not in (ctx / "Dockerfile").read_text()
    image, _logs = docker_client.images.build(path=str(ctx), tag="deployer-test/generated:1", rm=True)
    container = docker_client.containers.run(image.id, detach=True, ports={"8080/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        port = container.ports["8080/tcp"][0]["HostPort"]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 240
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                             data=b'{"inputs": [[1, 2, 3, 4]]}',
                                             headers={"Content-Type": "application/json"})
                with opener.open(req, timeout=5) as resp:
                    assert json.loads(resp.read()) == {"predictions": [10.0]}
                    break
            except OSError:
                container.reload()
                assert container.status == "running", container.logs().decode()[-2000:]
                assert time.monotonic() < deadline
                time.sleep(0.5)
    finally:
        container.remove(force=True)


@contextlib.contextmanager
def _run_local_until_ctrl_c(first_line: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``deployer run-local ARGS`` in a child process: yields it and the URL its first line
    (matching ``first_line``, whose group 1 is the URL) announces, once the sample request is
    printed; then presses Ctrl-C and waits for the child to stop and remove its container."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from deployer.cli import main; main()", "run-local", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        preexec_fn=ctrl_c_enabled)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(first_line, first)
        assert match, first + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        assert "curl -X POST" in proc.stdout.readline()
        yield proc, match.group(1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def _invocations(url: str, headers: dict[str, str]) -> object:
    req = urllib.request.Request(f"{url}/invocations", data=b'{"inputs": [[1, 1, 1, 1]]}',
                                 headers={"Content-Type": "application/json", **headers})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.usefixtures("build_cache")
def test_run_local_serves_until_ctrl_c(tensor_model: Path, docker_client, base_image: str) -> None:  # type: ignore[no-untyped-def]
    name = "t-run-local"
    with _run_local_until_ctrl_c(r"at (http://127\.0\.0\.1:\d+)", "-m", str(tensor_model), "-p", "0",
                                 "--name", name, "--base-image", base_image, "--target", "sagemaker") as (_, url):
        assert _invocations(url, {}) == {"predictions": [4.0]}
        assert docker_client.containers.list(filters={"label": f"io.deployer.endpoint={name}"})
    assert not docker_client.containers.list(all=True, filters={"label": f"io.deployer.endpoint={name}"})


@pytest.mark.docker
@pytest.mark.usefixtures("build_cache")
def test_missing_base_image_is_an_actionable_error(tensor_model: Path) -> None:
    result = CliRunner().invoke(cli, ["build", "-m", str(tensor_model), "--base-image",
                                      "deployer-test/no-such-base:1", "-q"])
    assert result.exit_code == 1
    assert "could not be pulled" in result.output and "--base-image" in result.output
    assert "Traceback" not in result.output


def test_build_dry_run_shows_the_grpc_port(sklearn_model: Path) -> None:
    code, out, _err = _run("build", "-m", str(sklearn_model), "--dry-run", "--grpc-port", "8081")
    assert code == 0
    assert "grpc       V2 over gRPC on port 8081" in out and "gRPC :8081: ServerReady" in out
    assert re.search(r"^\s+grpcio", out, re.MULTILINE)
    code, out, _err = _run("build", "-m", str(sklearn_model), "--dry-run", "--output", "json")
    plan = json.loads(out)["plan"]
    assert plan["grpc_port"] is None and plan["verify"]["grpc"] is None
    assert not any(r.startswith("grpcio") for r in plan["requirements"]["requirements"])
    result = CliRunner().invoke(cli, ["build", "-m", str(sklearn_model), "--dry-run", "--grpc-port", "8080"])
    assert result.exit_code == 2 and "is the HTTP port too" in result.output


def test_build_dry_run_of_several_models_and_their_refusals(sklearn_model: Path, params_model: Path,
                                                           tensor_model: Path, tmp_path: Path) -> None:
    import shutil

    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(params_model, repo / "params")
    shutil.copytree(tensor_model, repo / "tensor")
    (repo / "notes").mkdir()  # no MLmodel: not a model
    code, out, _err = _run("build", "-m", f"iris={sklearn_model}", "--model-repository", str(repo),
                           "--dry-run", "--output", "json")
    assert code == 0
    plan = json.loads(out)["plan"]
    assert [m["name"] for m in plan["models"]] == ["iris", "params", "tensor"]
    assert plan["labels"]["io.deployer.models"] == "iris,params,tensor"
    code, out, _err = _run("build", "-m", f"iris={sklearn_model}", "-m", f"tensor={tensor_model}", "--dry-run")
    assert code == 0 and "models     iris: " in out and "-> /opt/ml/model-repository/tensor" in out
    # a single -m DIR is unchanged
    code, out, _err = _run("build", "-m", str(sklearn_model), "--dry-run", "--output", "json")
    assert code == 0 and json.loads(out)["plan"]["models"] == []

    # conflicting models: refused with the list (exit 1), nothing built or resolved
    old = tmp_path / "old"
    shutil.copytree(sklearn_model, old)
    reqs = old / "requirements.txt"
    reqs.write_text("\n".join(x if not x.startswith("scikit-learn") else "scikit-learn==1.5.2"
                              for x in reqs.read_text().splitlines()) + "\n")
    cache = tmp_path / "cache"
    result = CliRunner(env={"DEPLOYER_BUILD_CACHE": str(cache)}).invoke(
        cli, ["build", "-m", f"iris={sklearn_model}", "-m", f"old={old}"])
    assert result.exit_code == 1, result.output
    assert "cannot share one environment" in result.output and "old: scikit-learn==1.5.2" in result.output
    assert "Traceback" not in result.output and not cache.exists()  # nothing resolved or downloaded
    # --pip pins one version for all: the conflict is settled
    code, out, _err = _run("build", "-m", f"iris={sklearn_model}", "-m", f"old={old}", "--pip",
                           "scikit-learn==1.6.1", "--dry-run", "--output", "json")
    assert code == 0 and "scikit-learn==1.6.1" in json.loads(out)["plan"]["requirements"]["requirements"]
    # usage errors: exit 2
    for args, message in [
        (["-m", str(sklearn_model), "-m", f"t={tensor_model}"], "is not NAME=PATH"),
        (["-m", f"iris={sklearn_model}"], "is not a multi-model image"),
        (["-m", f"a={sklearn_model}", "-m", f"a={tensor_model}"], "given twice"),
        (["-m", f"bad/name={sklearn_model}", "-m", f"t={tensor_model}"], "is not NAME=PATH"),
    ]:
        result = CliRunner().invoke(cli, ["build", *args, "--dry-run"])
        assert result.exit_code == 2 and message in result.output, (args, result.output)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.usefixtures("build_cache")
def test_run_local_of_a_model_repository_with_grpc(sklearn_model: Path, params_model: Path, tensor_model: Path,  # type: ignore[no-untyped-def]
                                                   docker_client, base_image: str, tmp_path: Path) -> None:
    import shutil

    repo = tmp_path / "repo"
    repo.mkdir()
    for name, model in (("iris", sklearn_model), ("params", params_model), ("tensor", tensor_model)):
        shutil.copytree(model, repo / name)
    name = "mm-images-run-local"
    with _run_local_until_ctrl_c(r"serving iris=.*params=.*tensor=.* at (http://127\.0\.0\.1:\d+)",
                                 "--model-repository", str(repo), "-p", "0", "--name", name,
                                 "--base-image", base_image, "--grpc-port", "8081") as (proc, url):
        assert re.match(r"gRPC \(V2\): 127\.0\.0\.1:\d+$", proc.stdout.readline().strip())
        assert _invocations(url, {"X-Deployer-Target-Model": "tensor"}) == {"predictions": [4.0]}
    assert not docker_client.containers.list(all=True, filters={"label": f"io.deployer.endpoint={name}"})
    for image in docker_client.images.list(name="iris-params-tensor"):
        docker_client.images.remove(image.id, force=True)
