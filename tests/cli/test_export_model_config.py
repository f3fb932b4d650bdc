"""``deployer export --model-config``: the config travels in the deployment's environment
(``SERVING_MODEL_CONFIG``), which deployer's score.py and server read at load. The Azure ML
bundle is served by the real ``azmlinfsrv`` with the variable exactly as deployment.yml sets it;
the answer is MLflow's ``load_model(model_config=...)``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from deployer.cli import cli
from deployer.serving.model_config import ENV
from tests.targets.azureml.conftest import free_port, wait_healthy

CONFIG = {"x": "exported", "scale": 10.0}
IMAGE = "registry.example.com/ml/cfg@sha256:" + "3" * 64


def export(*args: str) -> Result:
    return CliRunner().invoke(cli, ["export", *args], catch_exceptions=False)


@pytest.mark.slow
def test_azureml_bundle_serves_the_config_under_azmlinfsrv(config_model: Path, tmp_path: Path) -> None:
    import mlflow.pyfunc
    import pandas as pd

    out = tmp_path / "bundle"
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(CONFIG))
    res = export("--target", "azureml", "-m", str(config_model), "-o", str(out), "--model-config", str(config_file))
    assert res.exit_code == 0, res.output
    variables = yaml.safe_load((out / "deployment.yml").read_text())["environment_variables"]
    assert json.loads(variables[ENV]) == CONFIG
    port = free_port()
    env = dict(os.environ, AZUREML_MODEL_DIR=str(out), GUNICORN_CMD_ARGS="--no-control-socket", HOME=str(tmp_path),
               PYTHONPATH=str(out), **{ENV: variables[ENV]})
    server = subprocess.Popen([str(Path(sys.executable).parent / "azmlinfsrv"), "--entry_script", "score.py",
                               "--port", str(port)], cwd=out, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
    try:
        wait_healthy(server, port)
        body = json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1.0], [3.0]]}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/score", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            got = json.loads(resp.read())
    finally:
        server.terminate()
        server.wait(timeout=20)
    oracle = mlflow.pyfunc.load_model(str(config_model), model_config=CONFIG).predict(pd.DataFrame({"a": [1.0, 3.0]}))
    assert got == json.loads(oracle.to_json(orient="records"))
    assert got[0]["x"] == "exported"


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
def test_kubernetes_manifests_carry_the_config(config_model: Path, tmp_path: Path, target: str) -> None:
    out = tmp_path / target
    res = export("--target", target, "-m", str(config_model), "--image", IMAGE, "-o", str(out),
                 "--model-config", json.dumps(CONFIG), "--output", "json")
    assert res.exit_code == 0, res.output
    docs = [doc for p in sorted(out.glob("*.yaml")) for doc in yaml.safe_load_all(p.read_text())]
    found = [e for doc in docs for e in _env_entries(doc) if e.get("name") == ENV]
    assert len(found) == 1 and json.loads(found[0]["value"]) == CONFIG


def _env_entries(node: object) -> list[dict]:  # type: ignore[type-arg]
    if isinstance(node, dict):
        own = node.get("env") if isinstance(node.get("env"), list) else []
        return [*own, *(e for v in node.values() for e in _env_entries(v))]
    if isinstance(node, list):
        return [e for v in node for e in _env_entries(v)]
    return []


def test_bad_config_and_twice_given_are_usage_errors(config_model: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["export", "--target", "azureml", "-m", str(config_model), "-o",
                                   str(tmp_path / "a"), "--model-config", "[1]"])
    assert res.exit_code == 2 and "JSON object" in res.output and "--model-config" in res.output
    res = CliRunner().invoke(cli, ["export", "--target", "azureml", "-m", str(config_model), "-o",
                                   str(tmp_path / "b"), "--model-config", "{}", "--env", f"{ENV}={{}}"])
    assert res.exit_code == 2 and "given twice" in res.output
