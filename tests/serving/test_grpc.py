"""The Open Inference Protocol (V2) over gRPC (``serve --grpc-port``), against live servers.

The client is tritonclient (``InferenceServerClient`` and its generated stubs), installed in its
own venv, so the wire format is checked by a well-known implementation, not by our own stubs.
Every answer is compared with the REST V2 answer of the same server to the same request.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.serving.conftest import (
    HOST,
    IRIS_COLUMNS,
    IRIS_LABELS,
    IRIS_ROWS,
    LiveServer,
    ServerPool,
    start_deployer,
)

pytestmark = pytest.mark.slow

CLIENT = Path(__file__).with_name("grpc_client.py")
_GRPC_LISTENING = re.compile(r"grpc listening on 127\.0\.0\.1:(\d+)")
_CODES = {200: "OK", 400: "StatusCode.INVALID_ARGUMENT", 404: "StatusCode.NOT_FOUND"}


@pytest.fixture(scope="session")
def triton_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with ``tritonclient[grpc]`` (its own pins: grpcio, protobuf), made with uv."""
    venv = tmp_path_factory.mktemp("tritonclient") / "venv"
    uv = Path(sys.executable).with_name("uv")
    subprocess.run([str(uv), "venv", "-q", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(uv), "pip", "install", "-q", "--python", str(python),
                    "tritonclient[grpc]"], check=True, timeout=600)
    return python


