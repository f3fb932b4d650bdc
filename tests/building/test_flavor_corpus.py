"""Every model users bring: real models of each flavor build, verify and serve MLflow's answer.

The corpus (XGBoost, LightGBM, CatBoost, statsmodels, ONNX, Keras on TensorFlow, PyTorch, a
models-from-code pyfunc) is saved by real MLflow 3.17 in the flavors venv (``.venv-flavors``,
made by scripts/test.sh; see tests/building/save_flavor_corpus.py), which also records MLflow's
own answer to each model's serving input example. scikit-learn and custom pyfuncs are covered
by the other image tests.

Each image is built with default options on the plain Debian base (verification included: the
image ran offline with 2 workers before it was tagged), then served with 3 workers, and its
answer must be MLflow's. The plan's decisions are checked on the real image: the load mode in
its environment, the OS packages in its labels, the duplicate builds gone from its lock, no
unresolved shared library left. Four of them (TensorFlow among them) also run as deployer's
Kubernetes pod template: non-root, read-only root filesystem, only /tmp writable.

``DEPLOYER_FLAVOR_REPORT=FILE`` appends one JSON line per flavor (image size over the base,
cold start): the table in the README comes from it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from deployer.targets.kubernetes.manifests import deployment as kube_deployment
from deployer.targets.kubernetes.spec import parse_spec
from tests.building.conftest import BuiltImage, build_with_cli
from tests.fixtures.infra import REPO_ROOT
from tests.targets.kubernetes import kubelet

pytestmark = [pytest.mark.docker, pytest.mark.slow]

#: flavor -> (load mode baked in the image, OS packages added, distribution dropped as a duplicate)
CORPUS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "xgboost": ("per-worker", (), "xgboost"),
    "lightgbm": ("per-worker", ("libgomp1",), None),
    "catboost": ("preload", (), None),
    "statsmodels": ("preload", (), None),
    "onnx": ("preload", (), None),
    "keras": ("per-worker", (), "tensorflow"),
    "pytorch": ("per-worker", (), None),
    "from_code": ("auto", (), None),  # a custom pyfunc: the server decides and checks after loading
}
SAVED = (*CORPUS, "lightgbm_sklearn")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def flavors_python() -> Path:
    """The flavors venv's interpreter (TensorFlow, PyTorch... and deployer[serve])."""
    path = Path(os.environ.get("DEPLOYER_FLAVORS_PYTHON") or REPO_ROOT / ".venv-flavors" / "bin" / "python")
    if not path.is_file():
        pytest.fail(f"no flavors venv at {path}: run ./scripts/test.sh, which creates it from "
                    "tests/fixtures/flavor-requirements.txt", pytrace=False)
    return path


