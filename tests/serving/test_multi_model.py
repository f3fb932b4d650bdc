"""Several models in one server (``deployer serve -m NAME=URI ...``, ``--model-repository``),
against real server processes with 2 workers: each model answers exactly what it answers when
served alone, concurrently; a model that fails to load leaves the others serving."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.serving.conftest import (
    HOST,
    IRIS_COLUMNS,
    IRIS_ROWS,
    LiveServer,
    Response,
    ServerPool,
    start_deployer,
)
from tests.serving.test_grpc import rest_answer, run_client, triton_python  # noqa: F401

SKLEARN_BODY = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}
PARAMS_BODY = {"dataframe_records": [{"text": "ab"}, {"text": "c", "note": "n"}],
               "params": {"times": 2, "suffix": "!", "upper": True}}
TENSOR_BODY = {"instances": [[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]]}
V2_BODIES = {
    "sklearn_skops": {"inputs": [{"name": c, "shape": [3], "datatype": "FP64",
                                  "data": [r[i] for r in IRIS_ROWS]}
                                 for i, c in enumerate(IRIS_COLUMNS)]},
    "params": {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["x", "yz"]}],
               "parameters": {"times": 3}},
    "tensor": {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                           "data": [1, 2, 3, 4, 5, 6, 7, 8]}]},
}
BODIES = {"sklearn_skops": SKLEARN_BODY, "params": PARAMS_BODY, "tensor": TENSOR_BODY}


def cli_argv(*args: str) -> list[str]:
    """``deployer serve`` (the CLI, click) from this checkout, on a free port."""
    return [sys.executable, "-c", "from deployer.cli import main; main()", "serve",
            "--port", "0", *args]


@pytest.fixture(scope="session")
def three_models(sklearn_model: Path, params_model: Path, tensor_model: Path) -> dict[str, Path]:
    # named as their directories: the single-model servers report the same names
    return {"sklearn_skops": sklearn_model, "params": params_model, "tensor": tensor_model}


@pytest.fixture(scope="session")
def multi_server(server_pool: ServerPool, three_models: dict[str, Path]) -> LiveServer:
    argv = cli_argv(*[a for name, path in three_models.items() for a in ("-m", f"{name}={path}")],
                    "--workers", "2", "--default-model", "params", "--grpc-port", "0")
    server = start_deployer(Path("multi"), server_pool.log_dir, argv=argv)
    server_pool.servers[("multi-model",)] = server
    return server


@pytest.fixture(scope="session")
def alone(sklearn_server: LiveServer, params_server: LiveServer,
          tensor_server: LiveServer) -> dict[str, LiveServer]:
    return {"sklearn_skops": sklearn_server, "params": params_server, "tensor": tensor_server}


def _target(name: str) -> dict[str, str]:
    return {"X-Deployer-Target-Model": name}


def post(server: LiveServer, body: dict[str, Any], headers: dict[str, str] | None = None,
         path: str = "/invocations") -> Response:
    return server.request("POST", path, json.dumps(body),
                          {"Content-Type": "application/json", **(headers or {})})


def test_each_model_answers_exactly_as_alone(multi_server: LiveServer,
                                             alone: dict[str, LiveServer]) -> None:
    for name, body in BODIES.items():
        expected = alone[name].post(body)
        assert expected.status == 200, (name, expected.body)
        got = post(multi_server, body, headers=_target(name))
        assert (got.status, got.body, got.content_type) == (
            expected.status, expected.body, expected.content_type), name
        # SageMaker's header names the model too
        sm = post(multi_server, body, headers={"X-Amzn-SageMaker-Target-Model": name})
        assert sm.body == expected.body
        v2_path = f"/v2/models/{name}/infer"
        v2_expected = alone[name].post(V2_BODIES[name], path=v2_path)
        v2_got = multi_server.post(V2_BODIES[name], path=v2_path)
        assert v2_expected.status == 200, v2_expected.body
        assert (v2_got.status, v2_got.body) == (v2_expected.status, v2_expected.body), name
        assert multi_server.get(f"/v2/models/{name}").body == alone[name].get(
            f"/v2/models/{name}").body
        assert multi_server.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
        # errors are the model's own, as alone
        bad = {"dataframe_split": {"columns": ["nope"], "data": [[1]]}}
        assert post(multi_server, bad, headers=_target(name)).body == alone[name].post(bad).body


def test_concurrent_requests_to_every_model(multi_server: LiveServer,
                                            alone: dict[str, LiveServer]) -> None:
    expected = {name: alone[name].post(body).body for name, body in BODIES.items()}
    v2_expected = {name: alone[name].post(V2_BODIES[name], path=f"/v2/models/{name}/infer").body
                   for name in BODIES}
    jobs = [(name, kind) for _ in range(15) for name in BODIES for kind in ("rest", "v2")]

    def call(job: tuple[str, str]) -> tuple[str, str, bytes]:
        name, kind = job
        if kind == "rest":
            return name, kind, post(multi_server, BODIES[name], headers=_target(name)).body
        return name, kind, multi_server.post(V2_BODIES[name],
                                             path=f"/v2/models/{name}/infer").body

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(call, jobs))
    assert len(results) == 90
    for name, kind, body in results:
        assert body == (expected if kind == "rest" else v2_expected)[name], (name, kind)


def test_default_model_unknown_models_and_readiness(multi_server: LiveServer,
                                                    alone: dict[str, LiveServer]) -> None:
    # no header: the --default-model
    assert multi_server.post(PARAMS_BODY).body == alone["params"].post(PARAMS_BODY).body
    unknown = post(multi_server, PARAMS_BODY, headers=_target("nope"))
    assert unknown.status == 404
    answer = unknown.json()
    assert answer["error_code"] == "RESOURCE_DOES_NOT_EXIST" and "'nope'" in answer["message"]
    assert sorted(answer["models"]) == sorted(BODIES)
    v2_unknown = multi_server.post(V2_BODIES["tensor"], path="/v2/models/nope/infer")
    assert v2_unknown.status == 404 and "nope" in v2_unknown.json()["error"]
    assert multi_server.get("/v2/models/nope/ready").status == 404
    assert multi_server.get("/v2/health/ready").json() == {"ready": True}
    assert multi_server.get("/ping").status == 200


def test_metrics_and_access_log_name_the_model(multi_server: LiveServer) -> None:
    for name, body in BODIES.items():
        assert post(multi_server, body, headers=_target(name)).status == 200
    text = multi_server.get("/metrics").body.decode()
    for name in BODIES:
        assert f'deployer_requests_total{{method="POST",model="{name}",route="/invocations",' \
               f'status="200"}}' in text
        assert 'deployer_model_info{flavor=' in text and f'name="{name}"' in text
    lines = [line for line in multi_server.log().splitlines() if " access POST /invocations " in line]
    assert {line.rsplit(" model=", 1)[1] for line in lines if " model=" in line} >= set(BODIES)


def _repository(tmp_path: Path, models: dict[str, Path]) -> Path:
    repo = tmp_path / "repo"
    for name, path in models.items():
        shutil.copytree(path, repo / name)
    return repo


def test_a_failing_model_leaves_the_others_serving(
    server_pool: ServerPool, tmp_path: Path, sklearn_model: Path, tensor_model: Path,
    load_context_fails_model: Path, alone: dict[str, LiveServer],
) -> None:
    repo = _repository(tmp_path, {"a_iris": sklearn_model, "broken": load_context_fails_model,
                                  "tensor": tensor_model})
    server = start_deployer(repo, server_pool.log_dir, "--workers", "2",
                            env={"DEPLOYER_SERVE_MODEL_REPOSITORY": str(repo)},
                            argv=[sys.executable, "-m", "deployer.serving", "serve", "--host",
                                  HOST, "--port", "0", "--load-mode", "per-worker"])
    try:
        # the repository's alphabetically first model is the default
        assert server.post(SKLEARN_BODY).body == alone["sklearn_skops"].post(SKLEARN_BODY).body
        assert post(server, TENSOR_BODY, headers=_target("tensor")).body == \
            alone["tensor"].post(TENSOR_BODY).body
        failed = post(server, {"dataframe_split": {"columns": ["a"], "data": [[1.0]]}},
                      headers=_target("broken"))
        assert failed.status == 503
        assert "load_context failure on purpose" in failed.json()["message"]
        ready = server.get("/v2/models/broken/ready")
        assert ready.status == 503 and ready.json()["ready"] is False
        assert "load_context failure on purpose" in ready.json()["error"]
        assert server.post(V2_BODIES["tensor"], path="/v2/models/broken/infer").status == 503
        assert server.get("/v2/health/ready").json() == {"ready": True}  # every model settled
        assert "model 'broken' failed to load" in server.log()
    finally:
        server.stop()


def test_every_model_failing_stops_the_server_with_every_error(
    tmp_path: Path, load_context_fails_model: Path
) -> None:
    argv = cli_argv("-m", f"one={load_context_fails_model}",
                    "-m", f"two={load_context_fails_model}", "--workers", "1")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "every model failed to load" in done.stderr
    assert "one:" in done.stderr and "two:" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [
    ["-m", "a=./x", "-m", "./y"],
    ["-m", "a=./x", "-m", "a=./y"],
    ["-m", "a=./x", "-m", "b=./y", "--default-model", "c"],
    ["--model-repository", "/nonexistent-repo"],
])
def test_bad_multi_model_arguments_are_usage_errors(args: list[str]) -> None:
    done = subprocess.run(cli_argv(*args), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, (args, done.stderr)
    assert "Traceback" not in done.stderr


def test_repository_symlink_out_of_it_is_refused(tmp_path: Path, sklearn_model: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "iris").symlink_to(sklearn_model, target_is_directory=True)
    done = subprocess.run(cli_argv("--model-repository", str(repo)), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "outside the repository" in done.stderr


def test_dry_run_shows_the_models(tmp_path: Path) -> None:
    done = subprocess.run(cli_argv("-m", f"a={tmp_path}", "-m", f"b={tmp_path}", "--dry-run",
                                   "--output", "json"), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["models"] == [f"a={tmp_path}", f"b={tmp_path}"]


@pytest.mark.slow
def test_grpc_routes_by_model_name_and_is_observed(multi_server: LiveServer,
                                                   triton_python: Path) -> None:  # noqa: F811
    """tritonclient against the three-model server: each model by name, as REST V2 answers;
    the calls show in /metrics and the access log."""
    raw = [{"model": name, "id": f"r-{name}", "inputs": V2_BODIES[name]["inputs"]}
           for name in ("sklearn_skops", "tensor")]
    raw.append({"model": "nope", "inputs": V2_BODIES["tensor"]["inputs"]})
    answers = run_client(triton_python, multi_server, "tensor", raw, [])
    assert answers["model_ready"] is True and answers["ready"] is True
    assert answers["model_metadata"]["name"] == "tensor"
    assert answers["unknown_model_ready"] == "StatusCode.NOT_FOUND"
    assert answers["infer"] == [rest_answer(multi_server, r) for r in raw]
    assert [a["code"] for a in answers["infer"]] == ["OK", "OK", "StatusCode.NOT_FOUND"]
    text = multi_server.get("/metrics").body.decode()
    for name in ("sklearn_skops", "tensor"):
        assert f'deployer_requests_total{{method="GRPC",model="{name}",' \
               f'route="grpc:ModelInfer",status="200"}}' in text, text
    assert 'route="grpc:ModelInfer",status="404"' in text
    log = multi_server.log()
    assert " access GRPC grpc:ModelInfer 200 " in log and "model=tensor" in log
