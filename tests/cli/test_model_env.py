"""``serve``/``predict --env-manager virtualenv|uv`` and ``prepare-env``: the model's locked
environment built on this host, run from a deployer whose own Python has none of the model's
packages (a venv with deployer and its core dependencies only: no mlflow, pandas, sklearn).
MLflow is the oracle: ``mlflow.pyfunc.load_model(...).predict`` in this process."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import deployer
from deployer.cli import cli
from tests.fixtures.services import free_port
from tests.serving.test_grpc import CLIENT as GRPC_CLIENT
from tests.serving.test_grpc import triton_python  # noqa: F401 - session fixture

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


# ---------------------------------------------------------------------------- fast: usage
@pytest.mark.parametrize("argv", [
    ["serve", "-m", "MODEL", "--env-manager", "conda"],
    ["predict", "-m", "MODEL", "-i", "in.csv", "--env-manager", "pyenv"],
    ["prepare-env", "-m", "MODEL", "--env-manager", "conda"],
])
def test_an_unknown_env_manager_is_a_usage_error_with_the_fix(argv: list[str], sklearn_model: Path) -> None:
    argv = [str(sklearn_model) if a == "MODEL" else a for a in argv]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2, result.output
    assert "unknown environment manager" in result.output
    assert "use one of: local, virtualenv, uv" in result.output
    assert "Traceback" not in result.output


def test_the_env_manager_from_the_environment_is_checked_too(sklearn_model: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "-m", str(sklearn_model), "--dry-run"],
                                env={"DEPLOYER_ENV_MANAGER": "venv"})
    assert result.exit_code == 2 and "use one of: local, virtualenv, uv" in result.output


def test_prepare_env_refuses_local_and_predict_refuses_it_with_an_endpoint(sklearn_model: Path) -> None:
    result = CliRunner().invoke(cli, ["prepare-env", "-m", str(sklearn_model), "--env-manager", "local"])
    assert result.exit_code == 2 and "nothing to prepare" in result.output
    result = CliRunner().invoke(cli, ["predict", "--target", "sagemaker", "--name", "e", "-i", "x.json",
                                      "--env-manager", "virtualenv"])
    assert result.exit_code == 2 and "--env-manager" in result.output


# ---------------------------------------------------------------------------- slow: real venvs
@pytest.fixture(scope="module")
def bare_deployer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout of deployer installed without extras into a fresh venv of the same base
    Python: the CLI runs, the model's packages (and mlflow, pandas) are not there."""
    from deployer.building.host_env import base_interpreter

    root = Path(deployer.__file__).resolve().parent.parent
    venv = tmp_path_factory.mktemp("bare") / "venv"
    uv = shutil.which("uv") or str(Path(os.sys.executable).parent / "uv")
    subprocess.run([uv, "venv", "-q", "--python", base_interpreter(), str(venv)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(root), "pip"],
                   check=True)
    for module in ("sklearn", "mlflow", "pandas"):
        probe = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {module}"],
                               capture_output=True, cwd=venv)
        assert probe.returncode != 0, f"the bare venv has {module}"
    return venv / "bin" / "deployer"


@pytest.fixture(scope="module")
def env_cache() -> Iterator[Path]:
    """A build cache of its own for environments (so the first start really builds), sharing
    the host's wheels and resolutions (so it downloads nothing twice); on the same disk."""
    from deployer.building.wheelhouse import default_cache_root

    shared = default_cache_root()
    root = shared.parent / f"test-envs-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    for name in ("wheels", "locks"):
        (shared / name).mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(shared / name)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DEPLOYER_BUILD_CACHE")}
    return {**env, "DEPLOYER_BUILD_CACHE": str(cache), **extra}


class Server:
    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.port = int(cmd[cmd.index("--port") + 1])
        self.log = log
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=open(log, "w"))  # noqa: SIM115 - closed with the process
        self.ready_after = self._wait()

    def _wait(self, timeout: float = 900) -> float:
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=2):
                    return time.monotonic() - self.started
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"no /ping within {timeout}s:\n{self.log.read_text()[-4000:]}")

    def predict(self, X: Any) -> list[Any]:
        body = json.dumps({"dataframe_split": X.to_dict(orient="split")}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())["predictions"]  # type: ignore[no-any-return]

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=60) == 0, self.log.read_text()[-4000:]
        return self.log.read_text()


