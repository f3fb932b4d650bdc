"""Failure paths: no orphans, rollback on failed updates, dry-run purity, waiting, timeouts."""

from __future__ import annotations

import boto3
import pytest

from tests.targets.sagemaker.conftest import deploy_args, run_cli

CREATE_STEPS = [
    ("s3", None),
    ("action", "CreateModel"),
    ("action", "CreateEndpointConfig"),
    ("action", "CreateEndpoint"),
    ("endpoint", "Failed"),
]


def _inject(sm, kind, what):
    if kind == "s3":
        sm.fail_s3_put()
    elif kind == "action":
        sm.fail(what)
    else:
        sm.create_outcome = what


@pytest.mark.parametrize(("kind", "what"), CREATE_STEPS, ids=[w or k for k, w in CREATE_STEPS])
def test_failed_create_leaves_no_orphans(sm, bucket, sklearn_model, kind, what):
    before = sm.snapshot()
    _inject(sm, kind, what)
    res = run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket))
    assert res.exit_code == 1
    assert "Traceback" not in res.stderr
    assert "failed" in res.stderr and "removed what this run created" in res.stderr
    assert sm.snapshot() == before  # no model, config, endpoint or S3 object left behind
    # and the same command succeeds once the cause is gone
    sm.create_outcome = "InService"
    ok = run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket))
    assert ok.exit_code == 0, ok.stderr


def test_failed_create_with_default_bucket_removes_the_bucket_it_created(sm, sklearn_model):
    sm.fail("CreateEndpoint")
    res = run_cli(*deploy_args("iris", sklearn_model))
    assert res.exit_code == 1
    snap = sm.snapshot()
    assert snap["buckets"] == [] and snap["objects"] == [] and snap["models"] == []


def test_failed_create_with_archive_keeps_models_but_not_a_failed_endpoint(sm, bucket, sklearn_model):
    sm.create_outcome = "Failed"
    res = run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket, "--archive"))
    assert res.exit_code == 1
    assert "kept (--archive)" in res.stderr
    snap = sm.snapshot()
    assert snap["endpoints"] == []
    assert len(snap["models"]) == len(snap["configs"]) == len(snap["objects"]) == 1
    assert "the container did not pass the /ping health check" in res.stderr


@pytest.mark.parametrize("how", ["rollback", "call-fails"])
def test_failed_update_keeps_the_old_config_serving(sm, bucket, sklearn_model, no_signature_model, how):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    old = sm.snapshot()
    old_config = boto3.client("sagemaker").describe_endpoint(EndpointName="iris")["EndpointConfigName"]
    if how == "rollback":
        sm.update_outcome = "rollback"
        sm.latency = 2
    else:
        sm.fail("UpdateEndpoint", code="ValidationException", message="endpoint config invalid")
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "replace"))
    assert res.exit_code == 1
    assert f"still serves {old_config}" in res.stderr
    if how == "rollback":
        assert "rolled the update back" in res.stderr
    ep = boto3.client("sagemaker").describe_endpoint(EndpointName="iris")
    assert ep["EndpointStatus"] == "InService" and ep["EndpointConfigName"] == old_config
    assert sm.snapshot() == old  # new model/config/archive removed, old ones untouched


def test_update_rollback_failed_removes_nothing(sm, bucket, sklearn_model, no_signature_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    old = sm.snapshot()
    sm.update_outcome = "rollback_failed"
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "replace"))
    assert res.exit_code == 1 and "UpdateRollbackFailed" in res.stderr
    new = sm.snapshot()
    assert set(old["models"]) < set(new["models"]) and set(old["configs"]) < set(new["configs"])


def test_cleanup_failure_is_a_warning_not_an_error(sm, bucket, sklearn_model, no_signature_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    sm.fail("DeleteModel", code="AccessDeniedException", message="not allowed to delete")
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "replace",
                               "--output", "json"))
    assert res.exit_code == 0, res.stderr
    warnings = res.json()["details"]["warnings"]
    assert len(warnings) == 1 and "delete_model" in warnings[0]
    assert "warning: could not delete_model" in res.stderr


def test_dry_run_prints_ordered_calls_and_changes_nothing(sm, bucket, sklearn_model, no_signature_model):
    res = run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket, "--dry-run", "--output", "json"))
    assert res.exit_code == 0, res.stderr
    plan = res.json()["plan"]
    ops = [f"{c['service']}:{c['operation']}" for c in plan["calls"]]
    assert ops == ["s3:upload_model_archive", "sagemaker:create_model", "sagemaker:create_endpoint_config",
                   "sagemaker:create_endpoint", "sagemaker:wait_endpoint"]
    create_model = plan["calls"][1]
    assert create_model["params"]["PrimaryContainer"]["ModelDataUrl"].startswith("s3://models/")
    assert create_model["undo"]["operation"] == "delete_model"
    assert sm.mutating_actions() == [] and sm.snapshot()["models"] == []

    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    before = sm.snapshot()
    sm.actions.clear()
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "replace", "--dry-run"))
    assert res.exit_code == 0, res.stderr
    assert "update_endpoint" in res.stdout and "[cleanup]" in res.stdout and "nothing was changed" in res.stdout
    assert sm.mutating_actions() == [] and sm.snapshot() == before


def test_wait_reports_progress_and_timeout_keeps_resources(sm, bucket, sklearn_model):
    sm.latency = 4
    res = run_cli(*deploy_args("slow", sklearn_model, "--bucket", bucket))
    assert res.exit_code == 0, res.stderr
    assert "endpoint slow: Creating" in res.stderr and "endpoint slow: InService" in res.stderr

    sm.latency = 10_000
    res = run_cli(*deploy_args("slower", sklearn_model, "--bucket", bucket, "--timeout", "0.2"))
    assert res.exit_code == 1
    assert "still Creating after" in res.stderr and "continues in AWS" in res.stderr
    assert "slower" in sm.snapshot()["endpoints"]  # nothing undone: the creation is still going on


def test_no_wait_returns_at_once_and_reports_what_it_left(sm, bucket, sklearn_model, no_signature_model):
    sm.latency = 10_000
    res = run_cli(*deploy_args("nw", sklearn_model, "--bucket", bucket, "--no-wait", "--output", "json"))
    assert res.exit_code == 0, res.stderr
    assert res.json()["status"] == "submitted"
    # a busy endpoint cannot be changed
    res = run_cli(*deploy_args("nw", no_signature_model, "--bucket", bucket, "--mode", "replace"))
    assert res.exit_code == 1 and "is Creating" in res.stderr
    sm.latency = 0
    sm._pending.clear()
    boto3.client("sagemaker")  # settle: the simulated creation finished
    from moto.sagemaker.models import sagemaker_backends

    sagemaker_backends["123456789012"]["us-east-1"].endpoints["nw"].endpoint_status = "InService"
    res = run_cli(*deploy_args("nw", no_signature_model, "--bucket", bucket, "--mode", "replace", "--no-wait",
                               "--output", "json"))
    assert res.exit_code == 0, res.stderr
    left = res.json()["details"]["left_behind"]
    assert any("EndpointConfigName" in x for x in left) and any("ModelName" in x for x in left)
