"""``deployer build --grpc-port``: an image that serves the Open Inference Protocol over gRPC too.

The image is built by the real CLI on the real engine, verified over gRPC before it is tagged,
run by the local target (which publishes the gRPC port), and driven by tritonclient (its own
venv: tests/serving/test_grpc.py's fixture): every ModelInfer answer equals the REST V2 answer
of the same container. An image built without the option has no gRPC runtime at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from deployer.targets.base import DeployRequest
from deployer.targets.local import LocalTarget
from tests.building.conftest import BuiltImage, build_with_cli
from tests.serving.conftest import IRIS_COLUMNS, IRIS_LABELS, IRIS_ROWS
from tests.serving.test_grpc import CLIENT, triton_python  # noqa: F401 - session fixture

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PREFIX = "mm-images-test"


@pytest.fixture(scope="session")
def grpc_image(docker_client, base_image: str, sklearn_model: Path, build_cache: Path) -> BuiltImage:  # type: ignore[no-untyped-def]
    env = {**os.environ, "DEPLOYER_BUILD_CACHE": str(build_cache)}
    built = build_with_cli(sklearn_model, f"{PREFIX}/grpc-iris:1", base_image, env, "--grpc-port", "8081")
    yield built
    docker_client.images.remove(built.tag, force=True)


@pytest.fixture(scope="session")
def plain_image(docker_client, base_image: str, sklearn_model: Path, build_cache: Path) -> BuiltImage:  # type: ignore[no-untyped-def]
    env = {**os.environ, "DEPLOYER_BUILD_CACHE": str(build_cache)}
    built = build_with_cli(sklearn_model, f"{PREFIX}/plain-iris:1", base_image, env, "--no-verify")
    yield built
    docker_client.images.remove(built.tag, force=True)


def _iris(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, **extra, "inputs": [
        {"name": c, "shape": [3], "datatype": "FP64", "data": [r[i] for r in IRIS_ROWS]}
        for i, c in enumerate(IRIS_COLUMNS)]}


def _rest_v2(url: str, request: dict[str, Any]) -> dict[str, Any]:
    body = {"inputs": request["inputs"], **({"id": request["id"]} if request.get("id") else {})}
    req = urllib.request.Request(f"{url}/v2/models/{request['model']}/infer", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=60) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return {"code": {404: "StatusCode.NOT_FOUND", 400: "StatusCode.INVALID_ARGUMENT"}[exc.code],
                "message": json.loads(exc.read())["error"]}
    return {"code": "OK", "id": answer.get("id", ""), "model_name": answer["model_name"],
            "outputs": answer["outputs"]}


def test_grpc_image_is_verified_over_grpc_and_answers_modelinfer_as_rest(  # type: ignore[no-untyped-def]
        docker_client, grpc_image: BuiltImage, triton_python: Path) -> None:  # noqa: F811
    verification = grpc_image.result["verification"]
    assert isinstance(verification, dict) and verification["status"] == "passed"
    assert verification["grpc"] == "port 8081: ServerReady, ModelInfer model"
    attrs = docker_client.images.get(grpc_image.tag).attrs
    labels = attrs["Config"]["Labels"]
    assert labels["io.deployer.grpc.port"] == "8081"
    assert labels["io.deployer.verify.grpc"] == "port 8081: ServerReady, ModelInfer model"
    assert {"8080/tcp", "8081/tcp"} <= set(attrs["Config"]["ExposedPorts"])
    assert "DEPLOYER_SERVE_GRPC_PORT=8081" in attrs["Config"]["Env"]

    target = LocalTarget(client=docker_client, ready_timeout=240)
    name = f"{PREFIX}-grpc-iris"
    result = target.apply(target.plan(DeployRequest(name=name, image_uri=grpc_image.tag,
                                                    options={"port": 0, "serve_as": "local"})))
    try:
        url, grpc_address = str(result.endpoint_url), result.details["grpc"]
        assert grpc_address.startswith("127.0.0.1:")
        wrong = _iris("model")
        wrong["inputs"] = wrong["inputs"][:3]
        raw = [_iris("model", id="req-1"), _iris("other"), wrong]
        spec = {"url": grpc_address, "model": "model", "raw": raw, "typed": [_iris("model")]}
        done = subprocess.run([str(triton_python), str(CLIENT)], input=json.dumps(spec), text=True,
                              capture_output=True, timeout=180)
        assert done.returncode == 0, done.stderr
        answers = json.loads(done.stdout)
        assert answers["ready"] is True and answers["model_ready"] is True
        expected = [_rest_v2(url, r) for r in raw]
        assert answers["infer"] == expected
        assert expected[0]["outputs"] == [{"name": "predictions", "shape": [3], "datatype": "INT64",
                                           "data": IRIS_LABELS}]
        assert [a["code"] for a in expected] == ["OK", "StatusCode.NOT_FOUND", "StatusCode.INVALID_ARGUMENT"]
        assert answers["typed"] == [_rest_v2(url, _iris("model"))]
    finally:
        target.delete(name)


def test_image_without_grpc_port_has_no_grpc_runtime(docker_client, plain_image: BuiltImage) -> None:  # type: ignore[no-untyped-def]
    attrs = docker_client.images.get(plain_image.tag).attrs
    assert "io.deployer.grpc.port" not in attrs["Config"]["Labels"]
    assert set(attrs["Config"]["ExposedPorts"]) == {"8080/tcp"}
    assert not any(e.startswith("DEPLOYER_SERVE_GRPC_PORT=") for e in attrs["Config"]["Env"])
    # grpcio is absent (protobuf may be there: mlflow-skinny needs it)
    code = "import importlib.util as u; print(u.find_spec('grpc') is None, u.find_spec('deployer') is not None)"
    out = docker_client.containers.run(plain_image.tag, ["/opt/venv/bin/python", "-c", code], entrypoint=[],
                                       remove=True, network_disabled=True)
    assert out.decode().split() == ["True", "True"]