def _serve(bare: Path, model: Path, cache: Path, cwd: Path, name: str, **extra: str) -> Server:
    cmd = [str(bare), "serve", "-m", str(model), "--env-manager", "virtualenv",
           "--port", str(free_port()), "--workers", "1"]
    return Server(cmd, _env(cache, **extra), cwd, cwd / f"{name}.log")


def _seconds(pattern: str, log: str) -> float:
    found = re.search(pattern + r" in ([0-9.]+)s", log)
    assert found, log[-4000:]
    return float(found.group(1))


@pytest.mark.slow
def test_serve_runs_the_model_in_its_own_environment_built_once(
        bare_deployer: Path, env_cache: Path, sklearn_model: Path, iris_data: Any, tmp_path: Path) -> None:
    import mlflow.pyfunc

    X, _ = iris_data
    want = mlflow.pyfunc.load_model(str(sklearn_model)).predict(X).tolist()

    first = _serve(bare_deployer, sklearn_model, env_cache, tmp_path, "first")
    assert first.predict(X) == want
    log = first.stop()
    built = _seconds("environment built", log)

    second = _serve(bare_deployer, sklearn_model, env_cache, tmp_path, "second")
    assert second.predict(X) == want
    log = second.stop()
    reused = _seconds("environment found", log)
    assert "installing" not in log and "resolving" not in log  # found by its record: no work
    print(f"\nenvironment: built in {built:.1f}s, reused in {reused:.2f}s; "
          f"server ready after {first.ready_after:.1f}s (first start), {second.ready_after:.1f}s (second)")
    assert reused < 1.0 < built
    # one environment for the lock, shared with Spark's packed ones (same folder layout)
    envs = [p for p in (env_cache / "envs").iterdir() if p.name not in ("inputs",) and not p.name.startswith(".")]
    assert len(envs) == 1 and (envs[0] / "env" / "bin" / "python").exists()


