"""SageMaker in production (issue 15) against moto's server over HTTP.

Promotion (--mode shift), reweighting on re-run, blue/green rollouts with CloudWatch alarms
and auto-rollback, Application Auto Scaling, asynchronous endpoints end to end, large-model
timeouts, and the serverless + data capture refusal. Each test asserts the exact request
bodies deployer sent and the state left in moto.

moto calls extended for these tests (see ``production_sim.py`` for how faithfully):
UpdateEndpoint (DeploymentConfig: blue/green canary/linear/all-at-once steps, alarm-driven
auto-rollback read from moto's CloudWatch, the same-variant-name rule; refusal to remove or
retype a variant registered with Application Auto Scaling), UpdateEndpointWeightsAndCapacities
(keeps instance counts it is not given), RegisterScalableTarget (the variant must exist),
InvokeEndpointAsync (a "pending" mode that writes no result). moto's own CloudWatch
(PutMetricAlarm, SetAlarmState, DescribeAlarms), Application Auto Scaling and async result
queue (``/moto-api/static/sagemaker/async-endpoint-results``) are used as they are.
"""

from __future__ import annotations

import json
import urllib.request

import boto3
import pytest

from tests.targets.sagemaker.conftest import ACCOUNT, REGION, deploy_args, run_cli
from tests.targets.sagemaker.production_sim import ProductionSim, install

SCALING = {"ServiceNamespace": "sagemaker", "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}


@pytest.fixture
def prod(sm, monkeypatch) -> ProductionSim:
    return install(sm, monkeypatch)


def _endpoint(name: str) -> tuple[dict, dict]:
    client = boto3.client("sagemaker")
    ep = client.describe_endpoint(EndpointName=name)
    return ep, client.describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"])


def _live_weights(name: str) -> dict[str, float]:
    return {v["VariantName"]: v.get("CurrentWeight") for v in _endpoint(name)[0]["ProductionVariants"]}


def _scaling() -> tuple[list[dict], list[dict]]:
    aas = boto3.client("application-autoscaling")
    targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    return targets, policies


# ------------------------------------------------------------------ promote / reweight
def test_add_then_promote_with_mode_shift(prod, bucket, sklearn_model, no_signature_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "add",
                               "--variant-weight", "0.1", "--output", "json"))
    assert res.exit_code == 0, res.stderr
    old, new = res.json()["details"]["variants"]
    shift = ["deploy", "--target", "sagemaker", "--name", "iris", "--mode", "shift", "--weights", f"{old}=0,{new}=1"]
    prod.sm.actions.clear()
    dry = run_cli(*shift, "--dry-run", "--output", "json")
    assert dry.exit_code == 0, dry.stderr
    calls = dry.json()["plan"]["calls"]
    assert [c["operation"] for c in calls] == ["update_endpoint_weights_and_capacities", "wait_endpoint"]
    expected = {"EndpointName": "iris", "DesiredWeightsAndCapacities": [
        {"VariantName": old, "DesiredWeight": 0.0}, {"VariantName": new, "DesiredWeight": 1.0}]}
    assert calls[0]["params"] == expected
    assert calls[0]["undo"]["params"]["DesiredWeightsAndCapacities"] == [
        {"VariantName": old, "DesiredWeight": 1.0}, {"VariantName": new, "DesiredWeight": 0.1}]
    assert prod.mutating() == []
    res = run_cli(*shift, "--output", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json()["action"] == "shift" and prod.mutating() == ["UpdateEndpointWeightsAndCapacities"]
    assert prod.body("UpdateEndpointWeightsAndCapacities") == expected
    assert _live_weights("iris") == {old: 0.0, new: 1.0}
    status = run_cli("status", "--target", "sagemaker", "--name", "iris", "--output", "json").json()
    assert {v["variant"]: v["weight"] for v in status["details"]["variants"]} == {old: 0.0, new: 1.0}
    # the same shift again changes nothing
    prod.sm.actions.clear()
    again = run_cli(*shift, "--output", "json")
    assert again.json()["action"] == "noop" and prod.mutating() == []
    # a typo is caught before any change, with the names to use
    typo = run_cli("deploy", "--target", "sagemaker", "--name", "iris", "--mode", "shift", "--weights", f"{new}x=1")
    assert typo.exit_code == 2 and f"did you mean '{new}'" in typo.stderr and prod.mutating() == []
    nothing = run_cli("deploy", "--target", "sagemaker", "--name", "iris", "--mode", "shift",
                      "--weights", f"{old}=0,{new}=0")
    assert nothing.exit_code == 2 and "route nowhere" in nothing.stderr


def test_rerunning_add_with_another_weight_reweights(prod, bucket, sklearn_model, no_signature_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    add = deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "add")
    first = run_cli(*add, "--variant-weight", "0.25", "--output", "json")
    assert first.exit_code == 0, first.stderr
    old, new = first.json()["details"]["variants"]
    before = prod.sm.snapshot()
    prod.sm.actions.clear()
    res = run_cli(*add, "--variant-weight", "0.75", "--output", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json()["action"] == "tune"
    assert prod.mutating() == ["UpdateEndpointWeightsAndCapacities"]  # no model, no config, no variant
    assert prod.body("UpdateEndpointWeightsAndCapacities") == {
        "EndpointName": "iris", "DesiredWeightsAndCapacities": [{"VariantName": new, "DesiredWeight": 0.75}]}
    assert prod.sm.snapshot() == before
    assert _live_weights("iris") == {old: 1.0, new: 0.75}
    prod.sm.actions.clear()
    assert run_cli(*add, "--variant-weight", "0.75", "--output", "json").json()["action"] == "noop"
    assert prod.mutating() == []
    # a third variant: the new config keeps the live weights, not the ones of the old config
    third = run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket, "--mode", "add", "--env", "X=1",
                                 "--variant-weight", "0.5"))
    assert third.exit_code == 0, third.stderr
    weights = {v["VariantName"]: v["InitialVariantWeight"] for v in _endpoint("iris")[1]["ProductionVariants"]}
    assert weights[old] == 1.0 and weights[new] == 0.75 and len(weights) == 3


