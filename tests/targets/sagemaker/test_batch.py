"""Batch transform jobs and `batch --stop` against moto's server (extended with StopTransformJob)."""

from __future__ import annotations

import boto3

from tests.targets.sagemaker.conftest import ECR_IMAGE, ROLE, run_cli


def batch_args(model, *extra: str) -> list[str]:
    return ["batch", "--target", "sagemaker", "-m", str(model), "--image-uri", ECR_IMAGE,
            "--execution-role-arn", ROLE, "--bucket", "models",
            "--input", "s3://data/in/", "--output", "s3://data/out/", *extra]


def test_batch_job_runs_and_cleans_its_model(sm, bucket, sklearn_model):
    sm.latency = 2
    res = run_cli(*batch_args(sklearn_model, "--content-type", "text/csv", "--split-type", "Line",
                              "--instance-type", "ml.c5.xlarge", "--format", "json"))
    assert res.exit_code == 0, res.stderr
    out = res.json()
    assert out["status"] == "Completed"
    job = boto3.client("sagemaker").describe_transform_job(TransformJobName=out["name"])
    assert job["TransformInput"]["ContentType"] == "text/csv"
    assert job["TransformInput"]["SplitType"] == "Line"
    assert job["TransformOutput"]["S3OutputPath"] == "s3://data/out/"
    assert job["TransformOutput"]["AssembleWith"] == "Line"
    assert job["TransformResources"] == {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1}
    assert "transform job" in res.stderr and "InProgress" in res.stderr
    snap = sm.snapshot()
    assert snap["models"] == [] and snap["objects"] == []  # the job's model is gone once it ended


def test_batch_no_wait_then_stop(sm, bucket, sklearn_model):
    sm.latency = 10_000
    res = run_cli(*batch_args(sklearn_model, "--no-wait", "--name", "nightly-1", "--format", "json"))
    assert res.exit_code == 0, res.stderr
    assert res.json()["status"] == "submitted"
    assert len(sm.snapshot()["models"]) == 1
    sm.latency = 2
    stop = run_cli("batch", "--target", "sagemaker", "--stop", "nightly-1", "--format", "json")
    assert stop.exit_code == 0, stop.stderr
    assert stop.json()["status"] == "Stopped"
    assert "StopTransformJob" in sm.actions
    snap = sm.snapshot()
    assert snap["models"] == [] and snap["objects"] == []
    again = run_cli("batch", "--target", "sagemaker", "--stop", "nightly-1")
    assert again.exit_code == 1 and "only a running job can be stopped" in again.stderr


def test_failed_batch_job_removes_what_it_created(sm, bucket, sklearn_model):
    sm.transform_outcome = "Failed"
    res = run_cli(*batch_args(sklearn_model))
    assert res.exit_code == 1 and "is Failed" in res.stderr
    snap = sm.snapshot()
    assert snap["models"] == [] and snap["objects"] == []


def test_batch_dry_run_and_usage_errors(sm, bucket, sklearn_model):
    res = run_cli(*batch_args(sklearn_model, "--dry-run", "--format", "json"))
    assert res.exit_code == 0, res.stderr
    ops = [c["operation"] for c in res.json()["plan"]["calls"]]
    assert ops == ["upload_model_archive", "create_model", "create_transform_job", "wait_transform_job",
                   "delete_model", "delete_object"]
    assert sm.mutating_actions() == []
    res = run_cli("batch", "--target", "sagemaker", "-m", str(sklearn_model), "--input", "data/in")
    assert res.exit_code == 2 and "--output" in res.stderr
    res = run_cli("batch", "--target", "sagemaker", "-m", str(sklearn_model), "--input", "/local",
                  "--output", "s3://b/o")
    assert res.exit_code == 2 and "not an S3 URI" in res.stderr
    res = run_cli("batch", "--target", "sagemaker", "--stop", "j", "-m", str(sklearn_model))
    assert res.exit_code == 2


def test_parquet_batch_jobs_get_an_image_that_reads_parquet(sm, bucket, sklearn_model):
    """Images leave pyarrow out by default; a Parquet batch job (or --parquet) plans a build
    with it, so the job cannot fail record by record on 415s."""
    def build_step(*extra: str) -> dict:
        res = run_cli("batch", "--target", "sagemaker", "-m", str(sklearn_model), "--execution-role-arn", ROLE,
                      "--bucket", "models", "--input", "s3://data/in/", "--output", "s3://data/out/",
                      "--dry-run", "--format", "json", *extra)
        assert res.exit_code == 0, res.stderr
        calls = res.json()["plan"]["calls"]
        return next(c for c in calls if c["operation"] == "build_image")["params"]

    plain = build_step("--content-type", "text/csv")
    parquet = build_step("--content-type", "application/vnd.apache.parquet")
    flagged = build_step("--parquet")
    assert "parquet" not in plain["Build"]
    assert parquet["Build"]["parquet"] is True and flagged["Build"]["parquet"] is True
    assert parquet["LocalImage"] == flagged["LocalImage"] != plain["LocalImage"]  # a different image
    res = run_cli("deploy", "--target", "sagemaker", "--name", "pq", "-m", str(sklearn_model),
                  "--execution-role-arn", ROLE, "--parquet", "--dry-run", "--output", "json")
    assert res.exit_code == 0, res.stderr
    step = next(c for c in res.json()["plan"]["calls"] if c["operation"] == "build_image")
    assert step["params"]["Build"]["parquet"] is True
    assert sm.mutating_actions() == []
