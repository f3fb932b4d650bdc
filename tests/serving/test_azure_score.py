"""The Azure ML entry script, rendered by deployer and run under the real ``azmlinfsrv``.

The server tests start azureml-inference-server-http 1.5.1 (Flask + gunicorn, the server Azure
ML runs in its MLflow/custom-script images) on free ports, with models saved by real MLflow
laid out the way Azure mounts them (``$AZUREML_MODEL_DIR/<folder>/MLmodel``), and compare its
answers with deployer's own scoring core for the same MLflow bodies.
"""

from __future__ import annotations

import ast
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deployer.errors import RenderError, ServingError, UnsafePathError
from deployer.serving.azure import (
    AzureScorer,
    ScoreOutcome,
    find_model_dir,
    render_score_py,
    to_mlflow_payload,
)
from deployer.serving.core import ScoringCore, ScoringError

AZMLINFSRV = Path(sys.executable).with_name("azmlinfsrv")
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


# ----------------------------------------------------------------------------- rendering
def test_rendered_script_is_valid_python_with_the_contract() -> None:
    source = render_score_py()
    tree = ast.parse(source)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert set(functions) >= {"init", "run"}
    assert [a.arg for a in functions["run"].args.args] == ["raw_data"]
    assert functions["init"].args.args == []
    assert "from azureml.contrib.services.aml_response import AMLResponse" in source
    assert "MODEL_SUBDIR = None" in source


@pytest.mark.parametrize(
    "value",
    ["model", "models/iris v2", "it's", 'quote"s', "back\\slash", "'''; import os #", "ünï"],
)
def test_values_are_rendered_as_python_literals(value: str) -> None:
    source = render_score_py(model_subdir=value if "\\" not in value else None, model_name=value)
    assigned = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    assert assigned["MODEL_NAME"] == value
    if "\\" not in value:
        assert assigned["MODEL_SUBDIR"] == value
    # the values land in exactly the two constants: no statement was injected
    statements = [type(n).__name__ for n in ast.parse(source).body]
    assert statements == ["Expr", "ImportFrom", "Try", "Assign", "Assign", "Assign",
                          "FunctionDef", "FunctionDef"]


@pytest.mark.parametrize("bad", ["/abs/path", "../up", "a/../../b", "", "  "])
def test_unsafe_subdir_is_refused_at_render(bad: str) -> None:
    with pytest.raises(RenderError) as info:
        render_score_py(model_subdir=bad)
    assert "relative path" in info.value.what


def test_control_characters_are_refused_at_render() -> None:
    with pytest.raises(RenderError):
        render_score_py(model_name="x\ny")


# ----------------------------------------------------------------------------- model location
def _fake_model(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "MLmodel").write_text("flavors: {}\n")
    return path


def test_find_model_dir_root_and_single_subfolder(tmp_path: Path) -> None:
    root = _fake_model(tmp_path / "a")
    assert find_model_dir(root) == root.resolve()
    nested = _fake_model(tmp_path / "b" / "my-model" / "1" / "model")
    assert find_model_dir(tmp_path / "b") == nested.resolve()


def test_find_model_dir_named_subfolder_and_ambiguity(tmp_path: Path) -> None:
    one = _fake_model(tmp_path / "one")
    _fake_model(tmp_path / "two")
    with pytest.raises(ServingError) as info:
        find_model_dir(tmp_path)
    assert "several MLflow models" in info.value.what and "one, two" in info.value.what
    assert "DEPLOYER_MODEL_SUBDIR" in (info.value.fix or "")
    assert find_model_dir(tmp_path, "one") == one.resolve()
    with pytest.raises(ServingError) as info:
        find_model_dir(tmp_path, "three")
    assert "no MLmodel" in info.value.what and "one" in (info.value.fix or "")


def test_find_model_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(ServingError, match="does not exist"):
        find_model_dir(tmp_path / "missing")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ServingError, match="no MLmodel"):
        find_model_dir(tmp_path / "empty")
    for bad in ("../x", "/etc", "a/../../x"):
        with pytest.raises(UnsafePathError):
            find_model_dir(tmp_path / "empty", bad)


def test_find_model_dir_symlink_may_not_escape(tmp_path: Path) -> None:
    outside = _fake_model(tmp_path / "outside")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside"):
        find_model_dir(root, "link")


