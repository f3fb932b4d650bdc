"""Multi-model endpoints (deploy --multi-model, deployer models, predict --target-model) on
moto's server over HTTP.

moto stores a model's PrimaryContainer as sent but answers InvokeEndpoint with canned results
whatever the endpoint is; ``mme_sim`` extends its InvokeEndpoint the way SageMaker treats a
multi-model endpoint (TargetModel recorded, required, and naming an archive that exists under
the model's ModelDataUrl; refused on a single-model endpoint) and, for the docker test, answers
it as SageMaker's front end does: archive from moto's S3 into a real container of the built
image, loaded and invoked through the container's MME contract.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from deployer.errors import EnvironmentSpecError
from deployer.model.files import model_digest
from deployer.targets.sagemaker.artifact import archive_bytes
from deployer.targets.sagemaker.multi_model import (
    CAPABILITY_LABEL,
    FORMAT,
    SERVER_SWITCH,
    TAG_LOCK,
    EnvironmentRecord,
    lock_differences,
)
from tests.targets.sagemaker.conftest import deploy_args, run_cli
from tests.targets.sagemaker.mme_sim import DataPlane
from tests.targets.sagemaker.mme_sim import install as install_runtime
from tests.targets.sagemaker.production_sim import install

PREFIX = "s3://models/shop/"


def mme_args(name: str, model: Any, *extra: str) -> list[str]:
    return deploy_args(name, model, "--multi-model", "--model-prefix", PREFIX, *extra)


def models(*args: str) -> list[str]:
    verb, rest = args[0], args[1:]
    return ["models", verb, "--target", "sagemaker", "--name", "shop", *rest]


def _objects() -> dict[str, dict[str, Any]]:
    s3 = boto3.client("s3")
    out = {}
    for obj in s3.list_objects_v2(Bucket="models").get("Contents", []) or []:
        head = s3.head_object(Bucket="models", Key=obj["Key"])
        out[obj["Key"]] = head.get("Metadata") or {}
    return out


def _model_of(endpoint: str) -> dict[str, Any]:
    sm = boto3.client("sagemaker")
    config = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"])
    model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    model["Tags"] = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=model["ModelArn"])["Tags"]}
    return model


@pytest.fixture
def mme_runtime(sm: Any, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """InvokeEndpoint as SageMaker answers it for multi-model endpoints (see mme_sim); the
    recorded invocations (endpoint, TargetModel header)."""
    return install_runtime(sm, monkeypatch).invocations


# ------------------------------------------------------------------ pure: locks and records
def _lock(python: str, *pins: str) -> Any:
    from deployer.environment.lock import Lock, LockedPackage, TargetPlatform

    packages = []
    for pin in pins:
        name, version = pin.split("==")
        packages.append(LockedPackage(name, version, hashlib.sha256(pin.encode()).hexdigest()))
    return Lock(TargetPlatform.parse("linux/amd64", python), tuple(packages))


def test_lock_differences_name_platform_then_requested_then_brought_along():
    endpoint = _lock("3.11", "scikit-learn==1.5.2", "joblib==1.4.0", "numpy==2.0.0")
    model = _lock("3.10", "scikit-learn==1.4.0", "numpy==2.0.0", "xgboost==2.1.0")
    assert lock_differences(endpoint, model, ("scikit-learn", "xgboost")) == [
        "python 3.10 (endpoint: 3.11)",
        "scikit-learn 1.4.0 (endpoint: 1.5.2)",
        "xgboost 2.1.0 (not in the endpoint)",
        "joblib 1.4.0 only in the endpoint",
    ]
    assert lock_differences(endpoint, endpoint) == []


def test_environment_record_round_trips_and_refuses_what_it_cannot_read():
    lock = _lock("3.11", "scikit-learn==1.5.2")
    record = EnvironmentRecord(lock.canonical_text(), lock.digest, {"pip": ["numpy<3"]}, ("scikit-learn",))
    again = EnvironmentRecord.from_json(record.to_json(), "s3://b/k")
    assert again == record and again.lock("s3://b/k").digest == lock.digest
    assert record.key("shop/") == again.key("shop/") and record.key("shop/").startswith("shop/.deployer/")
    for text in ("not json", json.dumps({"format": "other"}), json.dumps({"format": FORMAT})):
        with pytest.raises(EnvironmentSpecError) as err:
            EnvironmentRecord.from_json(text, "s3://b/k")
        assert err.value.where == "s3://b/k" and "redeploy" in (err.value.fix or "")


# ------------------------------------------------------------------ deploy --multi-model
def test_dry_run_plans_a_multi_model_endpoint_and_changes_nothing(sm, bucket, sklearn_model):
    before = sm.snapshot()
    res = run_cli(*mme_args("shop", sklearn_model, "--dry-run", "--output", "json"))
    assert res.exit_code == 0, res.stderr
    plan = res.json()["plan"]
    ops = [f"{c['service']}:{c['operation']}" for c in plan["calls"]]
    assert ops == ["s3:put_object", "sagemaker:create_model", "sagemaker:create_endpoint_config",
                   "sagemaker:create_endpoint", "sagemaker:wait_endpoint"]
    container = plan["calls"][1]["params"]["PrimaryContainer"]
    assert container["Mode"] == "MultiModel" and container["ModelDataUrl"] == PREFIX
    assert container["Environment"] == {SERVER_SWITCH: "true"}
    record = json.loads(plan["calls"][0]["params"]["Body"])
    assert plan["calls"][0]["params"]["Key"].startswith("shop/.deployer/environment-")
    tags = {t["Key"]: t["Value"] for t in plan["calls"][1]["params"]["Tags"]}
    assert tags[TAG_LOCK] == record["lock_digest"] == plan["facts"]["lock_digest"]
    assert record["lock_digest"].startswith("sha256:") and "scikit-learn==" in record["lock"]
    assert sm.mutating_actions() == [] and sm.s3_puts == 0
    assert sm.snapshot() == before
    text = run_cli(*mme_args("shop", sklearn_model, "--dry-run"))
    assert text.exit_code == 0 and "multi-model: every model under s3://models/shop/" in text.stdout


def test_deploy_creates_the_endpoint_and_a_second_deploy_changes_nothing(sm, bucket, sklearn_model, monkeypatch):
    prod = install(sm, monkeypatch)
    res = run_cli(*mme_args("shop", sklearn_model, "--env", "LOG_LEVEL=debug", "--output", "json"))
    assert res.exit_code == 0, res.stderr
    out = res.json()
    assert out["action"] == "create" and out["status"] == "InService"
    body = prod.body("CreateModel")["PrimaryContainer"]  # what went over the wire
    assert body["Mode"] == "MultiModel" and body["ModelDataUrl"] == PREFIX
    assert body["Environment"] == {"LOG_LEVEL": "debug", SERVER_SWITCH: "true"}
    model = _model_of("shop")
    assert model["PrimaryContainer"]["Mode"] == "MultiModel"
    lock = model["Tags"][TAG_LOCK]
    assert model["Tags"]["deployer:model-prefix"] == PREFIX
    assert "deployer:model-data" not in model["Tags"]  # the prefix is the user's: never cleaned up
    # the environment record is stored under the prefix, content-addressed, with the same lock
    (key,) = _objects()
    assert key.startswith("shop/.deployer/environment-") and key.endswith(".json")
    assert model["Tags"]["deployer:environment"] == f"s3://models/{key}"
    record = json.loads(boto3.client("s3").get_object(Bucket="models", Key=key)["Body"].read())
    assert record["lock_digest"] == lock == out["details"]["lock_digest"]

    before, puts = sm.snapshot(), sm.s3_puts
    sm.actions.clear()
    again = run_cli(*mme_args("shop", sklearn_model, "--env", "LOG_LEVEL=debug", "--output", "json"))
    assert again.exit_code == 0, again.stderr
    assert again.json()["action"] == "noop"
    assert prod.mutating() == [] and sm.s3_puts == puts
    assert sm.snapshot() == before


def test_a_failed_deploy_removes_the_environment_record_it_stored(sm, bucket, sklearn_model):
    sm.fail("CreateEndpoint")
    res = run_cli(*mme_args("shop", sklearn_model))
    assert res.exit_code == 1
    assert "rolled back" in res.stderr
    snap = sm.snapshot()
    assert snap["models"] == [] and snap["configs"] == [] and snap["objects"] == []


def test_replacing_a_single_model_endpoint_with_a_multi_model_one(sm, bucket, sklearn_model):
    assert run_cli(*deploy_args("shop", sklearn_model, "--bucket", bucket)).exit_code == 0
    single = _model_of("shop")["PrimaryContainer"]["ModelDataUrl"]
    res = run_cli(*mme_args("shop", sklearn_model, "--mode", "replace", "--output", "json"))
    assert res.exit_code == 0, res.stderr
    assert res.json()["action"] == "replace"
    assert _model_of("shop")["PrimaryContainer"]["Mode"] == "MultiModel"
    assert single.split("/", 3)[3] not in _objects()  # the replaced model's archive is cleaned up
    assert len(sm.snapshot()["models"]) == 1


@pytest.mark.parametrize(
    ("extra", "where", "says"),
    [
        (("--serverless", "memory=2048,concurrency=5"), "--serverless", "serverless endpoints do not host"),
        (("--bucket", "models"), "--bucket", "models live under --model-prefix"),
        (("--model-in-image",), "--model-in-image", "not from the image"),
        (("--mode", "add"), "--mode add", "one variant"),
        (("--lock", "{lock}"), "--lock", "every model added to the endpoint later"),
    ],
)
def test_options_a_multi_model_endpoint_cannot_have_are_refused(sm, bucket, sklearn_model, tmp_path, extra, where, says):
    lock = tmp_path / "x.lock"
    lock.write_text("")
    args = [a.format(lock=lock) for a in extra]
    if where == "--lock":  # a build option: only with an image built from -m
        cmd = ["deploy", "--target", "sagemaker", "--name", "shop", "-m", str(sklearn_model), "--multi-model",
               "--model-prefix", PREFIX, "--execution-role-arn", "arn:aws:iam::123456789012:role/x", *args]
    else:
        cmd = mme_args("shop", sklearn_model, *args)
    res = run_cli(*cmd)
    assert res.exit_code == 2, res.stderr
    assert says in res.stderr and where in res.stderr and "Traceback" not in res.stderr
    assert sm.mutating_actions() == [] and sm.s3_puts == 0


def test_multi_model_option_pairs_and_prefixes_are_checked(sm, bucket, sklearn_model):
    res = run_cli(*deploy_args("shop", sklearn_model, "--multi-model"))
    assert res.exit_code == 2 and "--model-prefix s3://" in res.stderr
    res = run_cli(*deploy_args("shop", sklearn_model, "--model-prefix", PREFIX))
    assert res.exit_code == 2 and "add --multi-model" in res.stderr
    res = run_cli(*deploy_args("shop", None, "--multi-model", "--model-prefix", PREFIX))
    assert res.exit_code == 2 and "-m MODEL" in res.stderr
    for bad in ("s3://models/a b/", "s3://models/../x/", "http://models/x/"):
        res = run_cli(*deploy_args("shop", sklearn_model, "--multi-model", "--model-prefix", bad))
        assert res.exit_code == 2 and "--model-prefix" in res.stderr, bad
    res = run_cli(*deploy_args("shop", sklearn_model, "--multi-model", "--model-prefix", "s3://no-such-bucket/m/"))
    assert res.exit_code == 2 and "aws s3 mb s3://no-such-bucket" in res.stderr
    # the prefix is normalized to end with "/": SageMaker appends TargetModel to it
    dry = run_cli(*deploy_args("shop", sklearn_model, "--multi-model", "--model-prefix", "s3://models/shop",
                               "--dry-run", "--output", "json"))
    assert dry.json()["plan"]["facts"]["model_prefix"] == PREFIX
    assert sm.mutating_actions() == []


# ------------------------------------------------------------------ deployer models
def test_models_add_list_remove_round_trip(sm, bucket, sklearn_model, no_signature_model):
    assert run_cli(*mme_args("shop", sklearn_model)).exit_code == 0
    lock = _model_of("shop")["Tags"][TAG_LOCK]

    dry = run_cli(*models("add", "-m", str(no_signature_model), "--as", "iris-b", "--dry-run", "--output", "json"))
    assert dry.exit_code == 0, dry.stderr
    (call,) = dry.json()["plan"]["calls"]
    assert (call["service"], call["operation"]) == ("s3", "upload_model_archive")
    assert call["params"]["Key"] == "shop/iris-b.tar.gz" and call["undo"]["operation"] == "delete_object"
    assert not [k for k in _objects() if k.endswith(".tar.gz")]

    # two sklearn models of the same environment: one named after its directory, one --as
    res = run_cli(*models("add", "-m", str(no_signature_model), "--as", "iris-b", "--output", "json"))
    assert res.exit_code == 0, res.stderr
    assert res.json()["action"] == "add"
    assert run_cli(*models("add", "-m", str(sklearn_model))).exit_code == 0
    objects = _objects()
    assert objects["shop/iris-b.tar.gz"] == {"deployer-model-digest": model_digest(Path(no_signature_model)),
                                             "deployer-lock-digest": lock}
    assert objects["shop/sklearn_skops.tar.gz"]["deployer-model-digest"] == model_digest(Path(sklearn_model))
    data = boto3.client("s3").get_object(Bucket="models", Key="shop/iris-b.tar.gz")["Body"].read()
    assert data == archive_bytes(Path(no_signature_model))  # the same reproducible archive as deploy's

    listed = run_cli(*models("list", "--output", "json"))
    assert listed.exit_code == 0, listed.stderr
    rows = {m["name"]: m for m in listed.json()["details"]["models"]}
    assert sorted(rows) == ["iris-b", "sklearn_skops"]  # the environment record is not a model
    assert rows["iris-b"]["target_model"] == "iris-b.tar.gz" and rows["iris-b"]["same_environment"] is True
    assert rows["iris-b"]["model_digest"] == model_digest(Path(no_signature_model))
    assert "iris-b" in run_cli(*models("list")).stdout

    # the same content again: nothing is uploaded
    puts = sm.s3_puts
    again = run_cli(*models("add", "-m", str(no_signature_model), "--as", "iris-b.tar.gz", "--output", "json"))
    assert again.exit_code == 0, again.stderr
    assert again.json()["action"] == "noop" and sm.s3_puts == puts
    # other content under a taken name is refused (loaded copies would never be refreshed)
    taken = run_cli(*models("add", "-m", str(sklearn_model), "--as", "iris-b"))
    assert taken.exit_code == 2 and "new name" in taken.stderr and sm.s3_puts == puts

    dry = run_cli(*models("remove", "iris-b", "--dry-run", "--output", "json"))
    assert [c["operation"] for c in dry.json()["plan"]["calls"]] == ["delete_object"]
    assert "shop/iris-b.tar.gz" in _objects()
    res = run_cli(*models("remove", "iris-b", "--output", "json"))
    assert res.exit_code == 0, res.stderr and res.json()["action"] == "remove"
    assert "shop/iris-b.tar.gz" not in _objects()
    again = run_cli(*models("remove", "iris-b", "--output", "json"))
    assert again.exit_code == 0 and again.json()["action"] == "noop"
    names = [m["name"] for m in run_cli(*models("list", "--output", "json")).json()["details"]["models"]]
    assert names == ["sklearn_skops"]


def test_a_model_of_another_environment_is_refused_before_upload(sm, bucket, sklearn_model, sklearn_pickle_model,
                                                                 params_model):
    assert run_cli(*mme_args("shop", sklearn_model)).exit_code == 0
    puts = sm.s3_puts
    for other in (params_model, sklearn_pickle_model):
        res = run_cli(*models("add", "-m", str(other), "--as", "other"))
        assert res.exit_code == 1, res.stderr
        assert "needs another environment than endpoint shop" in res.stderr
        assert "Traceback" not in res.stderr
    # the packages that differ are named: the pyfunc model has no scikit-learn
    res = run_cli(*models("add", "-m", str(params_model), "--as", "other"))
    assert "scikit-learn" in res.stderr and "only in the endpoint" in res.stderr
    assert sm.s3_puts == puts and "shop/other.tar.gz" not in _objects()


def test_a_pyfunc_endpoint_takes_models_of_its_environment(sm, bucket, params_model, tensor_model, sklearn_model):
    assert run_cli(*mme_args("shop", params_model)).exit_code == 0
    res = run_cli(*models("add", "-m", str(tensor_model), "--as", "tensor"))
    assert res.exit_code == 0, res.stderr
    assert run_cli(*models("add", "-m", str(params_model), "--as", "params")).exit_code == 0
    refused = run_cli(*models("add", "-m", str(sklearn_model), "--as", "iris"))
    assert refused.exit_code == 1 and "scikit-learn" in refused.stderr and "not in the endpoint" in refused.stderr
    rows = run_cli(*models("list", "--output", "json")).json()["details"]["models"]
    assert sorted(m["name"] for m in rows) == ["params", "tensor"]


def test_models_commands_refuse_what_is_not_a_multi_model_endpoint(sm, bucket, sklearn_model):
    assert run_cli(*deploy_args("shop", sklearn_model, "--bucket", bucket)).exit_code == 0
    res = run_cli(*models("add", "-m", str(sklearn_model)))
    assert res.exit_code == 2 and "not a multi-model endpoint" in res.stderr and "--multi-model" in res.stderr
    res = run_cli(*models("list"))
    assert res.exit_code == 2 and "not a multi-model endpoint" in res.stderr
    res = run_cli("models", "list", "--target", "sagemaker", "--name", "ghost")
    assert res.exit_code == 1 and "no SageMaker endpoint named 'ghost'" in res.stderr
    res = run_cli("models", "list", "--target", "local", "--name", "shop")
    assert res.exit_code == 2 and "has no multi-model endpoints" in res.stderr
    res = run_cli("models", "list", "--target", "sagemaker")
    assert res.exit_code == 2 and "--name" in res.stderr
    for bad in ("../x", "a/b", ""):
        res = run_cli(*models("remove", bad))
        assert res.exit_code == 2, bad
    assert sm.s3_puts == 1  # the single-model deploy's archive only


# ------------------------------------------------------------------ predict --target-model
def test_predict_sends_the_target_model(sm, bucket, sklearn_model, no_signature_model, tmp_path, mme_runtime):
    assert run_cli(*mme_args("shop", sklearn_model)).exit_code == 0
    assert run_cli(*models("add", "-m", str(no_signature_model), "--as", "iris-b")).exit_code == 0
    canned = json.dumps({"predictions": [2]})
    sm.set_results([{"Body": canned, "ContentType": "application/json", "InvokedProductionVariant": "v",
                     "CustomAttributes": ""}])
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"dataframe_split": {"columns": ["a"], "data": [[7]]}}))
    predict = ["predict", "--target", "sagemaker", "--name", "shop", "-i", str(request)]
    for given in ("iris-b", "iris-b.tar.gz"):
        res = run_cli(*predict, "--target-model", given)
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout) == {"predictions": [2]}
    assert [c["target_model"] for c in mme_runtime] == ["iris-b.tar.gz", "iris-b.tar.gz"]
    # SageMaker's answers: a model not under the prefix, no TargetModel on a multi-model endpoint
    res = run_cli(*predict, "--target-model", "ghost")
    assert res.exit_code == 1 and "Failed to download model data" in res.stderr and "shop/ghost.tar.gz" in res.stderr
    res = run_cli(*predict)
    assert res.exit_code == 1 and "TargetModel is required" in res.stderr
    res = run_cli(*predict, "--target-model", "iris-b", "--stream")
    assert res.exit_code == 2 and "--stream" in res.stderr
    res = run_cli(*predict, "--target-model", "../etc")
    assert res.exit_code == 2 and "--target-model" in res.stderr
    assert len(mme_runtime) == 4  # the refusals on this side sent nothing


def test_predict_target_model_on_a_single_model_endpoint_is_sagemakers_error(sm, bucket, sklearn_model, tmp_path,
                                                                            mme_runtime):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    request = tmp_path / "request.json"
    request.write_text("{}")
    res = run_cli("predict", "--target", "sagemaker", "--name", "iris", "-i", str(request), "--target-model", "x")
    assert res.exit_code == 1 and "does not support TargetModel" in res.stderr
    assert mme_runtime == [{"endpoint": "iris", "target_model": "x.tar.gz"}]


def test_delete_keeps_the_prefix_archives_and_record(sm, bucket, sklearn_model):
    assert run_cli(*mme_args("shop", sklearn_model)).exit_code == 0
    assert run_cli(*models("add", "-m", str(sklearn_model), "--as", "iris")).exit_code == 0
    kept = sorted(_objects())
    res = run_cli("delete", "--target", "sagemaker", "--name", "shop")
    assert res.exit_code == 0, res.stderr
    snap = sm.snapshot()
    assert snap["endpoints"] == [] and snap["models"] == [] and snap["configs"] == []
    assert sorted(_objects()) == kept and "shop/iris.tar.gz" in kept


# ------------------------------------------------------------------ the image built from -m
@pytest.fixture
def data_plane(docker_client: Any, tmp_path: Path) -> Iterator[DataPlane]:
    import uuid

    plane = DataPlane(docker_client, tmp_path / "opt-ml-models", f"sm-mme-{uuid.uuid4().hex[:8]}")
    try:
        yield plane
    finally:
        plane.stop()


def _deploy_built(name: str, model: Path, registry: Any, base_image: str, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch, docker_client: Any) -> tuple[dict[str, Any], str]:
    """deploy --multi-model building the image from ``model`` (pushed to the test registry);
    checks the label and the recorded lock; returns the result and the local image."""
    import base64

    config = tmp_path / "docker-config"
    config.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    args = ["deploy", "--target", "sagemaker", "--name", name, "-m", str(model), "--multi-model",
            "--model-prefix", PREFIX, "--base-image", base_image, "--registry-override", registry.host,
            "--repository", f"sm-mme/{name}", "--execution-role-arn", "arn:aws:iam::123456789012:role/x",
            "--output", "json"]
    dry = run_cli(*args, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    build = dry.json()["plan"]["calls"][0]
    assert (build["service"], build["operation"]) == ("deployer", "build_image")
    assert build["params"]["Build"]["labels"] == [[CAPABILITY_LABEL, "true"]]
    res = run_cli(*args)
    assert res.exit_code == 0, res.stderr
    image = build["params"]["LocalImage"]
    labels = docker_client.images.get(image).labels
    assert labels[CAPABILITY_LABEL] == "true"
    # the lock recorded at plan time is the lock the image installed
    model_desc = _model_of(name)
    assert labels["io.deployer.lock.digest"] == model_desc["Tags"][TAG_LOCK] == res.json()["details"]["lock_digest"]
    assert model_desc["PrimaryContainer"]["Image"] == res.json()["details"]["image"]
    again = run_cli(*args)
    assert again.exit_code == 0 and again.json()["action"] == "noop"
    # the push left a local tag named after this session's registry: only that alias goes
    pushed = f"{registry.host}/sm-mme/{name}:{image.rsplit(':', 1)[1]}"
    assert pushed in docker_client.images.get(image).tags
    docker_client.images.remove(pushed)
    return res.json(), image


@pytest.mark.docker
@pytest.mark.slow
def test_built_image_serves_its_models_through_sagemakers_multi_model_path(
        sm, bucket, registry, sklearn_model, no_signature_model, base_image, docker_client, data_plane, iris_data,
        tmp_path, monkeypatch):
    import mlflow.pyfunc

    _, image = _deploy_built("shop", sklearn_model, registry, base_image, tmp_path, monkeypatch, docker_client)

    # the data plane: SageMaker's front end, a container of the image, the models from moto's S3
    assert run_cli(*models("add", "-m", str(sklearn_model), "--as", "iris")).exit_code == 0
    assert run_cli(*models("add", "-m", str(no_signature_model), "--as", "iris-b")).exit_code == 0
    runtime = install_runtime(sm, monkeypatch, data_plane)
    instance = data_plane.serve("shop", image)  # started with the model's Environment (the switch)
    X, _ = iris_data
    rows = X.iloc[[0, 60, 120]]
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"dataframe_split": {"columns": list(rows.columns),
                                                       "data": rows.values.tolist()}}))
    expected = {"predictions": mlflow.pyfunc.load_model(str(sklearn_model)).predict(rows).tolist()}
    assert expected["predictions"] == [0, 1, 2]
    predict = ["predict", "--target", "sagemaker", "--name", "shop", "-i", str(request)]
    for target in ("iris", "iris-b.tar.gz", "iris"):
        res = run_cli(*predict, "--target-model", target)
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout) == expected
    # each archive was downloaded and loaded once (POST /models), then invoked
    assert data_plane.downloads == ["iris.tar.gz", "iris-b.tar.gz"]
    assert data_plane.loads == [("iris.tar.gz", 200), ("iris-b.tar.gz", 200)]
    status, _, listing = instance.request("GET", "/models")
    assert status == 200 and len(json.loads(listing)["models"]) == 2
    assert [c["target_model"] for c in runtime.invocations] == ["iris.tar.gz", "iris-b.tar.gz", "iris.tar.gz"]
    # the container's refusal comes back as SageMaker's ModelError, with its status
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dataframe_split": {"columns": ["nope"], "data": [[1.0]]}}))
    res = run_cli("predict", "--target", "sagemaker", "--name", "shop", "-i", str(bad), "--target-model", "iris")
    assert res.exit_code == 1 and "ModelError" in res.stderr and "(400)" in res.stderr
    res = run_cli(*predict, "--target-model", "ghost")
    assert res.exit_code == 1 and "Failed to download model data" in res.stderr
    assert data_plane.loads == [("iris.tar.gz", 200), ("iris-b.tar.gz", 200)]


@pytest.mark.docker
@pytest.mark.slow
def test_a_pyfunc_multi_model_endpoint_serves_a_tensor_and_a_params_model(
        sm, bucket, registry, params_model, tensor_model, base_image, docker_client, data_plane, tmp_path,
        monkeypatch):
    import mlflow.pyfunc
    import numpy as np

    _, image = _deploy_built("pyf", params_model, registry, base_image, tmp_path, monkeypatch, docker_client)
    for model, as_name in ((tensor_model, "tensor"), (params_model, "params")):
        res = run_cli("models", "add", "--target", "sagemaker", "--name", "pyf", "-m", str(model), "--as", as_name)
        assert res.exit_code == 0, res.stderr
    install_runtime(sm, monkeypatch, data_plane)
    data_plane.serve("pyf", image)
    tensor = [[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]]
    cases = {
        "tensor": ({"instances": tensor},
                   {"predictions": mlflow.pyfunc.load_model(str(tensor_model))
                    .predict(np.asarray(tensor, dtype=np.float32)).tolist()}),
        "params": ({"dataframe_records": [{"text": "ab"}], "params": {"times": 3, "upper": True}},
                   {"predictions": [{"output": "ABABAB", "length": 6}]}),
    }
    assert cases["tensor"][1] == {"predictions": [10.0, 2.0]}
    for target, (body, expected) in cases.items():
        request = tmp_path / f"{target}.json"
        request.write_text(json.dumps(body))
        res = run_cli("predict", "--target", "sagemaker", "--name", "pyf", "-i", str(request),
                      "--target-model", target)
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout) == expected, target
    assert data_plane.loads == [("tensor.tar.gz", 200), ("params.tar.gz", 200)]


@pytest.mark.docker
@pytest.mark.slow
def test_the_built_image_keeps_sagemakers_container_contract_under_a_memory_limit(
        sm, bucket, registry, sklearn_model, base_image, docker_client, iris_data, tmp_path, monkeypatch):
    """The image SageMaker would run, driven through AWS's documented container calls directly:
    load (200, 409), list, get (404), invoke, unload (200, 404), least recently used eviction
    under DEPLOYER_SERVE_MODEL_MEMORY_LIMIT and 507 for a model that cannot fit even alone."""
    import shutil
    import uuid

    import mlflow.pyfunc

    from tests.targets.sagemaker.mme_sim import Instance

    _, image = _deploy_built("limits", sklearn_model, registry, base_image, tmp_path, monkeypatch, docker_client)
    root = tmp_path / "opt-ml-models"
    for name, pad in (("a", 1), ("b", 1), ("c", 1), ("huge", 3)):  # MiB over the model's own size
        shutil.copytree(sklearn_model, root / name / "model")
        (root / name / "model" / "padding.bin").write_bytes(b"\0" * pad * 1024 * 1024)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    container = docker_client.containers.run(
        image, ["serve"], detach=True, name=f"sm-mme-limits-{uuid.uuid4().hex[:8]}",
        environment={SERVER_SWITCH: "true", "DEPLOYER_SERVE_MODEL_MEMORY_LIMIT": "2.5MiB"},
        volumes={str(root): {"bind": "/opt/ml/models", "mode": "ro"}},
        ports={"8080/tcp": ("127.0.0.1", None)})
    try:
        import time

        container.reload()
        box = Instance(container, int(container.ports["8080/tcp"][0]["HostPort"]), root)
        deadline = time.monotonic() + 240
        while True:
            try:
                if box.request("GET", "/ping")[0] == 200:
                    break
            except OSError:
                pass
            container.reload()
            assert container.status == "running", container.logs().decode()[-3000:]
            assert time.monotonic() < deadline, "the container did not answer /ping in time"
            time.sleep(0.5)

        def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            status, _, data = box.request(method, path, None if body is None else json.dumps(body).encode(),
                                          {"Content-Type": "application/json"})
            return status, json.loads(data) if data.strip() else None

        def load(name: str) -> int:
            return call("POST", "/models", {"model_name": name, "url": f"/opt/ml/models/{name}/model"})[0]

        X, _ = iris_data
        rows = X.iloc[[0, 60, 120]]
        body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
        expected = {"predictions": mlflow.pyfunc.load_model(str(sklearn_model)).predict(rows).tolist()}

        assert call("GET", "/models") == (200, {"models": []})
        assert load("a") == 200
        assert load("a") == 409
        assert call("GET", "/models/a") == (200, {"modelName": "a", "modelUrl": "/opt/ml/models/a/model"})
        assert call("GET", "/models/b")[0] == 404
        assert call("POST", "/models/a/invoke", body) == (200, expected)
        assert load("b") == 200
        assert call("POST", "/models/a/invoke", body)[0] == 200  # b is now the least recently used
        assert load("c") == 200  # three 1 MiB-padded models exceed 2.5 MiB: b goes
        assert sorted(m["modelName"] for m in call("GET", "/models")[1]["models"]) == ["a", "c"]
        assert call("POST", "/models/b/invoke", body)[0] == 404
        status, answer = call("POST", "/models", {"model_name": "huge", "url": "/opt/ml/models/huge/model"})
        assert status == 507 and "huge" in answer["message"]
        assert call("DELETE", "/models/c")[0] == 200
        assert call("DELETE", "/models/c")[0] == 404
        assert call("GET", "/models") == (200, {"models": [{"modelName": "a", "modelUrl": "/opt/ml/models/a/model"}]})
        assert call("POST", "/models/a/invoke", body) == (200, expected)
        assert "unloading model 'b' (least recently used)" in container.logs().decode()
    finally:
        container.remove(force=True)
