"""Build engines: the one place ``docker build`` actually happens, behind a one-method interface.

Two real implementations, picked by :func:`detect_engine`:

* :class:`CliBuildKitEngine` -- a ``docker`` CLI whose ``DOCKER_BUILDKIT=1 docker build`` has
  BuildKit built in (``--secret`` in its help). BuildKit gives bind/cache mounts (wheels never
  become a layer), parallel stages and incremental context transfer. Note: Docker 23+ CLIs
  without the buildx plugin *claim* BuildKit but fail ("buildx component is missing"), and
  ``--help`` then shows no ``--secret``: so the probe runs the CLI, it does not trust versions.
* :class:`SdkLegacyEngine` -- the docker SDK's build API, which is the classic builder only
  (docker/docker-py#2230). Always available where the SDK reaches an engine.

``DEPLOYER_BUILDKIT=0`` forces the classic builder, ``DEPLOYER_BUILDKIT=1`` requires BuildKit,
``DEPLOYER_DOCKER_CLI`` names the CLI to probe first (docker/ensure-engine.sh prints it).
Engine errors are translated into :class:`BuildError` here, at the boundary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from deployer.errors import BuildError
from deployer.redact import redact_text

LineSink = Callable[[str], None]
BUILD_TIMEOUT = 3600
_TAIL = 30


@dataclass(frozen=True)
class BuildRequest:
    context: Path
    tag: str
    labels: tuple[tuple[str, str], ...] = ()
    platform: str | None = None
    pull: bool = False
    nocache: bool = False


class BuildEngine(Protocol):
    name: str
    buildkit: bool

    def build(self, request: BuildRequest, on_line: LineSink) -> str:
        """Build; return the image ID (``sha256:...``). Raise BuildError on failure."""
        ...


def docker_client() -> Any:
    """A docker SDK client from the environment (DOCKER_HOST etc.), errors translated."""
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker is a core dependency
        raise BuildError("the docker Python package is missing", fix="pip install docker") from exc
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - docker raises several unrelated types here
        host = os.environ.get("DOCKER_HOST", "the default socket")
        raise BuildError(
            f"cannot reach a Docker engine at {host}: {redact_text(str(exc))}",
            fix='start Docker (or `eval "$(bash docker/ensure-engine.sh)"`), or set DOCKER_HOST',
        ) from exc
    return client


def _fail(what: str, lines: Sequence[str]) -> BuildError:
    tail = "\n".join(lines[-_TAIL:])
    return BuildError(
        f"{what}\n{tail}" if tail else what,
        fix="read the build output above; `deployer generate` writes the context for a manual look",
    )


@dataclass
class SdkLegacyEngine:
    """The classic builder through the docker SDK (no BuildKit features)."""

    client: Any = None
    name: str = "docker-sdk (classic builder)"
    buildkit: bool = False

    def build(self, request: BuildRequest, on_line: LineSink) -> str:
        client = self.client or docker_client()
        lines: list[str] = []
        image_id = ""
        try:
            stream = client.api.build(
                path=str(request.context),
                tag=request.tag,
                labels=dict(request.labels) or None,
                rm=True,
                forcerm=True,
                pull=request.pull,
                nocache=request.nocache,
                decode=True,
                platform=request.platform,
                timeout=BUILD_TIMEOUT,
            )
            for chunk in stream:
                if "error" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                    lines.extend(redact_text(str(detail)).splitlines())
                    raise _fail("docker build failed", lines)
                text = chunk.get("stream")
                if text:
                    for line in redact_text(text).splitlines():
                        if line.strip():
                            lines.append(line)
                            on_line(line)
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("ID"):
                    image_id = aux["ID"]
        except BuildError:
            raise
        except Exception as exc:  # noqa: BLE001 - docker.errors.* and requests errors
            raise _fail(f"docker build failed: {redact_text(str(exc))}", lines) from exc
        if not image_id:
            try:
                image_id = client.images.get(request.tag).id
            except Exception as exc:  # noqa: BLE001
                raise _fail("docker build reported no image", lines) from exc
        return image_id


@dataclass
class CliBuildKitEngine:
    """``DOCKER_BUILDKIT=1 <cli> build``: BuildKit through a CLI that has it built in."""

    cli: str
    name: str = field(default="")
    buildkit: bool = True

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"BuildKit ({self.cli})"

    def build(self, request: BuildRequest, on_line: LineSink) -> str:
        with tempfile.TemporaryDirectory(prefix="deployer-iid-") as tmp:
            iid = Path(tmp) / "iid"
            cmd = [
                self.cli,
                "build",
                "--progress=plain",
                "--tag",
                request.tag,
                "--iidfile",
                str(iid),
            ]
            for key, value in request.labels:
                cmd += ["--label", f"{key}={value}"]
            if request.platform:
                cmd += ["--platform", request.platform]
            if request.pull:
                cmd.append("--pull")
            if request.nocache:
                cmd.append("--no-cache")
            cmd.append(str(request.context))
            env = {**os.environ, "DOCKER_BUILDKIT": "1", "BUILDKIT_PROGRESS": "plain"}
            lines: list[str] = []
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=env,
                    errors="replace",
                )
            except OSError as exc:
                raise BuildError(
                    f"cannot run {self.cli}: {exc}", fix="check DEPLOYER_DOCKER_CLI"
                ) from exc
            assert proc.stdout is not None
            deadline = time.monotonic() + BUILD_TIMEOUT
            for raw in proc.stdout:
                line = redact_text(raw.rstrip("\n"))
                if line.strip():
                    lines.append(line)
                    on_line(line)
                if time.monotonic() > deadline:
                    proc.kill()
                    raise _fail(f"docker build did not finish within {BUILD_TIMEOUT}s", lines)
            if proc.wait() != 0:
                raise _fail(f"docker build failed (exit {proc.returncode})", lines)
            if not iid.is_file():
                raise _fail("docker build wrote no image ID", lines)
            return iid.read_text().strip()


_PROBED: dict[tuple[str, float, int], bool] = {}


def cli_has_buildkit(cli: str) -> bool:
    """True when ``DOCKER_BUILDKIT=1 cli build --help`` offers ``--secret`` (really BuildKit).

    Remembered per (path, mtime, size) for the life of the process.
    """
    try:
        st = os.stat(cli)
    except OSError:
        return False
    key = (cli, st.st_mtime, st.st_size)
    if key not in _PROBED:
        _PROBED[key] = _probe(cli)
    return _PROBED[key]


def _probe(cli: str) -> bool:
    try:
        out = subprocess.run(
            [cli, "build", "--help"],
            capture_output=True,
            text=True,
            timeout=20,
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "--secret" in out.stdout


def _candidates() -> list[str]:
    found = [
        os.environ.get("DEPLOYER_DOCKER_CLI", ""),
        shutil.which("docker") or "",
        "/usr/bin/docker",
    ]
    out: list[str] = []
    for cli in found:
        if cli and os.path.isfile(cli) and os.access(cli, os.X_OK) and cli not in out:
            out.append(cli)
    return out


def detect_engine(prefer: str | None = None) -> BuildEngine:
    """BuildKit through a capable CLI when there is one, else the SDK's classic builder.

    ``prefer``: "buildkit", "legacy" or None/"auto" (default: ``$DEPLOYER_BUILDKIT``).
    """
    choice = (prefer or os.environ.get("DEPLOYER_BUILDKIT") or "auto").lower()
    if choice in ("0", "legacy", "false", "no"):
        return SdkLegacyEngine()
    for cli in _candidates():
        if cli_has_buildkit(cli):
            return CliBuildKitEngine(cli=cli)
    if choice in ("1", "buildkit", "true", "yes"):
        raise BuildError(
            "BuildKit was required but no docker CLI here can build with it",
            fix="install a docker CLI with BuildKit (or buildx), or set DEPLOYER_BUILDKIT=0",
        )
    return SdkLegacyEngine()