# ----------------------------------------------------------------------------- translation
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"input_data": {"columns": ["a"], "index": [0], "data": [[1]]}},
         {"dataframe_split": {"columns": ["a"], "index": [0], "data": [[1]]}}),
        ({"input_data": {"columns": ["a"], "data": [[1]]}, "params": {"k": 1}},
         {"dataframe_split": {"columns": ["a"], "data": [[1]]}, "params": {"k": 1}}),
        ({"input_data": [[1, 2]]}, {"inputs": [[1, 2]]}),
        ({"input_data": {"x": [1, 2]}, "params": None}, {"inputs": {"x": [1, 2]}}),
        ({"dataframe_records": [{"a": 1}]}, {"dataframe_records": [{"a": 1}]}),
        ([1, 2], [1, 2]),
    ],
)
def test_to_mlflow_payload(body: Any, expected: Any) -> None:
    assert to_mlflow_payload(body) == expected


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"input_data": 5}, "got int"),
        ({"input_data": "text"}, "got str"),
        ({"input_data": [[1]], "inputs": [[1]]}, "mixes 'input_data'"),
        ({"input_data": [[1]], "extra": 1}, "unexpected top-level field(s) ['extra']"),
    ],
)
def test_to_mlflow_payload_rejects(body: Any, needle: str) -> None:
    with pytest.raises(ScoringError) as info:
        to_mlflow_payload(body)
    assert info.value.status == 400 and info.value.error_code == "BAD_REQUEST"
    assert needle in info.value.message


def test_outcome_to_azure_without_and_with_a_response_class() -> None:
    ok = ScoreOutcome(200, [1, 2])
    assert ok.to_azure(None) == [1, 2]
    bad = ScoreOutcome(400, {"error_code": "BAD_REQUEST", "message": "m"})
    assert bad.to_azure(None) == {"error_code": "BAD_REQUEST", "message": "m"}

    calls = []
    assert bad.to_azure(lambda *a, **k: calls.append((a, k)) or "resp") == "resp"
    assert calls == [(({"error_code": "BAD_REQUEST", "message": "m"}, 400), {"json_str": True})]


def test_scorer_in_process_matches_the_core(sklearn_model: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "azureml-models" / "iris" / "1"
    shutil.copytree(sklearn_model, root / "model")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(root))
    monkeypatch.delenv("DEPLOYER_MODEL_SUBDIR", raising=False)
    scorer = AzureScorer.from_environment()
    body = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}
    core_answer = scorer.core.invoke(json.dumps(body).encode(), "application/json")
    expected = json.loads(core_answer.body)["predictions"]
    assert scorer.score(json.dumps(body)) == ScoreOutcome(200, expected)
    azure = {"input_data": {"columns": IRIS_COLUMNS, "index": [0, 1, 2], "data": IRIS_ROWS}}
    assert scorer.score(json.dumps(azure)) == ScoreOutcome(200, expected)
    empty = scorer.score("")
    assert empty.status == 400 and "Content-Type: application/json" in empty.payload["message"]


def test_scorer_tensor_model_list_input(tensor_model: Path) -> None:
    scorer = AzureScorer(ScoringCore.load(tensor_model))
    rows = [[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]]
    assert scorer.score(json.dumps({"input_data": rows})) == ScoreOutcome(200, [10.0, 2.0])
    bad = scorer.score(json.dumps({"input_data": [[1.0, 2.0]]}))  # wrong shape
    assert bad.status == 400 and bad.payload["error_code"] == "INVALID_PARAMETER_VALUE"


def test_from_environment_needs_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZUREML_MODEL_DIR", raising=False)
    with pytest.raises(ServingError, match="AZUREML_MODEL_DIR is not set"):
        AzureScorer.from_environment()


