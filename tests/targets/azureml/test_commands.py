"""status / list / delete / predict and --dry-run through the real SDK and the fake ARM."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deployer.errors import TargetError, UsageError
from deployer.targets.base import DeployRequest

IMAGE = "myregistry.azurecr.io/iris:1"
EP = "iris-ep"


@pytest.fixture
def deployed(make_target, arm, front_door, sklearn_score_server, sklearn_model):  # type: ignore[no-untyped-def]
    """An endpoint with blue (100 %) and green (0 %), both served by azmlinfsrv."""
    for colour in ("blue", "green"):
        front_door.backends[(EP, colour)] = sklearn_score_server.url
    target = make_target()
    opts = {"instance_type": "Standard_DS3_v2", "instance_count": 1}
    target.apply(target.plan(DeployRequest(EP, model_uri=str(sklearn_model), image_uri=IMAGE, options=opts)))
    target.apply(target.plan(DeployRequest(EP, model_uri=str(sklearn_model), image_uri=IMAGE,
                                           options={**opts, "traffic": "blue=100,green=0"})))
    arm.requests.clear()
    return target


def test_dry_run_plan_reads_only_and_prints_sdk_operations(make_target, arm, sklearn_model):
    from deployer.console import to_json
    from deployer.targets.executor import render_plan

    target = make_target()
    plan = target.plan(DeployRequest(EP, model_uri=str(sklearn_model), image_uri=IMAGE,
                                     options={"env": ("A=1",), "instance_count": 3}))
    assert all(r.method == "GET" for r in arm.requests)
    assert [str(r) for r in arm.requests if "onlineEndpoints" in r.path] == [f"GET onlineEndpoints/{EP}"]
    text = render_plan(plan)
    assert "online_deployments.begin_create_or_update" in text and "smoke_test" in text
    data = json.loads(to_json(plan))
    dep = next(c for c in data["calls"] if c["operation"] == "online_deployments.begin_create_or_update")
    assert dep["params"]["instance_count"] == 3
    assert dep["params"]["environment_variables"] == {"A": "1"}
    assert dep["undo"]["operation"] == "online_deployments.begin_delete"
    smoke = next(c for c in data["calls"] if c["operation"] == "smoke_test")
    assert smoke["params"]["body"]["input_data"]["columns"][0] == "sepal_length"


def test_status_and_list(deployed, arm):
    status = deployed.status(EP)
    assert status.status == "Succeeded"
    assert status.details["traffic"] == {"blue": 100, "green": 0}
    names = {d["name"]: d for d in status.details["deployments"]}
    assert set(names) == {"blue", "green"}
    assert names["green"]["state"] == "Succeeded" and names["green"]["instance_type"] == "Standard_DS3_v2"
    assert [e.name for e in deployed.list()] == [EP]
    assert all(r.method == "GET" for r in arm.requests)
    with pytest.raises(TargetError, match="does not exist"):
        deployed.status("other-ep")


def test_predict_sends_input_data_and_routes_by_deployment(deployed, front_door):
    mlflow_body = {"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
                                       "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}
    answer = deployed.predict(EP, json.dumps(mlflow_body).encode(), "application/json")
    assert json.loads(answer) == [0, 2]
    sent = json.loads(front_door.seen[-1]["body"])
    assert sent["input_data"]["columns"][0] == "sepal_length" and sent["input_data"]["index"] == [0, 1]
    assert "azureml-model-deployment" not in front_door.seen[-1]["headers"]

    answer = deployed.predict(EP, json.dumps({"input_data": sent["input_data"]}).encode(), "application/json",
                              deployment="green")
    assert json.loads(answer) == [0, 2]
    assert front_door.seen[-1]["headers"]["azureml-model-deployment"] == "green"

    with pytest.raises(TargetError, match="HTTP 400"):
        deployed.predict(EP, b'{"input_data": {"columns": ["x"], "index": [0], "data": [["a"]]}}', "application/json")
    with pytest.raises(UsageError, match="take JSON"):
        deployed.predict(EP, b"a,b\n1,2\n", "text/csv")


def test_delete_one_deployment_then_the_endpoint(deployed, arm):
    with pytest.raises(UsageError, match="receives 100% of the traffic"):
        deployed.delete(EP, deployment="blue")
    assert arm.requests and all(r.method == "GET" for r in arm.requests)

    result = deployed.delete(EP, deployment="green")
    assert result.status == "Deleted"
    assert [str(r) for r in arm.requests if r.method == "DELETE"] == [f"DELETE onlineEndpoints/{EP}/deployments/green"]
    assert arm.get(f"onlineEndpoints/{EP}/deployments/green") is None
    assert deployed.delete(EP, deployment="green").status == "NotFound"

    result = deployed.delete(EP)
    assert result.status == "Deleted" and result.details["deployments"] == ["blue"]
    assert arm.get(f"onlineEndpoints/{EP}") is None
    assert arm.get(f"onlineEndpoints/{EP}/deployments/blue") is None
    assert deployed.delete(EP).status == "NotFound"


def test_arm_errors_become_target_errors(make_target, arm, sklearn_model):
    arm.reject_next(f"onlineEndpoints/{EP}", 403, "AuthorizationFailed",
                    "The client does not have authorization to perform action write")
    target = make_target()
    with pytest.raises(TargetError) as err:
        target.apply(target.plan(DeployRequest(EP, model_uri=str(sklearn_model), image_uri=IMAGE)))
    msg = err.value.format_message()
    assert "AuthorizationFailed" in msg and "does not have authorization" in msg
    assert "AzureML Data Scientist" in msg  # the hint


def test_missing_credentials_say_how_to_sign_in(no_azure_credentials, arm):
    """The real DefaultAzureCredential, with nothing to sign in with, through the real SDK."""
    from deployer.targets.azureml import AzureMLTarget

    target = AzureMLTarget(arm.subscription, arm.resource_group, arm.workspace, transport=arm)
    with pytest.raises(TargetError) as err:
        target.status(EP)
    msg = err.value.format_message()
    assert "no usable Azure credentials" in msg
    assert "az login" in msg and "AZURE_CLIENT_ID" in msg
    assert arm.requests == []  # nothing was sent without a token


def test_workspace_names_are_required(monkeypatch):
    from deployer.targets.azureml import AzureMLTarget

    for var in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(UsageError, match="--resource-group, --workspace"):
        AzureMLTarget(subscription="s").status(EP)
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg")
    monkeypatch.setenv("AZUREML_WORKSPACE_NAME", "ws")
    ws = AzureMLTarget(subscription="s").workspace
    assert (ws.subscription, ws.resource_group, ws.workspace) == ("s", "rg", "ws")


def test_cli_usage_errors_exit_2_before_any_call(monkeypatch, sklearn_model):
    from deployer.cli import cli

    for var in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()
    res = runner.invoke(cli, ["deploy", "--target", "azureml", "--name", EP, "-m", str(sklearn_model),
                              "--subscription", "s", "--resource-group", "g", "--workspace", "w",
                              "--traffic", "blue=70", "--dry-run"])
    assert res.exit_code == 2 and "adds up to 70" in res.output
    res = runner.invoke(cli, ["deploy", "--target", "azureml", "--name", "x", "-m", str(sklearn_model), "--dry-run",
                              "--subscription", "s", "--resource-group", "g", "--workspace", "w"])
    assert res.exit_code == 2 and "invalid endpoint name 'x'" in res.output
    res = runner.invoke(cli, ["status", "--target", "azureml", "--name", EP])
    assert res.exit_code == 2 and "--subscription" in res.output
    res = runner.invoke(cli, ["deploy", "--help"])
    assert "[azureml] Traffic map" in res.output and "--smoke-test / --no-smoke-test" in res.output