# ------------------------------------------------------------------ rollouts and alarms
def _alarm(name: str) -> None:
    boto3.client("cloudwatch").put_metric_alarm(
        AlarmName=name, Namespace="AWS/SageMaker", MetricName="Invocation5XXErrors", Statistic="Sum",
        Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
        Dimensions=[{"Name": "EndpointName", "Value": "iris"}])


def test_canary_rollout_rolled_back_by_a_firing_alarm(prod, bucket, sklearn_model, no_signature_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    _, old_config = _endpoint("iris")
    (old_variant,) = old_config["ProductionVariants"]
    _alarm("iris-5xx")
    boto3.client("cloudwatch").set_alarm_state(AlarmName="iris-5xx", StateValue="ALARM", StateReason="5xx burst")
    before = prod.sm.snapshot()
    prod.sm.latency = 1
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "replace",
                               "--rollout", "canary:10%:600s", "--alarm", "iris-5xx", "--auto-rollback"))
    assert res.exit_code == 1
    assert "SageMaker rolled the update back" in res.stderr and "iris-5xx" in res.stderr
    update = prod.body("UpdateEndpoint")
    assert update == {"EndpointName": "iris", "EndpointConfigName": update["EndpointConfigName"], "DeploymentConfig": {
        "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
            "Type": "CANARY", "WaitIntervalInSeconds": 600, "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}}},
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "iris-5xx"}]}}}
    # blue/green keeps the variant's name (SageMaker's rule), with the new model behind it
    (variant,) = prod.body("CreateEndpointConfig")["ProductionVariants"]
    assert variant["VariantName"] == old_variant["VariantName"] and variant["ModelName"] != old_variant["ModelName"]
    assert prod.events[:2] == ["provision new fleet", "canary 10 CAPACITY_PERCENT"]
    assert prod.events[2] == "checked alarms ['iris-5xx']: ['iris-5xx']"
    assert prod.events[-1] == f"rolled back to {old_config['EndpointConfigName']}"
    ep, _ = _endpoint("iris")
    assert ep["EndpointStatus"] == "InService" and ep["EndpointConfigName"] == old_config["EndpointConfigName"]
    assert prod.sm.snapshot() == before  # the new model, config and archive are gone


