"""``deploy --target kubernetes|kserve -m MODEL --registry R`` end to end: the image is built from
the model, verified, pushed to a real registry, the Deployment applied (to the fake API server)
names the digest the registry serves, and that digest, pulled from the registry and run as the
pod template says (tests/targets/kubernetes/kubelet.py), becomes ready and answers ``predict``
through the API server's service proxy. The same request again builds, pushes and applies
nothing. MLflow's own CLI does the same for KServe."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from deployer.building.plan import BuildOptions
from deployer.cli import cli
from deployer.console import to_json
from deployer.targets.base import DeployRequest
from deployer.targets.kubernetes import KubernetesTarget
from tests.targets.kubernetes import kubelet
from tests.targets.kubernetes.fake_apiserver import FakeApiServer

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.slow]


@pytest.fixture
def docker_login(tmp_path: Path, registry: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "docker-config"
    config.mkdir()
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    return config


def served_digest(docker_client: Any, image: str, registry: Any) -> str:
    data = docker_client.api.inspect_distribution(image, auth_config=registry.auth_config)
    return str(data["Descriptor"]["digest"])


def test_build_verify_push_apply_by_digest_then_run_the_pulled_image_as_the_pod(  # type: ignore[no-untyped-def]
        apiserver: FakeApiServer, kubeconfig_file: Path, registry, docker_login: Path, sklearn_model: Path,
        base_image: str, docker_client, tmp_path: Path) -> None:
    target = KubernetesTarget(kubeconfig=str(kubeconfig_file))
    request = DeployRequest("iris", model_uri=str(sklearn_model), build=BuildOptions(base_image=base_image),
                            options={"registry": f"{registry.host}/team", "cpu": "1", "memory": "1Gi"})
    plan = target.plan(request)
    assert [f"{c.service}:{c.operation}" for c in plan.calls] == [
        "deployer:build_image", "docker:push", "kubernetes:apply", "kubernetes:apply", "kubernetes:wait_deployment"]
    data = json.loads(to_json(plan))
    step = data["calls"][0]["params"]
    assert step["Build"].get("target", "local") == "local"  # to_params leaves defaults out
    tag = f"{registry.host}/team/{step['LocalImage']}"
    assert data["calls"][1]["params"]["Image"] == tag and data["facts"]["image"] == tag
    assert apiserver.changes() == []  # planning only reads

    result = target.apply(plan)
    assert result.status == "Ready", result
    digest = served_digest(docker_client, tag, registry)
    repo = tag.rsplit(":", 1)[0]
    dep = apiserver.get("Deployment", "ml", "iris")
    assert dep is not None
    pod_spec = dep["spec"]["template"]["spec"]
    assert pod_spec["containers"][0]["image"] == f"{repo}@{digest}" == result.details["image"]

    # The node pulls that digest from the registry and runs it as the template says.
    docker_client.images.remove(tag, force=True)
    with kubelet.run_pod(docker_client, pod_spec, name="iris", auth_config=registry.auth_config) as pod:
        assert kubelet.wait_started(pod).succeeded, pod.logs()
        assert kubelet.wait_ready(pod, timeout=120).succeeded, pod.logs()
        apiserver.backends[("ml", "iris")] = pod.url()
        body = tmp_path / "rows.json"
        body.write_text(json.dumps({"dataframe_records": [
            {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}))
        answer = CliRunner().invoke(cli, ["predict", "--target", "kubernetes", "--name", "iris", "-i", str(body),
                                          "--kubeconfig", str(kubeconfig_file), "--output", "json"],
                                    catch_exceptions=False)
        assert answer.exit_code == 0, answer.output
        assert json.loads(answer.stdout) == {"predictions": [0]}

    # The same request again: nothing built, pushed or applied.
    pushes = len(registry.requests())
    changes = len(apiserver.changes())
    again = target.plan(request)
    assert (again.action, list(again.calls)) == ("noop", [])
    assert len(registry.requests()) == pushes and len(apiserver.changes()) == changes


def test_mlflows_cli_builds_pushes_and_deploys_to_kserve(  # type: ignore[no-untyped-def]
        apiserver: FakeApiServer, kubeconfig_file: Path, registry, docker_login: Path, sklearn_model: Path,
        base_image: str, docker_client) -> None:
    mlflow = str(Path(sys.executable).parent / "mlflow")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_file)}
    res = subprocess.run([mlflow, "deployments", "create", "-t", "deployer-kserve:/ml", "--name", "iris",
                          "-m", str(sklearn_model), "-C", f"registry={registry.host}/team",
                          "-C", f"base_image={base_image}", "-C", "canary=20"],
                         capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "deployment iris is created" in res.stdout
    isvc = apiserver.get("InferenceService", "ml", "iris")
    assert isvc is not None
    image = isvc["spec"]["predictor"]["model"]["image"]
    repo, _, digest = image.partition("@")
    assert repo.startswith(f"{registry.host}/team/") and digest.startswith("sha256:")
    runtime = apiserver.get("ServingRuntime", "ml", "deployer-iris")
    assert runtime is not None and runtime["spec"]["containers"][0]["image"] == image
    from deployer.targets.model_image import plan_model_image

    local_tag = plan_model_image(str(sklearn_model), BuildOptions(base_image=base_image), "local")[1]["LocalImage"]
    tag = f"{registry.host}/team/{local_tag}"
    assert repo == tag.rsplit(":", 1)[0] and served_digest(docker_client, tag, registry) == digest
