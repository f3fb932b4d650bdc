"""Pure parsing and validation of the production options (issue 15): rollouts, alarms,
autoscaling, async settings, large-model timeouts, traffic shifts and batch options."""

from __future__ import annotations

import pytest

from deployer.errors import UsageError
from deployer.targets.sagemaker.spec import (
    AsyncConfig,
    Autoscale,
    Rollout,
    config_hash,
    parse_batch,
    parse_deploy,
)


@pytest.mark.parametrize(("raw", "count", "expected"), [
    ("canary:10%:600s", 1, Rollout("CANARY", "CAPACITY_PERCENT", 10, 600, None)),
    ("canary:1:10m", 2, Rollout("CANARY", "INSTANCE_COUNT", 1, 600, None)),
    ("linear:20%:300s", 1, Rollout("LINEAR", "CAPACITY_PERCENT", 20, 300, None)),
    ("linear:2:60:900s", 10, Rollout("LINEAR", "INSTANCE_COUNT", 2, 60, 900)),
    ("all-at-once", 1, Rollout("ALL_AT_ONCE", None, None, 0, None)),
    ("all-at-once:1h", 1, Rollout("ALL_AT_ONCE", None, None, 0, 3600)),
])
def test_rollouts(raw, count, expected):
    assert parse_deploy({"rollout": raw, "mode": "replace", "instance_count": count}).rollout == expected


@pytest.mark.parametrize(("raw", "count", "problem"), [
    ("blue-green", 1, "unknown rollout"),
    ("canary:10%", 1, "canary:SIZE:WAIT"),
    ("canary:60%:600s", 1, "60% is out of range"),  # SageMaker: at most 50%
    ("linear:5%:60s", 1, "5% is out of range"),  # SageMaker: 10-50%
    ("canary:2:60s", 3, "not at most 50%"),  # 2 of 3 instances
    ("canary:1:60s", 1, "raise --instance-count"),
    ("linear:1:60s", 20, "not 10-50%"),  # 1 of 20 is 5%
    ("canary:10%:2h", 1, "out of range"),  # WaitIntervalInSeconds <= 3600
    ("canary:10%:soon", 1, "not a duration"),
    ("all-at-once:60s:60s", 1, "only an optional baking time"),
])
def test_bad_rollouts_say_which_rule(raw, count, problem):
    with pytest.raises(UsageError) as err:
        parse_deploy({"rollout": raw, "mode": "replace", "instance_count": count})
    assert err.value.where == "--rollout" and problem in f"{err.value.what} {err.value.fix}", err.value.what


def test_rollout_rules_with_modes_alarms_and_serverless():
    spec = parse_deploy({"rollout": "canary:10%:600s", "alarm": ("a", "b", "a"), "auto_rollback": True,
                         "mode": "replace"})
    assert spec.alarms == ("a", "b") and spec.auto_rollback
    cases = [
        ({"alarm": ("a",), "rollout": "canary:10%:60s"}, "--alarm", "--auto-rollback"),
        ({"auto_rollback": True, "rollout": "canary:10%:60s"}, "--auto-rollback", "--alarm"),
        ({"alarm": ("a",), "auto_rollback": True}, "--alarm", "--rollout"),
        ({"rollout": "canary:10%:60s", "mode": "add"}, "--rollout", "--mode shift"),
        ({"alarm": tuple(f"a{i}" for i in range(11)), "auto_rollback": True, "rollout": "all-at-once"},
         "--alarm", "fewer"),
        ({"rollout": "canary:1:60s", "serverless": "memory=2048,concurrency=2"}, "--rollout", "percentage"),
    ]
    for options, where, fix in cases:
        with pytest.raises(UsageError) as err:
            parse_deploy(options)
        assert err.value.where == where and fix in (err.value.fix or ""), (options, err.value)


def test_autoscale():
    assert parse_deploy({"autoscale": "1:4:100"}).autoscale == Autoscale(1, 4, 100.0)
    assert parse_deploy({"autoscale": "2:2:7.5"}).autoscale == Autoscale(2, 2, 7.5)
    for raw in ("1:4", "0:4:100", "4:1:100", "1:4:0", "a:b:c"):
        with pytest.raises(UsageError) as err:
            parse_deploy({"autoscale": raw})
        assert err.value.where == "--autoscale" and "MIN:MAX:TARGET" in (err.value.fix or "")
    with pytest.raises(UsageError) as err:
        parse_deploy({"autoscale": "1:4:100", "serverless": "memory=2048,concurrency=2"})
    assert "serverless" in err.value.what
    with pytest.raises(UsageError):
        parse_deploy({"autoscale": "1:4:100", "mode": "shift", "weights": "a=1"})


