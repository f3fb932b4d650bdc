"""Real images on the real engine: they build, serve correct predictions, stay small and clean.

The shared images come from tests/building/conftest.py (built once per session).
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.building.conftest import BuiltImage, Secrets

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _post(url: str, body: bytes, ctype: str = "application/json") -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _expected(model_dir: Path, payload: dict[str, Any]) -> list[Any]:
    """What MLflow itself predicts for the same payload, on the host."""
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model(str(model_dir))
    out = model.predict(pd.DataFrame(**payload["dataframe_split"]))
    return json.loads(pd.Series(out).to_json(orient="values"))


def test_sklearn_image_serves_mlflow_predictions(sk_image: BuiltImage, local_target) -> None:  # type: ignore[no-untyped-def]
    url = local_target(sk_image.tag, "t-iris")
    payload = json.loads((sk_image.model_dir / "serving_input_example.json").read_text())
    status, body = _post(f"{url}/invocations", json.dumps(payload).encode())
    assert status == 200, body
    assert body["predictions"] == _expected(sk_image.model_dir, payload)
    status, body = _post(f"{url}/invocations", b'{"dataframe_split": {"columns": ["x"], "data": [[1]]}}')
    assert status == 400 and body["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE")


def test_model_only_change_adds_exactly_one_layer(docker_client, sk_image: BuiltImage,  # type: ignore[no-untyped-def]
                                                   sk_image_retrained: BuiltImage) -> None:
    a = docker_client.images.get(sk_image.tag).attrs["RootFS"]["Layers"]
    b = docker_client.images.get(sk_image_retrained.tag).attrs["RootFS"]["Layers"]
    assert len(a) == len(b)
    assert a[:-1] == b[:-1], "only the model layer may differ"
    assert a[-1] != b[-1]
    assert float(sk_image_retrained.result["seconds"]) < 60  # no dependency work at all
    assert "reusing cached resolution" in sk_image_retrained.output  # no pip run at all
    # part 1 (base + environment) is shared by models with the same dependencies: not rebuilt
    assert "reusing the Python environment image deployer-env:" in sk_image_retrained.output


def test_image_is_clean_small_and_non_root(docker_client, sk_image: BuiltImage, base_image: str) -> None:  # type: ignore[no-untyped-def]
    image = docker_client.images.get(sk_image.tag)
    config = image.attrs["Config"]
    assert config["User"] == "1000:1000"
    assert "8080/tcp" in config["ExposedPorts"]
    assert config["Entrypoint"] == ["/opt/venv/bin/dumb-init", "--"] and config["Cmd"] == ["serve"]
    assert config["Healthcheck"]["Test"][0] == "CMD"
    labels = config["Labels"]
    for key in ("io.deployer.model.uuid", "io.deployer.mlflow.version", "io.deployer.version",
                "io.deployer.model.digest", "io.deployer.lock.digest", "org.opencontainers.image.source"):
        assert labels.get(key), key
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["GREETING"] == 'say "hi" to $USER \\o/ ${HOME}'  # escaped, not expanded
    script = (
        "import os, sys, glob, site, shutil;"
        "sp = site.getsitepackages()[0];"
        "print(os.getuid());"
        "print(len(glob.glob(sp + '/pandas/core/__pycache__/*.pyc')) > 10);"
        "print(os.path.isdir(sp + '/pandas/tests'));"
        "print(shutil.which('uv'), os.path.exists('/opt/venv/bin/pip'), os.path.isdir(sp + '/pip'));"
        "print(os.listdir('/var/lib/apt/lists') if os.path.isdir('/var/lib/apt/lists') else []);"
        "import tinypkg; print(tinypkg.VALUE)"
    )
    out = docker_client.containers.run(sk_image.tag, ["/opt/venv/bin/python", "-c", script], remove=True,
                                       entrypoint=[]).decode().split("\n")
    assert out[0] == "1000"
    assert out[1] == "True", "site-packages are byte-compiled"
    assert out[2] == "False", "bundled test suites are stripped"
    assert out[3] == "None False False", "no build tools (uv, pip) in the final image's venv"
    assert out[4] in ("[]", "['partial']", "['lock', 'partial']", "['partial', 'lock']")
    assert out[5] == "from the private index"
    base = docker_client.images.get(base_image)
    over = image.attrs["Size"] - base.attrs["Size"]
    assert over < 700 * 1024 * 1024, f"{over / 2**20:.0f} MiB over the base"


def test_system_package_is_an_os_layer_below_the_python_environment(docker_client, sk_image: BuiltImage,  # type: ignore[no-untyped-def]
                                                                      base_image: str) -> None:
    """--system-package libgomp1 (sk_image's options): installed by apt in one layer right above
    the base, below the venv; apt's lists and caches are not in it; the label names it."""
    image = docker_client.images.get(sk_image.tag)
    assert image.attrs["Config"]["Labels"]["io.deployer.os-packages"] == "libgomp1"
    out = docker_client.containers.run(
        sk_image.tag, ["sh", "-c", "dpkg-query -W -f '${Status}' libgomp1; echo; ls /var/cache/apt/archives | "
                       "grep -c deb$ || true; ls /usr/lib/x86_64-linux-gnu/libgomp.so.1 2>/dev/null || "
                       "ls /usr/lib/*/libgomp.so.1"], remove=True, entrypoint=[]).decode().split("\n")
    assert out[0] == "install ok installed"
    assert out[1] == "0", "no .deb left in the image"
    assert out[2].endswith("libgomp.so.1")
    # layer order: base layers, then the apt layer, then (user, venv, runtime, model)
    history = [h for h in image.history() if h["CreatedBy"]]
    created = [h["CreatedBy"] for h in reversed(history)]  # oldest first
    apt = next(i for i, c in enumerate(created) if "apt-get install" in c and "libgomp1" in c)
    venv = next(i for i, c in enumerate(created) if "build_venv.py" in c or "/opt/venv" in c)
    assert apt < venv, created
    base_layers = len(docker_client.images.get(base_image).attrs["RootFS"]["Layers"])
    assert len(image.attrs["RootFS"]["Layers"]) > base_layers + 1


def test_sagemaker_contract_serve_argument_and_port(docker_client, sk_image: BuiltImage) -> None:  # type: ignore[no-untyped-def]
    """`docker run IMAGE serve` with SAGEMAKER_BIND_TO_PORT, then SIGTERM stops it promptly."""
    container = docker_client.containers.run(
        sk_image.tag, ["serve"], detach=True, environment={"SAGEMAKER_BIND_TO_PORT": "9091"},
        ports={"9091/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        port = container.ports["9091/tcp"][0]["HostPort"]
        deadline = time.monotonic() + 240
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            try:
                with opener.open(f"http://127.0.0.1:{port}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            container.reload()
            assert container.status == "running", container.logs().decode()[-2000:]
            assert time.monotonic() < deadline, "not ready in time"
            time.sleep(0.5)
        # PID 1 forwards signals. `top` lists host PIDs sorted by number, and host PIDs wrap
        # around on a long-lived machine, so find the container's init by the PID the engine
        # reports for it rather than by position.
        top = container.top()
        pid_col, cmd_col = top["Titles"].index("PID"), top["Titles"].index("CMD")
        init_pid = str(container.attrs["State"]["Pid"])
        init = [row for row in top["Processes"] if row[pid_col] == init_pid]
        assert init and "dumb-init" in init[0][cmd_col], top
        t0 = time.monotonic()
        container.stop(timeout=30)
        assert time.monotonic() - t0 < 15, "SIGTERM was not handled (waited for SIGKILL)"
        container.reload()
        assert container.attrs["State"]["ExitCode"] in (0, 143)
    finally:
        container.remove(force=True)


def test_healthcheck_reports_healthy(docker_client, sk_image: BuiltImage) -> None:  # type: ignore[no-untyped-def]
    container = docker_client.containers.run(sk_image.tag, detach=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            container.reload()
            health = container.attrs["State"].get("Health", {}).get("Status")
            if health == "healthy":
                return
            assert container.status == "running", container.logs().decode()[-2000:]
            time.sleep(1)
        pytest.fail(f"health status stayed {health!r}")
    finally:
        container.remove(force=True)


# ---------------------------------------------------------------- secrets
def _scan_bytes(data: bytes, needles: list[bytes], where: str, hits: list[str]) -> None:
    for needle in needles:
        if needle in data:
            hits.append(f"{needle[:12]!r}... in {where}")


def test_no_secret_in_layers_history_labels_or_logs(docker_client, sk_image: BuiltImage,  # type: ignore[no-untyped-def]
                                                     build_secrets: Secrets, private_index) -> None:
    assert private_index.requests > 0 and private_index.unauthorized >= 0  # the index was really used
    needles = [n.encode() for n in build_secrets.needles()]
    hits: list[str] = []
    # 1. every file of every layer (docker save), and the image config
    stream = io.BytesIO(b"".join(docker_client.images.get(sk_image.tag).save(named=True)))
    files = 0
    with tarfile.open(fileobj=stream) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.endswith("layer.tar") or data[257:262] == b"ustar":
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for inner in layer.getmembers():
                        _scan_bytes(inner.name.encode(), needles, f"{member.name}:{inner.name} (name)", hits)
                        if inner.isfile():
                            files += 1
                            blob = layer.extractfile(inner).read()  # type: ignore[union-attr]
                            _scan_bytes(blob, needles, f"{member.name}:{inner.name}", hits)
            else:
                _scan_bytes(data, needles, member.name, hits)
    assert files > 1000, "the scan must have looked inside the layers"
    # 2. history, as the CLI shows it
    history = subprocess.run(["docker", "history", "--no-trunc", sk_image.tag], capture_output=True, text=True,
                             check=True).stdout
    _scan_bytes(history.encode(), needles, "docker history --no-trunc", hits)
    # 3. labels and the whole config (env, cmd, healthcheck)
    _scan_bytes(json.dumps(docker_client.images.get(sk_image.tag).attrs).encode(), needles, "image config", hits)
    # 4. everything the build printed (-v: every pip and docker line)
    _scan_bytes(sk_image.output.encode(), needles, "build output", hits)
    assert not hits, hits


def test_image_keeps_its_lock_for_bit_for_bit_rebuilds(docker_client, sk_image: BuiltImage, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Built without --lock, the image still carries the lock it was built from (a file at the
    path its label names, matching the lock digest label), and that lock is what
    `deployer build --lock` takes."""
    from deployer.environment.lock import read_lock

    labels = docker_client.images.get(sk_image.tag).attrs["Config"]["Labels"]
    path = labels["io.deployer.lock.path"]
    text = docker_client.containers.run(sk_image.tag, ["cat", path], entrypoint=[], remove=True)
    saved = tmp_path / "model.lock"
    saved.write_bytes(text)
    lock = read_lock(saved)
    assert lock.digest == labels["io.deployer.lock.digest"]
    assert any(p.name.lower() in ("scikit-learn", "scikit_learn") for p in lock.packages)
