"""The Kubernetes pod template, for real: deployer's image run exactly as the template says.

No cluster can run here, so tests/targets/kubernetes/kubelet.py runs the rendered Deployment's
container with Docker as the kubelet would (user, read-only root, the /tmp emptyDir, dropped
capabilities, CPU and memory limits, env and the Services' variables, args, grace period) and
probes it as the kubelet does. What these tests prove, on real images built by the real CLI:

* the startup, readiness (the V2 model-ready route) and liveness probes of the template pass,
  and the pod answers V2 inference with the same predictions as MLflow's ``/invocations``;
* the server runs as uid/gid 1000 with no capability and no privilege escalation, cannot write
  its root filesystem, writes /tmp, and runs the 2 workers the 2-CPU limit asks for;
* the template names the image by digest, and that digest is what the node pulls and runs;
* a model that fails to load never becomes Ready: the startup probe fails within its budget;
* deleting the pod (SIGTERM, then the grace period) lets an in-flight request finish;
* KServe's ServingRuntime container (Knative's variant of the template) serves as well;
* the Services' variables the kubelet injects do not break the server (``enableServiceLinks: false``).
"""

from __future__ import annotations

import base64
import copy
import importlib
import json
import os
import re
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import docker
from deployer.targets.kubernetes import manifests
from deployer.targets.kubernetes.spec import parse_spec
from tests.building.conftest import BuiltImage, build_with_cli
from tests.fixtures.models import _requirements_of
from tests.targets.kubernetes.kubelet import live, probe, ready, run_pod, wait_ready, wait_started

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MODEL_NAME = "iris"
OPTIONS = {"cpu": "1", "cpu_limit": "2", "memory": "1Gi", "env": ("EXTRA=1",)}
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]  # one of each class
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Run inside the container: every process of deployer's server, as /proc sees it.
PROCESSES = textwrap.dedent(r"""
    import json, os
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")
            status = dict(l.split(":\t", 1) for l in open(f"/proc/{pid}/status").read().splitlines() if ":\t" in l)
            env = dict(e.split("=", 1) for e in open(f"/proc/{pid}/environ", "rb").read().decode().split("\0") if "=" in e)
        except OSError:
            continue
        if "deployer.serving" in cmd:
            out.append({"pid": int(pid), "ppid": int(status["PPid"]), "uid": status["Uid"].split(),
                        "gid": status["Gid"].split(), "groups": status["Groups"].split(),
                        "cap_eff": status["CapEff"], "cap_bnd": status["CapBnd"], "no_new_privs": status["NoNewPrivs"], "env": env})
    print(json.dumps(out))
""")

SLOW_MODEL_CODE = textwrap.dedent('''
    """A model whose predict sleeps: a request that is still in flight when the pod stops."""
    import time

    import mlflow.pyfunc


    class Sleeps(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            seconds = float(model_input["seconds"].iloc[0])
            print(f"sleeping {seconds} s", flush=True)
            time.sleep(seconds)
            return model_input
''')


# ---------------------------------------------------------------------------- helpers
def rendered(image: str, name: str = "iris") -> tuple[dict[str, Any], dict[str, Any]]:
    """``spec.template.spec`` of the Deployment deployer renders for ``image``, and its Service."""
    spec = parse_spec(name, OPTIONS, namespace="default", model_name=MODEL_NAME, timeout=None, wait=True)
    deployment, service = manifests.kubernetes_objects(spec, image, "fp")
    return deployment["spec"]["template"]["spec"], service


def pod_template(image: str) -> dict[str, Any]:
    return rendered(image)[0]


