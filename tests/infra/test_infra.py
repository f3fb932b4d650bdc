"""The test infrastructure itself: engine, Debian-built base image, htpasswd registry.

Every other Docker test stands on these; if they break, these tests say so first
and plainly, instead of fifty build tests failing with confusing errors.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.fixtures.infra import (
    BASE_IMAGE_SCRIPT,
    ENSURE_ENGINE,
    REGISTRY_SCRIPT,
    DockerEnv,
    Registry,
    parse_exports,
)

pytestmark = pytest.mark.docker


def _run(script, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script), *args], input=stdin, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ))


def _catalog(registry: Registry, user: str, password: str) -> tuple[int, dict]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(f"http://{registry.host}/v2/_catalog",
                                 headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def test_docker_env_exports_engine(docker_env: DockerEnv, docker_client) -> None:
    assert os.environ["DOCKER_HOST"] == docker_env.docker_host
    assert os.environ["DOCKER_CONFIG"] == docker_env.docker_config
    assert docker_client.ping() is True
    if docker_env.buildkit_cli is not None:
        # The CLI we advertise for BuildKit really knows --secret (the 28.x one without buildx does not).
        helptext = subprocess.run(
            [docker_env.buildkit_cli, "build", "--help"], capture_output=True, text=True,
            env={**os.environ, "DOCKER_BUILDKIT": "1"}, timeout=30,
        ).stdout
        assert "--secret" in helptext


def test_docker_mark_alone_brings_up_the_engine() -> None:
    # No fixture named: the module's `docker` mark is enough (tests/fixtures/infra.py).
    import docker

    client = docker.from_env()
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_base_image_runs_python(docker_client, base_image: str) -> None:
    code = (
        "import platform, ssl, sys, venv, pip; "
        "print('hello', platform.python_version(), sys.prefix, ssl.OPENSSL_VERSION.split()[0])"
    )
    out = docker_client.containers.run(base_image, ["python3", "-c", code], remove=True)
    words = out.decode().split()
    assert words[0] == "hello"
    assert words[1].startswith("3.11."), words
    assert words[2] == "/usr"
    assert words[3] == "OpenSSL"

    # Behaves like python:slim: `python` and `pip` on PATH, pip may install system-wide,
    # apt lists cleaned out, CMD is python3.
    out = docker_client.containers.run(
        base_image,
        ["sh", "-c", "python --version && pip --version >/dev/null && "
                     "test ! -e /usr/lib/python3.11/EXTERNALLY-MANAGED && "
                     "test -z \"$(ls /var/lib/apt/lists | grep -v partial)\" && echo ok"],
        remove=True,
    )
    assert out.decode().split()[-1] == "ok"
    image = docker_client.images.get(base_image)
    assert image.attrs["Config"]["Cmd"] == ["python3"]
    assert image.attrs["Size"] < 300 * 1024 * 1024


def test_base_image_script_is_idempotent(docker_client, base_image: str) -> None:
    before = docker_client.images.get(base_image).id
    started = time.monotonic()
    proc = _run(BASE_IMAGE_SCRIPT, base_image)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == base_image
    assert "exists" in proc.stderr
    assert docker_client.images.get(base_image).id == before
    assert elapsed < 20


def test_push_login_pull_roundtrip(docker_client, base_image: str, registry: Registry) -> None:
    import docker

    repo = f"{registry.host}/infra-test/base"
    tag = uuid.uuid4().hex[:12]
    image = docker_client.images.get(base_image)
    assert image.tag(repo, tag=tag)
    try:
        before = len(registry.requests())

        # Anonymous push is refused: the registry really enforces auth.
        anon = list(docker_client.images.push(repo, tag=tag, stream=True, decode=True))
        assert any("error" in line for line in anon), anon

        login = docker_client.login(username=registry.username, password=registry.password,
                                    registry=registry.host, reauth=True)
        assert login.get("Status") == "Login Succeeded"

        pushed = list(docker_client.images.push(repo, tag=tag, stream=True, decode=True,
                                                auth_config=registry.auth_config))
        errors = [line for line in pushed if "error" in line]
        assert not errors, errors
        digests = [line["aux"]["Digest"] for line in pushed if "aux" in line]
        assert digests and digests[0].startswith("sha256:")

        # The registry saw the push (from the engine, not from us) and logged it.
        def manifest_put(e):
            return (e.method == "PUT" and e.path == f"/v2/infra-test/base/manifests/{tag}"
                    and e.status == 201 and e.user_agent.startswith("docker/"))
        new = registry.wait_for_request(before, manifest_put)
        assert any(manifest_put(e) for e in new), new
        status, catalog = _catalog(registry, registry.username, registry.password)
        assert status == 200 and "infra-test/base" in catalog["repositories"]

        # Pull it back from the registry, not from the local tag.
        docker_client.images.remove(f"{repo}:{tag}")
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(f"{repo}:{tag}")
        before = len(registry.requests())
        pulled = docker_client.images.pull(repo, tag=tag, auth_config=registry.auth_config)
        assert pulled.id == image.id
        # The engine resolved the tag at the registry (HEAD, then GET only for what it lacks).
        def manifest_read(e):
            return (e.method in ("HEAD", "GET") and e.path == f"/v2/infra-test/base/manifests/{tag}"
                    and e.status == 200)
        assert any(manifest_read(e) for e in registry.wait_for_request(before, manifest_read))
        out = docker_client.containers.run(f"{repo}:{tag}", ["python3", "-c", "print(6 * 7)"], remove=True)
        assert out.decode().strip() == "42"
    finally:
        try:
            docker_client.images.remove(f"{repo}:{tag}")
        except docker.errors.ImageNotFound:
            pass


def test_wrong_password_is_rejected(docker_env: DockerEnv, registry: Registry) -> None:
    import docker

    # A fresh client: DockerClient.login caches a successful login per client.
    client = docker.DockerClient(base_url=docker_env.docker_host)
    try:
        with pytest.raises(docker.errors.APIError) as excinfo:
            client.login(username=registry.username, password=registry.password + "x",
                         registry=registry.host, reauth=True)
        assert "unauthorized" in str(excinfo.value).lower()
    finally:
        client.close()
    status, _ = _catalog(registry, registry.username, "not-the-password")
    assert status == 401
    status, _ = _catalog(registry, "nobody", registry.password)
    assert status == 401


def test_registry_script_is_idempotent(registry: Registry) -> None:
    pid = (registry.state_dir / "pid").read_text().strip()
    proc = _run(REGISTRY_SCRIPT, "start", str(registry.state_dir), "--user", registry.username,
                "--password-stdin", stdin=registry.password + "\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"REGISTRY={registry.host}"
    assert (registry.state_dir / "pid").read_text().strip() == pid
    assert registry.password not in proc.stdout + proc.stderr


def _alive(pid: int) -> bool:
    """A running process: ``kill(pid, 0)`` also succeeds for a zombie (exited, not yet reaped,
    e.g. under a PID 1 that does not reap), so read the state from /proc as well."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat.rsplit(") ", 1)[1][:1] not in ("Z", "X")


