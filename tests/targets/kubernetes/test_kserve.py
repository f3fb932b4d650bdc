"""``--target kserve``: the API conversation of an InferenceService (V2) and its canary rollouts,
through the real ``kubernetes`` client against the fake API server (which plays KServe's
controller: revisions, conditions, the traffic split)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from deployer.cli import cli
from tests.targets.kubernetes.fake_apiserver import FakeApiServer

V1 = "registry.example.com/ml/iris@sha256:" + "1" * 64
V2 = "registry.example.com/ml/iris@sha256:" + "2" * 64
ISVCS = "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices"
RUNTIMES = "/apis/serving.kserve.io/v1alpha1/namespaces/ml/servingruntimes"


def deployer(kubeconfig_file: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--kubeconfig", str(kubeconfig_file)], catch_exceptions=False)


def deploy(kubeconfig_file: Path, *args: str) -> Result:
    return deployer(kubeconfig_file, "deploy", "--target", "kserve", "--name", "iris", "--output", "json", *args)


def changes(server: FakeApiServer) -> list[str]:
    return [f"{r.method} {r.path}" for r in server.changes()]


def isvc(server: FakeApiServer) -> dict:  # type: ignore[type-arg]
    obj = server.get("InferenceService", "ml", "iris")
    assert obj is not None
    return obj


def test_create_applies_the_runtime_and_the_v2_inference_service_then_waits_for_ready(
        apiserver: FakeApiServer, kubeconfig_file: Path) -> None:
    result = deploy(kubeconfig_file, "--image-uri", V1, "--cpu", "1", "--min-replicas", "1", "--max-replicas", "3")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["action"], out["status"]) == ("create", "Ready")
    assert out["details"]["rollout"]["url"] == "http://iris.ml.example.com"
    assert changes(apiserver) == [f"PATCH {RUNTIMES}/deployer-iris", f"PATCH {ISVCS}/iris"]
    predictor = isvc(apiserver)["spec"]["predictor"]
    assert predictor["model"] == {"modelFormat": {"name": "deployer-mlflow"}, "runtime": "deployer-iris",
                                  "protocolVersion": "v2", "image": V1}
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    runtime = apiserver.get("ServingRuntime", "ml", "deployer-iris")
    assert runtime is not None and runtime["spec"]["protocolVersions"] == ["v2"]
    again = deploy(kubeconfig_file, "--image-uri", V1, "--cpu", "1", "--min-replicas", "1", "--max-replicas", "3")
    assert json.loads(again.stdout)["action"] == "noop"
    assert len(apiserver.changes()) == 2


def test_a_canary_then_promote(apiserver: FakeApiServer, kubeconfig_file: Path) -> None:
    assert deploy(kubeconfig_file, "--image-uri", V1).exit_code == 0
    canary = deploy(kubeconfig_file, "--image-uri", V2, "--canary", "10")
    assert canary.exit_code == 0, canary.output
    traffic = json.loads(canary.stdout)["details"]["rollout"]["traffic"]
    assert [(t["revisionName"], t["percent"]) for t in traffic] == [
        ("iris-predictor-00002", 10), ("iris-predictor-00001", 90)]
    status = json.loads(deployer(kubeconfig_file, "status", "--target", "kserve", "--name", "iris",
                                 "--output", "json").stdout)
    assert status["details"]["canary_traffic_percent"] == 10 and status["details"]["image"] == V2
    promoted = deploy(kubeconfig_file, "--promote")
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.stdout)["action"] == "promote"
    assert "canaryTrafficPercent" not in isvc(apiserver)["spec"]["predictor"]
    assert isvc(apiserver)["spec"]["predictor"]["model"]["image"] == V2
    traffic = isvc(apiserver)["status"]["components"]["predictor"]["traffic"]
    assert [(t["revisionName"], t["percent"]) for t in traffic] == [("iris-predictor-00002", 100)]


def test_a_canary_rolled_back_sends_everything_to_the_previous_revision(apiserver: FakeApiServer,
                                                                        kubeconfig_file: Path) -> None:
    assert deploy(kubeconfig_file, "--image-uri", V1).exit_code == 0
    assert deploy(kubeconfig_file, "--image-uri", V2, "--canary", "25").exit_code == 0
    back = deploy(kubeconfig_file, "--rollback")
    assert back.exit_code == 0, back.output
    assert isvc(apiserver)["spec"]["predictor"]["canaryTrafficPercent"] == 0
    traffic = isvc(apiserver)["status"]["components"]["predictor"]["traffic"]
    assert {t["revisionName"]: t["percent"] for t in traffic} == {
        "iris-predictor-00002": 0, "iris-predictor-00001": 100}


def test_promote_and_rollback_are_refused_with_an_image_or_without_a_service(apiserver: FakeApiServer,
                                                                            kubeconfig_file: Path) -> None:
    missing = deploy(kubeconfig_file, "--promote")
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    assert deploy(kubeconfig_file, "--image-uri", V1).exit_code == 0
    both = deploy(kubeconfig_file, "--promote", "--image-uri", V2)
    assert both.exit_code == 2 and "only moves traffic" in both.stderr
    canary = deploy(kubeconfig_file, "--image-uri", V2, "--canary", "101")
    assert canary.exit_code == 2 and "--canary 101 is out of range" in canary.stderr


def test_a_failed_revision_is_rolled_back_to_the_previous_inference_service(apiserver: FakeApiServer,
                                                                           kubeconfig_file: Path) -> None:
    assert deploy(kubeconfig_file, "--image-uri", V1).exit_code == 0
    apiserver.images[V2] = "crash"
    n = len(apiserver.changes())
    result = deploy(kubeconfig_file, "--image-uri", V2, "--canary", "10")
    assert result.exit_code == 1
    assert "RevisionFailed" in result.stderr and "CrashLoopBackOff" in result.stderr
    assert "No module named 'sklearn'" in result.stderr
    assert changes(apiserver)[n:] == [f"PATCH {RUNTIMES}/deployer-iris", f"PATCH {ISVCS}/iris",
                                      f"PATCH {ISVCS}/iris", f"PATCH {RUNTIMES}/deployer-iris"]
    assert isvc(apiserver)["spec"]["predictor"]["model"]["image"] == V1
    assert "canaryTrafficPercent" not in isvc(apiserver)["spec"]["predictor"]


def test_a_failed_first_deploy_leaves_nothing_behind(apiserver: FakeApiServer, kubeconfig_file: Path) -> None:
    apiserver.images[V1] = "crash"
    result = deploy(kubeconfig_file, "--image-uri", V1)
    assert result.exit_code == 1
    assert changes(apiserver)[-2:] == [f"DELETE {ISVCS}/iris", f"DELETE {RUNTIMES}/deployer-iris"]
    assert apiserver.names() == []


def test_predict_list_delete(apiserver: FakeApiServer, kubeconfig_file: Path, scoring_server: str,
                            tmp_path: Path) -> None:
    assert deploy(kubeconfig_file, "--image-uri", V1).exit_code == 0
    apiserver.backends[("ml", "iris-predictor")] = scoring_server
    body = tmp_path / "input.json"
    body.write_text(json.dumps({"dataframe_records": [
        {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}]}))
    result = deployer(kubeconfig_file, "predict", "--target", "kserve", "--name", "iris", "-i", str(body),
                      "--output", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"predictions": [2]}
    listed = json.loads(deployer(kubeconfig_file, "list", "--target", "kserve", "--output", "json").stdout)
    assert [(e["name"], e["status"]) for e in listed["endpoints"]] == [("iris", "Ready")]
    deleted = deployer(kubeconfig_file, "delete", "--target", "kserve", "--name", "iris", "--output", "json")
    assert deleted.exit_code == 0, deleted.output
    assert changes(apiserver)[-2:] == [f"DELETE {ISVCS}/iris", f"DELETE {RUNTIMES}/deployer-iris"]
    assert apiserver.names() == []
