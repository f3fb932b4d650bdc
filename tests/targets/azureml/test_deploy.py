"""Blue/green rollouts through the real azure-ai-ml SDK against the fake ARM transport.

Scoring (the smoke test) goes over real HTTP to a local front door and on to azmlinfsrv
running deployer's score.py with a real MLflow model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployer.errors import TargetError, UsageError
from deployer.targets.base import DeployRequest

IMAGE = "myregistry.azurecr.io/iris:1"
EP = "iris-ep"


def request(model: Path | None = None, *, image: str | None = IMAGE, wait: bool = True, **options):  # type: ignore[no-untyped-def]
    opts = {"instance_type": "Standard_DS3_v2", "instance_count": 1, "smoke_test": True}
    opts.update(options)
    return DeployRequest(EP, model_uri=str(model) if model else None, image_uri=image, options=opts, wait=wait)


def writes(arm) -> list[str]:  # type: ignore[no-untyped-def]
    """The requests that change something (reads and key look-ups left out)."""
    return [c for c in arm.calls(include_reads=False) if not c.endswith(("/listKeys", "/token"))]


def test_first_rollout_creates_endpoint_blue_and_shifts_traffic(make_target, arm, front_door, sklearn_score_server, sklearn_model):
    front_door.backends[(EP, "blue")] = sklearn_score_server.url
    target = make_target()
    plan = target.plan(request(sklearn_model))
    assert [c.operation for c in plan.calls] == [
        "online_endpoints.begin_create_or_update",
        "environments.create_or_update",
        "online_deployments.begin_create_or_update",
        "smoke_test",
        "online_endpoints.update_traffic",
    ]
    assert writes(arm) == []  # planning only reads

    result = target.apply(plan)

    assert writes(arm) == [
        f"PUT onlineEndpoints/{EP}",
        f"PUT environments/{EP}-blue-env/versions/1",
        f"PUT onlineEndpoints/{EP}/deployments/blue",
        f"PUT onlineEndpoints/{EP}",
    ]
    env_body = arm.bodies("PUT", f"environments/{EP}-blue-env/versions/1")[0]
    assert env_body["properties"]["image"] == IMAGE
    assert env_body["properties"]["inferenceConfig"]["scoringRoute"] == {"path": "/score", "port": 8080}
    dep_body = arm.bodies("PUT", f"onlineEndpoints/{EP}/deployments/blue")[0]
    assert dep_body["properties"]["environmentId"].endswith(f"/environments/{EP}-blue-env/versions/1")
    assert dep_body["properties"]["instanceType"] == "Standard_DS3_v2"
    assert dep_body["sku"]["capacity"] == 1
    # the endpoint PUT that created it carried no traffic; the last one sets blue=100
    first, last = arm.bodies("PUT", f"onlineEndpoints/{EP}")
    assert not first["properties"].get("traffic")
    assert last["properties"]["traffic"] == {"blue": 100}
    # the smoke request reached only blue, with the endpoint key, as Azure input_data
    smoke = front_door.seen[0]
    assert smoke["headers"]["azureml-model-deployment"] == "blue"
    assert "input_data" in json.loads(smoke["body"])
    assert result.status == "Succeeded"
    assert result.details["traffic"] == {"blue": 100}
    assert result.details["smoke_test"]["status"] == 200
    assert len(json.loads(result.details["smoke_test"]["response"])) == 3  # 3 example rows
    assert result.endpoint_url == front_door.uri(EP)
    # every long-running operation was polled through the transport, not slept on
    assert arm.sleeps and all(s <= 5 for s in arm.sleeps)


def _rollout_blue(make_target, front_door, server, model):  # type: ignore[no-untyped-def]
    front_door.backends[(EP, "blue")] = server.url
    make_target().apply(make_target().plan(request(model)))


def test_second_rollout_goes_green_at_zero_then_takes_traffic(make_target, arm, front_door, sklearn_score_server, sklearn_model):
    _rollout_blue(make_target, front_door, sklearn_score_server, sklearn_model)
    front_door.backends[(EP, "green")] = sklearn_score_server.url
    arm.requests.clear()
    target = make_target()
    plan = target.plan(request(sklearn_model, image=IMAGE.replace(":1", ":2")))
    assert plan.facts["deployment"] == "green"
    assert plan.facts["previous_traffic"] == {"blue": 100}
    assert plan.facts["traffic"] == {"blue": 0, "green": 100}
    assert "online_endpoints.begin_create_or_update" not in [c.operation for c in plan.calls]

    result = target.apply(plan)

    assert writes(arm) == [
        f"PUT environments/{EP}-green-env/versions/1",
        f"PUT onlineEndpoints/{EP}/deployments/green",
        f"PUT onlineEndpoints/{EP}",
    ]
    # green was created while blue still had all the traffic
    ep_state_at_green_put = arm.bodies("PUT", f"onlineEndpoints/{EP}")[0]["properties"]["traffic"]
    assert ep_state_at_green_put == {"green": 100}  # zeroes are stripped by the SDK, as for az ml
    assert result.details["traffic"] == {"blue": 0, "green": 100}
    assert arm.get(f"onlineEndpoints/{EP}/deployments/blue") is not None  # kept for rollback
    assert front_door.seen[-1]["headers"]["azureml-model-deployment"] == "green"

    # the third rollout replaces blue, the idle one, with a new environment version
    third = make_target().plan(request(sklearn_model, image=IMAGE.replace(":1", ":3")))
    assert third.facts["deployment"] == "blue"
    make_target().apply(third)
    assert arm.get(f"environments/{EP}-blue-env/versions/2")["properties"]["image"] == IMAGE.replace(":1", ":3")
    assert arm.get(f"onlineEndpoints/{EP}")["properties"]["traffic"] == {"blue": 100}


def test_failed_provisioning_deletes_new_deployment_and_keeps_traffic(make_target, arm, front_door, sklearn_score_server, sklearn_model):
    _rollout_blue(make_target, front_door, sklearn_score_server, sklearn_model)
    arm.requests.clear()
    arm.fail_provisioning(f"onlineEndpoints/{EP}/deployments/green", message="container exited with code 3")

    target = make_target()
    with pytest.raises(TargetError) as err:
        target.apply(target.plan(request(sklearn_model, image=IMAGE.replace(":1", ":2"))))

    msg = err.value.format_message()
    assert "container exited with code 3" in msg
    assert "rolled back: delete deployment green" in msg
    assert "traffic left at blue=100" in msg
    assert writes(arm) == [
        f"PUT environments/{EP}-green-env/versions/1",
        f"PUT onlineEndpoints/{EP}/deployments/green",
        f"DELETE onlineEndpoints/{EP}/deployments/green",
    ]
    assert arm.get(f"onlineEndpoints/{EP}/deployments/green") is None
    assert arm.get(f"onlineEndpoints/{EP}")["properties"]["traffic"] == {"blue": 100}
    assert not any(s["headers"].get("azureml-model-deployment") == "green" for s in front_door.seen)


def test_failed_smoke_test_deletes_new_deployment_and_keeps_traffic(
    make_target, arm, front_door, sklearn_score_server, failing_score_server, sklearn_model
):
    _rollout_blue(make_target, front_door, sklearn_score_server, sklearn_model)
    front_door.backends[(EP, "green")] = failing_score_server.url  # the new version is broken
    arm.requests.clear()

    target = make_target()
    with pytest.raises(TargetError) as err:
        target.apply(target.plan(request(sklearn_model, image=IMAGE.replace(":1", ":2"))))

    msg = err.value.format_message()
    assert "smoke test failed" in msg and "HTTP 400" in msg
    assert "BAD_REQUEST: Encountered an unexpected error while evaluating the model" in msg  # the server's answer
    assert writes(arm) == [
        f"PUT environments/{EP}-green-env/versions/1",
        f"PUT onlineEndpoints/{EP}/deployments/green",
        f"DELETE onlineEndpoints/{EP}/deployments/green",
    ]
    assert arm.get(f"onlineEndpoints/{EP}")["properties"]["traffic"] == {"blue": 100}


def test_failure_on_a_new_endpoint_removes_the_endpoint_too(make_target, arm, front_door, sklearn_model):
    arm.fail_provisioning(f"onlineEndpoints/{EP}/deployments/blue", code="OutOfQuota", message="not enough quota")
    target = make_target()
    with pytest.raises(TargetError) as err:
        target.apply(target.plan(request(sklearn_model)))
    assert "not enough quota" in str(err.value)
    assert writes(arm)[-2:] == [f"DELETE onlineEndpoints/{EP}/deployments/blue", f"DELETE onlineEndpoints/{EP}"]
    assert arm.get(f"onlineEndpoints/{EP}") is None


def test_traffic_split_and_traffic_only_shift(make_target, arm, front_door, sklearn_score_server, sklearn_model):
    _rollout_blue(make_target, front_door, sklearn_score_server, sklearn_model)
    front_door.backends[(EP, "green")] = sklearn_score_server.url
    target = make_target()
    result = target.apply(target.plan(request(sklearn_model, traffic="blue=90,green=10")))
    assert result.details["traffic"] == {"blue": 90, "green": 10}

    arm.requests.clear()
    plan = make_target().plan(request(None, image=None, traffic="green=100"))
    assert [c.operation for c in plan.calls] == ["online_endpoints.update_traffic"]
    result = make_target().apply(plan)
    assert writes(arm) == [f"PUT onlineEndpoints/{EP}"]
    assert arm.bodies("PUT", f"onlineEndpoints/{EP}")[0]["properties"]["traffic"] == {"green": 100}
    assert result.details["traffic"] == {"blue": 0, "green": 100}

    with pytest.raises(UsageError, match="does not have"):
        make_target().plan(request(None, image=None, traffic="red=100"))
    with pytest.raises(UsageError, match="adds up to 90"):
        make_target().plan(request(None, image=None, traffic="blue=80,green=10"))


def test_no_wait_creates_the_deployment_and_leaves_traffic(make_target, arm, sklearn_model):
    target = make_target()
    plan = target.plan(request(sklearn_model, wait=False))
    assert [c.operation for c in plan.calls] == [
        "online_endpoints.begin_create_or_update",
        "environments.create_or_update",
        "online_deployments.begin_create_or_update",
    ]
    result = target.apply(plan)
    assert result.status in ("Creating", "Succeeded")
    assert arm.get(f"onlineEndpoints/{EP}/deployments/blue") is not None
    # (azure-core's poller may keep polling in its daemon thread; deployer does not wait)
    assert not any(r.method == "POST" for r in arm.requests)  # no key look-up: no smoke test
    assert arm.get(f"onlineEndpoints/{EP}")["properties"]["traffic"] == {}


def test_both_colours_serving_is_refused_unless_named(make_target, arm, front_door, sklearn_score_server, sklearn_model):
    _rollout_blue(make_target, front_door, sklearn_score_server, sklearn_model)
    front_door.backends[(EP, "green")] = sklearn_score_server.url
    make_target().apply(make_target().plan(request(sklearn_model, traffic="blue=50,green=50")))
    with pytest.raises(UsageError, match="both 'blue' and 'green' receive traffic"):
        make_target().plan(request(sklearn_model))
    plan = make_target().plan(request(sklearn_model, deployment="canary"))
    assert plan.facts["deployment"] == "canary"
    assert plan.facts["traffic"] == {"blue": 0, "green": 0, "canary": 100}


def test_registered_model_reference_needs_no_upload(make_target, arm, front_door, sklearn_score_server):
    front_door.backends[(EP, "blue")] = sklearn_score_server.url
    target = make_target()
    plan = target.plan(DeployRequest(EP, model_uri="azureml:iris:3", options={"instance_count": 2}))
    assert plan.facts["smoke_test"].startswith("skipped")
    target.apply(plan)
    body = arm.bodies("PUT", f"onlineEndpoints/{EP}/deployments/blue")[0]
    assert body["properties"]["model"].endswith("/models/iris/versions/3")
    assert body["sku"]["capacity"] == 2


def test_mlflow_no_code_rollout_uploads_and_registers_the_model(
    make_target, arm, front_door, blob_storage, sklearn_score_server, sklearn_model
):
    """No --image-uri: the model is uploaded to the workspace's blob store (through the real
    azure-storage-blob client) and registered as mlflow_model; Azure builds the environment."""
    front_door.backends[(EP, "blue")] = sklearn_score_server.url
    target = make_target()
    plan = target.plan(request(sklearn_model, image=None, model_name="iris"))
    assert [c.operation for c in plan.calls] == [
        "online_endpoints.begin_create_or_update",
        "models.create_or_update",
        "online_deployments.begin_create_or_update",
        "smoke_test",
        "online_endpoints.update_traffic",
    ]
    result = target.apply(plan)

    assert writes(arm) == [
        f"PUT onlineEndpoints/{EP}",
        "POST datastores/workspaceblobstore/listSecrets",
        "PUT models/iris/versions/1",
        f"PUT onlineEndpoints/{EP}/deployments/blue",
        f"PUT onlineEndpoints/{EP}",
    ]
    model_body = arm.bodies("PUT", "models/iris/versions/1")[0]["properties"]
    assert model_body["modelType"] == "mlflow_model"
    prefix = model_body["modelUri"].split("/paths/", 1)[1]
    container = arm.get("datastores/workspaceblobstore")["properties"]["containerName"]
    uploaded = blob_storage.files(blob_storage.account, container, prefix + "/")
    local = {p.relative_to(sklearn_model).as_posix(): p.read_bytes() for p in sklearn_model.rglob("*") if p.is_file()}
    assert {k[len(prefix) + 1:]: v for k, v in uploaded.items()} == local  # every file, byte for byte
    dep = arm.bodies("PUT", f"onlineEndpoints/{EP}/deployments/blue")[0]["properties"]
    assert dep["model"].endswith("/models/iris/versions/1")
    assert "environmentId" not in dep and "codeConfiguration" not in dep
    assert result.details["model"].endswith("/models/iris/versions/1")
    assert result.details["traffic"] == {"blue": 100}

    # the same model and settings again: blue already serves it, nothing to do
    puts_before = [c for c in blob_storage.calls if c.startswith("PUT")]
    arm.requests.clear()
    again = make_target().plan(request(sklearn_model, image=None, model_name="iris"))
    assert (again.action, list(again.calls)) == ("noop", [])
    assert make_target().apply(again).details["traffic"] == {"blue": 100}
    assert writes(arm) == [] and arm.get("models/iris/versions/2") is None

    # the same model on two instances: a rollout; the SDK finds the confirmed upload and
    # registers version 2 without re-uploading
    front_door.backends[(EP, "green")] = sklearn_score_server.url
    make_target().apply(make_target().plan(request(sklearn_model, image=None, model_name="iris", instance_count=2)))
    assert arm.get("models/iris/versions/2") is not None
    assert [c for c in blob_storage.calls if c.startswith("PUT")] == puts_before


def test_rerunning_the_same_deploy_is_a_noop(make_target, arm, front_door, sklearn_score_server, sklearn_model):
    """The deployment taking all the traffic carries the request's fingerprint: the same request
    again plans no call; anything that changes what runs (image, instances, env) rolls out."""
    _rollout_blue(make_target, front_door, sklearn_score_server, sklearn_model)
    blue = arm.get(f"onlineEndpoints/{EP}/deployments/blue")
    assert len(blue["tags"]["deployer-fingerprint"]) == 64
    arm.requests.clear()

    again = make_target().plan(request(sklearn_model))
    assert (again.action, list(again.calls), again.facts["deployment"]) == ("noop", [], "blue")
    assert "nothing to do" in again.summary
    result = make_target().apply(again)
    assert result.action == "noop" and result.details["traffic"] == {"blue": 100}
    assert writes(arm) == []
    # the same with the current split spelled out, or naming the live deployment
    assert make_target().plan(request(sklearn_model, traffic="BLUE=100")).action == "noop"
    assert make_target().plan(request(sklearn_model, deployment="blue")).action == "noop"

    for changed in ({"instance_count": 2}, {"env": ("LOG_LEVEL=debug",)}, {"image": IMAGE.replace(":1", ":9")},
                    {"deployment": "green"}, {"traffic": "blue=100,green=0"}):
        plan = make_target().plan(request(sklearn_model, **changed))  # type: ignore[arg-type]
        assert plan.action == "update" and "online_deployments.begin_create_or_update" in [
            c.operation for c in plan.calls], changed
    assert writes(arm) == []
