"""deployer's ``mlflow.deployments`` plugin, driven by MLflow itself, against moto over HTTP.

Two ways in, as users have them: the real ``mlflow deployments ...`` command line (a
subprocess of the venv's ``mlflow``) and ``mlflow.deployments.get_deploy_client(...)`` in
Python. Both reach deployer's SageMaker target through MLflow's own plugin manager.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from mlflow.deployments import PredictionsResponse, get_deploy_client
from mlflow.exceptions import MlflowException

from tests.targets.sagemaker.conftest import ECR_IMAGE, ROLE, deploy_args, run_cli

MLFLOW = str(Path(sys.executable).parent / "mlflow")
URI = "deployer-sagemaker:/us-east-1"
IRIS_ROWS = [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
             {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}]


def mlflow_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``mlflow ARGS`` in a subprocess; the session's AWS environment points it at moto."""
    return subprocess.run([MLFLOW, *args], capture_output=True, text=True, timeout=300, env=dict(os.environ))


def _config(bucket: str) -> list[str]:
    return ["-C", f"image_uri={ECR_IMAGE}", "-C", f"execution_role_arn={ROLE}", "-C", f"bucket={bucket}"]


def _canned(sm, predictions):  # type: ignore[no-untyped-def]
    sm.set_results([{"Body": json.dumps({"predictions": predictions}), "ContentType": "application/json",
                     "InvokedProductionVariant": "v", "CustomAttributes": ""}])


def _model_image(name: str) -> tuple[str, str]:
    client = boto3.client("sagemaker")
    config = client.describe_endpoint_config(
        EndpointConfigName=client.describe_endpoint(EndpointName=name)["EndpointConfigName"])
    model = client.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    return model["PrimaryContainer"]["Image"], model["PrimaryContainer"]["ModelDataUrl"]


@pytest.mark.slow
def test_mlflow_cli_create_update_get_list_predict_delete(sm, bucket, sklearn_model, no_signature_model, tmp_path):
    res = mlflow_cli("deployments", "create", "-t", URI, "--name", "iris", "-m", str(sklearn_model),
                     *_config(bucket), "-C", "instance_count=2", "-C", 'tags=["team=ml"]')
    assert res.returncode == 0, res.stderr
    assert "python_function deployment iris is created" in res.stdout
    client = boto3.client("sagemaker")
    config = client.describe_endpoint_config(
        EndpointConfigName=client.describe_endpoint(EndpointName="iris")["EndpointConfigName"])
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 2  # "2" parsed as the CLI's int
    tags = client.list_tags(ResourceArn=client.describe_endpoint(EndpointName="iris")["EndpointArn"])["Tags"]
    assert {"Key": "team", "Value": "ml"} in tags
    first_data = _model_image("iris")[1]

    res = mlflow_cli("deployments", "get", "-t", URI, "--name", "iris")
    assert res.returncode == 0, res.stderr
    assert "name: iris" in res.stdout and "status: InService" in res.stdout
    assert "managed_by_deployer: True" in res.stdout

    res = mlflow_cli("deployments", "update", "-t", URI, "--name", "iris", "-m", str(no_signature_model),
                     *_config(bucket))
    assert res.returncode == 0, res.stderr
    assert "Deployment iris is updated (with flavor python_function)" in res.stdout
    assert "UpdateEndpoint" in sm.actions  # an update swaps the model in (deployer's --mode replace)
    assert _model_image("iris")[1] != first_data

    res = mlflow_cli("deployments", "list", "-t", URI)
    assert res.returncode == 0, res.stderr
    assert "'name': 'iris'" in res.stdout and "'managed_by_deployer': True" in res.stdout

    _canned(sm, [0, 2])
    request = tmp_path / "rows.json"
    request.write_text(json.dumps(IRIS_ROWS))
    out = tmp_path / "predictions.json"
    res = mlflow_cli("deployments", "predict", "-t", URI, "--name", "iris", "-I", str(request), "-O", str(out))
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text()) == {"predictions": [0, 2]}

    res = mlflow_cli("deployments", "delete", "-t", URI, "--name", "iris")
    assert res.returncode == 0, res.stderr
    assert "Deployment iris is deleted" in res.stdout
    assert sm.snapshot()["endpoints"] == [] and sm.snapshot()["models"] == []