def post(url: str, body: dict[str, Any], timeout: float = 60) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def get_status(url: str) -> int:
    try:
        with _OPENER.open(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def server_processes(pod: Any) -> list[dict[str, Any]]:
    code, output = pod.exec(["python", "-c", PROCESSES])
    assert code == 0, output
    return list(json.loads(output))


def _forget(client: Any, *refs: str) -> None:
    """Remove these references from the engine (the image stays under its other tags)."""
    for ref in refs:
        try:
            client.images.remove(ref)
        except docker.errors.ImageNotFound:  # untagging the last tag of a repo drops its digests
            pass


def started_and_ready(pod: Any) -> None:
    started = wait_started(pod)
    assert started.succeeded, f"startup probe failed: {started}\n{pod.logs()}"
    readiness = wait_ready(pod, timeout=60)
    assert readiness.succeeded, f"never Ready: {readiness}\n{pod.logs()}"


# ---------------------------------------------------------------------------- images
@pytest.fixture(scope="module")
def build_env(docker_env: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The CLI's environment: the engine's (docker_env exported it), a module build cache."""
    return {**os.environ, "DEPLOYER_BUILD_CACHE": str(tmp_path_factory.mktemp("k8s-build-cache"))}


def _built(docker_client: Any, model: Path, tag: str, base_image: str, env: dict[str, str],
           *extra: str) -> Iterator[BuiltImage]:
    image = build_with_cli(model, tag, base_image, env, *extra)
    yield image
    docker_client.images.remove(image.tag, force=True)


@pytest.fixture(scope="module")
def iris_image(docker_client: Any, base_image: str, sklearn_model: Path,
               build_env: dict[str, str]) -> Iterator[BuiltImage]:
    """The sklearn iris model, built for target local (verified: it scored before tagging)."""
    yield from _built(docker_client, sklearn_model, "deployer-test/k8s-iris:1", base_image, build_env)


@pytest.fixture(scope="module")
def load_fails_image(docker_client: Any, base_image: str, load_context_fails_model: Path,
                     build_env: dict[str, str]) -> Iterator[BuiltImage]:
    """A model whose load_context raises (--no-verify: verification would refuse to tag it)."""
    yield from _built(docker_client, load_context_fails_model, "deployer-test/k8s-load-fails:1",
                      base_image, build_env, "--no-verify")


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory, custom_pyfunc_model: Path) -> Path:
    """A pyfunc that sleeps ``seconds`` (its input) in predict; the custom pyfunc's requirements,
    so its image reuses that environment image."""
    import mlflow.pyfunc
    import pandas as pd

    root = tmp_path_factory.mktemp("k8s-slow")
    code = root / "k8s_slow_model.py"
    code.write_text(SLOW_MODEL_CODE)
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module("k8s_slow_model")
    finally:
        sys.path.remove(str(root))
    path = root / "slow"
    mlflow.pyfunc.save_model(str(path), python_model=module.Sleeps(), code_paths=[str(code)],
                             pip_requirements=_requirements_of(custom_pyfunc_model),
                             input_example=pd.DataFrame({"seconds": [0.0]}))
    return path


@pytest.fixture(scope="module")
def slow_image(docker_client: Any, base_image: str, slow_model: Path,
               build_env: dict[str, str]) -> Iterator[BuiltImage]:
    yield from _built(docker_client, slow_model, "deployer-test/k8s-slow:1", base_image, build_env)


# ---------------------------------------------------------------------------- the pod
def test_the_pod_template_serves_the_model_as_the_kubelet_runs_it(docker_client: Any, iris_image: BuiltImage,
                                                                  sklearn_model: Path) -> None:
    import mlflow.pyfunc
    import pandas as pd

    pod_spec, service = rendered(iris_image.tag)
    main = pod_spec["containers"][0]
    assert main["image"] == iris_image.tag  # what the template names is what runs
    with run_pod(docker_client, pod_spec, name="iris", services=[service]) as pod:
        assert pod.container.attrs["Config"]["Image"] == iris_image.tag
        started_and_ready(pod)
        assert main["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{MODEL_NAME}/ready"
        assert probe(pod, main["readinessProbe"]) and ready(pod)
        assert main["livenessProbe"]["httpGet"]["path"] == "/ping" and live(pod)
        # the model name of the template reached the server: another name is not served
        assert get_status(f"{pod.url()}/v2/models/model/ready") == 404

        # V2 inference == MLflow's /invocations == the model loaded here
        v2_body = {"inputs": [{"name": c, "shape": [len(IRIS_ROWS)], "datatype": "FP64",
                               "data": [row[i] for row in IRIS_ROWS]} for i, c in enumerate(IRIS_COLUMNS)]}
        status, v2 = post(f"{pod.url()}/v2/models/{MODEL_NAME}/infer", v2_body)
        assert status == 200, v2
        assert v2["model_name"] == MODEL_NAME and len(v2["outputs"]) == 1, v2
        status, mlflow_answer = post(f"{pod.url()}/invocations",
                                     {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}})
        assert status == 200, mlflow_answer
        local = mlflow.pyfunc.load_model(str(sklearn_model)).predict(pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS))
        assert v2["outputs"][0]["data"] == mlflow_answer["predictions"] == [int(x) for x in local] == [0, 1, 2]

        # the server's processes: uid/gid 1000 (+ the fsGroup), no capabilities, no privilege
        # escalation, the template's environment, and the 2 workers of the 2-CPU limit
        processes = server_processes(pod)
        pids = {p["pid"] for p in processes}
        supervisors = [p for p in processes if p["ppid"] not in pids]
        assert len(supervisors) == 1, processes
        workers = [p for p in processes if p["ppid"] == supervisors[0]["pid"]]
        assert len(workers) == 2, processes
        for p in processes:
            assert p["uid"] == ["1000"] * 4 and p["gid"] == ["1000"] * 4, p
            assert "1000" in p["groups"], p
            # none held, none to gain (the bounding set is empty: capabilities drop ALL)
            assert int(p["cap_eff"], 16) == int(p["cap_bnd"], 16) == 0 and p["no_new_privs"] == "1", p
        env = supervisors[0]["env"]
        assert env["DEPLOYER_SERVE_WORKERS"] == "2" and env["EXTRA"] == "1", env
        assert env["HOME"] == env["TMPDIR"] == "/tmp" and env["DEPLOYER_SERVE_MODEL_NAME"] == MODEL_NAME, env
        # the Services' variables, as in a cluster: the API server's always, its own Service's
        # unless the template turns service links off
        assert env["KUBERNETES_SERVICE_HOST"] and env.get("IRIS_SERVICE_PORT") == (
            None if pod_spec.get("enableServiceLinks") is False else "80"), env
        assert "(2 workers," in pod.logs(tail="all")
        # the engine's view from outside the container agrees: every process runs as 1000
        top = pod.container.top(ps_args="-o pid,uid,gid,args")
        assert {(row[1], row[2]) for row in top["Processes"]} == {("1000", "1000")}, top

        # read-only root filesystem; /tmp (the emptyDir) writable
        code, output = pod.exec(["sh", "-c", "touch /probe-file"])
        assert code != 0 and "Read-only file system" in output, output
        code, output = pod.exec(["sh", "-c", "touch /opt/ml/model/probe-file"])
        assert code != 0, output
        code, output = pod.exec(["sh", "-c", "echo x > /tmp/probe-file && cat /tmp/probe-file"])
        assert (code, output.strip()) == (0, "x"), output

        # the limits are the template's: 2 CPUs of quota, 1 GiB
        host = pod.container.attrs["HostConfig"]
        assert (host["NanoCpus"], host["Memory"], host["ReadonlyRootfs"]) == (2 * 10**9, 2**30, True)


def test_the_template_names_the_image_by_digest_and_the_node_runs_that_digest(
        docker_client: Any, iris_image: BuiltImage, registry: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Pushed to a registry, the image's tag resolves to ``repo@sha256:...`` (what ``deployer
    deploy --image-uri TAG`` puts in the template); with the local copies of both references
    gone, the kubelet pulls that digest (with the pull secret's login) and runs those bytes."""
    from deployer.registries.credentials import Credentials
    from deployer.registries.push import push_image
    from deployer.targets.kubernetes.target import resolve_digest

    login = Credentials(registry.username, registry.password, registry.host, "test")
    tag_ref = f"{registry.host}/k8s/iris:1"
    pushed = push_image(iris_image.tag, tag_ref, credentials=login, client=docker_client)
    assert pushed.digest and pushed.digest.startswith("sha256:")
    # the login a user's `docker login` leaves, for resolve_digest (it resolves as a push would)
    config = tmp_path / "docker-config"
    config.mkdir()
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    image = resolve_digest(tag_ref)
    assert image == f"{registry.host}/k8s/iris@{pushed.digest}"
    assert re.search(r"@sha256:[0-9a-f]{64}$", image)
    assert resolve_digest(image) == image  # a digest stays as given

    pod_spec = pod_template(image)
    assert pod_spec["containers"][0]["image"] == image
    local_id = docker_client.images.get(iris_image.tag).id
    _forget(docker_client, tag_ref, image)  # the node has neither reference: it must pull
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(image)
    before = len(registry.requests())
    try:
        with run_pod(docker_client, pod_spec, name="iris-digest", auth_config=registry.auth_config) as pod:
            # The engine went to this registry for the pull. It GETs the manifest by digest unless
            # it has that manifest in its local content store already (Docker >= 20.10 caches
            # manifests it pulled, so in a full run, where another test pulled the same bytes by
            # digest, only its /v2/ login check reaches the registry).
            seen = registry.wait_for_request(before, lambda r: r.user_agent.startswith("docker/"))
            assert any(r.user_agent.startswith("docker/") for r in seen), seen
            manifest = f"/v2/k8s/iris/manifests/{pushed.digest}"
            assert all(r.status == 200 for r in seen if r.path == manifest), seen
            assert docker_client.images.get(image).id == local_id  # the digest is on the node now
            assert pod.container.attrs["Config"]["Image"] == image
            assert pod.container.attrs["Image"] == local_id  # the bytes built, pushed and pulled
            started_and_ready(pod)
    finally:
        _forget(docker_client, tag_ref, image)


def test_a_model_that_fails_to_load_never_becomes_ready(docker_client: Any, load_fails_image: BuiltImage) -> None:
    pod_spec = pod_template(load_fails_image.tag)
    startup = pod_spec["containers"][0]["startupProbe"]
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 600  # the template: 10 min
    # This copy of the template allows 15 x 2 s instead of 300 x 2 s, to keep the test short:
    # a load that fails must fail the startup probe whatever its budget.
    startup["failureThreshold"] = 15
    budget = startup["failureThreshold"] * startup["periodSeconds"]
    with run_pod(docker_client, pod_spec, name="load-fails") as pod:
        started = wait_started(pod)
        logs = pod.logs(tail="all")
        assert not started.succeeded, logs
        # within the budget (each attempt may also take its timeout)
        assert started.seconds <= budget + startup["failureThreshold"] * startup["timeoutSeconds"], started
        # never Ready: the server exited (the kubelet would restart it: CrashLoopBackOff) or
        # stays up unready
        assert not ready(pod)
        assert not wait_ready(pod, timeout=10).succeeded
        if started.exit_code is not None:
            assert started.exit_code != 0, logs
        assert "load_context failure on purpose" in logs, logs


def test_deleting_the_pod_lets_an_in_flight_request_finish(docker_client: Any, slow_image: BuiltImage) -> None:
    pod_spec = pod_template(slow_image.tag)
    grace = pod_spec["terminationGracePeriodSeconds"]
    with run_pod(docker_client, pod_spec, name="slow") as pod:
        assert pod.grace_period == grace == 40
        started_and_ready(pod)
        body = {"dataframe_split": {"columns": ["seconds"], "data": [[6.0]]}}
        with ThreadPoolExecutor(2) as pool:
            answer = pool.submit(post, f"{pod.url()}/invocations", body)
            deadline = time.monotonic() + 30
            while "sleeping 6.0 s" not in pod.logs(tail="all"):  # the request is in the model
                assert time.monotonic() < deadline and not answer.done(), pod.logs()
                time.sleep(0.1)
            stopping = pool.submit(pod.stop)
            status, got = answer.result(timeout=60)
            stopped = stopping.result(timeout=grace + 10)
        assert status == 200 and got == {"predictions": [{"seconds": 6.0}]}, got
        assert stopped.exit_code in (0, 143), (stopped, pod.logs())  # 137: killed at the grace period
        assert stopped.seconds < grace, stopped
        assert "stopping workers gracefully" in pod.logs(tail="all")


def test_the_kserve_runtime_container_serves_without_a_pod_security_context(docker_client: Any,
                                                                            iris_image: BuiltImage) -> None:
    """KServe's ServingRuntime container (Knative's variant: no startup probe, no runAsGroup,
    no pod-level securityContext or grace period): still non-root, read-only and Ready on the
    V2 route. Knative gives the container PORT (the container port) and a 300 s grace period."""
    spec = parse_spec("iris", OPTIONS, namespace="default", model_name=MODEL_NAME, timeout=None, wait=True)
    runtime = manifests.serving_runtime(spec, iris_image.tag)["spec"]
    main = runtime["containers"][0]
    assert "startupProbe" not in main and "runAsGroup" not in main["securityContext"]
    main["env"].append({"name": "PORT", "value": "8080"})  # what Knative injects
    pod_spec = {"containers": [main], "volumes": runtime["volumes"], "terminationGracePeriodSeconds": 300}
    with run_pod(docker_client, pod_spec, name="kserve") as pod:
        readiness = wait_ready(pod, timeout=120)
        assert readiness.succeeded, f"never Ready: {readiness}\n{pod.logs()}"
        status, v2 = post(f"{pod.url()}/v2/models/{MODEL_NAME}/infer",
                          {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [IRIS_ROWS[2][i]]}
                                      for i, c in enumerate(IRIS_COLUMNS)]})
        assert status == 200 and v2["outputs"][0]["data"] == [2], v2
        for p in server_processes(pod):  # the image's group (1000) without runAsGroup
            assert p["uid"] == ["1000"] * 4 and p["gid"] == ["1000"] * 4, p
        code, output = pod.exec(["sh", "-c", "touch /probe-file"])
        assert code != 0 and "Read-only file system" in output, output


