"""Pure planning: traffic maps, blue/green choice, and the ordered SDK calls (no cloud)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deployer.errors import UsageError
from deployer.targets.azureml import plan as pl
from deployer.targets.azureml import traffic as tr
from deployer.targets.azureml.payload import to_input_data
from deployer.targets.azureml.target import parse_env

IMG = pl.ImageSource("reg.example/iris:2")


def test_parse_traffic():
    assert tr.parse_traffic("blue=90, green=10") == {"blue": 90, "green": 10}
    assert tr.parse_traffic("blue=100") == {"blue": 100}
    for bad, match in [("blue=90,green=20", "adds up to 110"), ("blue", "bad traffic entry"),
                       ("blue=x", "bad percentage"), ("blue=101", "bad percentage"),
                       ("blue=50,BLUE=50", "appears twice"), ("", "empty"), ("b=100", "invalid deployment name")]:
        with pytest.raises(UsageError, match=match):
            tr.parse_traffic(bad)


@given(st.lists(st.integers(0, 100), min_size=1, max_size=4))
def test_parse_traffic_accepts_exactly_maps_summing_to_100_or_0(values):
    text = ",".join(f"dep{i}={v}" for i, v in enumerate(values))
    if sum(values) in (0, 100):
        assert list(tr.parse_traffic(text).values()) == values
    else:
        with pytest.raises(UsageError):
            tr.parse_traffic(text)


@pytest.mark.parametrize(
    "traffic,deployments,expected",
    [
        ({}, [], "blue"),
        ({"blue": 100}, ["blue"], "green"),
        ({"green": 100}, ["green"], "blue"),
        ({"blue": 100, "green": 0}, ["blue", "green"], "green"),
        ({"blue": 0, "green": 100}, ["blue", "green"], "blue"),
        ({"Blue": 100}, ["Blue", "Green"], "green"),
        ({"canary": 100}, ["canary"], "blue"),
    ],
)
def test_choose_deployment(traffic, deployments, expected):
    assert tr.choose_deployment(traffic, deployments) == expected


def test_choose_deployment_refuses_to_replace_a_serving_one():
    with pytest.raises(UsageError, match="both 'blue' and 'green' receive traffic"):
        tr.choose_deployment({"blue": 50, "green": 50}, ["blue", "green"])


def test_names_are_checked():
    for good in ("abc", "my-endpoint-1", "A" + "b" * 31):
        assert tr.check_name(good, kind="endpoint", flag="--name") == good
    for bad in ("ab", "1abc", "abc-", "a_b_c", "a" * 33, "x; rm -rf /", ""):
        with pytest.raises(UsageError):
            tr.check_name(bad, kind="endpoint", flag="--name")


def test_new_endpoint_plan_order_and_undo():
    spec = pl.DeploySpec(endpoint="iris", source=IMG, smoke_body={"input_data": [[1]]})
    plan = pl.plan_deploy(spec, pl.EndpointState("iris"))
    assert plan.action == "create"
    assert [(c.operation, c.phase) for c in plan.calls] == [
        ("online_endpoints.begin_create_or_update", "create"),
        ("environments.create_or_update", "create"),
        ("online_deployments.begin_create_or_update", "create"),
        ("smoke_test", "create"),
        ("online_endpoints.update_traffic", "commit"),
    ]
    assert plan.calls[0].undo.operation == "online_endpoints.begin_delete"
    assert plan.calls[2].undo.operation == "online_deployments.begin_delete"
    assert plan.calls[2].params["environment"] == pl.FROM_ENVIRONMENT
    assert plan.calls[4].params["traffic"] == {"blue": 100}
    assert plan.calls[1].params["inference_config"]["scoring_route"] == {"path": "/score", "port": 8080}


def test_existing_endpoint_plan_keeps_old_deployment_and_shifts():
    state = pl.EndpointState("iris", exists=True, traffic={"blue": 100}, deployments={"blue": "Succeeded"})
    plan = pl.plan_deploy(pl.DeploySpec(endpoint="iris", source=IMG), state)
    assert plan.action == "update"
    assert [c.operation for c in plan.calls] == [
        "environments.create_or_update", "online_deployments.begin_create_or_update", "online_endpoints.update_traffic"]
    assert plan.facts["smoke_test"].startswith("skipped")
    assert plan.calls[-1].params["traffic"] == {"blue": 0, "green": 100}
    assert not any("delete" in c.operation for c in plan.calls)


def test_mlflow_source_registers_the_model_and_needs_no_environment():
    plan = pl.plan_deploy(pl.DeploySpec(endpoint="iris", source=pl.MlflowSource("/m", "iris-model")),
                          pl.EndpointState("iris"))
    ops = [c.operation for c in plan.calls]
    assert "models.create_or_update" in ops and "environments.create_or_update" not in ops
    reg = plan.calls[ops.index("models.create_or_update")]
    assert reg.params == {"name": "iris-model", "path": "/m", "type": "mlflow_model"}
    dep = plan.calls[ops.index("online_deployments.begin_create_or_update")]
    assert dep.params["model"] == pl.FROM_MODEL and "environment" not in dep.params


def test_in_place_update_of_a_serving_deployment_has_no_undo():
    state = pl.EndpointState("iris", exists=True, traffic={"blue": 100}, deployments={"blue": "Succeeded"})
    plan = pl.plan_deploy(pl.DeploySpec(endpoint="iris", source=IMG, deployment="blue"), state)
    dep = next(c for c in plan.calls if c.operation == "online_deployments.begin_create_or_update")
    assert dep.undo is None and plan.facts["in_place_update"] is True
    assert "no rollback possible" in dep.description


def test_no_wait_plan_submits_without_smoke_or_traffic():
    plan = pl.plan_deploy(pl.DeploySpec(endpoint="iris", source=IMG, wait=False, smoke_body={"input_data": []}),
                          pl.EndpointState("iris"))
    assert [c.operation for c in plan.calls][-1] == "online_deployments.begin_create_or_update"
    assert plan.facts["traffic"] == {} and "not waiting" in plan.calls[-1].description


def test_traffic_only_plan():
    state = pl.EndpointState("iris", exists=True, traffic={"blue": 100},
                             deployments={"blue": "Succeeded", "green": "Succeeded", "red": "Failed"})
    plan = pl.plan_deploy(pl.DeploySpec(endpoint="iris", source=None, traffic={"green": 100}), state)
    assert [c.params["traffic"] for c in plan.calls] == [{"blue": 0, "green": 100, "red": 0}]
    same = pl.plan_deploy(pl.DeploySpec(endpoint="iris", source=None, traffic={"blue": 100}), state)
    assert same.action == "noop" and same.calls == ()
    with pytest.raises(UsageError, match="not in the Succeeded state"):
        pl.plan_deploy(pl.DeploySpec(endpoint="iris", source=None, traffic={"red": 100}), state)
    with pytest.raises(UsageError, match="nothing to deploy"):
        pl.plan_deploy(pl.DeploySpec(endpoint="iris", source=None), state)
    with pytest.raises(UsageError, match="does not exist"):
        pl.plan_deploy(pl.DeploySpec(endpoint="iris", source=None, traffic={"blue": 100}), pl.EndpointState("iris"))


def test_requested_traffic_must_name_known_deployments():
    state = pl.EndpointState("iris", exists=True, traffic={"blue": 100}, deployments={"blue": "Succeeded"})
    plan = pl.plan_deploy(pl.DeploySpec(endpoint="iris", source=IMG, traffic={"blue": 90, "green": 10}), state)
    assert plan.facts["traffic"] == {"blue": 90, "green": 10}
    with pytest.raises(UsageError, match="will not have"):
        pl.plan_deploy(pl.DeploySpec(endpoint="iris", source=IMG, traffic={"red": 100}), state)


def test_to_input_data():
    assert to_input_data({"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}, "params": {"k": 1}}) == {
        "input_data": {"columns": ["a"], "index": [0, 1], "data": [[1], [2]]}, "params": {"k": 1}}
    assert to_input_data({"dataframe_records": [{"a": 1}, {"b": 2}]}) == {
        "input_data": {"columns": ["a", "b"], "index": [0, 1], "data": [[1, None], [None, 2]]}}
    assert to_input_data({"inputs": [[1.0, 2.0]]}) == {"input_data": [[1.0, 2.0]]}
    assert to_input_data({"instances": [[1.0]]}) == {"input_data": [[1.0]]}
    body = {"input_data": {"columns": ["a"], "index": [0], "data": [[1]]}}
    assert to_input_data(body) is body
    for bad in ([1, 2], {"columns": ["a"], "data": [[1]]}, {"inputs": 1, "instances": 2}):
        with pytest.raises(UsageError):
            to_input_data(bad)


def test_parse_env():
    assert parse_env(("A=1", "B=x=y", "C=")) == {"A": "1", "B": "x=y", "C": ""}
    for bad in ("A", "1A=2", "A-B=1", "=1"):
        with pytest.raises(UsageError):
            parse_env((bad,))


def test_local_plan_is_one_deployment_without_traffic():
    spec = pl.DeploySpec(endpoint="iris", source=IMG, local=True, model_path="/m", smoke_body={"input_data": []})
    plan = pl.plan_deploy(spec, pl.EndpointState("iris"))
    assert [c.operation for c in plan.calls] == [
        "online_endpoints.begin_create_or_update", "online_deployments.begin_create_or_update", "smoke_test"]
    assert all(c.params.get("local") for c in plan.calls)
    assert plan.calls[1].params["model_path"] == "/m" and plan.calls[1].params["image"] == IMG.image
    with pytest.raises(UsageError, match="--image-uri and -m"):
        pl.plan_deploy(pl.DeploySpec(endpoint="iris", source=pl.MlflowSource("/m", "m"), local=True, model_path="/m"),
                       pl.EndpointState("iris"))