@pytest.mark.slow
def test_mlflow_cli_help_and_errors(sm, bucket, sklearn_model):
    res = mlflow_cli("deployments", "help", "-t", "deployer-sagemaker")
    assert res.returncode == 0, res.stderr
    assert "Target URI: deployer-sagemaker:/REGION" in res.stdout
    for key in ("execution_role_arn", "instance_type", "instance_count", "mode", "dry_run", "image_uri", "archive"):
        assert f"\n  {key} " in res.stdout

    res = mlflow_cli("deployments", "create", "-t", URI, "--name", "iris", "-m", str(sklearn_model),
                     *_config(bucket), "-C", "instance_typ=ml.c5.large")
    assert res.returncode != 0
    assert "unknown config key(s) 'instance_typ'" in res.stderr and "did you mean 'instance_type'?" in res.stderr
    valid = res.stderr.split("Valid keys: ")[1].split(" (mlflow deployments help")[0].split(", ")
    assert {"execution_role_arn", "instance_type", "instance_count", "mode", "dry_run", "image_uri"} <= set(valid)
    assert valid == sorted(valid)
    assert sm.mutating_actions() == []

    res = mlflow_cli("deployments", "create", "-t", URI, "--name", "iris", "-m", str(sklearn_model),
                     *_config(bucket), "-C", "instance_count=two")
    assert res.returncode != 0
    assert "-C instance_count: invalid value 'two'" in res.stderr and "is not a valid integer" in res.stderr

    # a dry run plans (reads AWS) and changes nothing; the plan is shown on stderr
    res = mlflow_cli("deployments", "create", "-t", URI, "--name", "iris", "-m", str(sklearn_model),
                     *_config(bucket), "-C", "dry_run=true")
    assert res.returncode == 0, res.stderr
    assert "sagemaker:create_endpoint" in res.stderr and "dry run: nothing was changed" in res.stderr
    assert sm.mutating_actions() == [] and sm.snapshot()["objects"] == []


@pytest.mark.slow
def test_get_deploy_client_full_cycle(sm, bucket, sklearn_model, no_signature_model):
    import pandas as pd

    client = get_deploy_client(URI)
    assert type(client).__name__ == "DeployerSageMakerClient"
    config = {"image_uri": ECR_IMAGE, "execution_role_arn": ROLE, "bucket": bucket,
              "instance_type": "ml.c5.large", "env": ["LOG_LEVEL=debug"]}
    created = client.create_deployment("iris", str(sklearn_model), config=config)
    assert created["name"] == "iris" and created["flavor"] == "python_function"
    assert created["action"] == "create" and created["status"] == "InService"
    assert created["endpoint_url"].endswith("/endpoints/iris/invocations")

    # MLflow's contract: create refuses what exists (deployer says how to fix it)
    with pytest.raises(MlflowException) as err:
        client.create_deployment("iris", str(no_signature_model), config=config)
    assert "already exists and serves a different model" in err.value.message and "--mode replace" in err.value.message
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    # the same model and config again: deployer's idempotence, nothing is changed
    before = len(sm.mutating_actions())
    assert client.create_deployment("iris", str(sklearn_model), config=config)["action"] == "noop"
    assert len(sm.mutating_actions()) == before

    got = client.get_deployment("iris")
    assert got["name"] == "iris" and got["status"] == "InService" and got["region"] == "us-east-1"
    assert got["variants"][0]["instance_type"] == "ml.c5.large"
    assert [d["name"] for d in client.list_deployments()] == ["iris"]

    updated = client.update_deployment("iris", str(no_signature_model), config=config)
    assert updated["action"] == "replace" and updated["flavor"] == "python_function"
    with pytest.raises(MlflowException) as err:
        client.update_deployment("other", str(sklearn_model), config=config)
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST" and "create it first" in err.value.message

    _canned(sm, [0, 2])
    response = client.predict("iris", pd.DataFrame(IRIS_ROWS))
    assert isinstance(response, PredictionsResponse)
    assert response.get_predictions()[0].tolist() == [0, 2]

    with pytest.raises(MlflowException) as err:
        client.explain("iris", pd.DataFrame(IRIS_ROWS))
    assert err.value.error_code == "NOT_IMPLEMENTED" and "cannot explain" in err.value.message
    with pytest.raises(MlflowException, match="each deployment is its own endpoint"):
        client.list_endpoints()
    with pytest.raises(MlflowException, match="no endpoints apart from its deployments"):
        client.get_deployment("iris", endpoint="e")

    plan = client.delete_deployment("iris", config={"dry_run": True, "archive": "yes"})
    assert plan["dry_run"] and plan["plan"]["facts"]["archive"] is True
    assert sm.snapshot()["endpoints"] == ["iris"]
    assert client.delete_deployment("iris") is None
    assert sm.snapshot()["endpoints"] == []
    assert client.delete_deployment("iris") is None  # idempotent, as MLflow asks
    with pytest.raises(MlflowException) as err:
        client.get_deployment("iris")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST" and "no SageMaker endpoint named 'iris'" in err.value.message


