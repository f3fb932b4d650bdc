"""Images and registries for push tests.

* ``small_image``: a tiny image built FROM the session's Debian base image (no pulls), with a
  random file so its top layer is new to every registry;
* ``big_image``: the same with a ~300 MB random layer, so an upload lasts long enough to be
  interrupted;
* ``own_registry``: a private registry (docker/registry.sh) for tests that kill it;
* ``docker_config``: a per-test ``DOCKER_CONFIG`` directory (what ``docker login`` writes).
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
REGISTRY_SCRIPT = REPO_ROOT / "docker" / "registry.sh"


def _build(client: Any, base_image: str, tag: str, run: str) -> str:
    dockerfile = f"FROM {base_image}\nRUN {run}\nCMD [\"cat\", \"/hello.txt\"]\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, nocache=True)
    return tag


@pytest.fixture(scope="session")
def small_image(docker_client: Any, base_image: str) -> Iterator[str]:
    token = secrets.token_hex(8)
    tag = f"deployer-test/push-small:{token}"
    _build(docker_client, base_image, tag, f"echo hello-{token} > /hello.txt")
    yield tag
    docker_client.images.remove(tag, force=True)


@pytest.fixture(scope="session")
def big_image(docker_client: Any, base_image: str) -> Iterator[str]:
    token = secrets.token_hex(8)
    tag = f"deployer-test/push-big:{token}"
    _build(docker_client, base_image, tag,
           f"head -c 300000000 /dev/urandom > /big.bin && echo hello-{token} > /hello.txt")
    yield tag
    docker_client.images.remove(tag, force=True)


@dataclass
class OwnRegistry:
    host: str
    username: str
    password: str
    state_dir: Path
    extra_pids: list[int]

    @property
    def pid(self) -> int:
        return int((self.state_dir / "pid").read_text())

    def kill(self) -> None:
        os.kill(self.pid, 9)

    def restart_same_port(self) -> None:
        """Start the registry again on the same config (same port, same storage)."""
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(self.state_dir / "config.yml")],
            stdout=open(self.state_dir / "registry.log", "ab"),  # noqa: SIM115 - owned by the process
            stderr=open(self.state_dir / "registry-app.log", "ab"),  # noqa: SIM115
            start_new_session=True,
        )
        self.extra_pids.append(proc.pid)
        (self.state_dir / "pid").write_text(str(proc.pid))
        import socket
        import time

        host, port = self.host.split(":")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("restarted registry did not come up")

    def log_text(self) -> str:
        return (self.state_dir / "registry.log").read_text(errors="replace")


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[OwnRegistry]:
    import re

    state = tmp_path / "registry"
    user, password = "u" + secrets.token_hex(3), secrets.token_urlsafe(12)
    out = subprocess.run(["bash", str(REGISTRY_SCRIPT), "start", str(state), "--user", user, "--password-stdin"],
                         input=password + "\n", capture_output=True, text=True, timeout=120, check=True).stdout
    host = re.search(r"^REGISTRY=(\S+)$", out, re.MULTILINE)
    assert host, out
    reg = OwnRegistry(host.group(1), user, password, state, [])
    try:
        yield reg
    finally:
        subprocess.run(["bash", str(REGISTRY_SCRIPT), "stop", str(state)], capture_output=True, timeout=60)
        for pid in reg.extra_pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docker_env: Any) -> Path:
    path = tmp_path / "docker-config"
    path.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(path))
    return path
