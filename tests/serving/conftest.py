"""Live scoring servers for the serving tests.

Every server is a real subprocess (``python -m deployer.serving serve`` or ``mlflow models
serve``) on a free port, started once per session and per configuration, stopped at the end.
deployer's servers bind port 0 and report the port in their log, so there is no race for it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
START_TIMEOUT = 240.0
_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass
class LiveServer:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    name: str = "deployer"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None, timeout: float = 60.0) -> Response:
        if isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def post(self, body: bytes | str | dict[str, Any] | list[Any],
             content_type: str | None = "application/json", path: str = "/invocations",
             **kw: Any) -> Response:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        headers = {"Content-Type": content_type} if content_type is not None else {}
        return self.request("POST", path, body, headers, **kw)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def alive(self) -> bool:
        try:
            return self.get("/ping").status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids(self) -> list[int]:
        """The server's process and its children (workers)."""
        out = [self.proc.pid]
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            out += [int(p) for p in children.split()]
        except OSError:
            pass
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_ping(server: LiveServer, deadline: float) -> None:
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} server exited ({server.proc.returncode}):\n"
                               f"{server.log()[-4000:]}")
        if server.alive():
            return
        time.sleep(0.2)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"{server.name} server did not answer /ping:\n{server.log()[-4000:]}")


def start_deployer(model_dir: Path, log_dir: Path, *args: str, env: dict[str, str] | None = None,
                   argv: list[str] | None = None) -> LiveServer:
    """Start ``python -m deployer.serving serve`` (or ``argv``) and wait until it answers."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"deployer-{model_dir.name}-{time.monotonic_ns()}.log"
    cmd = argv or [sys.executable, "-m", "deployer.serving", "serve", "--model-dir",
                   str(model_dir), "--host", HOST, "--port", "0", *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    port = None
    while port is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            text = log_path.read_text(errors="replace")
            proc.kill()
            raise RuntimeError(f"deployer server did not start ({proc.returncode}):\n{text[-4000:]}")
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            port = int(match.group(1))
        else:
            time.sleep(0.2)
    server = LiveServer(proc, port, log_path)
    _wait_ping(server, deadline)
    return server


def start_mlflow(model_dir: Path, log_dir: Path) -> LiveServer:
    """``mlflow models serve --env-manager local`` from this venv, on a free port."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"mlflow-{model_dir.name}-{time.monotonic_ns()}.log"
    bindir = Path(sys.executable).parent
    port = free_port()
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(bindir / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager",
             "local", "--host", HOST, "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = LiveServer(proc, port, log_path, name="mlflow")
    _wait_ping(server, time.monotonic() + START_TIMEOUT)
    return server


def _stop_group(server: LiveServer) -> None:
    """Stop a server and everything it started (mlflow runs uvicorn as a child)."""
    try:
        os.killpg(server.proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        server.proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)


class ServerPool:
    """Session cache: one server per (model, options)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.servers: dict[tuple[Any, ...], LiveServer] = {}

    def deployer(self, model_dir: Path, *args: str, env: dict[str, str] | None = None
                 ) -> LiveServer:
        key = ("deployer", str(model_dir), args, tuple(sorted((env or {}).items())))
        server = self.servers.get(key)
        if server is None or server.proc.poll() is not None:
            server = start_deployer(model_dir, self.log_dir, *args, env=env)
            self.servers[key] = server
        return server

    def mlflow(self, model_dir: Path) -> LiveServer:
        key = ("mlflow", str(model_dir))
        server = self.servers.get(key)
        if server is None or server.proc.poll() is not None:
            server = start_mlflow(model_dir, self.log_dir)
            self.servers[key] = server
        return server

    def close(self) -> None:
        for server in self.servers.values():
            _stop_group(server)


@pytest.fixture(scope="session")
def server_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    pool = ServerPool(tmp_path_factory.mktemp("server-logs"))
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def sklearn_server(server_pool: ServerPool, sklearn_model: Path) -> LiveServer:
    return server_pool.deployer(sklearn_model, "--workers", "2")


@pytest.fixture(scope="session")
def params_server(server_pool: ServerPool, params_model: Path) -> LiveServer:
    return server_pool.deployer(params_model, "--workers", "1")


@pytest.fixture(scope="session")
def tensor_server(server_pool: ServerPool, tensor_model: Path) -> LiveServer:
    return server_pool.deployer(tensor_model, "--workers", "1")


@pytest.fixture(scope="session")
def nosig_server(server_pool: ServerPool, no_signature_model: Path) -> LiveServer:
    return server_pool.deployer(no_signature_model, "--workers", "1")


@pytest.fixture(scope="session")
def failing_server(server_pool: ServerPool, failing_model: Path) -> LiveServer:
    return server_pool.deployer(failing_model, "--workers", "1")


@pytest.fixture(scope="session")
def custom_server(server_pool: ServerPool, custom_pyfunc_model: Path) -> LiveServer:
    return server_pool.deployer(custom_pyfunc_model, "--workers", "1")


SERVING_MODELS_CODE = textwrap.dedent(
    '''
    """Models for the serving tests, shipped through code_paths."""
    import time

    import mlflow.pyfunc
    import numpy as np
    import pandas as pd


    class Sleepy(mlflow.pyfunc.PythonModel):
        """Sleeps as many seconds as the first row says (timeouts, graceful shutdown)."""

        def predict(self, context, model_input, params=None):
            seconds = float(model_input["seconds"].iloc[0])
            time.sleep(seconds)
            return pd.DataFrame({"slept": [seconds] * len(model_input)})


    class NamedTensors(mlflow.pyfunc.PythonModel):
        """Two named float32 tensors a, b of shape (-1, 2): returns a + b."""

        def predict(self, context, model_input, params=None):
            return np.asarray(model_input["a"]) + np.asarray(model_input["b"])


    class Echo(mlflow.pyfunc.PythonModel):
        """Returns exactly what it was given, plus its dtypes and index, as strings."""

        def predict(self, context, model_input, params=None):
            out = model_input.astype(object).astype(str)
            out["__dtypes__"] = ",".join(f"{c}:{t}" for c, t in model_input.dtypes.items())
            out["__index__"] = [repr(i) for i in model_input.index]
            out["__params__"] = repr(sorted((params or {}).items()))
            return out
    '''
)


@pytest.fixture(scope="session")
def serving_code(models_root: Path) -> Any:
    """The generated module (imported here too, so models can be saved from it)."""
    import importlib.util

    code = models_root / "_serving_code"
    code.mkdir(exist_ok=True)
    source = code / "fixture_serving_models.py"
    source.write_text(SERVING_MODELS_CODE)
    spec = importlib.util.spec_from_file_location("fixture_serving_models", source)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["fixture_serving_models"] = module
    spec.loader.exec_module(module)
    module.SOURCE = source
    return module


def _save(path: Path, code: Any, model: Any, signature: Any, **kw: Any) -> Path:
    import mlflow.pyfunc

    if not path.exists():
        mlflow.pyfunc.save_model(str(path), python_model=model, code_paths=[str(code.SOURCE)],
                                 signature=signature, **kw)
    return path


@pytest.fixture(scope="session")
def slow_model(models_root: Path, serving_code: Any) -> Path:
    """Column signature ``seconds: double``; predict sleeps that long."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    return _save(models_root / "slow", serving_code, serving_code.Sleepy(),
                 ModelSignature(inputs=Schema([ColSpec("double", "seconds")]),
                                outputs=Schema([ColSpec("double", "slept")])))