@pytest.fixture(scope="session")
def corpus(flavors_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("flavor-corpus")
    script = Path(__file__).with_name("save_flavor_corpus.py")
    proc = subprocess.run([str(flavors_python), str(script), str(out), *SAVED], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def expected(corpus: Path, flavor: str) -> dict[str, Any]:
    return json.loads((corpus / f"{flavor}.expected.json").read_text())


class Images:
    """Corpus images, built on first use by the real CLI (default options), removed at the end."""

    def __init__(self, corpus: Path, base_image: str, env: dict[str, str]) -> None:
        self.corpus, self.base_image, self.env = corpus, base_image, env
        self.built: dict[tuple[str, tuple[str, ...]], BuiltImage] = {}

    def get(self, flavor: str, *extra: str) -> BuiltImage:
        key = (flavor, extra)
        if key not in self.built:
            tag = f"deployer-test/corpus-{flavor.replace('_', '-')}:{len(self.built)}"
            self.built[key] = build_with_cli(self.corpus / flavor, tag, self.base_image, self.env, *extra)
        return self.built[key]


@pytest.fixture(scope="module")
def images(docker_client, corpus: Path, base_image: str, build_cache: Path) -> Iterator[Images]:  # type: ignore[no-untyped-def]
    made = Images(corpus, base_image, {**os.environ, "DEPLOYER_BUILD_CACHE": str(build_cache)})
    yield made
    for image in made.built.values():
        docker_client.images.remove(image.tag, force=True)


# ---------------------------------------------------------------------------- helpers
def close(got: Any, want: Any, path: str = "") -> None:
    """Equal JSON, floats within float32 rounding."""
    if isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6), \
            f"{path}: {got!r} != {want!r}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{path}: keys {got!r} != {want!r}"
        for key in want:
            close(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            close(g, w, f"{path}[{i}]")
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def post(url: str, body: bytes, timeout: float = 120) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_ready(url: str, container: Any, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with _OPENER.open(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.3)
    raise AssertionError(f"{url} never became ready:\n{container.logs(tail=60).decode(errors='replace')}")


def run_image(client: Any, tag: str, env: dict[str, str]) -> tuple[Any, str]:
    container = client.containers.run(tag, ["serve"], detach=True, environment=env,
                                      ports={"8080/tcp": ("127.0.0.1", None)})
    container.reload()
    port = container.ports["8080/tcp"][0]["HostPort"]
    return container, f"http://127.0.0.1:{port}"


def image_env(client: Any, tag: str) -> dict[str, str]:
    return dict(e.split("=", 1) for e in client.images.get(tag).attrs["Config"]["Env"])


def in_image(client: Any, tag: str, script: str) -> str:
    return client.containers.run(tag, ["-c", script], entrypoint=["/bin/sh"], remove=True,
                                 network_mode="none").decode(errors="replace")


# ---------------------------------------------------------------------------- the corpus
@pytest.mark.parametrize("flavor", list(CORPUS))
def test_flavor_builds_verifies_and_serves_mlflows_answer(flavor: str, images: Images, corpus: Path,
                                                          docker_client, base_image: str) -> None:  # type: ignore[no-untyped-def]
    load_mode, os_packages, dropped = CORPUS[flavor]
    image = images.get(flavor)
    labels = docker_client.images.get(image.tag).attrs["Config"]["Labels"]
    assert labels["io.deployer.verify.status"] == "passed"  # it scored offline with 2 workers
    assert image.result["verification"]["status"] == "passed"
    assert image_env(docker_client, image.tag).get("DEPLOYER_SERVE_LOAD_MODE", "auto") == load_mode
    assert tuple(filter(None, labels.get("io.deployer.os-packages", "").split(","))) == os_packages
    lock = in_image(docker_client, image.tag, f"cat {labels['io.deployer.lock.path']}")
    pinned = {line.split("==")[0] for line in lock.splitlines() if "==" in line and not line.startswith("#")}
    if dropped:
        assert dropped not in pinned, f"{dropped} is still in the lock"
        assert f"'{dropped}==" in image.output  # the warning said so
    assert not any(name.startswith("nvidia-") for name in pinned), "a CUDA build got in"
    # every shared library resolves (vendored ones, named with a hash, load through their RPATH)
    unresolved = in_image(docker_client, image.tag, (
        "find /opt/venv -name '*.so*' -type f | while read f; do ldd \"$f\" 2>/dev/null | "
        "grep 'not found' | grep -Ev -- '-[0-9a-f]{8}\\.so' ; done | sort -u"))
    assert unresolved.strip() == "", unresolved

    want = expected(corpus, flavor)
    assert want["status"] == 200
    body = (corpus / flavor / "serving_input_example.json").read_bytes()
    container, url = run_image(docker_client, image.tag, {"DEPLOYER_SERVE_WORKERS": "3"})
    try:
        wait_ready(f"{url}/ping", container)
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: post(f"{url}/invocations", body), range(12)))
        for status, got in answers:
            assert status == 200, got
            close(got, want["body"])
        logs = container.logs().decode(errors="replace")
        assert "3 workers" in logs
        if load_mode == "per-worker":
            # each worker loads its own copy; the first one loaded serves while the others
            # still load (they take the socket's connections once loaded), so wait for all 3
            deadline = time.monotonic() + 180
            while logs.count("loaded in") < 3 and time.monotonic() < deadline:
                time.sleep(1)
                logs = container.logs().decode(errors="replace")
            assert logs.count("loaded in") == 3, logs[-3000:]
    finally:
        container.remove(force=True)
    report = os.environ.get("DEPLOYER_FLAVOR_REPORT")
    if report:
        base = docker_client.images.get(base_image).attrs["Size"]
        row = {"flavor": flavor, "load_mode": load_mode, "os_packages": list(os_packages),
               "size_over_base": docker_client.images.get(image.tag).attrs["Size"] - base,
               "cold_start": image.result["verification"]["cold_start"],
               "dropped": dropped}
        with open(report, "a") as fh:
            fh.write(json.dumps(row) + "\n")


def test_a_tensorflow_image_with_4_workers_answers_concurrent_requests(images: Images, corpus: Path,
                                                                       docker_client) -> None:  # type: ignore[no-untyped-def]
    image = images.get("keras")
    want = expected(corpus, "keras")["body"]
    body = (corpus / "keras" / "serving_input_example.json").read_bytes()
    container, url = run_image(docker_client, image.tag, {"DEPLOYER_SERVE_WORKERS": "4",
                                                           "DEPLOYER_SERVE_TIMEOUT": "30"})
    try:
        wait_ready(f"{url}/ping", container)
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: post(f"{url}/invocations", body, timeout=60), range(64)))
        assert [status for status, _ in answers] == [200] * 64, answers[:3]
        for _, got in answers:
            close(got, want)
        logs = container.logs().decode(errors="replace")
        assert logs.count("loaded in") == 4 and "4 workers" in logs
    finally:
        container.remove(force=True)


