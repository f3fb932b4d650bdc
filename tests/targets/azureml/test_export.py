"""``deployer export --target azureml``: the bundle loads with azure-ai-ml's own loaders, the
script passes bash -n and shellcheck, the folder is written atomically, and the exported
score.py serves the model under azmlinfsrv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployer.errors import UnsafePathError, UsageError
from deployer.targets.azureml.export import ExportOptions, endpoint_name_for, export_bundle
from deployer.targets.azureml.plan import ImageRoutes
from tests.targets.azureml.conftest import free_port, wait_healthy


def _load_all(out: Path):  # type: ignore[no-untyped-def]
    from azure.ai.ml import load_environment, load_online_deployment, load_online_endpoint

    return (
        load_online_endpoint(str(out / "endpoint.yml")),
        load_online_deployment(str(out / "deployment.yml")),
        load_environment(str(out / "environment.yml")),
    )


def test_conda_bundle_loads_with_azure_loaders(tmp_path, sklearn_model):
    out = tmp_path / "bundle"
    result = export_bundle(str(sklearn_model), out, ExportOptions(endpoint="iris-ep", instance_count=2,
                                                                  env={"LOG_LEVEL": "debug"}))
    assert result.mode == "conda"
    for name in ("model/MLmodel", "score.py", "conda.yaml", "environment.yml", "endpoint.yml", "deployment.yml",
                 "create_service.sh", "README.md", ".amlignore", "sample-request.json",
                 "deployer/serving/azure.py", "deployer/serving/core.py"):
        assert (out / name).exists(), name
    assert not list((out / "deployer").rglob("__pycache__"))

    endpoint, deployment, environment = _load_all(out)
    assert endpoint.name == "iris-ep" and endpoint.auth_mode == "key"
    assert deployment.name == "blue" and deployment.endpoint_name == "iris-ep"
    assert deployment.instance_count == 2 and deployment.instance_type == "Standard_DS3_v2"
    assert deployment.environment_variables == {"LOG_LEVEL": "debug"}
    assert deployment.code_configuration.scoring_script == "score.py"
    assert Path(deployment.model.path) == out / "model"
    assert deployment.environment == "iris-ep-env@latest"
    assert environment.name == "iris-ep-env"
    assert environment.conda_file["dependencies"][0].startswith("python=3.")
    pip = environment.conda_file["dependencies"][-1]["pip"]
    assert any(p.startswith("azureml-inference-server-http") for p in pip)
    assert any(p.startswith("scikit-learn==") for p in pip)
    assert any(p.startswith("mlflow-skinny==") for p in pip)
    # code upload: the model is registered on its own, not uploaded twice
    assert "model/" in (out / ".amlignore").read_text().splitlines()
    sample = json.loads((out / "sample-request.json").read_text())
    assert sample["input_data"]["columns"][0] == "sepal_length"
    assert len(sample["input_data"]["data"]) == 3


def test_image_bundle_uses_inference_config(tmp_path, sklearn_model):
    out = tmp_path / "bundle"
    routes = ImageRoutes(port=8080, liveness="/ping", readiness="/ping", scoring="/invocations")
    export_bundle(str(sklearn_model), out, ExportOptions(image="registry.example:5000/team/iris:1", routes=routes))
    endpoint, deployment, environment = _load_all(out)
    assert endpoint.name == endpoint_name_for(sklearn_model) == "sklearn-skops"
    assert environment.image == "registry.example:5000/team/iris:1"
    assert environment.conda_file is None
    cfg = dict(environment.inference_config)  # the SDK's REST model: camelCase keys
    assert cfg["scoringRoute"] == {"path": "/invocations", "port": 8080}
    assert cfg["livenessRoute"] == cfg["readinessRoute"] == {"path": "/ping", "port": 8080}
    assert deployment.code_configuration is None and deployment.model is None
    assert not (out / "conda.yaml").exists() and not (out / "deployer").exists()


def test_create_service_script_passes_bash_n_and_shellcheck(tmp_path, sklearn_model):
    out = tmp_path / "bundle"
    export_bundle(str(sklearn_model), out, ExportOptions(traffic="blue=90,green=10"))
    script = out / "create_service.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert "TRAFFIC='blue=90 green=10'" in text  # quoted by shlex in Python
    subprocess.run(["bash", "-n", str(script)], check=True)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed (apt-get install shellcheck)")
    proc = subprocess.run([shellcheck, "--severity=style", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    help_run = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "Usage: ./create_service.sh" in help_run.stdout
    bad = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert bad.returncode == 2 and "--resource-group and --workspace are required" in bad.stderr


def test_create_service_script_runs_az_commands_in_order(tmp_path, sklearn_model):
    """A recording `az` on PATH shows the exact argv the script passes (quoting included)."""
    out = tmp_path / "my bundle"
    export_bundle(str(sklearn_model), out, ExportOptions(endpoint="iris-ep", traffic="blue=90,green=10"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "az.log"
    az = bindir / "az"
    az.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "sys.exit(3 if sys.argv[1:4] == ['ml', 'online-endpoint', 'show'] and '--query' not in sys.argv else 0)\n"
    )
    az.chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(out / "create_service.sh"), "-g", "my group", "-w", "ws1", "-s", "sub-1"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    scope = ["--resource-group", "my group", "--workspace-name", "ws1", "--subscription", "sub-1"]
    assert calls == [
        ["ml", "environment", "create", "--file", "environment.yml", *scope],
        ["ml", "online-endpoint", "show", "--name", "iris-ep", *scope],
        ["ml", "online-endpoint", "create", "--file", "endpoint.yml", "--name", "iris-ep", *scope],
        ["ml", "online-deployment", "create", "--file", "deployment.yml", "--name", "blue",
         "--endpoint-name", "iris-ep", *scope],
        ["ml", "online-endpoint", "update", "--name", "iris-ep", "--traffic", "blue=90", "green=10", *scope],
        ["ml", "online-endpoint", "show", "--name", "iris-ep", "--query", "scoring_uri", "--output", "tsv", *scope],
    ]
    log.unlink()
    proc = subprocess.run(["bash", str(out / "create_service.sh"), "-g", "g", "-w", "w", "--all-traffic",
                           "--deployment", "green"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    deploy = [c for c in map(json.loads, log.read_text().splitlines()) if c[:2] == ["ml", "online-deployment"]]
    assert deploy == [["ml", "online-deployment", "create", "--file", "deployment.yml", "--name", "green",
                       "--endpoint-name", "iris-ep", "--all-traffic", "--resource-group", "g", "--workspace-name", "w"]]


def test_hostile_values_stay_data(tmp_path, sklearn_model):
    out = tmp_path / "bundle"
    value = 'a "quoted" value: $(touch pwned) `x` \\ #not-a-comment'
    export_bundle(str(sklearn_model), out, ExportOptions(env={"NOTE": value}))
    _, deployment, _ = _load_all(out)
    assert deployment.environment_variables == {"NOTE": value}
    with pytest.raises(UsageError, match="control character"):
        export_bundle(str(sklearn_model), tmp_path / "b1", ExportOptions(env={"NOTE": "a\nb: c"}))
    with pytest.raises(UsageError):
        export_bundle(str(sklearn_model), tmp_path / "b2", ExportOptions(endpoint="x; rm -rf /"))
    with pytest.raises(UsageError):
        export_bundle(str(sklearn_model), tmp_path / "b3", ExportOptions(env={"BAD-NAME": "1"}))
    with pytest.raises(UsageError):
        export_bundle(str(sklearn_model), tmp_path / "b4", ExportOptions(image="x\nRUN evil"))
    with pytest.raises(UsageError):
        export_bundle(str(sklearn_model), tmp_path / "b5",
                      ExportOptions(image="a/b:1", routes=ImageRoutes(scoring="/score\nx")))
    assert not (tmp_path / "pwned").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_output_is_replaced_atomically_or_not_at_all(tmp_path, sklearn_model):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(UsageError, match="not empty"):
        export_bundle(str(sklearn_model), out, ExportOptions())
    assert (out / "keep.txt").read_text() == "old"

    # a model with a link leaving its directory: refused, the old bundle is untouched
    evil = tmp_path / "evil-model"
    shutil.copytree(sklearn_model, evil)
    (tmp_path / "secret.txt").write_text("secret")
    (evil / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(UnsafePathError):
        export_bundle(str(evil), out, ExportOptions(), force=True)
    assert (out / "keep.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "evil-model", "secret.txt"]  # no temp left

    export_bundle(str(sklearn_model), out, ExportOptions(), force=True)
    assert not (out / "keep.txt").exists() and (out / "deployment.yml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "evil-model", "secret.txt"]
    assert oct(out.stat().st_mode & 0o777) == "0o755"


def test_cli_export_json(tmp_path, sklearn_model):
    from deployer.cli import cli

    out = tmp_path / "bundle"
    res = CliRunner().invoke(cli, ["export", "--target", "azureml", "-m", str(sklearn_model), "-o", str(out),
                                   "--name", "iris-ep", "--env", "A=1", "--output", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["endpoint"] == "iris-ep" and data["mode"] == "conda"
    assert "create_service.sh" in data["files"]
    res = CliRunner().invoke(cli, ["export", "--target", "azureml", "-m", str(sklearn_model), "-o", str(out)])
    assert res.exit_code == 2 and "not empty" in res.output
    res = CliRunner().invoke(cli, ["export", "--target", "azureml", "-m", str(sklearn_model), "-o",
                                   str(tmp_path / "x"), "--env", "NOEQUALS"])
    assert res.exit_code == 2 and "KEY=VALUE" in res.output


def test_bundled_runtime_is_importable_on_its_own(tmp_path, sklearn_model):
    out = tmp_path / "bundle"
    export_bundle(str(sklearn_model), out, ExportOptions())
    code = "import sys; sys.path.insert(0, '.'); import deployer.serving.azure as a; print(a.__file__)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True, check=True)
    assert Path(proc.stdout.strip()).resolve() == (out / "deployer/serving/azure.py").resolve()


@pytest.mark.slow
def test_exported_score_py_serves_the_sample_request_under_azmlinfsrv(tmp_path, sklearn_model):
    out = tmp_path / "bundle"
    export_bundle(str(sklearn_model), out, ExportOptions())
    port = free_port()
    env = dict(os.environ, AZUREML_MODEL_DIR=str(out), GUNICORN_CMD_ARGS="--no-control-socket", HOME=str(tmp_path),
               PYTHONPATH=str(out))
    server = subprocess.Popen([str(Path(sys.executable).parent / "azmlinfsrv"), "--entry_script", "score.py",
                               "--port", str(port)], cwd=out, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
    try:
        wait_healthy(server, port)
        body = (out / "sample-request.json").read_bytes()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/score", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 200
            assert json.loads(resp.read()) == [0, 0, 0]
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_bad_traffic_default_is_a_usage_error(tmp_path, sklearn_model):
    with pytest.raises(UsageError, match="adds up to 50"):
        export_bundle(str(sklearn_model), tmp_path / "b", ExportOptions(traffic="blue=50"))
    assert not (tmp_path / "b").exists()
