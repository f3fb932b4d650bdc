"""status, list, delete and predict (sagemaker-runtime) against moto's server."""

from __future__ import annotations

import json

import boto3

from tests.targets.sagemaker.conftest import deploy_args, run_cli


def test_status_shows_what_the_endpoint_serves(sm, bucket, sklearn_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket, "--instance-count", "3")).exit_code == 0
    res = run_cli("status", "--target", "sagemaker", "--name", "iris", "--output", "json")
    assert res.exit_code == 0, res.stderr
    status = res.json()
    assert status["status"] == "InService"
    details = status["details"]
    assert details["managed_by_deployer"] is True
    (variant,) = details["variants"]
    assert variant["instance_count"] == 3 and variant["model_uuid"]
    assert variant["model_data"].startswith("s3://models/")
    text = run_cli("status", "--target", "sagemaker", "--name", "iris")
    assert "sagemaker endpoint iris: InService" in text.stdout


def test_status_of_a_missing_endpoint_is_a_clean_error(sm):
    res = run_cli("status", "--target", "sagemaker", "--name", "nope")
    assert res.exit_code == 1
    assert "no SageMaker endpoint named 'nope'" in res.stderr and "deployer list" in res.stderr


def test_list_marks_deployer_endpoints(sm, bucket, sklearn_model):
    assert run_cli(*deploy_args("ours", sklearn_model, "--bucket", bucket)).exit_code == 0
    client = boto3.client("sagemaker")
    client.create_model(ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
                        PrimaryContainer={"Image": "img"})
    client.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "v", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    client.create_endpoint(EndpointName="theirs", EndpointConfigName="c")
    res = run_cli("list", "--target", "sagemaker", "--output", "json")
    assert res.exit_code == 0, res.stderr
    found = {e["name"]: e["details"]["managed_by_deployer"] for e in res.json()["endpoints"]}
    assert found == {"ours": True, "theirs": False}
    text = run_cli("list", "--target", "sagemaker").stdout.splitlines()
    assert text[0].startswith("ours") and text[0].endswith("deployer")


def test_delete_removes_endpoint_config_models_and_archives(sm, bucket, sklearn_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    before = sm.snapshot()
    dry = run_cli("delete", "--target", "sagemaker", "--name", "iris", "--dry-run", "--output", "json")
    assert dry.exit_code == 0, dry.stderr
    ops = [c["operation"] for c in dry.json()["plan"]["calls"]]
    assert ops == ["delete_endpoint", "wait_endpoint_deleted", "delete_endpoint_config", "delete_model",
                   "delete_object"]
    assert sm.snapshot() == before
    res = run_cli("delete", "--target", "sagemaker", "--name", "iris", "--output", "json")
    assert res.exit_code == 0, res.stderr
    snap = sm.snapshot()
    assert snap["endpoints"] == snap["models"] == snap["configs"] == snap["objects"] == []


def test_delete_with_archive_keeps_models_and_configs(sm, bucket, sklearn_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    res = run_cli("delete", "--target", "sagemaker", "--name", "iris", "--archive")
    assert res.exit_code == 0, res.stderr
    snap = sm.snapshot()
    assert snap["endpoints"] == [] and len(snap["models"]) == len(snap["configs"]) == len(snap["objects"]) == 1


def test_delete_of_a_missing_endpoint_is_a_clean_error(sm):
    res = run_cli("delete", "--target", "sagemaker", "--name", "ghost")
    assert res.exit_code == 1 and "no SageMaker endpoint named 'ghost'" in res.stderr


def test_predict_goes_through_sagemaker_runtime(sm, target, bucket, sklearn_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    canned = json.dumps({"predictions": [0, 2]})
    sm.set_results([{"Body": canned, "ContentType": "application/json",
                     "InvokedProductionVariant": "v", "CustomAttributes": ""}])
    body = json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}}).encode()
    assert target.predict("iris", body, "application/json") == canned.encode()
    assert "InvokeEndpoint" not in sm.actions  # a sagemaker-runtime call, not sagemaker
    # the same request is answered from moto's per-(endpoint, body) cache; CSV goes through too
    assert target.predict("iris", body, "application/json") == canned.encode()
    sm.set_results([{"Body": "1\n0\n", "ContentType": "text/csv", "InvokedProductionVariant": "v",
                     "CustomAttributes": ""}])
    assert target.predict("iris", b"a\n1\n2\n", "text/csv") == b"1\n0\n"


def test_predict_cli_sends_the_file_to_the_endpoint(sm, bucket, sklearn_model, tmp_path):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    canned = json.dumps({"predictions": [1]})
    sm.set_results([{"Body": canned, "ContentType": "application/json",
                     "InvokedProductionVariant": "v", "CustomAttributes": ""}])
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"dataframe_split": {"columns": ["a"], "data": [[7]]}}))
    res = run_cli("predict", "--target", "sagemaker", "--name", "iris", "-i", str(request))
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout) == {"predictions": [1]}
    out = tmp_path / "out.json"
    res = run_cli("predict", "--target", "sagemaker", "--name", "iris", "-i", str(request),
                  "-o", str(out), "--output", "json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(out.read_text()) == {"predictions": [1]}
    assert res.json()["bytes"] == len(canned)


def test_predict_cli_usage_errors(sm, tmp_path):
    request = tmp_path / "r.json"
    request.write_text("{}")
    res = run_cli("predict", "--target", "sagemaker", "-i", str(request))
    assert res.exit_code == 2 and "--name" in res.stderr
    res = run_cli("predict", "-i", str(request))
    assert res.exit_code == 2 and "-m/--model" in res.stderr
    res = run_cli("predict", "--target", "sagemaker", "--name", "x", "-i", str(tmp_path / "missing.json"))
    assert res.exit_code == 2 and "missing.json" in res.stderr