def test_verification_forks_2_workers_even_on_one_cpu(images: Images, corpus: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    """On a 1-CPU machine a server would default to one worker and never fork: verification
    asks for 2 anyway. Proof: the TF model passes per-worker on one CPU, and the same model
    forced to preload (which only hangs when forked) fails as a hang."""
    from deployer.building.execute import build_model_image
    from deployer.building.plan import BuildOptions, plan_build
    from deployer.building.verify import verify_image
    from deployer.errors import BuildError
    from deployer.intake import load_model

    model = str(corpus / "keras")
    image = images.get("keras")
    plan = plan_build(load_model(model), BuildOptions(base_image=images.base_image))
    assert plan.verify is not None and plan.verify.workers == 2
    result = verify_image(docker_client, image.tag, plan, cpuset_cpus="0")
    assert result.status == "passed"

    options = BuildOptions(base_image=images.base_image, verify=False, tag="deployer-test/corpus-keras-preload:1",
                           env=(("DEPLOYER_SERVE_LOAD_MODE", "preload"), ("DEPLOYER_SERVE_TIMEOUT", "8")))
    forced, built = build_model_image(model, options)
    try:
        verifying = plan_build(load_model(model), replace(options, verify=True))
        assert verifying.verify is not None and verifying.verify.load_mode == "preload"
        with pytest.raises(BuildError) as info:
            verify_image(docker_client, built.image, verifying, cpuset_cpus="0")
        message = info.value.format_message()
        assert "got no answer within" in message and "from 2 workers" in message and "the model hangs" in message
        assert "DEPLOYER_SERVE_LOAD_MODE=per-worker" in message
        assert "Send fewer rows" not in message
    finally:
        docker_client.images.remove(built.image, force=True)


def test_a_tensorflow_model_on_azures_inference_server_with_2_workers(images: Images, corpus: Path,
                                                                      docker_client) -> None:  # type: ignore[no-untyped-def]
    """Azure's path: azmlinfsrv (gunicorn) runs score.py's init() in each worker."""
    image = images.get("keras", "--target", "azureml")
    assert image.result["verification"]["status"] == "passed"  # WORKER_COUNT=2 during the check
    want = expected(corpus, "keras")["body"]["predictions"]
    body = (corpus / "keras" / "serving_input_example.json").read_bytes()
    container, url = run_image(docker_client, image.tag, {"WORKER_COUNT": "2"})
    try:
        wait_ready(f"{url}/", container)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: post(f"{url}/score", body), range(12)))
        for status, got in answers:
            assert status == 200, got
            close(got, want)
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("flavor", ["keras", "xgboost", "onnx", "from_code"])
def test_flavor_serves_as_the_kubernetes_pod_template(flavor: str, images: Images, corpus: Path,
                                                      docker_client) -> None:  # type: ignore[no-untyped-def]
    """The image run as deployer's Kubernetes pod template prescribes (through
    tests/targets/kubernetes/kubelet.py): uid 1000, read-only root filesystem, /tmp an emptyDir
    (HOME and TMPDIR there), every capability dropped, a 2-CPU limit (2 workers). TensorFlow and
    the others must load, become Ready on the V2 route and answer MLflow's answer."""
    load_mode = CORPUS[flavor][0]
    image = images.get(flavor)
    name = flavor.replace("_", "-")
    spec = parse_spec(f"corpus-{name}", {"cpu_limit": "2"}, namespace="default", model_name=name,
                      timeout=None, wait=True)
    pod_spec = kube_deployment(spec, image.tag, "fp")["spec"]["template"]["spec"]
    main = pod_spec["containers"][0]
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["runAsUser"] == 1000
    assert main["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert {"name": "HOME", "value": "/tmp"} in main["env"]
    assert main["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{name}/ready"
    want = expected(corpus, flavor)["body"]
    body = (corpus / flavor / "serving_input_example.json").read_bytes()
    with kubelet.run_pod(docker_client, pod_spec, name=f"corpus-{name}") as pod:
        started = kubelet.wait_started(pod)
        assert started.succeeded, f"startup probe failed: {started}\n{pod.logs(tail='all')[-6000:]}"
        readiness = kubelet.wait_ready(pod, timeout=120)
        assert readiness.succeeded, f"never Ready: {readiness}\n{pod.logs(tail='all')[-6000:]}"
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: post(f"{pod.url()}/invocations", body), range(8)))
        for status, got in answers:
            assert status == 200, got
            close(got, want)
        assert kubelet.live(pod)
        logs = pod.logs(tail="all")
        assert "(2 workers," in logs, logs[-3000:]
        if load_mode == "per-worker":
            assert logs.count("loaded in") == 2, logs[-3000:]
        # nothing tried to write outside /tmp and carried on with a warning
        assert "Read-only file system" not in logs, logs[-6000:]


