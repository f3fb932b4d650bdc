"""The README's main command, and an installed wheel, on a brand-new minimal Debian.

The machine a newcomer starts from is simulated by a container of the Debian base image that
``docker/base-image.sh`` makes (debootstrap minbase + python3: no curl, wget, jq, compiler,
git or docker), as root, with this checkout copied in and nothing else. What the fresh machine
of a corporate network does have is its CA in the system trust store: the host's bundle is
put there, exactly as on such a machine (the test container is thrown away; no deployer image
is involved). The session's engine is reachable through its mounted socket, and the container
shares the host's network so that the port run-local publishes is on its 127.0.0.1.

If one of these fails, the README's two commands are broken for a newcomer, whatever the rest
of the suite says.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.fixtures.infra import REPO_ROOT, DockerEnv

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# What a minimal Debian lacks, so the scripts must not rely on it.
ABSENT_TOOLS = ("curl", "wget", "jq", "gcc", "cc", "git", "docker")
EXAMPLE_ENDPOINT = "iris-model"  # the example model's name, which run-local uses


_NOT_IN_A_CLONE = {".git", ".venv", ".venv-flavors", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", "iris-model"}


def _checkout_files() -> list[str]:
    """The checkout as a clone has it: tracked files plus new, not-ignored ones (without git,
    e.g. an unpacked sdist: every file but the venv, caches and generated models)."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT,
                             capture_output=True, check=True).stdout.decode()
        names = out.split("\0")
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(REPO_ROOT)) for p in REPO_ROOT.rglob("*")
                 if not _NOT_IN_A_CLONE.intersection(p.relative_to(REPO_ROOT).parts)]
    return [f for f in names if f and (REPO_ROOT / f).is_file()]


def _tar(entries: dict[str, Path]) -> bytes:
    """{path in the container: file or folder on the host} -> a tar for put_archive at /."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for dest, src in entries.items():
            tar.add(str(src), arcname=dest.lstrip("/"))
    return buf.getvalue()


def _fresh_machine(docker_client, docker_env: DockerEnv, base_image: str, script: str,  # type: ignore[no-untyped-def]
                   files: dict[str, Path], timeout: float) -> tuple[int, str]:
    """Run ``script`` (bash) as root in a new minimal-Debian container; (exit code, output)."""
    assert docker_env.docker_host.startswith("unix://"), "the test mounts the engine's unix socket"
    socket = docker_env.docker_host.removeprefix("unix://")
    guard = " && ".join(f"! command -v {tool} >/dev/null" for tool in ABSENT_TOOLS)
    container = docker_client.containers.create(
        base_image, ["bash", "-c", f"{guard} || {{ echo 'not a minimal machine'; exit 99; }}\nset -e\n{script}"],
        entrypoint=[], network_mode="host", user="root", working_dir="/",
        environment={"DOCKER_HOST": "unix:///var/run/docker.sock"},
        volumes={socket: {"bind": "/var/run/docker.sock", "mode": "rw"}},
    )
    try:
        if HOST_CA_BUNDLE.is_file():
            files = {**files, str(HOST_CA_BUNDLE): HOST_CA_BUNDLE}
        assert container.put_archive("/", _tar(files))
        container.start()
        try:
            status = container.wait(timeout=timeout)["StatusCode"]
        except Exception:  # noqa: BLE001 - requests' ReadTimeout: report what it printed so far
            container.kill()
            status = -1
        return int(status), container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)


def _remove_example_endpoint(docker_client) -> None:  # type: ignore[no-untyped-def]
    from deployer.targets.local import LocalTarget

    LocalTarget(client=docker_client).delete(EXAMPLE_ENDPOINT)


@pytest.fixture
def example_endpoint_cleanup(docker_client):  # type: ignore[no-untyped-def]
    _remove_example_endpoint(docker_client)
    yield
    _remove_example_endpoint(docker_client)


def test_quickstart_prints_a_prediction_on_a_fresh_debian(  # type: ignore[no-untyped-def]
        docker_client, docker_env: DockerEnv, base_image: str, example_endpoint_cleanup) -> None:
    files = {f"/src/{f}": REPO_ROOT / f for f in _checkout_files()}
    assert "/src/scripts/quickstart.sh" in files
    code, out = _fresh_machine(docker_client, docker_env, base_image, "cd /src && ./scripts/quickstart.sh 0",
                               files, timeout=840)
    assert code != 99, out
    assert code == 0, f"quickstart.sh exited {code}:\n{out[-6000:]}"
    assert "Traceback" not in out, out[-6000:]
    predictions = [json.loads(line) for line in out.splitlines() if line.startswith('{"predictions"')]
    assert predictions == [{"predictions": [0, 0, 0]}], out[-3000:]
    assert "quickstart.sh: timing (total" in out
    # the main job installs what it needs, not the test stack
    assert "pip install -e '.[example]'" in out and ".[test]" not in out
    # the endpoint really is up on the shared engine, and answers the host too
    from deployer.targets.local import LocalTarget

    target = LocalTarget(client=docker_client)
    assert target.status(EXAMPLE_ENDPOINT).status == "running"
    print(out[out.index("quickstart.sh: timing"):])  # the phase timings, shown with -s


def test_installed_wheel_runs_help_and_inspect_on_a_fresh_debian(  # type: ignore[no-untyped-def]
        docker_client, docker_env: DockerEnv, base_image: str, wheel: Path, sklearn_model: Path) -> None:
    script = (
        "python3 -m venv /opt/deployer\n"
        "/opt/deployer/bin/python -m pip install -q --upgrade pip\n"
        f"/opt/deployer/bin/python -m pip install -q /tmp/{wheel.name}\n"
        "cd /tmp\n"
        "/opt/deployer/bin/deployer --help\n"
        "echo '--- inspect'\n"
        "/opt/deployer/bin/deployer inspect -m /tmp/model --output json\n"
    )
    code, out = _fresh_machine(docker_client, docker_env, base_image, script,
                               {f"/tmp/{wheel.name}": wheel, "/tmp/model": sklearn_model}, timeout=600)
    assert code == 0, f"exited {code}:\n{out[-6000:]}"
    help_text, _, inspect_out = out.partition("--- inspect\n")
    for command in ("inspect", "build", "run-local", "build-and-push", "deploy", "export", "predict"):
        assert f"  {command} " in help_text, help_text
    data, _ = json.JSONDecoder().raw_decode(inspect_out[inspect_out.index("\n{") + 1:] if not inspect_out.startswith("{") else inspect_out)
    assert data["flavors"] == ["python_function", "sklearn"]
    assert data["loader_module"] == "mlflow.sklearn"
    assert data["path"] == "/tmp/model"
    assert data["environment"]["kind"] == "virtualenv"
