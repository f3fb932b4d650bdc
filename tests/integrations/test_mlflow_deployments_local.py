"""``deployer-local`` and ``run_local`` through MLflow, on the real Docker engine with a model
saved by real MLflow: the image is built by deployer's builder and the container really serves."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import mlflow.deployments
import numpy as np
import pytest
from mlflow.deployments import get_deploy_client
from mlflow.exceptions import MlflowException

from tests.fixtures.processes import ctrl_c_enabled
from tests.integrations.test_mlflow_deployments import MLFLOW

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.usefixtures("build_cache")]

NAMES = ("mlflow-plugin-run", "mlflow-plugin-cli", "mlflow-plugin-create")


@pytest.fixture
def containers(docker_client) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Whatever a test leaves behind is removed, and the test fails if it left anything."""
    yield
    left = []
    for name in NAMES:
        for container in docker_client.containers.list(all=True, filters={"label": f"io.deployer.endpoint={name}"}):
            left.append(container.name)
            container.remove(force=True)
    assert left == [], f"containers left behind: {left}"


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=60) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_run_local_detached_then_managed_as_a_deployment(containers, tensor_model, base_image):
    name = NAMES[0]
    info = mlflow.deployments.run_local("deployer-local", name, str(tensor_model),
                                        config={"detach": "true", "port": "0", "base_image": base_image})
    assert info["name"] == name and info["serve_as"] == "local" and info["predict_route"] == "/invocations"
    assert _post(info["url"] + "/invocations", {"inputs": [[1, 1, 1, 1]]}) == {"predictions": [4.0]}

    client = get_deploy_client("deployer-local")
    got = client.get_deployment(name)
    assert got["status"] == "running" and got["url"] == info["url"] and got["container"] == f"deployer-{name}"
    assert name in [d["name"] for d in client.list_deployments()]
    response = client.predict(name, np.ones((2, 4), dtype=np.float32))
    assert response.get_predictions(predictions_format="ndarray").tolist() == [4.0, 4.0]
    client.delete_deployment(name)
    with pytest.raises(MlflowException) as err:
        client.get_deployment(name)
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_mlflow_cli_run_local_serves_until_ctrl_c(containers, docker_client, tensor_model, base_image):
    name = NAMES[1]
    proc = subprocess.Popen(
        [MLFLOW, "deployments", "run-local", "-t", "deployer-sagemaker", "--name", name, "-m", str(tensor_model),
         "-C", "port=0", "-C", f"base_image={base_image}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        preexec_fn=ctrl_c_enabled)
    try:
        assert proc.stderr is not None
        lines = []
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if not line or "streaming logs" in line:
                break
        text = "".join(lines)
        match = re.search(r"at (http://127\.0\.0\.1:\d+)", text)
        assert match, text
        # started the way SageMaker starts it: `serve`, /ping and /invocations
        assert _post(match.group(1) + "/invocations", {"inputs": [[2, 2, 2, 2]]}) == {"predictions": [8.0]}
        (container,) = docker_client.containers.list(filters={"label": f"io.deployer.endpoint={name}"})
        assert container.labels["io.deployer.serve-as"] == "sagemaker"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not docker_client.containers.list(all=True, filters={"label": f"io.deployer.endpoint={name}"})


def test_create_update_predict_delete_on_the_local_engine(containers, tensor_model, base_image):
    name = NAMES[2]
    client = get_deploy_client("deployer-local")
    config = {"base_image": base_image, "port": 0}
    created = client.create_deployment(name, str(tensor_model), config=config)
    assert created["name"] == name and created["flavor"] == "python_function" and created["status"] == "running"
    with pytest.raises(MlflowException) as err:
        client.create_deployment(name, str(tensor_model), config=config)
    assert err.value.error_code == "RESOURCE_ALREADY_EXISTS" and "update" in err.value.message
    updated = client.update_deployment(name, str(tensor_model), config=config)
    assert updated["action"] == "replace"
    assert client.predict(name, {"inputs": [[1, 2, 3, 4]]})["predictions"] == [10.0]
    with pytest.raises(MlflowException) as err:  # the model's own 400, as deployer reports it
        client.predict(name, {"inputs": [["a", "b"]]})
    assert "HTTP 400" in err.value.message
    client.delete_deployment(name)
    client.delete_deployment(name)  # idempotent
    assert name not in [d["name"] for d in client.list_deployments()]
