"""SageMaker's multi-model endpoint container contract (``serve --sagemaker-multi-model``),
driven over HTTP against a real server process as SageMaker drives a container: load, list
(paginated), get, invoke, unload, with the documented status codes (409/404/507) and least
recently used eviction under a small memory limit."""

from __future__ import annotations

import json
import shutil
import sys
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

SKLEARN_BODY = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}
PARAMS_BODY = {"dataframe_records": [{"text": "ab"}], "params": {"times": 3}}
TENSOR_BODY = {"instances": [[1.0, 2.0, 3.0, 4.0]]}
MIB = 1024 * 1024
#: Models may take 2.5 MiB: two padded (1 MiB) iris models and the small ones fit, three do not.
LIMIT = "2.5MiB"


def _padded(src: Path, dest: Path, pad: int) -> Path:
    """A copy of ``src`` weighing ``pad`` more bytes (its memory cost is its size on disk)."""
    shutil.copytree(src, dest)
    (dest / "padding.bin").write_bytes(b"\0" * pad)
    return dest


@pytest.fixture(scope="module")
def model_store(tmp_path_factory: pytest.TempPathFactory, sklearn_model: Path,
                params_model: Path, tensor_model: Path) -> dict[str, Path]:
    """Where SageMaker would have extracted each model.tar.gz: /opt/ml/models/<name>/model."""
    root = tmp_path_factory.mktemp("opt-ml-models")
    return {
        "a": _padded(sklearn_model, root / "a" / "model", MIB),
        "b": _padded(sklearn_model, root / "b" / "model", MIB),
        "c": _padded(sklearn_model, root / "c" / "model", MIB),
        "huge": _padded(sklearn_model, root / "huge" / "model", 3 * MIB),
        "params": _padded(params_model, root / "params" / "model", 0),
        "tensor": _padded(tensor_model, root / "tensor" / "model", 0),
    }


@pytest.fixture(scope="module")
def mme(server_pool: ServerPool, model_store: dict[str, Path]) -> LiveServer:
    # --workers 2 is asked for; the multi-model mode runs one worker (documented)
    argv = [sys.executable, "-m", "deployer.serving", "serve", "--host", HOST, "--port", "0",
            "--workers", "2", "--model-memory-limit", LIMIT,
            "--model-root", str(model_store["a"].parent.parent)]
    server = start_deployer(Path("mme"), server_pool.log_dir, argv=argv,
                            env={"SAGEMAKER_MULTI_MODEL": "true"})
    server_pool.servers[("mme", str(model_store["a"]))] = server
    return server


def _json(server: LiveServer, method: str, path: str, body: Any = None,
          headers: dict[str, str] | None = None) -> Response:
    data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
    return server.request(method, path, data, {"Content-Type": "application/json",
                                               **(headers or {})})


def _load(server: LiveServer, name: str, url: Path | str) -> Response:
    return _json(server, "POST", "/models", {"model_name": name, "url": str(url)})


def _names(server: LiveServer) -> list[str]:
    resp = server.get("/models")
    assert resp.status == 200
    return [m["modelName"] for m in resp.json()["models"]]


def _unload_all(server: LiveServer) -> None:
    for name in _names(server):
        assert _json(server, "DELETE", f"/models/{name}").status == 200


def test_load_get_invoke_unload(mme: LiveServer, model_store: dict[str, Path],
                                sklearn_server: LiveServer, params_server: LiveServer,
                                tensor_server: LiveServer) -> None:
    _unload_all(mme)
    assert mme.get("/models").json() == {"models": []}
    assert mme.get("/ping").status == 200
    assert "(1 worker," in mme.log()

    loaded = _load(mme, "a", model_store["a"])
    assert loaded.status == 200, loaded.body
    assert _load(mme, "a", model_store["a"]).status == 409
    assert mme.get("/models/a").json() == {"modelName": "a", "modelUrl": str(model_store["a"])}
    assert mme.get("/models/zz").status == 404

    invoke = _json(mme, "POST", "/models/a/invoke", SKLEARN_BODY,
                   {"X-Amzn-SageMaker-Target-Model": "a.tar.gz"})
    assert (invoke.status, invoke.body) == (200, sklearn_server.post(SKLEARN_BODY).body)
    # the other routes see the loaded model too
    via_header = _json(mme, "POST", "/invocations", SKLEARN_BODY, {"X-Deployer-Target-Model": "a"})
    assert via_header.body == invoke.body
    assert mme.get("/v2/models/a/ready").json() == {"name": "a", "ready": True}

    for name, body, alone in (("params", PARAMS_BODY, params_server),
                              ("tensor", TENSOR_BODY, tensor_server)):
        assert _load(mme, name, model_store[name]).status == 200
        got = _json(mme, "POST", f"/models/{name}/invoke", body)
        assert (got.status, got.body) == (200, alone.post(body).body), name

    assert _json(mme, "DELETE", "/models/params").status == 200
    assert _json(mme, "DELETE", "/models/params").status == 404
    assert _json(mme, "POST", "/models/params/invoke", PARAMS_BODY).status == 404
    assert mme.get("/v2/models/params/ready").status == 404
    assert sorted(_names(mme)) == ["a", "tensor"]

    text = mme.get("/metrics").body.decode()
    assert 'model="a",route="/models/{name}/invoke",status="200"' in text
    assert 'deployer_model_info{flavor="mlflow.sklearn",name="a",version=""} 1.0' in text
    info = [line for line in text.splitlines() if line.startswith("deployer_model_info{")]
    assert len(info) == 2 and not any('name="params"' in line for line in info)  # forgotten


