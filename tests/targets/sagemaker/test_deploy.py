"""Deploy modes and options against moto's SageMaker/S3 server over HTTP."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import boto3
import pytest

from deployer.targets.sagemaker.artifact import archive_bytes
from tests.targets.sagemaker.conftest import ACCOUNT, ECR_IMAGE, ROLE, deploy_args, run_cli


def _tags(arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in boto3.client("sagemaker").list_tags(ResourceArn=arn)["Tags"]}


def _endpoint(name: str) -> tuple[dict, dict, list[dict]]:
    sm = boto3.client("sagemaker")
    ep = sm.describe_endpoint(EndpointName=name)
    cfg = sm.describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"])
    models = [sm.describe_model(ModelName=v["ModelName"]) for v in cfg["ProductionVariants"]]
    return ep, cfg, models


def test_create_uploads_model_and_tags_everything(sm, bucket, sklearn_model):
    res = run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket, "--tags", "team=ml",
                               "--env", "LOG_LEVEL=debug", "--output", "json"))
    assert res.exit_code == 0, res.stderr
    out = res.json()
    assert out["action"] == "create" and out["status"] == "InService"
    assert out["endpoint_url"].endswith("/endpoints/iris/invocations")
    ep, cfg, (model,) = _endpoint("iris")
    assert ep["EndpointStatus"] == "InService"
    variant = cfg["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.m5.large" and variant["InitialInstanceCount"] == 1
    container = model["PrimaryContainer"]
    assert container["Image"] == ECR_IMAGE
    assert container["Environment"] == {"LOG_LEVEL": "debug"}
    assert model["ExecutionRoleArn"] == ROLE
    # model.tar.gz in S3 is the reproducible archive of the model directory, contents at its root
    url = container["ModelDataUrl"]
    assert url.startswith(f"s3://{bucket}/deployer/iris/")
    key = url.split("/", 3)[3]
    data = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert data == archive_bytes(Path(sklearn_model))
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert "MLmodel" in names
    # every resource carries deployer's tags and the user's
    mlmodel = (Path(sklearn_model) / "MLmodel").read_text()
    uuid = next(line.split(":", 1)[1].strip() for line in mlmodel.splitlines() if line.startswith("model_uuid"))
    for arn in (ep["EndpointArn"], cfg["EndpointConfigArn"], model["ModelArn"]):
        tags = _tags(arn)
        assert tags["deployer:version"]
        assert tags["deployer:model-uuid"] == uuid
        assert tags["team"] == "ml"
    assert _tags(model["ModelArn"])["deployer:model-data"] == url


def test_same_model_and_config_again_is_a_noop(sm, bucket, sklearn_model):
    args = deploy_args("iris", sklearn_model, "--bucket", bucket)
    assert run_cli(*args).exit_code == 0
    before = sm.snapshot()
    sm.actions.clear()
    for mode in ("create", "replace"):
        res = run_cli(*args, "--mode", mode, "--output", "json")
        assert res.exit_code == 0, res.stderr
        assert res.json()["action"] == "noop"
    assert sm.mutating_actions() == []
    assert sm.snapshot() == before


def test_create_refuses_an_existing_endpoint_with_other_config(sm, bucket, sklearn_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    before = sm.snapshot()
    res = run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket, "--instance-count", "2"))
    assert res.exit_code == 2
    assert "already exists" in res.stderr and "--mode replace" in res.stderr
    assert sm.snapshot() == before


def test_replace_swaps_model_and_removes_old_resources(sm, bucket, sklearn_model, no_signature_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    old = sm.snapshot()
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "replace",
                               "--instance-type", "ml.c5.xlarge", "--output", "json"))
    assert res.exit_code == 0, res.stderr
    out = res.json()
    assert out["action"] == "replace"
    assert "UpdateEndpoint" in sm.actions
    new = sm.snapshot()
    assert new["endpoints"] == ["iris"]
    assert len(new["models"]) == len(new["configs"]) == len(new["objects"]) == 1
    assert set(new["models"]).isdisjoint(old["models"])
    assert set(new["objects"]).isdisjoint(old["objects"])
    assert sorted(out["details"]["removed"]) == sorted(old["models"] + old["configs"] + old["objects"])
    ep, cfg, (model,) = _endpoint("iris")
    assert ep["EndpointConfigName"] == out["details"]["config_name"]
    assert cfg["ProductionVariants"][0]["InstanceType"] == "ml.c5.xlarge"


def test_replace_with_archive_keeps_old_resources(sm, bucket, sklearn_model, no_signature_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    old = sm.snapshot()
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "replace", "--archive"))
    assert res.exit_code == 0, res.stderr
    new = sm.snapshot()
    assert set(old["models"]) < set(new["models"]) and set(old["configs"]) < set(new["configs"])
    assert set(old["objects"]) < set(new["objects"])


def test_add_creates_a_second_weighted_variant(sm, bucket, sklearn_model, no_signature_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    old = sm.snapshot()
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "add",
                               "--variant-weight", "0.25", "--output", "json"))
    assert res.exit_code == 0, res.stderr
    ep, cfg, models = _endpoint("iris")
    weights = sorted(v["InitialVariantWeight"] for v in cfg["ProductionVariants"])
    assert weights == [0.25, 1.0]
    assert {m["ModelName"] for m in models} >= set(old["models"])  # old model still serves
    new = sm.snapshot()
    assert old["configs"][0] not in new["configs"]  # the replaced config is cleaned up
    assert len(new["models"]) == 2
    # adding the same model+config again is a no-op
    sm.actions.clear()
    again = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "add",
                                 "--variant-weight", "0.25", "--output", "json"))
    assert again.json()["action"] == "noop" and sm.mutating_actions() == []
    # and replacing with the original single model is NOT a no-op (the endpoint has 2 variants)
    back = run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket, "--mode", "replace", "--output", "json"))
    assert back.json()["action"] == "replace"
    assert len(_endpoint("iris")[1]["ProductionVariants"]) == 1


@pytest.mark.parametrize("mode", ["replace", "add"])
def test_replace_or_add_on_a_missing_endpoint_creates_it(sm, bucket, sklearn_model, mode):
    res = run_cli(*deploy_args("fresh", sklearn_model, "--bucket", bucket, "--mode", mode, "--output", "json"))
    assert res.exit_code == 0, res.stderr
    assert res.json()["action"] == "create"
    assert sm.snapshot()["endpoints"] == ["fresh"]


def test_serverless_async_capture_vpc_and_private_registry(sm, bucket, sklearn_model, vpc_file):
    # SageMaker captures no data of serverless endpoints (issue 15): capture goes on instances
    res = run_cli(*deploy_args("cap", sklearn_model, "--bucket", bucket, "--data-capture", "s3://capture/iris,20"))
    assert res.exit_code == 0, res.stderr
    capture = _endpoint("cap")[1]["DataCaptureConfig"]
    assert capture["EnableCapture"] is True and capture["InitialSamplingPercentage"] == 20
    assert capture["DestinationS3Uri"] == "s3://capture/iris"
    res = run_cli(*deploy_args("sls", sklearn_model, "--bucket", bucket,
                               "--serverless", "memory=2048,concurrency=5", "--vpc-config", vpc_file,
                               "--registry-credentials-arn", "arn:aws:lambda:us-east-1:123456789012:function:creds",
                               image="registry.example.internal:5000/team/iris:1"))
    assert res.exit_code == 0, res.stderr
    ep, cfg, (model,) = _endpoint("sls")
    variant = cfg["ProductionVariants"][0]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert "InstanceType" not in variant
    assert not cfg.get("DataCaptureConfig")
    assert model["VpcConfig"] == {"SecurityGroupIds": ["sg-0123"], "Subnets": ["subnet-a", "subnet-b"]}
    image_config = model["PrimaryContainer"]["ImageConfig"]
    assert image_config["RepositoryAccessMode"] == "Vpc"
    assert image_config["RepositoryAuthConfig"]["RepositoryCredentialsProviderArn"].endswith(":function:creds")


def test_async_inference_config(sm, bucket, sklearn_model):
    res = run_cli(*deploy_args("asy", sklearn_model, "--bucket", bucket, "--async-output", "s3://out/async/"))
    assert res.exit_code == 0, res.stderr
    _, cfg, _ = _endpoint("asy")
    assert cfg["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"] == "s3://out/async/"


def test_non_ecr_image_without_vpc_is_a_usage_error(sm, bucket, sklearn_model):
    res = run_cli(*deploy_args("x", sklearn_model, "--bucket", bucket, image="ghcr.io/team/iris:1"))
    assert res.exit_code == 2
    assert "RepositoryAccessMode=Vpc" in res.stderr and "--vpc-config" in res.stderr
    assert sm.mutating_actions() == []


def test_model_in_image_uploads_nothing(sm, sklearn_model):
    res = run_cli(*deploy_args("baked", sklearn_model, "--model-in-image"))
    assert res.exit_code == 0, res.stderr
    _, _, (model,) = _endpoint("baked")
    assert "ModelDataUrl" not in model["PrimaryContainer"]
    assert sm.snapshot()["objects"] == []


def test_image_only_deploy(sm):
    res = run_cli(*deploy_args("imgonly", None, "--output", "json"))
    assert res.exit_code == 0, res.stderr
    _, _, (model,) = _endpoint("imgonly")
    assert model["PrimaryContainer"]["Image"] == ECR_IMAGE


def test_default_bucket_is_created_and_reused(sm, sklearn_model, no_signature_model):
    res = run_cli(*deploy_args("a", sklearn_model, "--output", "json"))
    assert res.exit_code == 0, res.stderr
    default = f"deployer-sagemaker-us-east-1-{ACCOUNT}"
    assert sm.snapshot()["buckets"] == [default]
    res2 = run_cli(*deploy_args("b", no_signature_model, "--dry-run", "--output", "json"))
    ops = [c["operation"] for c in res2.json()["plan"]["calls"]]
    assert "create_bucket" not in ops and "upload_model_archive" in ops


def test_execution_role_is_resolved_from_an_assumed_role(sm, sklearn_model, monkeypatch):
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="deployer-sm", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    creds = boto3.client("sts").assume_role(RoleArn=role, RoleSessionName="ci")["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", creds["SessionToken"])
    res = run_cli("deploy", "--target", "sagemaker", "--name", "r", "--image-uri", ECR_IMAGE,
                  "-m", str(sklearn_model), "--model-in-image", "--output", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json()["details"]["role"] == role
    _, _, (model,) = _endpoint("r")
    assert model["ExecutionRoleArn"] == role


def test_execution_role_of_a_plain_user_is_a_clear_error(sm, sklearn_model):
    res = run_cli("deploy", "--target", "sagemaker", "--name", "r", "--image-uri", ECR_IMAGE,
                  "-m", str(sklearn_model), "--model-in-image")
    assert res.exit_code == 2
    assert "--execution-role-arn" in res.stderr and "Traceback" not in res.stderr


def test_long_names_stay_within_sagemaker_limits(sm, bucket, sklearn_model):
    name = "a" * 60 + "-xyz"
    assert len(name) <= 63 + 1  # 64: one too long for an endpoint name
    res = run_cli(*deploy_args(name, sklearn_model, "--bucket", bucket))
    assert res.exit_code == 2 and "63" in res.stderr
    name = "a" * 63
    res = run_cli(*deploy_args(name, sklearn_model, "--bucket", bucket, "--output", "json"))
    assert res.exit_code == 0, res.stderr
    snap = sm.snapshot()
    for resource in snap["models"] + snap["configs"]:
        assert len(resource) <= 63
        assert all(ch.isalnum() or ch == "-" for ch in resource)


def test_region_option_and_bad_values(sm, bucket, sklearn_model):
    res = run_cli(*deploy_args("bad_name", sklearn_model, "--bucket", bucket))
    assert res.exit_code == 2 and "'_'" in res.stderr
    res = run_cli(*deploy_args("x", sklearn_model, "--serverless", "memory=999,concurrency=1"))
    assert res.exit_code == 2 and "1024" in res.stderr
    res = run_cli(*deploy_args("x", sklearn_model, "--env", "1BAD=x"))
    assert res.exit_code == 2 and "--env" in res.stderr
    res = run_cli(*deploy_args("x", sklearn_model, "--tags", "deployer:version=x"))
    assert res.exit_code == 2 and "reserved" in res.stderr
    res = run_cli(*deploy_args("x", sklearn_model, "--bucket", bucket, "--model-in-image"))
    assert res.exit_code == 2
    res = run_cli(*deploy_args("x", sklearn_model, "--region", "eu-west-1", "--bucket", bucket,
                               "--output", "json", "--dry-run"))
    assert res.exit_code == 0, res.stderr
    assert res.json()["plan"]["facts"]["region"] == "eu-west-1"
    # --image is an alias of --image-uri (the name issue #7's Azure docs use)
    alias = [a if a != "--image-uri" else "--image" for a in deploy_args("x", sklearn_model)]
    res = run_cli(*alias, "--bucket", bucket, "--output", "json", "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert ECR_IMAGE in res.stdout
    assert sm.mutating_actions() == []


def test_profile_selects_region_and_a_missing_profile_is_a_clean_error(sm, sklearn_model, tmp_path, monkeypatch):
    config = tmp_path / "aws-config"
    config.write_text("[profile staging]\nregion = eu-west-2\naws_access_key_id = testing\n"
                      "aws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    res = run_cli(*deploy_args("p", sklearn_model, "--model-in-image", "--profile", "staging", "--dry-run",
                               "--output", "json"))
    assert res.exit_code == 0, res.stderr
    assert res.json()["plan"]["facts"]["region"] == "eu-west-2"
    res = run_cli(*deploy_args("p", sklearn_model, "--model-in-image", "--profile", "nope"))
    assert res.exit_code == 1 and "nope" in res.stderr and "Traceback" not in res.stderr
    res = run_cli(*deploy_args("p", sklearn_model, "--model-in-image"))
    assert res.exit_code == 2 and "no AWS region" in res.stderr