def grpc_url(server: LiveServer, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _GRPC_LISTENING.search(server.log())
        if match:
            return f"{HOST}:{match.group(1)}"
        time.sleep(0.2)
    raise AssertionError(f"no 'grpc listening' line:\n{server.log()[-3000:]}")


def run_client(python: Path, server: LiveServer, model: str, raw: list[dict[str, Any]],
               typed: list[dict[str, Any]]) -> dict[str, Any]:
    spec = {"url": grpc_url(server), "model": model, "raw": raw, "typed": typed}
    done = subprocess.run([str(python), str(CLIENT)], input=json.dumps(spec), text=True,
                          capture_output=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def rest_answer(server: LiveServer, request: dict[str, Any]) -> dict[str, Any]:
    """The REST V2 answer to ``request``, in the shape grpc_client.py reports."""
    body: dict[str, Any] = {"inputs": [
        {k: t[k] for k in ("name", "shape", "datatype", "data")} for t in request["inputs"]]}
    if request.get("id"):
        body["id"] = request["id"]
    resp = server.post(body, path=f"/v2/models/{request['model']}/infer")
    answer = resp.json()
    if resp.status != 200:
        return {"code": _CODES[resp.status], "message": answer["error"]}
    return {"code": "OK", "id": answer.get("id", ""), "model_name": answer["model_name"],
            "outputs": answer["outputs"]}


def _iris(model: str = "sklearn_skops", **extra: Any) -> dict[str, Any]:
    return {"model": model, **extra, "inputs": [
        {"name": c, "shape": [3], "datatype": "FP64", "data": [r[i] for r in IRIS_ROWS]}
        for i, c in enumerate(IRIS_COLUMNS)]}


@pytest.fixture(scope="session")
def sklearn_grpc(server_pool: ServerPool, sklearn_model: Path) -> LiveServer:
    # Two workers: both bind the one (picked) gRPC port with SO_REUSEPORT.
    return server_pool.deployer(sklearn_model, "--grpc-port", "0", "--workers", "2")


@pytest.fixture(scope="session")
def tensor_grpc(server_pool: ServerPool, tensor_model: Path) -> LiveServer:
    return server_pool.deployer(tensor_model, "--grpc-port", "0", "--workers", "1")


def test_six_rpcs_answer_as_rest_for_a_column_model(sklearn_grpc: LiveServer,
                                                    triton_python: Path) -> None:
    missing_column = _iris()
    missing_column["inputs"] = missing_column["inputs"][:3]
    wrong_type = _iris()
    wrong_type["inputs"][0] = {"name": IRIS_COLUMNS[0], "shape": [3], "datatype": "BYTES",
                               "data": ["a", "b", "c"]}
    raw = [_iris(id="req-1"), _iris("other"), missing_column, wrong_type]
    typed = [_iris(), _iris("other"), missing_column]
    answers = run_client(triton_python, sklearn_grpc, "sklearn_skops", raw, typed)

    assert answers["live"] is True and answers["ready"] is True
    assert answers["model_ready"] is True
    assert answers["unknown_model_ready"] == "StatusCode.NOT_FOUND"
    server_meta = sklearn_grpc.get("/v2").json()
    assert answers["server_metadata"]["name"] == server_meta["name"] == "deployer"
    assert answers["server_metadata"]["version"] == server_meta["version"]
    model_meta = sklearn_grpc.get("/v2/models/sklearn_skops").json()
    got = answers["model_metadata"]
    assert got["name"] == model_meta["name"] and got["platform"] == model_meta["platform"]
    for kind in ("inputs", "outputs"):  # protobuf's JSON writes int64 as strings
        assert [{**t, "shape": [int(d) for d in t["shape"]]} for t in got[kind]] == [
            {k: t[k] for k in ("name", "datatype", "shape")} for t in model_meta[kind]]

    expected = [rest_answer(sklearn_grpc, r) for r in raw]
    assert answers["infer"] == expected
    assert expected[0]["outputs"] == [{"name": "predictions", "shape": [3], "datatype": "INT64",
                                       "data": IRIS_LABELS}]
    assert expected[0]["id"] == "req-1"
    assert [a["code"] for a in expected] == [
        "OK", "StatusCode.NOT_FOUND", "StatusCode.INVALID_ARGUMENT",
        "StatusCode.INVALID_ARGUMENT"]
    assert answers["typed"] == [rest_answer(sklearn_grpc, r) for r in typed]


def test_tensor_model_raw_and_typed_contents_answer_as_rest(tensor_grpc: LiveServer,
                                                            triton_python: Path) -> None:
    x = {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4, .5, .5, .5, .5]}
    short = {**x, "shape": [3, 4]}  # 12 elements announced, 8 sent
    raw = [{"model": "tensor", "inputs": [x]},
           {"model": "tensor", "inputs": [{**x, "datatype": "FP16"}]}]
    too_big = {"name": "x", "shape": [1, 4], "datatype": "INT8", "data": [300, 1, 1, 1]}
    typed = [{"model": "tensor", "inputs": [x]}, {"model": "tensor", "inputs": [short]},
             {"model": "tensor", "inputs": [too_big]}]
    answers = run_client(triton_python, tensor_grpc, "tensor", raw, typed)
    assert answers["ready"] is True and answers["model_ready"] is True
    assert answers["infer"] == [rest_answer(tensor_grpc, r) for r in raw]
    assert answers["typed"] == [rest_answer(tensor_grpc, r) for r in typed]
    assert answers["typed"][0]["outputs"] == [
        {"name": "predictions", "shape": [2], "datatype": "FP32", "data": [10.0, 2.0]}]
    assert answers["typed"][1]["code"] == "StatusCode.INVALID_ARGUMENT"
    assert answers["typed"][2]["code"] == "StatusCode.INVALID_ARGUMENT"
    assert "INT8" in answers["typed"][2]["message"]


def test_deployer_serve_cli_workers_share_the_port_and_sigterm_finishes_running_rpcs(
        slow_model: Path, triton_python: Path, tmp_path: Path) -> None:
    """`deployer serve --grpc-port 0 --workers 2`: both workers serve the one picked port; an
    RPC running when SIGTERM arrives still gets its answer, and the server exits 0."""
    argv = [sys.executable, "-c", "from deployer.cli import main; main()", "serve", "-m",
            str(slow_model), "--port", "0", "--workers", "2", "--load-mode", "per-worker",
            "--grpc-port", "0"]
    server = start_deployer(slow_model, tmp_path / "logs", argv=argv)
    try:
        url = grpc_url(server)
        deadline = time.monotonic() + 60
        while len(_GRPC_LISTENING.findall(server.log())) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert set(_GRPC_LISTENING.findall(server.log())) == {url.rsplit(":", 1)[1]}, server.log()
        assert len(_GRPC_LISTENING.findall(server.log())) == 2
        request = {"model": "slow", "inputs": [
            {"name": "seconds", "shape": [1], "datatype": "FP64", "data": [6.0]}]}
        spec = {"url": url, "model": "slow", "raw": [request], "typed": []}
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        with open(tmp_path / "spec.json") as stdin:
            client = subprocess.Popen([str(triton_python), str(CLIENT)], stdin=stdin,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3.0)  # the client is connected and the model is sleeping in ModelInfer
    finally:
        code = server.stop(signal.SIGTERM)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 0, err
    answers = json.loads(out)
    assert answers["infer"] == [{"code": "OK", "id": "", "model_name": "slow", "outputs": [
        {"name": "slept", "datatype": "FP64", "shape": [1], "data": [6.0]}]}]
    assert code == 0, server.log()[-3000:]


def test_grpc_port_without_grpcio_is_a_typed_error_before_loading(tensor_model: Path) -> None:
    """A host without the `grpc` extra: one error line saying what to install, no traceback
    (grpc hidden from the import system, as if it were not installed)."""
    code = ("import sys; sys.modules['grpc'] = None; "
            "from deployer.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", code, "serve", "-m", str(tensor_model),
                           "--port", "0", "--grpc-port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "grpcio" in done.stderr and "deployer[grpc]" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "loaded in" not in done.stderr