def test_linear_rollout_with_quiet_alarms_completes(prod, bucket, sklearn_model, no_signature_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket, "--instance-count", "4")).exit_code == 0
    old = prod.sm.snapshot()
    _alarm("iris-latency")
    prod.sm.latency = 1
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "replace",
                               "--instance-count", "4", "--rollout", "linear:50%:60s:300s",
                               "--alarm", "iris-latency", "--auto-rollback", "--output", "json"))
    assert res.exit_code == 0, res.stderr
    assert prod.body("UpdateEndpoint")["DeploymentConfig"]["BlueGreenUpdatePolicy"] == {
        "TrafficRoutingConfiguration": {"Type": "LINEAR", "WaitIntervalInSeconds": 60,
                                        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 50}},
        "TerminationWaitInSeconds": 300}
    assert prod.events == ["provision new fleet", "linear step to 50%", "checked alarms ['iris-latency']: none firing",
                           "linear step to 100%", "checked alarms ['iris-latency']: none firing", "bake 300s",
                           "checked alarms ['iris-latency']: none firing", "update complete"]
    new = prod.sm.snapshot()
    assert _endpoint("iris")[0]["EndpointConfigName"] == res.json()["details"]["config_name"]
    assert set(new["models"]).isdisjoint(old["models"]) and len(new["configs"]) == 1


def test_rollout_refusals_happen_before_any_change(prod, bucket, sklearn_model, no_signature_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket)).exit_code == 0
    prod.sm.actions.clear()
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "replace",
                               "--rollout", "canary:10%:600s", "--alarm", "nope", "--auto-rollback"))
    assert res.exit_code == 2 and "no CloudWatch alarm named 'nope'" in res.stderr
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "replace",
                               "--rollout", "canary:60%:600s"))
    assert res.exit_code == 2 and "SageMaker takes 1% to 50%" in res.stderr
    assert prod.mutating() == []


# ------------------------------------------------------------------ autoscaling
def test_autoscaling_registered_rescaled_moved_and_removed_with_the_endpoint(prod, bucket, sklearn_model,
                                                                             no_signature_model):
    res = run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket, "--autoscale", "1:4:100",
                               "--output", "json"))
    assert res.exit_code == 0, res.stderr
    (variant,) = res.json()["details"]["variants"]
    rid = f"endpoint/iris/variant/{variant}"
    assert prod.body("RegisterScalableTarget") == {**SCALING, "ResourceId": rid, "MinCapacity": 1, "MaxCapacity": 4}
    assert prod.body("PutScalingPolicy") == {
        "PolicyName": "deployer-invocations-per-instance", **SCALING, "ResourceId": rid,
        "PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": 100.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}}}
    # registration follows the endpoint's creation and wait (the variant must exist)
    order = prod.mutating()
    assert order.index("RegisterScalableTarget") > order.index("CreateEndpoint")
    targets, policies = _scaling()
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(rid, 1, 4)]
    assert len(policies) == 1
    # idempotent; a new range only re-registers
    prod.sm.actions.clear()
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket, "--autoscale", "1:4:100",
                                "--output", "json")).json()["action"] == "noop"
    assert prod.mutating() == []
    res = run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket, "--autoscale", "1:6:100",
                               "--output", "json"))
    assert res.json()["action"] == "tune" and prod.mutating() == ["RegisterScalableTarget"]
    # replacing the model: the old variant is deregistered before SageMaker may remove it
    # (the extended UpdateEndpoint refuses otherwise), the new one registered once it serves
    prod.sm.actions.clear()
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "replace",
                               "--autoscale", "2:6:50", "--output", "json"))
    assert res.exit_code == 0, res.stderr
    (new_variant,) = res.json()["details"]["variants"]
    assert prod.mutating() == ["CreateModel", "CreateEndpointConfig", "DeleteScalingPolicy", "DeregisterScalableTarget",
                               "UpdateEndpoint", "RegisterScalableTarget", "PutScalingPolicy", "DeleteEndpointConfig",
                               "DeleteModel"]
    targets, policies = _scaling()
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [
        (f"endpoint/iris/variant/{new_variant}", 2, 6)]
    assert [p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] for p in policies] == [50.0]
    status = run_cli("status", "--target", "sagemaker", "--name", "iris", "--output", "json").json()
    assert status["details"]["variants"][0]["autoscaling"] == {
        "min": 2, "max": 6, "policies": ["deployer-invocations-per-instance"]}
    # delete: the dry run shows the deregistration; afterwards nothing is left anywhere
    dry = run_cli("delete", "--target", "sagemaker", "--name", "iris", "--dry-run", "--output", "json")
    assert [c["operation"] for c in dry.json()["plan"]["calls"]][:3] == [
        "delete_scaling_policy", "deregister_scalable_target", "delete_endpoint"]
    assert run_cli("delete", "--target", "sagemaker", "--name", "iris").exit_code == 0
    assert _scaling() == ([], [])
    snap = prod.sm.snapshot()
    assert snap["endpoints"] == snap["models"] == snap["configs"] == snap["objects"] == []