def test_dry_run_plan_is_the_deploy_commands_plan(sm, bucket, sklearn_model):
    """The plugin and `deployer deploy` run one code path: same request, same plan, no change."""
    cli = run_cli(*deploy_args("iris", sklearn_model, "--bucket", bucket, "--instance-count", "3",
                               "--dry-run", "--output", "json"))
    assert cli.exit_code == 0, cli.stderr
    plugin = get_deploy_client(URI).create_deployment(
        "iris", str(sklearn_model), config={"image_uri": ECR_IMAGE, "execution_role_arn": ROLE, "bucket": bucket,
                                            "instance_count": 3, "dry_run": True})
    assert plugin["dry_run"] is True
    # resource names end in 8 random hex digits (names.unique_suffix): the rest must be identical
    def same(plan: dict) -> str:
        return re.sub(r"(-[0-9a-f]{8})-[0-9a-f]{8}", r"\1-XXXX", json.dumps(plan, sort_keys=True))

    assert same(plugin["plan"]) == same(cli.json()["plan"])
    assert plugin["plan"]["calls"][0]["operation"] == "upload_model_archive"
    # a pathlib.Path model URI, as MLflow's own APIs take (it crashed with AttributeError)
    as_path = get_deploy_client(URI).create_deployment(
        "iris", Path(sklearn_model), config={"image_uri": ECR_IMAGE, "execution_role_arn": ROLE, "bucket": bucket,
                                             "instance_count": 3, "dry_run": True})
    assert same(as_path["plan"]) == same(plugin["plan"])
    assert sm.mutating_actions() == [] and sm.snapshot()["objects"] == []


def test_errors_become_mlflow_exceptions_with_deployers_message(sm, sklearn_model):
    client = get_deploy_client(URI)
    with pytest.raises(MlflowException) as err:
        client.create_deployment("iris", str(sklearn_model), config={"image_uri": ECR_IMAGE, "bogus": "1"})
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "unknown config key(s) 'bogus'" in err.value.message and "execution_role_arn" in err.value.message
    with pytest.raises(MlflowException) as err:
        client.create_deployment("Bad_Name!", str(sklearn_model), config={"image_uri": ECR_IMAGE})
    assert err.value.error_code == "INVALID_PARAMETER_VALUE" and "hint:" in err.value.message
    with pytest.raises(MlflowException, match="python_function flavor, not 'sklearn'"):
        client.create_deployment("iris", str(sklearn_model), flavor="sklearn")
    with pytest.raises(MlflowException, match="contradicts the target URI"):
        client.create_deployment("iris", str(sklearn_model), config={"region": "eu-west-1"})
    with pytest.raises(MlflowException, match="expected deployer-sagemaker:/REGION"):
        get_deploy_client("deployer-sagemaker:/us-east-1/extra")
    assert sm.mutating_actions() == []


# ------------------------------------------------------------------------ no cloud, no engine
def test_entry_points_pass_mlflows_plugin_checks():
    from importlib.metadata import entry_points

    from mlflow.deployments.interface import plugin_store

    names = {ep.name for ep in entry_points(group="mlflow.deployments")}
    assert {"deployer-local", "deployer-sagemaker", "deployer-azureml"} <= names
    for kind in ("local", "sagemaker", "azureml"):
        plugin = plugin_store[f"deployer-{kind}"]  # MLflow's own validation: one client class, run_local, target_help
        assert plugin.kind == kind and callable(plugin.run_local) and callable(plugin.target_help)
    assert type(get_deploy_client("deployer-local")).__name__ == "DeployerLocalClient"
    assert get_deploy_client("deployer-azureml:/local").uri_connection == {"local": True}
    assert get_deploy_client("deployer-azureml:/s/g/w").uri_connection == {
        "subscription": "s", "resource_group": "g", "workspace": "w"}
    with pytest.raises(MlflowException, match="expected deployer-local "):
        get_deploy_client("deployer-local:/somewhere")


