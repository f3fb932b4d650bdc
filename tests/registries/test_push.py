"""Pushing to a real htpasswd registry through the real Docker engine."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
import time

import pytest

import docker
from deployer.errors import RegistryAuthError, RegistryError
from deployer.registries import credentials as creds
from deployer.registries.push import push_image, remote_digest, split_reference

pytestmark = pytest.mark.docker


def _pull_and_run(client, ref: str, auth: dict | None) -> str:
    client.images.remove(ref, force=True)
    repo, tag = split_reference(ref)
    client.images.pull(repo, tag=tag, auth_config=auth)
    return client.containers.run(ref, remove=True).decode().strip()


def test_push_pull_back_and_run(docker_client, registry, small_image, docker_config):
    dest = f"{registry.host}/push/small:v1"
    login = creds.Credentials(registry.username, registry.password, registry.host, "test")
    before = len(registry.requests())
    result = push_image(small_image, dest, credentials=login)
    assert result.digest and result.digest.startswith("sha256:") and result.attempts == 1
    def is_manifest_put(r):
        return r.method == "PUT" and "/manifests/" in r.path
    puts = [r for r in registry.wait_for_request(before, is_manifest_put) if is_manifest_put(r)]
    assert len(puts) == 1 and puts[0].status == 201
    assert remote_digest(docker_client, dest, login) == result.digest
    token = small_image.rsplit(":", 1)[1]
    assert _pull_and_run(docker_client, dest, login.auth_config()) == f"hello-{token}"
    # pushing the same content again with skip_if_present: one manifest lookup, no upload
    before = len(registry.requests())
    again = push_image(small_image, dest, credentials=login, skip_if_present=True)
    assert again.skipped and again.digest == result.digest
    assert all(r.method in ("GET", "HEAD") for r in registry.requests()[before:])


def test_wrong_password_is_a_clean_auth_error(registry, small_image, docker_config):
    wrong = creds.Credentials(registry.username, "not-the-password", registry.host, "stdin")
    with pytest.raises(RegistryAuthError) as err:
        push_image(small_image, f"{registry.host}/push/denied:v1", credentials=wrong, retries=3,
                   sleep=lambda s: pytest.fail("auth failures must not be retried"))
    message = err.value.format_message()
    assert "refused our credentials" in message and "--password-stdin" in message
    assert "not-the-password" not in message
    with pytest.raises(RegistryAuthError) as err:
        push_image(small_image, f"{registry.host}/push/denied:v1", credentials=None)
    assert "none found" in err.value.what


def test_credentials_from_docker_config_file(docker_client, registry, small_image, docker_config):
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    found = creds.resolve(registry.host)
    assert found is not None and found.source == "docker-config" and found.username == registry.username
    assert registry.password not in repr(found) and "password" not in json.dumps(found.to_dict())
    result = push_image(small_image, f"{registry.host}/push/from-config:v1", credentials=found)
    assert result.digest


def test_credentials_from_a_credential_helper(registry, docker_config, tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-deployertest"
    # The docker credential-helper protocol: `get` reads the server URL on stdin, prints JSON.
    helper.write_text("#!/bin/sh\nread server\n"
                      f"printf '{{\"ServerURL\":\"%s\",\"Username\":\"{registry.username}\","
                      f"\"Secret\":\"{registry.password}\"}}' \"$server\"\n")
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {registry.host: "deployertest"}}))
    found = creds.resolve(registry.host)
    assert found is not None and (found.username, found.password) == (registry.username, registry.password)


def _kill_when_uploading(reg, repo: str, done: threading.Event, restart_after: float | None) -> None:
    """Kill the registry once the engine has started uploading blobs to ``repo``."""
    log = reg.state_dir / "registry.log"
    start = log.stat().st_size
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with log.open() as fh:
            fh.seek(start)
            if f"POST /v2/{repo}/blobs/uploads/" in fh.read():
                break
        time.sleep(0.05)
    time.sleep(0.5)  # mid-upload of the big layer
    reg.kill()
    done.set()
    if restart_after is not None:
        time.sleep(restart_after)
        reg.restart_same_port()


@pytest.mark.slow
def test_push_interrupted_by_a_registry_crash_completes_after_restart(docker_client, own_registry, big_image,
                                                                       docker_config):
    reg = own_registry
    dest = f"{reg.host}/crash/big:v1"
    login = creds.Credentials(reg.username, reg.password, reg.host, "test")
    killed = threading.Event()
    killer = threading.Thread(target=_kill_when_uploading, args=(reg, "crash/big", killed, 3.0))
    killer.start()
    result = push_image(big_image, dest, credentials=login, backoff=2.0)
    killer.join()
    assert killed.is_set(), "the registry was never killed: the test proved nothing"
    # the tag the registry serves is exactly the pushed content, and it runs
    assert remote_digest(docker_client, dest, login) == result.digest
    token = big_image.rsplit(":", 1)[1]
    assert _pull_and_run(docker_client, dest, login.auth_config()) == f"hello-{token}"


@pytest.mark.slow
def test_push_to_a_registry_that_stays_down_fails_cleanly_without_a_tag(docker_client, own_registry, big_image,
                                                                        docker_config):
    reg = own_registry
    dest = f"{reg.host}/down/big:v1"
    login = creds.Credentials(reg.username, reg.password, reg.host, "test")
    killed = threading.Event()
    killer = threading.Thread(target=_kill_when_uploading, args=(reg, "down/big", killed, None))
    killer.start()
    slept: list[float] = []
    with pytest.raises(RegistryError) as err:
        push_image(big_image, dest, credentials=login, retries=1, backoff=0.5, sleep=slept.append)
    killer.join()
    assert killed.is_set()
    assert "failed after 2 attempts" in err.value.what and "never creates the tag" in (err.value.fix or "")
    assert slept == [0.5]
    reg.restart_same_port()
    assert remote_digest(docker_client, dest, login) is None  # no tag, so nothing corrupt to pull
    assert "PUT /v2/down/big/manifests/v1" not in reg.log_text()
    with pytest.raises(docker.errors.APIError):
        docker_client.images.pull(f"{reg.host}/down/big", tag="v1", auth_config=login.auth_config())


def test_cli_build_and_push_wrong_password_exits_1(registry, sklearn_model, docker_config, base_image):
    from click.testing import CliRunner

    from deployer.cli import cli

    res = CliRunner().invoke(cli, ["build-and-push", "-m", str(sklearn_model), "--base-image", base_image,
                                   "--registry", f"{registry.host}/ml", "--username", registry.username,
                                   "--password-stdin"], input="wrong-password\n")
    assert res.exit_code == 1, res.output
    assert "refused our credentials" in res.stderr and "wrong-password" not in res.output
    assert "Traceback" not in res.output


def test_push_retries_with_backoff_until_the_registry_is_back(docker_client, own_registry, small_image,
                                                              docker_config):
    reg = own_registry
    reg.kill()
    login = creds.Credentials(reg.username, reg.password, reg.host, "test")
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:  # down for two attempts, back for the third
            reg.restart_same_port()

    result = push_image(small_image, f"{reg.host}/retry/small:v1", credentials=login, retries=4, backoff=0.25,
                        sleep=sleep)
    assert result.attempts == 3 and slept == [0.25, 0.5]
    assert remote_digest(docker_client, f"{reg.host}/retry/small:v1", login) == result.digest