def test_async_settings():
    spec = parse_deploy({"async_output": "s3://out/p/", "async_sns_success": "arn:aws:sns:us-east-1:123456789012:ok",
                         "async_sns_error": "arn:aws:sns:us-east-1:123456789012:err", "async_max_concurrency": 4})
    assert spec.async_config == AsyncConfig("s3://out/p/", "arn:aws:sns:us-east-1:123456789012:ok",
                                            "arn:aws:sns:us-east-1:123456789012:err", 4)
    bad = [
        ({"async_sns_success": "arn:aws:sns:us-east-1:123456789012:ok"}, "--async-sns-success", "--async-output"),
        ({"async_output": "s3://out/p", "async_sns_error": "topic"}, "--async-sns-error", "arn:aws:sns"),
        ({"async_output": "s3://out/p", "async_max_concurrency": 0}, "--async-max-concurrency", "1 to 1000"),
        ({"async_output": "s3://out/p", "serverless": "memory=2048,concurrency=2"}, "--async-output", "--serverless"),
    ]
    for options, where, fix in bad:
        with pytest.raises(UsageError) as err:
            parse_deploy(options)
        assert err.value.where == where and fix in (err.value.fix or ""), err.value


def test_large_model_timeouts():
    spec = parse_deploy({"startup_health_timeout": 900, "model_download_timeout": 1800})
    assert (spec.startup_health_timeout, spec.model_download_timeout) == (900, 1800)
    for key, value in (("startup_health_timeout", 59), ("model_download_timeout", 3601)):
        with pytest.raises(UsageError) as err:
            parse_deploy({key: value})
        assert err.value.fix == "SageMaker takes 60 to 3600 seconds"
    with pytest.raises(UsageError):
        parse_deploy({"startup_health_timeout": 600, "serverless": "memory=2048,concurrency=2"})


def test_serverless_with_data_capture_is_refused():
    with pytest.raises(UsageError) as err:
        parse_deploy({"serverless": "memory=2048,concurrency=2", "data_capture": "s3://cap/p"})
    assert err.value.where == "--data-capture" and "serverless" in err.value.what


def test_weights_and_shift():
    spec = parse_deploy({"mode": "shift", "weights": "v1=0, v2=1"})
    assert spec.weights == (("v1", 0.0), ("v2", 1.0))
    for options, where in (({"mode": "shift"}, "--weights"), ({"weights": "a=1"}, "--weights"),
                           ({"mode": "shift", "weights": "a"}, "--weights"),
                           ({"mode": "shift", "weights": "a=-1"}, "--weights"),
                           ({"mode": "shift", "weights": "a=x"}, "--weights")):
        with pytest.raises(UsageError) as err:
            parse_deploy(options)
        assert err.value.where == where


def test_weight_autoscale_and_rollout_are_not_in_the_config_hash():
    """Another weight reweights, another --autoscale rescales: neither is a new deployment."""
    def digest(**options):
        return config_hash(parse_deploy({"mode": "replace", **options}), image="i", model_digest="d", role="r")

    base = digest()
    assert digest(variant_weight=0.2) == base
    assert digest(autoscale="1:3:50") == base
    assert digest(rollout="canary:10%:60s", alarm=("a",), auto_rollback=True) == base
    assert digest(startup_health_timeout=600) != base
    assert digest(async_output="s3://out/p") != base
    assert digest(async_output="s3://out/p", async_max_concurrency=2) != digest(async_output="s3://out/p")


def test_vpc_from_flags():
    spec = parse_deploy({"subnet": ("subnet-a", "subnet-b"), "security_group": ("sg-1",)})
    assert spec.vpc_config == {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-a", "subnet-b"]}
    for options, where in (({"subnet": ("subnet-a",)}, "--security-group"),
                           ({"security_group": ("sg-1",)}, "--subnet"),
                           ({"subnet": ("a",), "security_group": ("sg-1",)}, "--subnet"),
                           ({"subnet": ("subnet-a",), "security_group": ("group",)}, "--security-group")):
        with pytest.raises(UsageError) as err:
            parse_deploy(options)
        assert err.value.where == where


def test_batch_options():
    spec = parse_batch("s3://bkt/in/", "s3://bkt/out/", {
        "split_type": "Line", "content_type": "text/csv", "accept": "text/csv", "max_payload_mb": 0,
        "compression": "Gzip", "input_filter": "$[1:]", "output_filter": "$[0,-1]", "join_source": "Input",
        "subnet": ("subnet-a",), "security_group": ("sg-1",)})
    assert (spec.accept, spec.max_payload_mb, spec.compression, spec.assemble_with) == ("text/csv", 0, "Gzip", "Line")
    assert (spec.input_filter, spec.output_filter, spec.join_source) == ("$[1:]", "$[0,-1]", "Input")
    assert spec.vpc_config == {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-a"]}
    assert parse_batch("s3://bkt/in/", "s3://bkt/out/", {"split_type": "Line", "assemble_with": "None"}).assemble_with == "None"
    bad = [({"max_payload_mb": 101}, "--max-payload-mb"), ({"compression": "Zip"}, "--compression"),
           ({"input_filter": "[1:]"}, "--input-filter"), ({"output_filter": "$" + "x" * 70}, "--output-filter"),
           ({"join_source": "Input", "accept": "application/x-recordio"}, "--join-source"),
           ({"assemble_with": "Lines"}, "--assemble-with")]
    for options, where in bad:
        with pytest.raises(UsageError) as err:
            parse_batch("s3://bkt/in/", "s3://bkt/out/", options)
        assert err.value.where == where
