"""Starting, configuring and stopping the server: entrypoints, env vars, SIGTERM, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.serving.conftest import (
    IRIS_COLUMNS,
    IRIS_ROWS,
    LiveServer,
    free_port,
    sleep_body,
    start_deployer,
)

SPLIT = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_finishes_in_flight_requests_then_exits_0(
        slow_model: Path, tmp_path: Path, workers: str) -> None:
    server = start_deployer(slow_model, tmp_path, "--workers", workers, "--timeout", "30")
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(server.post(sleep_body(2.5))))
    thread.start()
    time.sleep(0.8)  # the request is in flight
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    thread.join(30)
    assert results and results[0].status == 200, (results, server.log()[-2000:])  # type: ignore[attr-defined]
    assert results[0].json() == {"predictions": [{"slept": 2.5}]}  # type: ignore[attr-defined]
    assert server.proc.wait(30) == 0, server.log()[-2000:]
    assert time.monotonic() - started < 20
    assert not server.alive()  # the port is closed


def test_sigterm_on_idle_server_is_quick(sklearn_model: Path, tmp_path: Path) -> None:
    server = start_deployer(sklearn_model, tmp_path, "--workers", "2")
    pids = server.pids()
    assert len(pids) == 3  # supervisor + 2 workers
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 10
    time.sleep(0.5)
    for pid in pids[1:]:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in \
            Path(f"/proc/{pid}/status").read_text().lower()


def test_killed_worker_is_replaced(sklearn_model: Path, tmp_path: Path) -> None:
    server = start_deployer(sklearn_model, tmp_path, "--workers", "2")
    try:
        workers = server.pids()[1:]
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = server.pids()[1:]
            if len(now) == 2 and workers[0] not in now:
                break
            time.sleep(0.2)
        assert len(server.pids()[1:]) == 2 and workers[0] not in server.pids()
        for _ in range(10):
            assert server.post(SPLIT).status == 200
        assert "exited unexpectedly" in server.log()
    finally:
        server.stop()


def test_sagemaker_port_and_env_options(sklearn_model: Path, tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "deployer.serving", "serve"]
    server = start_deployer(sklearn_model, tmp_path, argv=argv, env={
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "DEPLOYER_SERVE_MODEL_DIR": str(sklearn_model),
        "DEPLOYER_SERVE_HOST": "127.0.0.1",
        "DEPLOYER_SERVE_WORKERS": "1",
        "DEPLOYER_SERVE_MAX_BODY_BYTES": "300",
        "DEPLOYER_SERVE_MODEL_NAME": "iris",
    })
    try:
        assert server.port == port
        assert server.post(SPLIT).status == 200
        assert server.post({"dataframe_split": {"columns": IRIS_COLUMNS,
                                                "data": IRIS_ROWS * 5}}).status == 413
        assert server.get("/v2/models/iris").status == 200
    finally:
        server.stop()


def test_deployer_serve_cli(sklearn_model: Path, tmp_path: Path) -> None:
    deployer = Path(sys.executable).parent / "deployer"
    server = start_deployer(sklearn_model, tmp_path, argv=[
        str(deployer), "serve", "-m", f"file://{sklearn_model}", "--port", "0",
        "--workers", "1", "--model-name", "iris", "--model-version", "3"])
    try:
        assert server.post(SPLIT).json() == {"predictions": [0, 1, 2]}
        meta = server.get("/v2/models/iris").json()
        assert meta["versions"] == ["3"]
        assert server.get("/v2/models/iris/versions/4/ready").status == 404
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("argv", [
    ["-m", "deployer.serving", "serve", "--model-dir", "/nonexistent/model", "--port", "0"],
    ["-m", "deployer.serving", "serve", "--model-dir", "/tmp", "--workers", "0"],
])
def test_bad_start_is_a_clear_error(argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode in (1, 2)
    assert proc.stderr.startswith("error:") or "\nerror:" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_bad_model_uri_is_a_clear_error(tmp_path: Path) -> None:
    deployer = Path(sys.executable).parent / "deployer"
    proc = subprocess.run([str(deployer), "serve", "-m", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_port_in_use_is_a_clear_error(sklearn_server: LiveServer, sklearn_model: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "deployer.serving", "serve", "--model-dir", str(sklearn_model),
         "--host", "127.0.0.1", "--port", str(sklearn_server.port), "--workers", "1"],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1
    assert "cannot listen" in proc.stderr and "Traceback" not in proc.stderr
