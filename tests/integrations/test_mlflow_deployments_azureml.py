"""``get_deploy_client("deployer-azureml:/SUB/RG/WS")`` through MLflow's plugin manager, against
the fake-ARM azure-core transport (the real azure-ai-ml SDK runs) and a front door that relays
scoring requests to azmlinfsrv running deployer's score.py with a real MLflow model.

The transport and credential reach deployer's Azure target the way the target tests pass
them: as keyword arguments of its factory (``client.target_kwargs``).
"""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.deployments import get_deploy_client
from mlflow.exceptions import MlflowException

from tests.fixtures.build_option_cases import OPTION_CASES, OptionCase
from tests.integrations.test_mlflow_deployments import IRIS_ROWS
from tests.targets.azureml.conftest import StaticToken

IMAGE = "myregistry.azurecr.io/iris:1"
EP = "iris-ep"


@pytest.fixture
def client(arm, front_door, sklearn_score_server):  # type: ignore[no-untyped-def]
    for colour in ("blue", "green"):
        front_door.backends[(EP, colour)] = sklearn_score_server.url
    client = get_deploy_client(f"deployer-azureml:/{arm.subscription}/{arm.resource_group}/{arm.workspace}")
    client.target_kwargs.update(credential=StaticToken(), transport=arm)
    return client


def test_deployments_in_an_endpoint_traffic_predict_delete(client, arm, front_door, sklearn_model):
    created = client.create_deployment("blue", str(sklearn_model), config={"image_uri": IMAGE, "instance_count": "2"},
                                       endpoint=EP)
    assert created["name"] == "blue" and created["flavor"] == "python_function" and created["endpoint"] == EP
    assert arm.get(f"onlineEndpoints/{EP}/deployments/blue")["sku"]["capacity"] == 2
    # the smoke test went through the endpoint before traffic moved (deployer's rollout)
    assert front_door.seen and front_door.seen[0]["headers"]["azureml-model-deployment"] == "blue"

    with pytest.raises(MlflowException) as err:
        client.create_deployment("blue", str(sklearn_model), config={"image_uri": IMAGE}, endpoint=EP)
    assert err.value.error_code == "RESOURCE_ALREADY_EXISTS"
    client.create_deployment("green", str(sklearn_model), config={"image_uri": IMAGE}, endpoint=EP)
    assert client.get_endpoint(EP)["traffic"] == {"blue": 0, "green": 100}

    assert [d["name"] for d in client.list_deployments(endpoint=EP)] == ["blue", "green"]
    got = client.get_deployment("green", endpoint=EP)
    assert got["state"] == "Succeeded" and got["instance_type"] == "Standard_DS3_v2"
    with pytest.raises(MlflowException) as err:
        client.get_deployment("red", endpoint=EP)
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert [e["name"] for e in client.list_endpoints()] == [EP]
    assert [e["name"] for e in client.list_deployments()] == [EP]

    plan = client.update_endpoint(EP, config={"traffic": "blue=100,green=0", "dry_run": "true"})
    assert plan["plan"]["facts"]["traffic"] == {"blue": 100, "green": 0}
    assert client.get_endpoint(EP)["traffic"] == {"blue": 0, "green": 100}
    assert client.update_endpoint(EP, config={"traffic": "blue=100,green=0"}) is None
    assert client.get_endpoint(EP)["traffic"] == {"blue": 100, "green": 0}
    with pytest.raises(MlflowException, match="unknown config key.*'instance_type'.*Valid keys: dry_run"):
        client.update_endpoint(EP, config={"instance_type": "Standard_F2s_v2"})

    answer = client.predict(None, pd.DataFrame(IRIS_ROWS), endpoint=EP)
    assert answer.get_predictions()[0].tolist() == [0, 2]
    assert "azureml-model-deployment" not in front_door.seen[-1]["headers"]  # routed by traffic
    answer = client.predict("green", {"dataframe_split": pd.DataFrame(IRIS_ROWS).to_dict(orient="split")},
                            endpoint=EP)
    assert answer["predictions"] == [0, 2]
    assert front_door.seen[-1]["headers"]["azureml-model-deployment"] == "green"

    # deployer's own refusal, carried to MLflow: the deployment still takes traffic
    with pytest.raises(MlflowException) as err:
        client.delete_deployment("blue", endpoint=EP)
    assert "receives 100% of the traffic" in err.value.message and "hint:" in err.value.message
    client.delete_deployment("green", endpoint=EP)
    assert arm.get(f"onlineEndpoints/{EP}/deployments/green") is None
    client.delete_endpoint(EP)
    assert arm.get(f"onlineEndpoints/{EP}") is None
    client.delete_endpoint(EP)  # idempotent
    with pytest.raises(MlflowException) as err:
        client.get_endpoint(EP)
    assert "does not exist" in err.value.message


def test_endpoint_named_like_the_deployment_and_unsupported_calls(client, arm, sklearn_model):
    created = client.create_deployment(EP, str(sklearn_model), config={"image_uri": IMAGE})
    assert created["action"] == "create" and created["status"]
    assert client.get_deployment(EP)["status"] == "Succeeded"
    # an update rolls out blue/green inside the endpoint (deployer's deploy to an existing endpoint)
    updated = client.update_deployment(EP, str(sklearn_model), config={"image_uri": IMAGE + "-2"})
    assert updated["action"] == "update"
    assert sorted(client.get_endpoint(EP)["traffic"].values()) == [0, 100]
    with pytest.raises(MlflowException) as err:
        client.create_endpoint("new-ep")
    assert err.value.error_code == "NOT_IMPLEMENTED" and "create_deployment(DEPLOYMENT, MODEL_URI" in err.value.message
    with pytest.raises(MlflowException, match="cannot explain"):
        client.explain(EP, pd.DataFrame(IRIS_ROWS))
    with pytest.raises(MlflowException, match="expected deployer-azureml:/SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE"):
        get_deploy_client("deployer-azureml:/only-a-subscription")


@pytest.mark.parametrize("case", OPTION_CASES, ids=lambda c: c.id)
def test_each_build_option_key_reaches_the_azure_build_step(case: OptionCase, arm, sklearn_model,  # type: ignore[no-untyped-def]
                                                             option_files):
    """With -C registry, Azure ML deploys deployer's image: every build-option key reaches the
    planned build step, and one that changes the image's content changes the image pushed."""
    client = get_deploy_client(f"deployer-azureml:/{arm.subscription}/{arm.resource_group}/{arm.workspace}")
    client.target_kwargs.update(credential=StaticToken(), transport=arm)

    def plan(config: dict) -> dict:  # type: ignore[type-arg]
        out = client.create_deployment("blue", str(sklearn_model), endpoint=EP,
                                       config={"registry": "registry.example/ml", "dry_run": True, **config})
        return out["plan"]

    base, got = plan({}), plan(dict([case.config_item(option_files)]))
    step = next(c for c in got["calls"] if c["operation"] == "build_image")["params"]
    base_step = next(c for c in base["calls"] if c["operation"] == "build_image")["params"]
    assert step["Build"][case.name] == case.expected(option_files)
    assert step["Build"]["target"] == "azureml" and case.name not in base_step["Build"]
    assert (step["LocalImage"] != base_step["LocalImage"]) is case.changes_tag
    assert got["facts"]["image"] == "registry.example/ml/" + step["LocalImage"]
    env = next(c for c in got["calls"] if c["operation"] == "environments.create_or_update")["params"]
    assert env["image"] == got["facts"]["image"]
    assert [r for r in arm.requests if r.method != "GET"] == []