# ---------------------------------------------------------------------------- on the host
def test_deployer_serve_on_the_host_runs_a_tensorflow_model_with_2_workers(flavors_python: Path,
                                                                          corpus: Path, tmp_path: Path) -> None:
    import re

    log = tmp_path / "serve.log"
    deployer = flavors_python.parent / "deployer"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(deployer), "serve", "-m", str(corpus / "keras"), "--port", "0",
                                 "--workers", "2", "--timeout", "30"], stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        match = None
        while match is None and time.monotonic() < deadline and proc.poll() is None:
            match = re.search(r"listening on http://[^:]+:(\d+)", log.read_text(errors="replace"))
            time.sleep(0.3)
        assert match, log.read_text(errors="replace")[-3000:]
        url = f"http://127.0.0.1:{match.group(1)}/invocations"
        body = (corpus / "keras" / "serving_input_example.json").read_bytes()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: post(url, body, timeout=60), range(12)))
        want = expected(corpus, "keras")["body"]
        for status, got in answers:
            assert status == 200, got
            close(got, want)
        assert "load mode per-worker" in log.read_text(errors="replace")
    finally:
        proc.terminate()
        assert proc.wait(60) == 0, log.read_text(errors="replace")[-3000:]


@pytest.mark.parametrize("flavor", ["keras", "xgboost", "onnx", "from_code"])
def test_serve_env_manager_virtualenv_runs_the_flavor_in_its_own_environment(
        flavor: str, corpus: Path, build_cache: Path, tmp_path: Path) -> None:
    """`deployer serve --env-manager virtualenv` from this venv, which has none of TensorFlow,
    XGBoost or onnxruntime: the model's locked environment is built on the host (from the wheels
    its image used), the server runs in it with 2 workers (the flavor's load mode) and answers
    MLflow's answer."""
    import re

    for module in ("tensorflow", "xgboost", "onnxruntime"):
        probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
        assert probe.returncode != 0, f"the test venv has {module}: the test would prove nothing"
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["DEPLOYER_BUILD_CACHE"] = str(build_cache)
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("deployer")), "serve", "-m", str(corpus / flavor),
                                 "--env-manager", "virtualenv", "--port", "0", "--workers", "2",
                                 "--timeout", "30"], stdout=fh, stderr=subprocess.STDOUT, env=env,
                                cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        match = None
        while match is None and time.monotonic() < deadline and proc.poll() is None:
            match = re.search(r"listening on http://[^:]+:(\d+)", log.read_text(errors="replace"))
            time.sleep(0.5)
        assert match, log.read_text(errors="replace")[-3000:]
        url = f"http://127.0.0.1:{match.group(1)}/invocations"
        body = (corpus / flavor / "serving_input_example.json").read_bytes()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: post(url, body, timeout=60), range(8)))
        want = expected(corpus, flavor)
        for status, got in answers:
            assert status == want["status"] == 200, got
            close(got, want["body"])
    finally:
        proc.terminate()
        assert proc.wait(60) == 0, log.read_text(errors="replace")[-3000:]