def test_import_deployer_needs_no_mlflow():
    code = ("import sys; sys.modules['mlflow'] = None\n"
            "import deployer, deployer.cli, deployer.targets.actions, deployer.integrations\n"
            "from deployer.cli import cli\n"
            "try:\n    import deployer.integrations.mlflow_deployments\nexcept ImportError:\n    print('plugin-needs-mlflow')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "plugin-needs-mlflow"


def test_target_help_of_each_target():
    from mlflow.deployments.interface import _target_help

    local = _target_help("deployer-local")
    assert "Target URI: deployer-local\n" in local and "\n  port " in local and "serve_as" in local
    azure = _target_help("deployer-azureml")
    assert "deployer-azureml:/SUBSCRIPTION/RESOURCE_GROUP/WORKSPACE" in azure and "deployer-azureml:/local" in azure
    assert "\n  traffic " in azure and "update-endpoint -C traffic=" in azure
    assert "default: azureml" in azure  # run-local starts the container as Azure ML would


@pytest.mark.parametrize("spec, raw, expected", [
    (("flag", "bool"), "yes", True), (("flag", "bool"), "False", False), (("flag", "bool"), True, True),
    (("count", "int"), "3", 3), (("weight", "float"), "0.5", 0.5),
    (("env", "str", True), '["A=1", "B=x,y"]', ("A=1", "B=x,y")), (("env", "str", True), "A=1", ("A=1",)),
    (("env", "str", True), ["A=1"], ("A=1",)),
])
def test_config_values_are_parsed_like_flags(spec, raw, expected):
    from deployer.targets.base import OptionSpec
    from deployer.targets.options import coerce_option

    name, kind, *multiple = spec
    assert coerce_option(OptionSpec(name, "h", type=kind, multiple=bool(multiple)), raw, f"-C {name}") == expected


def test_bad_config_values_name_the_key_and_the_choices():
    from deployer.errors import UsageError
    from deployer.targets.base import OptionSpec
    from deployer.targets.options import coerce_option

    with pytest.raises(UsageError, match=r"^-C mode: invalid value 'swap'") as err:
        coerce_option(OptionSpec("mode", "h", type="choice", choices=("create", "replace")), "swap", "-C mode")
    assert "one of create, replace" in (err.value.fix or "")
    with pytest.raises(UsageError, match="^-C vpc_config: invalid value"):
        coerce_option(OptionSpec("vpc_config", "h", type="path"), "/no/such/file.json", "-C vpc_config")
    with pytest.raises(UsageError, match="not a JSON list"):
        coerce_option(OptionSpec("env", "h", multiple=True), "[A=1", "-C env")


def test_run_local_refuses_unknown_keys_and_flavors_before_building(sklearn_model):
    import mlflow.deployments

    with pytest.raises(MlflowException) as err:
        mlflow.deployments.run_local("deployer-local", "x", str(sklearn_model), config={"instance_type": "m"})
    assert "unknown config key(s) 'instance_type'" in err.value.message
    valid = err.value.message.split("Valid keys: ")[1].split(", ")
    assert {"base_image", "detach", "parquet", "port", "ready_timeout", "serve_as"} <= set(valid)
    with pytest.raises(MlflowException, match="python_function flavor, not 'onnx'"):
        mlflow.deployments.run_local("deployer-local", "x", str(sklearn_model), flavor="onnx")


def test_build_option_keys_build_the_same_image_as_the_flags(sm, bucket, sklearn_model, option_files):
    """Every option of the build-option group is a -C key named like its flag (image_env,
    system_package, ...) and reaches the planned build exactly as `deployer deploy`'s flags do;
    a target that builds no image from -m refuses them."""
    from tests.fixtures.build_option_cases import OPTION_CASES

    flags: list[str] = []
    config: dict[str, object] = {}
    for case in OPTION_CASES:
        args = case.args(option_files)
        if case.name in ("gpu", "platform", "env_kind", "python_version"):  # one ordinary, buildable image
            continue
        flags += args
        key, value = case.config_item(option_files)
        config[key] = value
    cli = run_cli("deploy", "--target", "sagemaker", "--name", "iris", "-m", str(sklearn_model),
                  "--execution-role-arn", ROLE, "--bucket", bucket, "--dry-run", "--output", "json", *flags)
    assert cli.exit_code == 0, cli.stderr
    plugin = get_deploy_client(URI).create_deployment(
        "iris", str(sklearn_model), config={"execution_role_arn": ROLE, "bucket": bucket, "dry_run": True, **config})

    def build_step(plan: dict) -> dict:
        return next(c for c in plan["calls"] if c["operation"] == "build_image")["params"]

    assert build_step(plugin["plan"]) == build_step(cli.json()["plan"])
    assert build_step(plugin["plan"])["Build"]["system_packages"] == ["libgomp1"]
    with pytest.raises(MlflowException, match="builds an image from -m only with -C registry"):
        get_deploy_client("deployer-azureml:/local").create_deployment(
            "x", str(sklearn_model), config={"pip": "six==1.16.0", "dry_run": True})
    assert sm.mutating_actions() == []