# ----------------------------------------------------------------------------- real azmlinfsrv
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AzServer:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def request(self, method: str, path: str, body: bytes | str | None = None,
                content_type: str | None = "application/json") -> tuple[int, str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            headers = {"Content-Type": content_type} if content_type else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            ctype = resp.getheader("Content-Type", "")
            value: Any = json.loads(raw) if ctype.startswith("application/json") else raw.decode()
            return resp.status, ctype, value
        finally:
            conn.close()

    def score(self, body: Any) -> tuple[int, Any]:
        status, _, value = self.request("POST", "/score", json.dumps(body))
        return status, value

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _start_azmlinfsrv(app_dir: Path, model_root: Path, *, wait: bool = True,
                      env_extra: dict[str, str] | None = None) -> AzServer:
    port, health = _free_port(), _free_port()
    env = {
        **os.environ,
        # gunicorn >= 23 otherwise creates a control socket under ~/.gunicorn
        "GUNICORN_CMD_ARGS": "--no-control-socket",
        "HOME": str(app_dir),
        **(env_extra or {}),
    }
    if "DEPLOYER_MODEL_SUBDIR" not in (env_extra or {}):
        env.pop("DEPLOYER_MODEL_SUBDIR", None)
    log = app_dir / "azmlinfsrv.log"
    proc = subprocess.Popen(
        [str(AZMLINFSRV), "--entry_script", str(app_dir / "score.py"), "--model_dir",
         str(model_root), "--port", str(port), "--health_port", str(health)],
        cwd=app_dir, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = AzServer(port, proc, log)
    if not wait:
        return server
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"azmlinfsrv exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if server.request("GET", "/", content_type=None)[0] == 200:
                # GET / answers before the worker ran init(); a scoring call proves init() ran
                return server
        except OSError:
            pass
        time.sleep(0.2)
    _stop(server)
    raise AssertionError(f"azmlinfsrv did not become healthy:\n{server.log_tail()}")


def _stop(server: AzServer) -> None:
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()


@pytest.fixture(scope="module")
def iris_server(sklearn_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzServer]:
    """Auto-discovery: the model sits one folder below AZUREML_MODEL_DIR, as Azure mounts it."""
    app = tmp_path_factory.mktemp("az-iris")
    root = app / "azureml-models" / "iris" / "1"
    shutil.copytree(sklearn_model, root / "model")
    (app / "score.py").write_text(render_score_py())
    server = _start_azmlinfsrv(app, root)
    yield server
    _stop(server)


@pytest.fixture(scope="module")
def params_server(params_model: Path, sklearn_model: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzServer]:
    """Two models under AZUREML_MODEL_DIR: the rendered MODEL_SUBDIR picks one."""
    app = tmp_path_factory.mktemp("az-params")
    root = app / "models"
    shutil.copytree(params_model, root / "echo params")
    shutil.copytree(sklearn_model, root / "decoy")
    (app / "score.py").write_text(render_score_py(model_subdir="echo params", model_name="echo"))
    server = _start_azmlinfsrv(app, root)
    yield server
    _stop(server)


@pytest.fixture(scope="module")
def iris_core(sklearn_model: Path) -> ScoringCore:
    return ScoringCore.load(sklearn_model)


@pytest.fixture(scope="module")
def params_core(params_model: Path) -> ScoringCore:
    return ScoringCore.load(params_model)


def _core_answer(core: ScoringCore, body: Any) -> tuple[int, Any]:
    result = core.invoke(json.dumps(body).encode(), "application/json")
    value = json.loads(result.body)
    return result.status, value["predictions"] if result.status == 200 else value


@pytest.mark.slow
def test_health_probe(iris_server: AzServer) -> None:
    assert iris_server.request("GET", "/", content_type=None)[::2] == (200, "Healthy")


@pytest.mark.slow
@pytest.mark.parametrize(
    "body",
    [
        {"input_data": {"columns": IRIS_COLUMNS, "index": [0, 1, 2], "data": IRIS_ROWS}},
        {"input_data": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}},  # index is optional
        {"input_data": {c: [r[i] for r in IRIS_ROWS] for i, c in enumerate(IRIS_COLUMNS)}},
        {"input_data": {"columns": IRIS_COLUMNS, "index": [0, 1, 2], "data": IRIS_ROWS},
         "params": {}},
    ],
    ids=["split", "split-no-index", "dict-of-columns", "with-params"],
)
def test_azure_bodies_score_like_invocations(iris_server: AzServer, iris_core: ScoringCore,
                                             body: dict[str, Any]) -> None:
    mlflow_body = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}
    status, expected = _core_answer(iris_core, mlflow_body)
    assert status == 200 and len(expected) == 3
    assert iris_server.score(body) == (200, expected), iris_server.log_tail()


@pytest.mark.slow
@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}},
        {"dataframe_split": {"columns": IRIS_COLUMNS, "index": [7, 8, 9], "data": IRIS_ROWS}},
        {"dataframe_records": [dict(zip(IRIS_COLUMNS, r, strict=True)) for r in IRIS_ROWS]},
        {"instances": [dict(zip(IRIS_COLUMNS, r, strict=True)) for r in IRIS_ROWS]},
        {"inputs": {c: [r[i] for r in IRIS_ROWS] for i, c in enumerate(IRIS_COLUMNS)}},
        {"dataframe_records": [{**dict(zip(IRIS_COLUMNS, r, strict=True)), "extra": "ignored"} for r in IRIS_ROWS]},
    ],
    ids=["split", "split-index", "records", "instances", "inputs-columns", "extra-column"],
)
def test_mlflow_bodies_score_like_invocations(iris_server: AzServer, iris_core: ScoringCore,
                                              body: dict[str, Any]) -> None:
    status, expected = _core_answer(iris_core, body)
    assert status == 200
    assert iris_server.score(body) == (200, expected)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "error_code", "needle"),
    [
        ({"input_data": {"columns": IRIS_COLUMNS[:2], "index": [0], "data": [[1.0, 2.0]]}},
         "INVALID_PARAMETER_VALUE", "missing inputs"),
        ({"input_data": {"columns": IRIS_COLUMNS, "data": [["x", 1.0, 1.0, 1.0]]}},
         "BAD_REQUEST", "sepal_length"),
        ({"input_data": 3}, "BAD_REQUEST", "'input_data' must be"),
        ({"input_data": [[1, 2, 3, 4]], "dataframe_split": {}}, "BAD_REQUEST", "mixes"),
        ([1, 2, 3], "BAD_REQUEST", "Received a list"),
        ({"columns": IRIS_COLUMNS, "data": IRIS_ROWS}, "BAD_REQUEST", "exactly one of"),
        ({"dataframe_split": [[1]]}, "BAD_REQUEST", ""),
    ],
    ids=["missing-column", "uncastable", "scalar", "mixed", "list-body", "mlflow-1.x", "split-list"],
)
def test_bad_input_is_a_400_json_error(iris_server: AzServer, iris_core: ScoringCore, body: Any,
                                       error_code: str, needle: str) -> None:
    status, value = iris_server.score(body)
    assert status == 400, (value, iris_server.log_tail())
    assert value["error_code"] == error_code
    assert needle in value["message"]
    if isinstance(body, dict) and "input_data" not in body or isinstance(body, list):
        # MLflow bodies: the same status and error code as deployer's /invocations
        core_status, core_value = _core_answer(iris_core, body)
        assert (core_status, core_value["error_code"]) == (status, value["error_code"])