def test_an_endpoint_named_deployer_serve_starts_next_to_its_own_service(docker_client: Any,
                                                                         iris_image: BuiltImage) -> None:
    pod_spec, service = rendered(iris_image.tag, name="deployer-serve")
    assert service["metadata"]["name"] == "deployer-serve"
    with run_pod(docker_client, pod_spec, name="deployer-serve", services=[service]) as pod:
        started = wait_started(pod)
        assert started.succeeded, f"startup probe failed: {started}\n{pod.logs()}"


def test_the_kubelet_refuses_a_root_user_and_honours_command_semantics(docker_client: Any,
                                                                       iris_image: BuiltImage) -> None:
    """The helper itself: runAsNonRoot with uid 0 is refused before starting (as the kubelet
    does), ``command`` replaces the ENTRYPOINT and ``args`` follow it."""
    from tests.targets.kubernetes.kubelet import PodError

    pod_spec = pod_template(iris_image.tag)
    root = copy.deepcopy(pod_spec)
    root["containers"][0]["securityContext"]["runAsUser"] = 0
    with pytest.raises(PodError, match="non-root"):
        with run_pod(docker_client, root, name="root"):
            pass
    echo = copy.deepcopy(pod_spec)
    echo["containers"][0]["command"] = ["sh", "-c"]
    echo["containers"][0]["args"] = ['echo "$(id -u):$(id -g) $HOME $EXTRA"; touch /x || echo read-only']
    with run_pod(docker_client, echo, name="echo") as pod:
        deadline = time.monotonic() + 30
        while pod.exit_code() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pod.exit_code() == 0
        assert pod.logs().splitlines()[0] == "1000:1000 /tmp 1"
        assert "read-only" in pod.logs()
