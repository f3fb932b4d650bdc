"""The API conversation of ``--target kubernetes``: the real ``kubernetes`` client (kubeconfig,
contexts, bearer token, its connection pool) against the fake API server over HTTP.

Each test checks the exact requests that change something (server-side applies and deletes)
and what is left in the cluster afterwards: create, no-op re-run, update, a rollout that fails
(crash loop, quota, readiness timeout) and is rolled back to the previous template, delete,
and the API server's refusals (409, 404, 403, 401) - never an orphan after a failure.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from deployer.cli import cli
from tests.targets.kubernetes.fake_apiserver import FakeApiServer, kubeconfig

V1 = "registry.example.com/ml/iris@sha256:" + "1" * 64
V2 = "registry.example.com/ml/iris@sha256:" + "2" * 64
DEPLOYMENTS = "/apis/apps/v1/namespaces/ml/deployments"
SERVICES = "/api/v1/namespaces/ml/services"
HPAS = "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers"


def deployer(kubeconfig_file: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--kubeconfig", str(kubeconfig_file)], catch_exceptions=False)


def deploy(kubeconfig_file: Path, image: str, *args: str, name: str = "iris") -> Result:
    return deployer(kubeconfig_file, "deploy", "--target", "kubernetes", "--name", name,
                    "--image-uri", image, "--output", "json", *args)


def changes(server: FakeApiServer) -> list[str]:
    return [f"{r.method} {r.path}" for r in server.changes()]


def live_image(server: FakeApiServer, name: str = "iris") -> str:
    dep = server.get("Deployment", "ml", name)
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


# ---------------------------------------------------------------------------- create / noop / update
def test_create_applies_the_deployment_and_service_server_side_then_waits_for_the_rollout(
        apiserver: FakeApiServer, kubeconfig_file: Path) -> None:
    result = deploy(kubeconfig_file, V1, "--cpu", "2", "--memory", "1Gi", "--replicas", "2")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["action"], out["status"]) == ("create", "Ready")
    assert out["details"]["rollout"] == {"replicas": 2, "ready": 2}
    assert out["details"]["namespace"] == "ml"  # the kubeconfig context's namespace
    assert changes(apiserver) == [f"PATCH {DEPLOYMENTS}/iris", f"PATCH {SERVICES}/iris"]
    for request in apiserver.changes():
        assert request.query == {"fieldManager": "deployer", "force": "true"}
        assert request.content_type == "application/apply-patch+yaml"
    body = apiserver.changes()[0].body
    pod = body["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == V1
    assert {"name": "DEPLOYER_SERVE_WORKERS", "value": "2"} in pod["containers"][0]["env"]
    # the wait polled the Deployment until the controller reported the new pods available
    gets = [r for r in apiserver.requests if r.method == "GET" and r.path == f"{DEPLOYMENTS}/iris"]
    assert len(gets) >= 3  # one while planning, one before the rollout completed, one after
    assert apiserver.names("ml") == ["Deployment/iris", "Service/iris"]


def test_the_same_request_again_plans_no_call_and_changes_nothing(apiserver: FakeApiServer,
                                                                   kubeconfig_file: Path) -> None:
    assert deploy(kubeconfig_file, V1, "--cpu", "1").exit_code == 0
    before = len(apiserver.changes())
    again = deploy(kubeconfig_file, V1, "--cpu", "1")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["action"] == "noop"
    assert len(apiserver.changes()) == before
    dry = deployer(kubeconfig_file, "deploy", "--target", "kubernetes", "--name", "iris", "--image-uri", V1,
                   "--cpu", "1", "--dry-run", "--output", "json")
    assert json.loads(dry.stdout)["plan"]["calls"] == []
    # any change of what the pods run is a change: here the CPU (and so the worker count)
    changed = deploy(kubeconfig_file, V1, "--cpu", "2")
    assert json.loads(changed.stdout)["action"] == "update"


def test_update_rolls_out_the_new_image_and_bumps_the_generation(apiserver: FakeApiServer,
                                                                 kubeconfig_file: Path) -> None:
    assert deploy(kubeconfig_file, V1).exit_code == 0
    result = deploy(kubeconfig_file, V2)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["action"] == "update"
    assert live_image(apiserver) == V2
    dep = apiserver.get("Deployment", "ml", "iris")
    assert dep is not None and dep["metadata"]["generation"] == 2


def test_dropping_autoscale_removes_the_autoscaler_after_the_rollout(apiserver: FakeApiServer,
                                                                     kubeconfig_file: Path) -> None:
    assert deploy(kubeconfig_file, V1, "--cpu", "1", "--autoscale", "2:5:60", "--pdb-min-available", "1").exit_code == 0
    assert apiserver.names("ml") == ["Deployment/iris", "HorizontalPodAutoscaler/iris",
                                     "PodDisruptionBudget/iris", "Service/iris"]
    hpa = apiserver.get("HorizontalPodAutoscaler", "ml", "iris")
    assert hpa is not None and (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert "replicas" not in apiserver.get("Deployment", "ml", "iris")["spec"]  # type: ignore[index]
    result = deploy(kubeconfig_file, V1, "--cpu", "1", "--replicas", "3")
    assert result.exit_code == 0, result.output
    assert changes(apiserver)[-2:] == [f"DELETE {HPAS}/iris",
                                       "DELETE /apis/policy/v1/namespaces/ml/poddisruptionbudgets/iris"]
    assert apiserver.names("ml") == ["Deployment/iris", "Service/iris"]


# ---------------------------------------------------------------------------- failed rollouts
def test_a_crashing_rollout_is_rolled_back_and_reported_with_events_and_logs(
        apiserver: FakeApiServer, kubeconfig_file: Path) -> None:
    assert deploy(kubeconfig_file, V1).exit_code == 0
    apiserver.images[V2] = "crash"
    n = len(apiserver.changes())
    result = deploy(kubeconfig_file, V2)
    assert result.exit_code == 1
    err = result.stderr
    assert "did not become ready" in err and "CrashLoopBackOff" in err and "4 restarts" in err
    assert "Back-off restarting failed container" in err  # the pod's event
    assert "No module named 'sklearn'" in err  # the previous container's log lines
    assert "Traceback" not in err.split("error:")[0]  # deployer itself did not crash
    # the previous template applied back (Deployment then Service, in reverse order)
    assert changes(apiserver)[n:] == [f"PATCH {DEPLOYMENTS}/iris", f"PATCH {SERVICES}/iris",
                                      f"PATCH {SERVICES}/iris", f"PATCH {DEPLOYMENTS}/iris"]
    assert live_image(apiserver) == V1
    restored = apiserver.changes()[-1].body
    assert "resourceVersion" not in restored["metadata"] and "status" not in restored
    seen = []
    for _ in range(3):  # the restored rollout settles (the controller needs a look or two)
        status = deployer(kubeconfig_file, "status", "--target", "kubernetes", "--name", "iris", "--output", "json")
        seen.append(json.loads(status.stdout)["status"])
    assert seen[-1] == "Ready", seen


def test_a_failed_first_rollout_leaves_nothing_behind(apiserver: FakeApiServer, kubeconfig_file: Path) -> None:
    apiserver.images[V1] = "crash"
    result = deploy(kubeconfig_file, V1, "--autoscale", "1:2:50", "--cpu", "1")
    assert result.exit_code == 1
    assert changes(apiserver)[-3:] == [f"DELETE {HPAS}/iris", f"DELETE {SERVICES}/iris",
                                       f"DELETE {DEPLOYMENTS}/iris"]
    assert apiserver.names() == []


def test_a_quota_refusing_the_pods_fails_at_once_with_the_quota_fix(apiserver: FakeApiServer,
                                                                   kubeconfig_file: Path) -> None:
    assert deploy(kubeconfig_file, V1).exit_code == 0
    apiserver.images[V2] = "quota"
    started = time.monotonic()
    result = deploy(kubeconfig_file, V2, "--cpu", "4")
    assert result.exit_code == 1
    assert time.monotonic() - started < 30  # not the 600 s timeout
    assert "exceeded quota" in result.stderr and "ResourceQuota" in result.stderr
    assert live_image(apiserver) == V1


def test_pods_that_never_become_ready_time_out_within_the_timeout(apiserver: FakeApiServer,
                                                                  kubeconfig_file: Path) -> None:
    apiserver.images[V1] = "unready"
    started = time.monotonic()
    result = deploy(kubeconfig_file, V1, "--timeout", "3")
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert 3 <= elapsed < 20
    assert "did not complete within 3s" in result.stderr
    assert "Readiness probe failed" in result.stderr and "model not ready" in result.stderr
    assert apiserver.names() == []


def test_no_wait_applies_and_returns(apiserver: FakeApiServer, kubeconfig_file: Path) -> None:
    apiserver.images[V1] = "unready"
    result = deploy(kubeconfig_file, V1, "--no-wait")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "Applied"
    assert apiserver.names() == ["Deployment/iris", "Service/iris"]


# ---------------------------------------------------------------------------- API refusals
def test_a_conflict_on_the_first_apply_is_reported_with_nothing_changed(apiserver: FakeApiServer,
                                                                       kubeconfig_file: Path) -> None:
    apiserver.fail("PATCH", "/deployments/iris$", 409, "Conflict",
                   'Operation cannot be fulfilled on deployments.apps "iris": the object has been modified')
    result = deploy(kubeconfig_file, V1)
    assert result.exit_code == 1
    assert "Conflict" in result.stderr and "run the command again" in result.stderr
    assert apiserver.names() == []


def test_forbidden_on_the_second_object_undoes_the_first(apiserver: FakeApiServer, kubeconfig_file: Path) -> None:
    apiserver.fail("PATCH", "/services/iris$", 403, "Forbidden",
                   'services "iris" is forbidden: User "ci" cannot patch resource "services" in the namespace "ml"')
    result = deploy(kubeconfig_file, V1)
    assert result.exit_code == 1
    assert 'cannot patch resource "services"' in result.stderr and "RBAC" in result.stderr
    assert changes(apiserver) == [f"PATCH {DEPLOYMENTS}/iris", f"PATCH {SERVICES}/iris", f"DELETE {DEPLOYMENTS}/iris"]
    assert apiserver.names() == []


def test_forbidden_while_planning_changes_nothing(apiserver: FakeApiServer, kubeconfig_file: Path) -> None:
    apiserver.fail("GET", "/deployments/iris$", 403, "Forbidden",
                   'deployments.apps "iris" is forbidden: User "ci" cannot get resource "deployments"')
    result = deploy(kubeconfig_file, V1)
    assert result.exit_code == 1
    assert "cannot get resource" in result.stderr and "kubectl auth can-i" in result.stderr
    assert apiserver.changes() == []


def test_a_missing_namespace_is_named(apiserver: FakeApiServer, kubeconfig_file: Path) -> None:
    result = deploy(kubeconfig_file, V1, "--namespace", "nope")
    assert result.exit_code == 1
    assert 'namespaces "nope" not found' in result.stderr and "--namespace" in result.stderr
    assert apiserver.names() == []


def test_refused_credentials_say_so(apiserver: FakeApiServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text(yaml.safe_dump(kubeconfig(apiserver.url, token="expired")))  # type: ignore[attr-defined]
    result = deploy(bad, V1)
    assert result.exit_code == 1
    assert "HTTP 401" in result.stderr and "credentials were refused" in result.stderr


# ---------------------------------------------------------------------------- connection errors
def test_an_unreachable_api_server_fails_fast_and_names_it(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig(f"http://127.0.0.1:{port}")))
    started = time.monotonic()
    result = deploy(path, V1)
    assert time.monotonic() - started < 15
    assert result.exit_code == 1
    assert f"cannot reach the Kubernetes API server at http://127.0.0.1:{port}" in result.stderr
    assert "context fake" in result.stderr and "Traceback" not in result.output


def test_a_kubeconfig_without_the_context_is_a_usage_error(apiserver: FakeApiServer, kubeconfig_file: Path) -> None:
    result = deploy(kubeconfig_file, V1, "--context", "prod")
    assert result.exit_code == 2
    assert "prod" in result.stderr and "kubectl config get-contexts" in result.stderr
    assert apiserver.requests == []
    other = deploy(kubeconfig_file, V1, "--context", "other")  # no namespace in that context
    assert other.exit_code == 0, other.output
    assert json.loads(other.stdout)["details"]["namespace"] == "default"


def test_a_missing_kubeconfig_file_is_a_usage_error(tmp_path: Path) -> None:
    result = deploy(tmp_path / "absent", V1)
    assert result.exit_code == 2
    assert "absent" in result.stderr


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("args", "words"), [
    (("--name", "Iris_Model"), ("not a valid Kubernetes name", "RFC 1123")),
    (("--name", "a" * 64), ("not a valid Kubernetes name",)),
    (("--namespace", "-ml"), ("namespace '-ml'",)),
    (("--cpu", "two"), ("--cpu 'two' is not a Kubernetes quantity",)),
    (("--memory", "500m"), ("--memory '500m' is not a Kubernetes quantity",)),
    (("--cpu", "2", "--cpu-limit", "1"), ("below --cpu",)),
    (("--autoscale", "5:2:70", "--cpu", "1"), ("MIN <= MAX",)),
    (("--autoscale", "1:5:70"), ("needs a CPU request",)),
    (("--env", "1BAD=x"), ("not KEY=VALUE",)),
    (("--replicas", "-1"), ("--replicas -1 is out of range",)),
    (("--image-pull-secret", "Bad Secret"), ("image pull secret",)),
])
def test_bad_input_is_refused_before_any_call(apiserver: FakeApiServer, kubeconfig_file: Path,
                                              args: tuple[str, ...], words: tuple[str, ...]) -> None:
    name = () if "--name" in args else ("--name", "iris")
    result = deployer(kubeconfig_file, "deploy", "--target", "kubernetes", *name, "--image-uri", V1, *args)
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.stderr
    assert apiserver.changes() == []


def test_m_without_registry_and_registry_without_m_are_usage_errors(apiserver: FakeApiServer,
                                                                   kubeconfig_file: Path, tmp_path: Path) -> None:
    result = deployer(kubeconfig_file, "deploy", "--target", "kubernetes", "--name", "iris", "-m", str(tmp_path))
    assert result.exit_code == 2 and "--registry" in result.stderr
    result = deployer(kubeconfig_file, "deploy", "--target", "kubernetes", "--name", "iris", "--image-uri", V1,
                      "--registry", "registry.example.com")
    assert result.exit_code == 2 and "--registry is for -m" in result.stderr


# ---------------------------------------------------------------------------- other commands
def test_status_list_delete(apiserver: FakeApiServer, kubeconfig_file: Path) -> None:
    assert deploy(kubeconfig_file, V1, "--autoscale", "1:3:70", "--cpu", "1").exit_code == 0
    assert deploy(kubeconfig_file, V2, name="other").exit_code == 0
    status = json.loads(deployer(kubeconfig_file, "status", "--target", "kubernetes", "--name", "iris",
                                 "--output", "json").stdout)
    assert status["status"] == "Ready" and status["details"]["image"] == V1
    listed = json.loads(deployer(kubeconfig_file, "list", "--target", "kubernetes", "--output", "json").stdout)
    assert sorted(e["name"] for e in listed["endpoints"]) == ["iris", "other"]
    dry = deployer(kubeconfig_file, "delete", "--target", "kubernetes", "--name", "iris", "--dry-run",
                   "--output", "json")
    assert [c["params"]["kind"] for c in json.loads(dry.stdout)["plan"]["calls"]] == [
        "Deployment", "HorizontalPodAutoscaler", "Service"]
    n = len(apiserver.changes())
    deleted = deployer(kubeconfig_file, "delete", "--target", "kubernetes", "--name", "iris", "--output", "json")
    assert deleted.exit_code == 0, deleted.output
    assert changes(apiserver)[n:] == [f"DELETE {DEPLOYMENTS}/iris", f"DELETE {HPAS}/iris", f"DELETE {SERVICES}/iris"]
    assert apiserver.changes()[n].body["propagationPolicy"] == "Foreground"
    assert apiserver.names("ml") == ["Deployment/other", "Service/other"]
    again = deployer(kubeconfig_file, "delete", "--target", "kubernetes", "--name", "iris", "--output", "json")
    assert json.loads(again.stdout)["status"] == "NotFound"
    missing = deployer(kubeconfig_file, "status", "--target", "kubernetes", "--name", "iris")
    assert missing.exit_code == 1 and "does not exist" in missing.stderr


def test_predict_goes_through_the_api_servers_service_proxy(apiserver: FakeApiServer, kubeconfig_file: Path,
                                                            scoring_server: str, tmp_path: Path) -> None:
    assert deploy(kubeconfig_file, V1).exit_code == 0
    body = tmp_path / "input.json"
    body.write_text(json.dumps({"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
                                                    "data": [[5.1, 3.5, 1.4, 0.2]]}}))
    no_pod = deployer(kubeconfig_file, "predict", "--target", "kubernetes", "--name", "iris", "-i", str(body))
    assert no_pod.exit_code == 1 and "no pod is ready" in no_pod.stderr
    apiserver.backends[("ml", "iris")] = scoring_server
    result = deployer(kubeconfig_file, "predict", "--target", "kubernetes", "--name", "iris", "-i", str(body),
                      "--output", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"predictions": [0]}
    proxied = [r for r in apiserver.requests if "/proxy/" in r.path]
    assert proxied[-1].path == f"{SERVICES}/iris:http/proxy/invocations"


def test_the_token_never_reaches_the_output_or_the_logs(apiserver: FakeApiServer, kubeconfig_file: Path) -> None:
    from tests.targets.kubernetes.fake_apiserver import TOKEN

    apiserver.images[V2] = "crash"
    outputs = [deploy(kubeconfig_file, V1, "-vv"), deploy(kubeconfig_file, V2, "-vv"),
               deploy(kubeconfig_file, V2, "--dry-run", "-vv"),
               deployer(kubeconfig_file, "status", "--target", "kubernetes", "--name", "iris", "-vv")]
    assert [r.exit_code for r in outputs] == [0, 1, 0, 0]
    for result in outputs:
        assert TOKEN not in result.output and TOKEN not in result.stderr


def test_a_rollback_under_an_autoscaler_leaves_the_replica_count_to_it(apiserver: FakeApiServer,
                                                                      kubeconfig_file: Path) -> None:
    args = ("--cpu", "1", "--autoscale", "2:6:60")
    assert deploy(kubeconfig_file, V1, *args).exit_code == 0
    dep = apiserver.get("Deployment", "ml", "iris")
    assert dep is not None
    dep["spec"]["replicas"] = 4  # what the HPA set through the scale subresource
    apiserver.images[V2] = "crash"
    assert deploy(kubeconfig_file, V2, *args).exit_code == 1
    restored = [r.body for r in apiserver.changes() if r.method == "PATCH" and r.path.endswith("/deployments/iris")][-1]
    assert restored["spec"]["template"]["spec"]["containers"][0]["image"] == V1
    assert "replicas" not in restored["spec"]
