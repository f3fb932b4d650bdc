"""Batch transform in production (issue 15) against moto's server over HTTP: a non-ECR image
in VPC mode, the transform options, and status / list / clean of ``--no-wait`` jobs.

moto calls extended: those of ``conftest.py`` (transient job states, StopTransformJob); the
request bodies are recorded by ``production_sim.py`` (no behaviour changed for batch).
"""

from __future__ import annotations

import boto3
import pytest

from tests.targets.sagemaker.conftest import ECR_IMAGE, ROLE, run_cli
from tests.targets.sagemaker.production_sim import ProductionSim, install

PRIVATE_IMAGE = "registry.example.internal:5000/team/iris:1"
CREDS = "arn:aws:lambda:us-east-1:123456789012:function:registry-creds"


@pytest.fixture
def prod(sm, monkeypatch) -> ProductionSim:
    return install(sm, monkeypatch)


def batch(model, *extra: str, image: str = ECR_IMAGE) -> list[str]:
    return ["batch", "--target", "sagemaker", "-m", str(model), "--image-uri", image, "--execution-role-arn", ROLE,
            "--bucket", "models", "--input", "s3://data/in/", "--output", "s3://data/out/", *extra]


def _finish(sm, job: str) -> None:
    """The simulated job ends now (as if its instances had finished the input)."""
    _, final = sm._pending.pop(("job", job))
    final()


def test_non_ecr_image_in_vpc_mode_with_every_transform_option(prod, bucket, sklearn_model):
    res = run_cli(*batch(sklearn_model, "--subnet", "subnet-a", "--subnet", "subnet-b", "--security-group", "sg-1",
                         "--registry-credentials-arn", CREDS, "--content-type", "text/csv", "--split-type", "Line",
                         "--accept", "text/csv", "--max-payload-mb", "6", "--compression", "Gzip",
                         "--input-filter", "$[1:]", "--output-filter", "$[0,-1]", "--join-source", "Input",
                         "--name", "vpc-job", "--format", "json", image=PRIVATE_IMAGE))
    assert res.exit_code == 0, res.stderr
    model = prod.body("CreateModel")
    assert model["PrimaryContainer"]["Image"] == PRIVATE_IMAGE
    assert model["PrimaryContainer"]["ImageConfig"] == {
        "RepositoryAccessMode": "Vpc", "RepositoryAuthConfig": {"RepositoryCredentialsProviderArn": CREDS}}
    assert model["VpcConfig"] == {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-a", "subnet-b"]}
    job = prod.body("CreateTransformJob")
    job.pop("Tags")
    assert job == {
        "TransformJobName": "vpc-job", "ModelName": model["ModelName"],
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/in/"}},
                           "ContentType": "text/csv", "SplitType": "Line", "CompressionType": "Gzip"},
        "TransformOutput": {"S3OutputPath": "s3://data/out/", "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "MaxPayloadInMB": 6, "BatchStrategy": "MultiRecord",
        "DataProcessing": {"InputFilter": "$[1:]", "OutputFilter": "$[0,-1]", "JoinSource": "Input"},
    }
    assert boto3.client("sagemaker").describe_transform_job(TransformJobName="vpc-job")["TransformJobStatus"] == "Completed"
    # without a VPC the non-ECR image is refused before any change, naming the flags to add
    prod.sm.actions.clear()
    res = run_cli(*batch(sklearn_model, image=PRIVATE_IMAGE))
    assert res.exit_code == 2 and "--subnet and --security-group" in res.stderr
    assert prod.mutating() == []


def test_no_wait_jobs_status_list_and_clean(prod, bucket, sklearn_model, no_signature_model):
    sm = prod.sm
    sm.latency = 10_000
    for name, model in (("nightly-1", sklearn_model), ("nightly-2", no_signature_model)):
        res = run_cli(*batch(model, "--no-wait", "--name", name))
        assert res.exit_code == 0, res.stderr
    # someone else's job is never listed nor cleaned
    client = boto3.client("sagemaker")
    client.create_model(ModelName="theirs", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": ECR_IMAGE})
    client.create_transform_job(
        TransformJobName="their-job", ModelName="theirs",
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/x/"}}},
        TransformOutput={"S3OutputPath": "s3://data/y/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        Tags=[{"Key": "team", "Value": "other"}])  # moto's ListTags fails on an untagged job
    _finish(sm, "their-job")
    listed = run_cli("batch", "--target", "sagemaker", "--list", "--format", "json")
    assert listed.exit_code == 0, listed.stderr
    assert sorted((j["name"], j["status"]) for j in listed.json()["jobs"]) == [
        ("nightly-1", "InProgress"), ("nightly-2", "InProgress")]
    status = run_cli("batch", "--target", "sagemaker", "--status", "nightly-1", "--format", "json").json()
    assert status["status"] == "InProgress" and status["details"]["model_exists"] is True
    # running jobs keep their models: nothing to clean yet
    sm.actions.clear()
    early = run_cli("batch", "--target", "sagemaker", "--clean", "--format", "json")
    assert early.exit_code == 0, early.stderr
    assert early.json()["plan"]["action"] == "noop" and len(early.json()["plan"]["facts"]["skipped"]) == 2
    _finish(sm, "nightly-1")
    _finish(sm, "nightly-2")
    status = run_cli("batch", "--target", "sagemaker", "--status", "nightly-1", "--format", "json").json()
    assert status["status"] == "Completed" and "--clean --name nightly-1" in status["details"]["cleanup"]
    before = sm.snapshot()
    dry = run_cli("batch", "--target", "sagemaker", "--clean", "--dry-run", "--format", "json")
    assert [c["operation"] for c in dry.json()["plan"]["calls"]] == ["delete_model", "delete_object"] * 2
    assert prod.mutating() == [] and sm.snapshot() == before
    one = run_cli("batch", "--target", "sagemaker", "--clean", "--name", "nightly-2", "--format", "json")
    assert one.exit_code == 0, one.stderr
    assert one.json()["status"] == "cleaned" and len(sm.snapshot()["models"]) == len(before["models"]) - 1
    res = run_cli("batch", "--target", "sagemaker", "--clean", "--format", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json()["status"] == "cleaned"
    snap = sm.snapshot()
    assert snap["models"] == ["theirs"] and snap["objects"] == []
    assert run_cli("batch", "--target", "sagemaker", "--status", "nightly-1", "--format", "json").json()[
        "details"]["model_exists"] is False
    sm.actions.clear()
    again = run_cli("batch", "--target", "sagemaker", "--clean", "--format", "json")
    assert again.json()["plan"]["action"] == "noop" and prod.mutating() == []
    both = run_cli("batch", "--target", "sagemaker", "--list", "--clean")
    assert both.exit_code == 2 and "exclude each other" in both.stderr