@pytest.mark.slow
def test_invalid_json_and_empty_body(iris_server: AzServer) -> None:
    status, ctype, value = iris_server.request("POST", "/score", "{not json")
    assert (status, ctype) == (400, "application/json")
    assert value["error_code"] == "BAD_REQUEST" and "valid JSON" in value["message"]
    # a form content type makes Flask hand run() an empty string: a clear 400, not a 500
    status, _, value = iris_server.request("POST", "/score", "a=1",
                                           content_type="application/x-www-form-urlencoded")
    assert status == 400 and "Content-Type: application/json" in value["message"]


@pytest.mark.slow
def test_list_input_data_is_a_tensor_like_azure(iris_server: AzServer, iris_core: ScoringCore) -> None:
    # Azure's no-code script turns a list into a numpy array, as MLflow's "inputs" does; for a
    # column signature both answer the same schema error
    status, value = iris_server.score({"input_data": IRIS_ROWS})
    core_status, core_value = _core_answer(iris_core, {"inputs": IRIS_ROWS})
    assert (status, value["error_code"]) == (core_status, core_value["error_code"]) == (
        400, "INVALID_PARAMETER_VALUE")


@pytest.mark.slow
def test_params_model_with_azure_params(params_server: AzServer, params_core: ScoringCore) -> None:
    body = {"input_data": {"columns": ["text"], "index": [0, 1], "data": [["ab"], ["c"]]},
            "params": {"times": 2, "suffix": "!", "upper": True}}
    assert params_server.score(body) == (200, [
        {"output": "ABAB!", "length": 5}, {"output": "CC!", "length": 3}])
    # defaults when params are absent, and the optional column may be present
    body = {"input_data": {"columns": ["text", "note"], "data": [["ab", "n"]]}}
    assert params_server.score(body) == (200, [{"output": "ab", "length": 2}])
    # MLflow format + params gives what /invocations gives
    mlflow_body = {"dataframe_records": [{"text": "xy"}], "params": {"times": 3}}
    assert params_server.score(mlflow_body) == (200, _core_answer(params_core, mlflow_body)[1])
    assert params_server.score(mlflow_body)[1] == [{"output": "xyxyxy", "length": 6}]


@pytest.mark.slow
@pytest.mark.parametrize(
    "body",
    [
        {"input_data": {"columns": ["text"], "data": [["a"]]}, "params": {"times": "many"}},
        {"input_data": {"columns": ["note"], "data": [["a"]]}},
    ],
    ids=["bad-param-type", "missing-required-column"],
)
def test_params_model_errors(params_server: AzServer, params_core: ScoringCore,
                             body: dict[str, Any]) -> None:
    status, value = params_server.score(body)
    mlflow_body = {"dataframe_split": body["input_data"], **({"params": body["params"]}
                                                               if "params" in body else {})}
    core_status, core_value = _core_answer(params_core, mlflow_body)
    assert status == core_status == 400
    assert value["error_code"] == core_value["error_code"]


@pytest.mark.slow
def test_init_failure_stops_the_server(tmp_path: Path) -> None:
    """No MLmodel under AZUREML_MODEL_DIR: init() raises, azmlinfsrv exits (Azure marks the
    deployment failed) and the log carries deployer's actionable message."""
    (tmp_path / "models" / "empty").mkdir(parents=True)
    (tmp_path / "score.py").write_text(render_score_py())
    server = _start_azmlinfsrv(tmp_path, tmp_path / "models", wait=False)
    try:
        code = server.proc.wait(timeout=120)
    finally:
        _stop(server)
    assert code != 0
    log = server.log_tail()
    assert "no MLmodel file under the Azure ML model directory" in log