def test_failed_update_restores_autoscaling(prod, bucket, sklearn_model, no_signature_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket, "--autoscale", "1:4:100")).exit_code == 0
    before_scaling = _scaling()
    before = prod.sm.snapshot()
    prod.sm.fail("UpdateEndpoint")
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "replace",
                               "--autoscale", "1:4:100"))
    assert res.exit_code == 1 and "restored:" in res.stderr
    targets, policies = _scaling()
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [
        (t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in before_scaling[0]]
    assert [p["PolicyName"] for p in policies] == [p["PolicyName"] for p in before_scaling[1]]
    assert prod.sm.snapshot() == before


def test_failed_autoscaling_keeps_the_endpoint_and_a_rerun_completes_it(prod, bucket, sklearn_model):
    prod.failing.add("PutScalingPolicy")
    args = deploy_args("iris", sklearn_model, "--bucket", bucket, "--autoscale", "1:3:80")
    res = run_cli(*args)
    assert res.exit_code == 1
    assert "serves the new configuration" in res.stderr and "run the same command again" in res.stderr
    assert _scaling() == ([], [])  # the half-made registration was undone
    assert _endpoint("iris")[0]["EndpointStatus"] == "InService"
    prod.sm.actions.clear()
    again = run_cli(*args, "--output", "json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["action"] == "tune"
    assert prod.mutating() == ["RegisterScalableTarget", "PutScalingPolicy"]
    assert len(_scaling()[0]) == len(_scaling()[1]) == 1


# ------------------------------------------------------------------ async endpoints
def _queue_async(endpoint_url: str, results: list[dict]) -> None:
    body = json.dumps({"account_id": ACCOUNT, "region": REGION, "results": results}).encode()
    req = urllib.request.Request(f"{endpoint_url}/moto-api/static/sagemaker/async-endpoint-results", data=body,
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=10) as resp:
        assert resp.status in (200, 201)


def test_async_endpoint_settings_and_predict_round_trip(prod, aws, bucket, sklearn_model, tmp_path):
    ok, err = (f"arn:aws:sns:{REGION}:{ACCOUNT}:{t}" for t in ("done", "failed"))
    res = run_cli(*deploy_args("asy", sklearn_model, "--bucket", bucket, "--async-output", "s3://async-out/results/",
                               "--async-sns-success", ok, "--async-sns-error", err, "--async-max-concurrency", "4"))
    assert res.exit_code == 0, res.stderr
    assert prod.body("CreateEndpointConfig")["AsyncInferenceConfig"] == {
        "OutputConfig": {"S3OutputPath": "s3://async-out/results/",
                         "NotificationConfig": {"SuccessTopic": ok, "ErrorTopic": err}},
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4}}
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="async-out")
    _queue_async(aws.endpoint_url, [{"data": json.dumps({"predictions": [2]})},
                                    {"is_failure": True, "data": "model exploded"}])
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"dataframe_split": {"columns": ["a"], "data": [[7]]}}))
    aws.clear_requests()
    out = run_cli("predict", "--target", "sagemaker", "--name", "asy", "-i", str(request))
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout) == {"predictions": [2]}
    paths = [(m, p.split("?")[0]) for m, p, _ in aws.requests]
    uploads = [p for m, p in paths if m == "PUT" and p.startswith("/async-out/deployer-async-inputs/asy/")]
    assert len(uploads) == 1 and ("DELETE", uploads[0]) in paths  # uploaded, then removed
    assert ("POST", "/endpoints/asy/async-invocations") in paths
    assert ("POST", "/endpoints/asy/invocations") not in paths  # never the real-time call
    assert not s3.list_objects_v2(Bucket="async-out", Prefix="deployer-async-inputs/").get("Contents")
    # the next request fails inside the model: the failure location's report is the error
    request.write_text(json.dumps({"dataframe_split": {"columns": ["a"], "data": [[8]]}}))
    failed = run_cli("predict", "--target", "sagemaker", "--name", "asy", "-i", str(request))
    assert failed.exit_code == 1 and "model exploded" in failed.stderr and "Traceback" not in failed.stderr
    # a request still queued when --async-timeout runs out: a clear error, the request kept
    prod.async_pending = True
    slow = run_cli("predict", "--target", "sagemaker", "--name", "asy", "-i", str(request), "--async-timeout", "0.3")
    assert slow.exit_code == 1
    assert "after 0.3s" in slow.stderr and "s3://async-out/pending/response.json" in slow.stderr
    assert len(s3.list_objects_v2(Bucket="async-out", Prefix="deployer-async-inputs/")["Contents"]) == 1