@pytest.fixture(scope="session")
def named_tensor_model(models_root: Path, serving_code: Any) -> Path:
    """Tensor signature with two named inputs a, b: float32 (-1, 2)."""
    import numpy as np
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    spec = Schema([TensorSpec(np.dtype("float32"), (-1, 2), "a"),
                   TensorSpec(np.dtype("float32"), (-1, 2), "b")])
    return _save(models_root / "named_tensors", serving_code, serving_code.NamedTensors(),
                 ModelSignature(inputs=spec,
                                outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 2))])))


ECHO_COLUMNS = [("d", "double"), ("f", "float"), ("l", "long"), ("i", "integer"),
                ("b", "boolean"), ("s", "string")]


@pytest.fixture(scope="session")
def echo_model(models_root: Path, serving_code: Any) -> Path:
    """Every fast-path column type (``opt`` optional) + a params schema; echoes its input."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    cols = [ColSpec(t, n) for n, t in ECHO_COLUMNS] + [ColSpec("double", "opt", required=False)]
    return _save(models_root / "echo", serving_code, serving_code.Echo(),
                 ModelSignature(inputs=Schema(cols),
                                params=ParamSchema([ParamSpec("k", "long", 1)])))


def sleep_body(seconds: float) -> dict[str, Any]:
    return {"dataframe_split": {"columns": ["seconds"], "data": [[seconds]]}}


IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]
IRIS_LABELS = [0, 1, 2]
