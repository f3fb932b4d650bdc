"""Fixtures of the Kubernetes / KServe target tests: the fake API server and a kubeconfig."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.targets.kubernetes.fake_apiserver import FakeApiServer, kubeconfig


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    server.url = server.start()  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kubeconfig_file(apiserver: FakeApiServer, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig(apiserver.url)))  # type: ignore[attr-defined]
    return path


@pytest.fixture(scope="session")
def scoring_server(sklearn_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """deployer's real scoring server (``deployer serve``, 1 worker) with the sklearn iris model:
    the backend the fake API server's service proxy forwards to. Yields its base URL."""
    import re
    import subprocess
    import sys
    import time

    log = tmp_path_factory.mktemp("serve") / "serve.log"
    exe = Path(sys.executable).parent / "deployer"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(exe), "serve", "-m", str(sklearn_model), "--port", "0", "--workers", "1"],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        match = None
        while match is None and time.monotonic() < deadline and proc.poll() is None:
            match = re.search(r"listening on http://[^:]+:(\d+)", log.read_text(errors="replace"))
            time.sleep(0.2)
        assert match, log.read_text(errors="replace")[-3000:]
        yield f"http://127.0.0.1:{match.group(1)}"
    finally:
        proc.terminate()
        proc.wait(60)
