"""MLflow's deployments plugin targets ``deployer-kubernetes`` and ``deployer-kserve``: MLflow's
own CLI and ``get_deploy_client`` run deployer's code path against the fake API server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.deployments import get_deploy_client
from mlflow.exceptions import MlflowException

from tests.targets.kubernetes.fake_apiserver import FakeApiServer

V1 = "registry.example.com/ml/iris@sha256:" + "1" * 64
V2 = "registry.example.com/ml/iris@sha256:" + "2" * 64
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.fixture
def kube_env(kubeconfig_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig_file))
    return kubeconfig_file


def test_the_uri_names_the_context_and_namespace() -> None:
    assert get_deploy_client("deployer-kubernetes").uri_connection == {}
    assert get_deploy_client("deployer-kubernetes:/ml").uri_connection == {"namespace": "ml"}
    assert get_deploy_client("deployer-kserve:/fake/ml").uri_connection == {"context": "fake", "namespace": "ml"}
    with pytest.raises(MlflowException, match=r"expected deployer-kserve:/\[CONTEXT/\]NAMESPACE"):
        get_deploy_client("deployer-kserve:/a/b/c")


def test_get_deploy_client_full_cycle_on_kubernetes(apiserver: FakeApiServer, kube_env: Path,
                                                    scoring_server: str) -> None:
    client = get_deploy_client("deployer-kubernetes:/fake/ml")
    created = client.create_deployment("iris", None, config={"image_uri": V1, "cpu": "2", "replicas": "2"})
    assert created["status"] == "Ready" and created["rollout"] == {"replicas": 2, "ready": 2}
    with pytest.raises(MlflowException, match="already exists"):
        client.create_deployment("iris", None, config={"image_uri": V2})
    updated = client.update_deployment("iris", config={"image_uri": V2, "cpu": "2", "replicas": "2"})
    assert updated["action"] == "update"
    assert client.get_deployment("iris")["image"] == V2
    assert [d["name"] for d in client.list_deployments()] == ["iris"]
    apiserver.backends[("ml", "iris")] = scoring_server
    assert client.predict("iris", {"dataframe_records": [ROW]}).get_predictions(predictions_format="ndarray").tolist() == [0]
    client.delete_deployment("iris")
    assert apiserver.names() == []


def test_a_kserve_canary_through_the_plugin_and_mlflows_help(apiserver: FakeApiServer, kube_env: Path) -> None:
    client = get_deploy_client("deployer-kserve:/ml")
    client.create_deployment("iris", None, config={"image_uri": V1})
    client.update_deployment("iris", config={"image_uri": V2, "canary": "20", "env": '["LOG=1"]'})
    isvc = apiserver.get("InferenceService", "ml", "iris")
    assert isvc is not None and isvc["spec"]["predictor"]["canaryTrafficPercent"] == 20
    runtime = apiserver.get("ServingRuntime", "ml", "deployer-iris")
    assert runtime is not None and {"name": "LOG", "value": "1"} in runtime["spec"]["containers"][0]["env"]
    assert client.update_deployment("iris", config={"promote": "true"})["action"] == "promote"
    with pytest.raises(MlflowException, match="not a valid Kubernetes name"):
        client.create_deployment("Bad_Name", None, config={"image_uri": V1})
    assert apiserver.names() == ["InferenceService/iris", "ServingRuntime/deployer-iris"]
    mlflow = str(Path(sys.executable).parent / "mlflow")
    res = subprocess.run([mlflow, "deployments", "help", "-t", "deployer-kserve"], capture_output=True, text=True,
                         env=dict(os.environ), timeout=300)
    assert res.returncode == 0, res.stderr
    assert "deployer-kserve:/[CONTEXT/]NAMESPACE" in res.stdout
    assert "\n  canary " in res.stdout and "\n  promote " in res.stdout and "\n  registry " in res.stdout