# ------------------------------------------------------------------ the rest
def test_large_model_timeouts_reach_the_variant(prod, bucket, sklearn_model):
    res = run_cli(*deploy_args("big", sklearn_model, "--bucket", bucket, "--startup-health-timeout", "900",
                               "--model-download-timeout", "1800"))
    assert res.exit_code == 0, res.stderr
    (variant,) = prod.body("CreateEndpointConfig")["ProductionVariants"]
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 900
    assert variant["ModelDataDownloadTimeoutInSeconds"] == 1800
    assert _endpoint("big")[1]["ProductionVariants"][0]["ContainerStartupHealthCheckTimeoutInSeconds"] == 900


def test_serverless_with_data_capture_is_refused_before_any_call(prod, aws, sklearn_model):
    aws.clear_requests()
    res = run_cli(*deploy_args("sls", sklearn_model, "--serverless", "memory=2048,concurrency=5",
                               "--data-capture", "s3://capture/p"))
    assert res.exit_code == 2
    assert "SageMaker does not capture data of serverless endpoints" in res.stderr and "Traceback" not in res.stderr
    assert aws.requests == []


def test_dry_run_shows_every_new_call_and_changes_nothing(prod, bucket, sklearn_model, no_signature_model):
    assert run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket, "--autoscale", "1:4:100")).exit_code == 0
    _alarm("iris-5xx")
    prod.sm.actions.clear()
    before = prod.sm.snapshot()
    res = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "replace",
                               "--instance-type", "ml.c5.xlarge", "--rollout", "canary:10%:600s",
                               "--alarm", "iris-5xx", "--auto-rollback", "--autoscale", "2:8:60",
                               "--startup-health-timeout", "600", "--dry-run", "--output", "json"))
    assert res.exit_code == 0, res.stderr
    calls = res.json()["plan"]["calls"]
    assert [(c["service"], c["operation"], c["phase"]) for c in calls] == [
        ("s3", "upload_model_archive", "create"), ("sagemaker", "create_model", "create"),
        ("sagemaker", "create_endpoint_config", "create"),
        # a new instance type: the variant leaves autoscaling first (restored if the update fails)
        ("application-autoscaling", "delete_scaling_policy", "prepare"),
        ("application-autoscaling", "deregister_scalable_target", "prepare"),
        ("sagemaker", "update_endpoint", "commit"), ("sagemaker", "wait_endpoint", "wait"),
        ("application-autoscaling", "register_scalable_target", "post"),
        ("application-autoscaling", "put_scaling_policy", "post"),
        ("sagemaker", "delete_endpoint_config", "cleanup"), ("sagemaker", "delete_model", "cleanup"),
        ("s3", "delete_object", "cleanup")]
    by_op = {c["operation"]: c for c in calls}
    assert by_op["update_endpoint"]["params"]["DeploymentConfig"]["AutoRollbackConfiguration"] == {
        "Alarms": [{"AlarmName": "iris-5xx"}]}
    assert by_op["register_scalable_target"]["params"]["MinCapacity"] == 2
    assert by_op["deregister_scalable_target"]["undo"]["operation"] == "register_scalable_target"
    text = run_cli(*deploy_args("iris", no_signature_model, "--bucket", bucket, "--mode", "replace",
                                "--rollout", "canary:10%:600s", "--dry-run"))
    assert "canary traffic shifting" in text.stdout and "dry run: nothing was changed" in text.stdout
    assert prod.mutating() == [] and prod.sm.snapshot() == before