def test_registry_stop_and_generated_credentials(tmp_path) -> None:
    state = tmp_path / "reg"
    proc = _run(REGISTRY_SCRIPT, "start", str(state))
    assert proc.returncode == 0, proc.stderr
    host = proc.stdout.strip().removeprefix("REGISTRY=")
    user = (state / "username").read_text()
    password = (state / "password").read_text()
    assert password not in proc.stdout + proc.stderr
    assert oct((state / "password").stat().st_mode & 0o777) == "0o600"
    reg = Registry(host, user, password, state / "registry.log", state)
    assert _catalog(reg, user, password)[0] == 200
    pid = int((state / "pid").read_text())

    assert _run(REGISTRY_SCRIPT, "stop", str(state)).returncode == 0
    assert not (state / "pid").exists()
    assert not _alive(pid)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{host}/v2/", timeout=2)
    # Stopping a stopped registry is fine.
    assert _run(REGISTRY_SCRIPT, "stop", str(state)).returncode == 0


def test_ensure_engine_is_idempotent(docker_env: DockerEnv, docker_client) -> None:
    engine_id = docker_client.info()["ID"]
    pidfile = "/run/deployer/docker.pid"
    ours = docker_env.docker_host == "unix:///run/deployer/docker.sock"
    pid_before = open(pidfile).read().strip() if ours else None

    # With DOCKER_HOST set (as in the session) and without it (a fresh shell):
    # both must find the running engine, not start another one.
    fresh_env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    for env in (dict(os.environ), fresh_env):
        started = time.monotonic()
        proc = subprocess.run(["bash", str(ENSURE_ENGINE)], capture_output=True, text=True,
                              timeout=120, env=env)
        elapsed = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr
        assert parse_exports(proc.stdout)["DOCKER_HOST"] == docker_env.docker_host
        assert "starting dockerd" not in proc.stderr
        assert ("reusing" in proc.stderr) or ("using existing" in proc.stderr), proc.stderr
        # stdout carries export lines only (scripts/test.sh evals it).
        assert all(line.startswith("export ") for line in proc.stdout.splitlines())
        assert elapsed < 10
    if ours:
        assert "reusing deployer dockerd" in proc.stderr
        assert open(pidfile).read().strip() == pid_before
        os.kill(int(pid_before), 0)
    assert docker_client.info()["ID"] == engine_id