def test_list_is_paginated(mme: LiveServer, model_store: dict[str, Path]) -> None:
    _unload_all(mme)
    for name in ("params", "tensor", "a"):
        assert _load(mme, name, model_store[name]).status == 200
    first = mme.get("/models?page_size=2").json()
    assert [m["modelName"] for m in first["models"]] == ["a", "params"]
    assert first["models"][0] == {"modelName": "a", "modelUrl": str(model_store["a"])}
    token = first["nextPageToken"]
    second = mme.get(f"/models?page_size=2&next_page_token={token}").json()
    assert [m["modelName"] for m in second["models"]] == ["tensor"]
    assert "nextPageToken" not in second
    assert mme.get("/models?page_size=0").status == 400
    assert mme.get("/models?page_size=x").status == 400


@pytest.mark.parametrize(("body", "status"), [
    (b"{not json", 400),
    ([], 400),
    ({"url": "/opt/ml/models/x/model"}, 400),
    ({"model_name": "x"}, 400),
    ({"model_name": "bad name", "url": "/tmp"}, 400),
    ({"model_name": "x", "url": "relative/model"}, 400),
    ({"model_name": "x", "url": "/opt/ml/models/../../etc"}, 400),
    ({"model_name": "x", "url": "/nonexistent/model"}, 400),  # outside --model-root
    ({"model_name": "x", "url": "{root}/nonexistent/model"}, 404),
])
def test_bad_load_requests(mme: LiveServer, model_store: dict[str, Path], body: Any,
                           status: int) -> None:
    if isinstance(body, dict) and "url" in body:
        body = {**body, "url": body["url"].replace("{root}", str(model_store["a"].parent.parent))}
    resp = _json(mme, "POST", "/models", body)
    assert resp.status == status, resp.body
    assert resp.json()["message"]


def test_url_that_is_not_a_model_is_404(mme: LiveServer, model_store: dict[str, Path]) -> None:
    empty = model_store["a"].parent.parent / "empty" / "model"
    empty.mkdir(parents=True, exist_ok=True)
    assert _load(mme, "x", empty).status == 404  # a directory without an MLmodel


def test_a_url_outside_the_model_root_is_refused(mme: LiveServer, model_store: dict[str, Path],
                                                 sklearn_model: Path) -> None:
    """A load request never makes the server read a model from outside --model-root: not a
    real model elsewhere, not through a symlink inside the root that points out of it."""
    root = model_store["a"].parent.parent
    link = root / "escape"
    if not link.exists():
        link.symlink_to(sklearn_model.parent)
    for url in (sklearn_model, link / sklearn_model.name):
        resp = _load(mme, "outside", url)
        assert resp.status == 400 and "--model-root" in resp.json()["message"], resp.body
    assert "outside" not in _names(mme)


def test_lru_eviction_under_the_memory_limit(mme: LiveServer,
                                             model_store: dict[str, Path]) -> None:
    _unload_all(mme)
    assert _load(mme, "a", model_store["a"]).status == 200
    assert _load(mme, "b", model_store["b"]).status == 200
    # a is used after b was loaded: b is now the least recently used
    assert _json(mme, "POST", "/models/a/invoke", SKLEARN_BODY).status == 200
    assert _load(mme, "c", model_store["c"]).status == 200  # 3 x 1 MiB > 2.5 MiB: evict b
    assert sorted(_names(mme)) == ["a", "c"]
    assert "unloading model 'b' (least recently used)" in mme.log()
    assert _json(mme, "POST", "/models/b/invoke", SKLEARN_BODY).status == 404
    # c was loaded after a's last use: loading b again evicts a
    assert _load(mme, "b", model_store["b"]).status == 200
    assert sorted(_names(mme)) == ["b", "c"]
    # a model that cannot fit even alone: 507, nothing unloaded for it
    huge = _load(mme, "huge", model_store["huge"])
    assert huge.status == 507 and "huge" in huge.json()["message"]
    assert sorted(_names(mme)) == ["b", "c"]
    assert _json(mme, "POST", "/models/c/invoke", SKLEARN_BODY).status == 200


def test_mme_options_are_typed_errors() -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "deployer.serving", "serve", "--sagemaker-multi-model",
         "--model-memory-limit", "lots"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--model-memory-limit" in done.stderr
    assert "Traceback" not in done.stderr


def test_models_given_at_start_are_listed_and_counted(server_pool: ServerPool,
                                                      model_store: dict[str, Path]) -> None:
    """``--models`` with the contract on: loaded before the port opens, listed, invoked, and
    counted against the limit (loading two more padded models evicts the least recent)."""
    argv = [sys.executable, "-m", "deployer.serving", "serve", "--host", HOST, "--port", "0",
            "--sagemaker-multi-model", "--model-memory-limit", LIMIT,
            "--models", f"a={model_store['a']}", "--model-root", str(model_store["a"].parent.parent)]
    server = start_deployer(Path("mme-start"), server_pool.log_dir, argv=argv)
    try:
        assert _names(server) == ["a"]
        assert _json(server, "POST", "/models/a/invoke", SKLEARN_BODY).status == 200
        # no header: the -m model is the default of /invocations
        assert _json(server, "POST", "/invocations", SKLEARN_BODY).status == 200
        assert _load(server, "b", model_store["b"]).status == 200
        assert _load(server, "c", model_store["c"]).status == 200
        assert sorted(_names(server)) == ["b", "c"]
    finally:
        server.stop()


def test_a_model_that_fails_to_load_is_500_and_not_listed(
        mme: LiveServer, model_store: dict[str, Path], load_context_fails_model: Path) -> None:
    broken = model_store["a"].parent.parent / "broken" / "model"
    if not broken.exists():
        shutil.copytree(load_context_fails_model, broken)
    resp = _load(mme, "broken", broken)
    assert resp.status == 500
    assert "load_context failure on purpose" in resp.json()["message"]
    assert "broken" not in _names(mme) and mme.get("/ping").status == 200
