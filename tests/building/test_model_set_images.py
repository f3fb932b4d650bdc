"""Multi-model images: three models (sklearn, a params pyfunc, a tensor model) in one image.

Built by the real CLI on the real engine (``deployer build -m NAME=DIR ...``), verified model
by model before it is tagged, run by the local target; every model answers, over
``/invocations`` with the target-model header, REST V2 and gRPC (tritonclient), exactly what
a single-model ``deployer serve`` of that model answers, with requests to all three running
concurrently. A retrained model changes one layer of the image.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from deployer.targets.base import DeployRequest
from deployer.targets.local import LocalTarget
from tests.building.conftest import BuiltImage
from tests.serving.conftest import IRIS_COLUMNS, IRIS_ROWS, LiveServer, server_pool  # noqa: F401
from tests.serving.test_grpc import CLIENT, triton_python  # noqa: F401 - session fixtures

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PREFIX = "mm-images-test"
NAMES = ("iris", "params", "tensor")
HEADER = "X-Deployer-Target-Model"

PAYLOADS: dict[str, dict[str, Any]] = {
    "iris": {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}},
    "params": {"dataframe_split": {"columns": ["text"], "data": [["hi"], ["there"]]},
               "params": {"times": 2, "suffix": "!"}},
    "tensor": {"inputs": [[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]]},
}
V2: dict[str, list[dict[str, Any]]] = {
    "iris": [{"name": c, "shape": [3], "datatype": "FP64", "data": [r[i] for r in IRIS_ROWS]}
             for i, c in enumerate(IRIS_COLUMNS)],
    "params": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["hi", "there"]}],
    "tensor": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4, .5, .5, .5, .5]}],
}


def _cli_env(build_cache: Path) -> dict[str, str]:
    return {**os.environ, "DEPLOYER_BUILD_CACHE": str(build_cache)}


def _args(models: dict[str, Path]) -> list[str]:
    return [arg for name, path in models.items() for arg in ("-m", f"{name}={path}")]


@pytest.fixture(scope="session")
def trio(sklearn_model: Path, params_model: Path, tensor_model: Path) -> dict[str, Path]:
    return {"iris": sklearn_model, "params": params_model, "tensor": tensor_model}


@pytest.fixture(scope="session")
def trio_image(docker_client, base_image: str, trio: dict[str, Path], build_cache: Path) -> Any:  # type: ignore[no-untyped-def]
    tag = f"{PREFIX}/trio:1"
    proc = subprocess.run([os.sys.executable, "-c", "from deployer.cli import main; main()", "build",
                           *_args(trio), "-t", tag, "--base-image", base_image, "--grpc-port", "8081",
                           "--output", "json", "-v"], capture_output=True, text=True, env=_cli_env(build_cache),
                          timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    yield BuiltImage(tag=tag, model_dir=trio["iris"], output=proc.stdout + proc.stderr,
                     result=json.loads(proc.stdout))
    docker_client.images.remove(tag, force=True)


def _request(url: str, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_three_models_one_image_each_answers_as_alone(  # type: ignore[no-untyped-def]
        docker_client, trio_image: BuiltImage, trio: dict[str, Path], server_pool,  # noqa: F811
        triton_python: Path) -> None:  # noqa: F811
    from deployer.serving.app import TARGET_HEADERS

    assert HEADER.lower().encode() in TARGET_HEADERS  # what verification sends is what the server reads
    verification = trio_image.result["verification"]
    assert isinstance(verification, dict) and verification["status"] == "passed"
    assert verification["models"] == "iris:200,params:200,tensor:200"
    assert verification["grpc"] == "port 8081: ServerReady, ModelInfer iris, ModelInfer params, ModelInfer tensor"
    attrs = docker_client.images.get(trio_image.tag).attrs
    labels = attrs["Config"]["Labels"]
    assert labels["io.deployer.models"] == "iris,params,tensor"
    assert labels["io.deployer.verify.models"] == "iris:200,params:200,tensor:200"
    assert "DEPLOYER_SERVE_MODEL_REPOSITORY=/opt/ml/model-repository" in attrs["Config"]["Env"]
    listing = docker_client.containers.run(trio_image.tag, ["ls", "/opt/ml/model-repository"], entrypoint=[],
                                           remove=True, network_disabled=True)
    assert listing.decode().split() == list(NAMES)

    alone = {name: server_pool.deployer(path, "--workers", "1") for name, path in trio.items()}
    target = LocalTarget(client=docker_client, ready_timeout=300)
    name = f"{PREFIX}-trio"
    result = target.apply(target.plan(DeployRequest(name=name, image_uri=trio_image.tag,
                                                    options={"port": 0, "serve_as": "local"})))
    try:
        url = str(result.endpoint_url)
        # /invocations: the header picks the model; without it, the default (the first)
        calls = [(m, "/invocations", PAYLOADS[m], {HEADER: m}) for m in NAMES] * 4
        calls += [(m, f"/v2/models/{m}/infer", {"inputs": V2[m]}, {}) for m in NAMES] * 4
        with ThreadPoolExecutor(max_workers=12) as pool:  # every model at once
            answers = list(pool.map(lambda c: _request(url, c[1], c[2], c[3]), calls))
        for (model, path, body, _headers), (status, answer) in zip(calls, answers, strict=True):
            single: LiveServer = alone[model]
            if path == "/invocations":
                want = single.post(body)
            else:  # the single server names the model after its directory
                want = single.post(body, path=f"/v2/models/{trio[model].name}/infer")
            assert want.status == 200 and status == 200, (model, path, answer)
            expected = want.json()
            if path != "/invocations":
                expected["model_name"] = model
            assert answer == expected, (model, path)
        assert _request(url, "/invocations", PAYLOADS["iris"]) == (200, alone["iris"].post(PAYLOADS["iris"]).json())
        status, answer = _request(url, "/invocations", PAYLOADS["iris"], {HEADER: "nope"})
        assert status == 404 and "iris" in json.dumps(answer)

        # gRPC: tritonclient's ModelInfer for every model answers what REST V2 answers
        raw = [{"model": m, "inputs": V2[m]} for m in NAMES]
        spec = {"url": result.details["grpc"], "model": "params", "raw": raw, "typed": []}
        done = subprocess.run([str(triton_python), str(CLIENT)], input=json.dumps(spec), text=True,
                              capture_output=True, timeout=180)
        assert done.returncode == 0, done.stderr
        got = json.loads(done.stdout)
        assert got["model_ready"] is True
        for request, answer in zip(raw, got["infer"], strict=True):
            status, rest = _request(url, f"/v2/models/{request['model']}/infer", {"inputs": request["inputs"]})
            assert status == 200 and answer == {"code": "OK", "id": "", "model_name": request["model"],
                                                "outputs": rest["outputs"]}
    finally:
        target.delete(name)


_STEP = re.compile(r"^#(\d+) \[[^\]]*\] (COPY .*)$")


def _copy_steps(output: str) -> dict[str, bool]:
    """The build's COPY steps of models/..., and whether BuildKit took each from its cache."""
    steps: dict[str, str] = {}
    cached: set[str] = set()
    for line in output.splitlines():
        line = line.strip()
        found = _STEP.match(line)
        if found and "models/" in found.group(2):
            steps[found.group(1)] = found.group(2)
        elif re.match(r"^#\d+ CACHED$", line):
            cached.add(line.split()[0][1:])
    return {text: number in cached for number, text in steps.items()}


