"""Images proven before they ship: `deployer build` runs each image once, offline, and scores it.

Pure parts (payload from a signature, the verify plan, log diagnosis) need no engine; the rest
builds the fixture models on the real engine. Failing models rebuild only their model layer
(their environment image is shared with custom_pyfunc_model), so each case costs a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from deployer.building.verify import diagnose, payload_from_signature, plan_verify
from deployer.cli import cli
from deployer.intake import load_model
from deployer.model.signature import parse_signature
from tests.building.conftest import build_cache  # noqa: F401 - session wheel cache fixture


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# ---------------------------------------------------------------- pure
def test_payload_from_a_column_signature() -> None:
    sig = parse_signature({"inputs": json.dumps([
        {"type": "double", "name": "x", "required": True}, {"type": "string", "name": "s", "required": True},
        {"type": "array", "items": {"type": "double"}, "name": "opt", "required": False}])}, where="t")
    assert payload_from_signature(sig) == {"dataframe_split": {"columns": ["x", "s"], "data": [[0.0, "a"]]}}


def test_payload_from_a_tensor_signature() -> None:
    sig = parse_signature({"inputs": json.dumps([
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}}])}, where="t")
    assert payload_from_signature(sig) == {"inputs": [[0, 0]]}


def test_no_payload_without_a_usable_signature() -> None:
    assert payload_from_signature(None) is None
    sig = parse_signature({"inputs": json.dumps([{"type": "any", "name": "x", "required": True}])}, where="t")
    assert payload_from_signature(sig) is None


def test_verify_plan_per_model_and_target(sklearn_model: Path, no_signature_model: Path, params_model: Path) -> None:
    vp = plan_verify(load_model(str(sklearn_model)), "sagemaker", 8080)
    assert (vp.health_route, vp.score_route, vp.payload_source) == ("/ping", "/invocations",
                                                                      "serving_input_example.json")
    assert vp.payload == (sklearn_model / "serving_input_example.json").read_bytes()
    assert plan_verify(load_model(str(sklearn_model)), "azureml", 8080).score_route == "/score"
    health_only = plan_verify(load_model(str(no_signature_model)), "local", 8080)
    assert health_only.score_route is None and health_only.payload_digest == ""
    generated = plan_verify(load_model(str(params_model)), "local", 8080)
    assert generated.payload_source == "a payload generated from the signature"
    assert json.loads(generated.payload) == {"dataframe_split": {"columns": ["text"], "data": [["a"]]}}


def test_diagnose_names_the_requirement_to_add() -> None:
    log = "Traceback...\nModuleNotFoundError: No module named 'sklearn'\nerror: could not load the model"
    fix = diagnose(log)
    assert fix and "'scikit-learn'" in fix and "requirements.txt" in fix
    assert diagnose("ValueError: bad") is None


def test_diagnose_names_the_os_package_for_a_missing_shared_library() -> None:
    log = ("Traceback (most recent call last):\n"
           "OSError: libgomp.so.1: cannot open shared object file: No such file or directory")
    fix = diagnose(log)
    assert fix and "libgomp.so.1" in fix and "--system-package libgomp1" in fix
    unknown = diagnose("OSError: libfoo9.so.3: cannot open shared object file: No such file or directory")
    assert unknown and "libfoo9.so.3" in unknown and "--system-package NAME" in unknown


def test_verification_runs_at_least_two_workers_whatever_the_build_host(sklearn_model: Path) -> None:
    loaded = load_model(str(sklearn_model))
    assert plan_verify(loaded, "local", 8080).workers == 2
    assert plan_verify(loaded, "local", 8080, {"DEPLOYER_SERVE_WORKERS": "1"}).workers == 2
    vp = plan_verify(loaded, "local", 8080, {"MLFLOW_MODELS_WORKERS": "6", "DEPLOYER_SERVE_LOAD_MODE": "preload",
                                              "DEPLOYER_SERVE_TIMEOUT": "9"})
    assert (vp.workers, vp.load_mode, vp.request_timeout) == (6, "preload", 9.0)
    assert vp.environment() == {"DEPLOYER_SERVE_WORKERS": "6", "WORKER_COUNT": "6"}
    assert "with 6 workers" in vp.describe()


def test_a_hang_is_explained_by_how_the_image_loads_the_model(sklearn_model: Path) -> None:
    from deployer.building.verify import hang_fix

    loaded = load_model(str(sklearn_model))
    preload = hang_fix(plan_verify(loaded, "local", 8080, {"DEPLOYER_SERVE_LOAD_MODE": "preload"}))
    assert "DEPLOYER_SERVE_LOAD_MODE=per-worker" in preload and "does not survive fork" in preload
    per_worker = hang_fix(plan_verify(loaded, "local", 8080, {"DEPLOYER_SERVE_LOAD_MODE": "per-worker"}))
    assert "forking is not the cause" in per_worker and "--workers 1" in per_worker
    assert "DEPLOYER_SERVE_TIMEOUT=SECONDS" in per_worker and "fewer rows" not in per_worker + preload


# ---------------------------------------------------------------- on the engine
CASES = [
    # fixture, passes, what the output must show
    ("sklearn_model", True, "/invocations"),
    ("skops_unlisted_model", True, "/invocations"),
    ("no_signature_model", True, "/ping"),
    ("load_context_fails_model", False, "load_context failure on purpose"),
    ("example_fails_model", False, "model failure on purpose"),
    # a custom model whose load starts its own thread: auto sees it and does not fork
    ("thread_bound_model", True, "/invocations"),
]


def _leftovers(docker_client: Any, model: Path, *args: str) -> tuple[list[str], list[str]]:
    """This build's verification containers and staging tags still in the engine (other test
    sessions may be verifying their own images on the same engine at the same time)."""
    from deployer.building.plan import plan_build
    from deployer.cli.build_cmd import build_options

    params = dict(zip(args[::2], args[1::2], strict=True))
    fingerprint = plan_build(load_model(str(model)), build_options(params)).fingerprint
    containers = [c.name for c in docker_client.containers.list(
        all=True, filters={"label": f"io.deployer.verify.run={fingerprint}"})]
    staged = [t for i in docker_client.images.list() for t in i.tags
              if t.startswith(f"deployer-unverified:{fingerprint[7:27]}")]
    return containers, staged


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.usefixtures("build_cache")
@pytest.mark.parametrize("fixture, passes, shown", CASES, ids=[c[0] for c in CASES])
def test_build_verifies_the_image_before_tagging_it(request: pytest.FixtureRequest, docker_client: Any,
                                                    base_image: str, fixture: str, passes: bool, shown: str) -> None:
    model: Path = request.getfixturevalue(fixture)
    tag = f"deployer-test/verify-{fixture.replace('_', '-')}:1"
    res = _cli("build", "-m", str(model), "--base-image", base_image, "-t", tag, "--output", "json")
    # the verification container and the staging tag are gone
    assert _leftovers(docker_client, model, "base_image", base_image, "tag", tag) == ([], [])
    if passes:
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        check = out["verification"]
        assert check["status"] == "passed" and check["route"] == shown and check["http_status"] == 200
        labels = docker_client.images.get(tag).labels
        assert labels["io.deployer.verify.status"] == "passed"
        assert labels["io.deployer.verify.route"] == shown
        if shown == "/ping":  # no example, no signature: health check only
            assert "io.deployer.verify.payload" not in labels
        else:
            digest = check["payload_digest"]
            assert labels["io.deployer.verify.payload"] == f"serving_input_example.json {digest}"
        assert out["digest"] == docker_client.images.get(tag).id
        if fixture == "skops_unlisted_model":
            assert "added requirement 'skops'" in res.stderr
        return
    assert res.exit_code == 1, res.output
    assert "image verification failed" in res.stderr and shown in res.stderr
    assert "Nothing was tagged or pushed" in res.stderr and "internal error" not in res.stderr
    import docker.errors

    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.usefixtures("build_cache")
def test_no_verify_is_recorded_and_a_later_build_verifies(docker_client: Any, base_image: str,
                                                          no_signature_model: Path) -> None:
    """--no-verify: label status=skipped, the tag applied at once. build-and-push (if_needed)
    later finds that image and verifies it then; the labelled image is then reused as is."""
    from deployer.building.execute import build_model_image
    from deployer.building.plan import BuildOptions

    tag = "deployer-test/verify-skipped:1"
    res = _cli("build", "-m", str(no_signature_model), "--base-image", base_image, "-t", tag, "--no-verify",
               "--output", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["verification"]["status"] == "skipped"
    assert docker_client.images.get(tag).labels["io.deployer.verify.status"] == "skipped"
    layers = docker_client.images.get(tag).attrs["RootFS"]["Layers"]
    _plan, result = build_model_image(str(no_signature_model), BuildOptions(base_image=base_image, tag=tag),
                                      if_needed=True)
    assert result.skipped and result.verification and result.verification.status == "passed"
    image = docker_client.images.get(tag)
    assert image.labels["io.deployer.verify.status"] == "passed"
    assert image.attrs["RootFS"]["Layers"] == layers  # the label build adds no layer
    _plan, again = build_model_image(str(no_signature_model), BuildOptions(base_image=base_image, tag=tag),
                                     if_needed=True)
    assert again.digest == image.id and again.verification and again.verification.seconds == 0.0


AZURE_CASES = [
    ("custom_pyfunc_model", True, "/score"),
    ("load_context_fails_model", False, "load_context failure on purpose"),
    ("example_fails_model", False, "model failure on purpose"),
]


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.usefixtures("build_cache")
@pytest.mark.parametrize("fixture, passes, shown", AZURE_CASES, ids=[c[0] for c in AZURE_CASES])
def test_azureml_images_are_verified_through_azmlinfsrv(request: pytest.FixtureRequest, docker_client: Any,
                                                         base_image: str, fixture: str, passes: bool,
                                                         shown: str) -> None:
    """--target azureml: the image runs Azure's inference server with score.py; health on /,
    the example POSTed to /score. The three models share one environment image."""
    model: Path = request.getfixturevalue(fixture)
    tag = f"deployer-test/verify-azure-{fixture.replace('_', '-')}:1"
    res = _cli("build", "-m", str(model), "--target", "azureml", "--base-image", base_image, "-t", tag,
               "--output", "json")
    assert _leftovers(docker_client, model, "base_image", base_image, "tag", tag, "target", "azureml") == ([], [])
    if passes:
        assert res.exit_code == 0, res.output
        check = json.loads(res.stdout)["verification"]
        assert (check["status"], check["route"], check["http_status"]) == ("passed", "/score", 200)
        assert docker_client.images.get(tag).labels["io.deployer.verify.route"] == "/score"
        return
    assert res.exit_code == 1, res.output
    assert "image verification failed" in res.stderr and shown in res.stderr
    import docker.errors

    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)


def test_the_failure_shows_the_exception_even_when_shutdown_chatter_follows_it() -> None:
    """A server that logs its shutdown after the model's traceback (gunicorn: worker exiting,
    master shutting down, ...) must not push the cause out of the excerpt."""
    from deployer.building.verify import _LOG_TAIL, _log_excerpt

    cause = "RuntimeError: load_context failure on purpose"
    lines = ["Traceback (most recent call last):", '  File "score.py", line 3', cause]
    chatter = [f"[INFO] shutting down, step {i}" for i in range(_LOG_TAIL + 5)]
    text = _log_excerpt(lines + chatter)
    assert text.splitlines()[0].strip() == cause and chatter[-1] in text
    assert len(text.splitlines()) == _LOG_TAIL + 2
    # azmlinfsrv wraps the model's error in its own exception, which may be among the last lines
    wrapped = _log_excerpt(lines + chatter + ["UserScriptException: Caught an unhandled exception"] + chatter[:25])
    assert wrapped.splitlines()[0].strip() == cause and "UserScriptException" in wrapped
    short = _log_excerpt(lines + chatter[:3])  # the cause is among the last lines: shown once, in place
    assert short.count(cause) == 1 and short.splitlines()[0].strip() == lines[0]


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.usefixtures("build_cache")
def test_a_model_that_hangs_in_forked_workers_fails_verification_as_a_hang(
        docker_client: Any, base_image: str, thread_bound_model: Path) -> None:
    """Forced to preload, a model that does not survive fork hangs in both workers: the build
    says so (not "send fewer rows"), names the load mode to use, and tags nothing."""
    tag = "deployer-test/verify-thread-bound-preload:1"
    res = _cli("build", "-m", str(thread_bound_model), "--base-image", base_image, "-t", tag,
               "--env", "DEPLOYER_SERVE_LOAD_MODE=preload", "--env", "DEPLOYER_SERVE_TIMEOUT=3")
    assert res.exit_code == 1, res.output
    assert "got no answer within" in res.stderr and "from 2 workers" in res.stderr
    assert "the model hangs" in res.stderr and "DEPLOYER_SERVE_LOAD_MODE=per-worker" in res.stderr
    assert "fewer rows" not in res.stderr and "Traceback" not in res.stderr
    import docker.errors

    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)
    res = _cli("build", "-m", str(thread_bound_model), "--base-image", base_image, "-t", tag,
               "--env", "DEPLOYER_SERVE_LOAD_MODE=per-worker", "--output", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["verification"]["status"] == "passed"
    docker_client.images.remove(tag, force=True)