@pytest.mark.slow
def test_predict_in_the_model_environment_writes_what_local_predict_writes(
        bare_deployer: Path, env_cache: Path, sklearn_model: Path, iris_data: Any, tmp_path: Path) -> None:
    import mlflow.pyfunc

    X, _ = iris_data
    src = tmp_path / "in.csv"
    X.to_csv(src, index=False)
    for out_name in ("venv.jsonl", "venv.csv"):
        proc = subprocess.run(
            [str(bare_deployer), "--output", "json", "predict", "-m", str(sklearn_model), "-i", str(src),
             "-o", str(tmp_path / out_name), "--env-manager", "uv"],
            capture_output=True, text=True, env=_env(env_cache), cwd=tmp_path, timeout=900)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert json.loads(proc.stdout)["rows"] == 150
        local = CliRunner().invoke(cli, ["predict", "-m", str(sklearn_model), "-i", str(src),
                                         "-o", str(tmp_path / f"local-{out_name}")])
        assert local.exit_code == 0, local.output
        assert (tmp_path / out_name).read_bytes() == (tmp_path / f"local-{out_name}").read_bytes()
    want = mlflow.pyfunc.load_model(str(sklearn_model)).predict(X).tolist()
    got = [json.loads(line) for line in (tmp_path / "venv.jsonl").read_text().splitlines()]
    assert got == want
    # to stdout too, and a model error is the scoring process's typed error, not a traceback
    proc = subprocess.run(
        [str(bare_deployer), "predict", "-m", str(sklearn_model), "-i", "-", "--content-type", "csv",
         "--env-manager", "virtualenv"],
        input="sepal_length,sepal_width\n1,2\n", capture_output=True, text=True, env=_env(env_cache),
        cwd=tmp_path, timeout=900)
    assert proc.returncode == 1 and "error:" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_prepare_env_then_serve_offline(bare_deployer: Path, env_cache: Path, sklearn_model: Path,
                                        iris_data: Any, tmp_path: Path) -> None:
    import mlflow.pyfunc

    proc = subprocess.run([str(bare_deployer), "--output", "json", "prepare-env", "-m", str(sklearn_model),
                           "--pack"], capture_output=True, text=True, env=_env(env_cache), cwd=tmp_path,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    prepared = json.loads(proc.stdout)
    assert Path(prepared["python"]).exists() and Path(prepared["archive"]).is_file()
    assert Path(prepared["prefix"]).parent == Path(prepared["archive"]).parent  # Spark's archive of it
    # the dry run finds it (and says so) without resolving
    proc = subprocess.run([str(bare_deployer), "--output", "json", "prepare-env", "-m", str(sklearn_model),
                           "--dry-run"], capture_output=True, text=True, env=_env(env_cache), cwd=tmp_path)
    plan = json.loads(proc.stdout)
    assert (plan["lock_digest"], plan["prefix"], plan["would_build"]) == (
        prepared["lock_digest"], prepared["prefix"], False)

    # offline: no resolutions to reuse, and any index or proxy is a dead end
    (env_cache / "locks").unlink()
    (env_cache / "locks").mkdir()
    dead = "http://127.0.0.1:9"
    offline = {"HTTP_PROXY": dead, "HTTPS_PROXY": dead, "ALL_PROXY": dead, "PIP_INDEX_URL": dead + "/simple",
               "PIP_NO_INDEX": "1", "UV_OFFLINE": "1"}
    X, _ = iris_data
    server = _serve(bare_deployer, sklearn_model, env_cache, tmp_path, "offline", **offline)
    assert server.predict(X) == mlflow.pyfunc.load_model(str(sklearn_model)).predict(X).tolist()
    log = server.stop()
    assert prepared["prefix"] in log


@pytest.mark.slow
def test_serve_grpc_port_in_the_model_environment_gets_grpcio(
        bare_deployer: Path, env_cache: Path, sklearn_model: Path, tmp_path: Path,
        triton_python: Path) -> None:  # noqa: F811
    """``serve --env-manager virtualenv --grpc-port``: the deployer running the command has no
    grpcio (installed without extras); the model's environment gets deployer's grpc extra, and
    tritonclient's ModelInfer answers what REST V2 answers."""
    from deployer.building.host_env import plan_host_env

    def names(plan: Any) -> set[str]:
        return {r.split(">")[0].split("=")[0].split("<")[0] for r in plan.build.requirements.requirements}

    assert "grpcio" in names(plan_host_env(sklearn_model, grpc=True))
    assert "grpcio" not in names(plan_host_env(sklearn_model))
    assert subprocess.run([str(bare_deployer.with_name("python")), "-c", "import grpc"],
                          capture_output=True).returncode != 0
    cmd = [str(bare_deployer), "serve", "-m", str(sklearn_model), "--env-manager", "virtualenv",
           "--port", str(free_port()), "--workers", "1", "--grpc-port", str(free_port())]
    grpc_port = cmd[-1]
    server = Server(cmd, _env(env_cache), tmp_path, tmp_path / "grpc.log")
    try:
        request = {"model": "sklearn_skops", "inputs": [
            {"name": c, "shape": [2], "datatype": "FP64", "data": [5.1, 7.7] if c == IRIS[0] else [3.5, 3.0]}
            for c in IRIS]}
        spec = {"url": f"127.0.0.1:{grpc_port}", "model": "sklearn_skops", "raw": [request], "typed": []}
        done = subprocess.run([str(triton_python), str(GRPC_CLIENT)], input=json.dumps(spec), text=True,
                              capture_output=True, timeout=180)
        assert done.returncode == 0, done.stderr
        answers = json.loads(done.stdout)
        rest = urllib.request.Request(f"http://127.0.0.1:{server.port}/v2/models/sklearn_skops/infer",
                                      data=json.dumps({"inputs": request["inputs"]}).encode(),
                                      headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(rest, timeout=60) as resp:
            want = json.loads(resp.read())
        assert answers["ready"] is True
        assert answers["infer"] == [{"code": "OK", "id": "", "model_name": "sklearn_skops",
                                     "outputs": want["outputs"]}]
    finally:
        log = server.stop()
    assert f"grpc listening on 127.0.0.1:{grpc_port}" in log