def test_a_retrained_model_rebuilds_from_its_layer_on_and_reuses_everything_below(  # type: ignore[no-untyped-def]
        docker_client, base_image: str, trio_image: BuiltImage, trio: dict[str, Path],
        build_cache: Path, tmp_path: Path) -> None:
    """params (the second of three) retrained: the environment image, the runtime and iris's
    layer are reused (BuildKit cache hits, identical layers); params's layer is new; tensor's
    layer, above it, is copied again (this engine's BuildKit has no COPY --link, and a layer
    records the time its parent folder changed), its files unchanged."""
    retrained = shutil.copytree(trio["params"], tmp_path / "params")
    (retrained / "retrained.txt").write_text("another training run\n")
    tag = f"{PREFIX}/trio:2"
    proc = subprocess.run([os.sys.executable, "-c", "from deployer.cli import main; main()", "build",
                           *_args({**trio, "params": retrained}), "-t", tag, "--base-image", base_image,
                           "--grpc-port", "8081", "--output", "json", "-v"],
                          capture_output=True, text=True, env=_cli_env(build_cache), timeout=1800)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    try:
        a = docker_client.images.get(trio_image.tag).attrs["RootFS"]["Layers"]
        b = docker_client.images.get(tag).attrs["RootFS"]["Layers"]
        assert len(a) == len(b)
        changed = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        assert changed == [len(a) - 2, len(a) - 1], "iris's layer and everything below it are reused"
        assert "reusing the Python environment image deployer-env:" in output
        copies = _copy_steps(output)
        by_model = {m: next(v for k, v in copies.items() if f"models/{m}" in k) for m in NAMES}
        assert by_model == {"iris": True, "params": False, "tensor": False}, copies
        assert _cached_runtime(output), "the runtime layer is rebuilt"
        # tensor's files are the same: only its layer's parent-folder time differs
        listing = docker_client.containers.run(
            tag, ["sh", "-c", "cd /opt/ml/model-repository && find tensor -type f | sort | xargs sha256sum"],
            entrypoint=[], remove=True, network_disabled=True)
        before = docker_client.containers.run(
            trio_image.tag, ["sh", "-c", "cd /opt/ml/model-repository && find tensor -type f | sort | xargs sha256sum"],
            entrypoint=[], remove=True, network_disabled=True)
        assert listing == before
        seconds = json.loads(proc.stdout)["seconds"]
        print(f"\nretrained model: rebuilt in {seconds:.1f}s (layers changed: {len(changed)} of {len(a)})")
    finally:
        docker_client.images.remove(tag, force=True)


def _cached_runtime(output: str) -> bool:
    """BuildKit took the runtime layer (COPY --from=runtime) from its cache."""
    numbers = [m.group(1) for line in output.splitlines()
               if (m := re.match(r"^\s*#(\d+) \[[^\]]*\] COPY --from=runtime", line.strip()))]
    return bool(numbers) and all(re.search(rf"^\s*#{n} CACHED$", output, re.MULTILINE) for n in numbers)