def test_predict_reads_csv_for_tensor_signatures_as_mlflow_converts_it(flavors_python: Path,
                                                                      corpus: Path, tmp_path: Path) -> None:
    """`deployer predict -m` on a CSV for a tensor-signature model: scored like the JSON example
    (Keras), or MLflow's own error (ONNX without a signature): never an internal error."""
    example = json.loads((corpus / "keras" / "serving_input_example.json").read_text())["inputs"]
    csv = tmp_path / "rows.csv"
    csv.write_text("a,b,c,d\n" + "".join(",".join(map(str, row)) + "\n" for row in example))
    deployer = flavors_python.parent / "deployer"
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([str(deployer), "predict", "-m", str(corpus / "keras"), "-i", str(csv), "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    close(rows, expected(corpus, "keras")["body"]["predictions"])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c,d\n1.0,x,2.0,3.0\n")
    proc = subprocess.run([str(deployer), "predict", "-m", str(corpus / "keras"), "-i", str(bad)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "column 'b', row 1: 'x'" in proc.stderr and "internal error" not in proc.stderr


def test_lock_names_a_large_requirement_nothing_uses(corpus: Path, build_cache: Path) -> None:
    """The scikit-learn API of LightGBM is saved with skops, which imports torch when it is
    installed: MLflow then lists torch (700 MiB) for a 100 KB model."""
    assert "torch==" in (corpus / "lightgbm_sklearn" / "requirements.txt").read_text()
    proc = subprocess.run([sys.executable, "-c", "from deployer.cli import main; main()", "lock", "-m",
                           str(corpus / "lightgbm_sklearn"), "--output", "json"],
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "DEPLOYER_BUILD_CACHE": str(build_cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = json.loads(proc.stdout)["warnings"]
    torch = [w for w in warnings if "'torch==" in w]
    assert len(torch) == 1 and " MiB" in torch[0] and "neither its flavor's loader nor its files import it" in torch[0]
    assert not any("scikit-learn" in w or "lightgbm" in w.split("(")[0] for w in warnings)


def test_inspect_shows_the_load_mode_the_duplicate_build_and_the_os_packages(flavors_python: Path,
                                                                            corpus: Path) -> None:
    deployer = flavors_python.parent / "deployer"

    def inspect(flavor: str) -> dict[str, Any]:
        proc = subprocess.run([str(deployer), "inspect", "-m", str(corpus / flavor), "--output", "json"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    keras = inspect("keras")
    assert keras["load_mode"]["mode"] == "per-worker" and "tensorflow" in keras["load_mode"]["reason"]
    assert keras["requirement_variants"] == [{"dropped": "tensorflow==2.21.0", "kept": "tensorflow-cpu==2.21.0",
                                              "package": "tensorflow"}]
    lgb = inspect("lightgbm")
    assert lgb["system_packages"] == [{"distribution": "lightgbm", "packages": ["libgomp1"],
                                       "reason": "GNU OpenMP (libgomp.so.1)"}]
    sk_api = inspect("lightgbm_sklearn")
    assert sk_api["unused_requirements"]["checked"]
    assert [u["name"] for u in sk_api["unused_requirements"]["items"]] == ["torch"]
