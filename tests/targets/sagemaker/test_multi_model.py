"""Multi-model endpoints (deploy --multi-model, deployer models, predict --target-model) on
moto's server over HTTP.

moto stores a model's PrimaryContainer as sent but answers InvokeEndpoint with canned results
whatever the endpoint is; :func:`mme_runtime` extends its InvokeEndpoint the way SageMaker
treats a multi-model endpoint: TargetModel is recorded, required, and must name an archive that
exists under the model's ModelDataUrl (else SageMaker's ValidationError), and it is refused on
a single-model endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from deployer.model.files import model_digest
from deployer.targets.sagemaker.artifact import archive_bytes
from deployer.targets.sagemaker.multi_model import CAPABILITY_LABEL, SERVER_SWITCH, TAG_LOCK
from tests.targets.sagemaker.conftest import ACCOUNT, REGION, deploy_args, run_cli
from tests.targets.sagemaker.production_sim import install

PREFIX = "s3://models/shop/"


def mme_args(name: str, model: Any, *extra: str) -> list[str]:
    return deploy_args(name, model, "--multi-model", "--model-prefix", PREFIX, *extra)


def models(*args: str) -> list[str]:
    verb, rest = args[0], args[1:]
    return ["models", verb, "--target", "sagemaker", "--name", "shop", *rest]


def _objects() -> dict[str, dict[str, Any]]:
    s3 = boto3.client("s3")
    out = {}
    for obj in s3.list_objects_v2(Bucket="models").get("Contents", []) or []:
        head = s3.head_object(Bucket="models", Key=obj["Key"])
        out[obj["Key"]] = head.get("Metadata") or {}
    return out


def _model_of(endpoint: str) -> dict[str, Any]:
    sm = boto3.client("sagemaker")
    config = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"])
    model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    model["Tags"] = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=model["ModelArn"])["Tags"]}
    return model


@pytest.fixture
def mme_runtime(sm: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """InvokeEndpoint as SageMaker answers it for multi-model endpoints; yields the recorded
    invocations (endpoint, TargetModel header)."""
    from moto.s3.models import s3_backends
    from moto.sagemaker.models import sagemaker_backends
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    calls: list[dict[str, Any]] = []
    orig = SageMakerRuntimeResponse.invoke_endpoint

    def error(message: str) -> Any:
        body = json.dumps({"__type": "ValidationError", "message": message})
        return 400, {"Content-Type": "application/x-amz-json-1.1", "status": "400"}, body

    def invoke_endpoint(self: Any) -> Any:
        name = self.path.split("/")[2]
        target = next((v for k, v in self.headers.items() if k.lower() == "x-amzn-sagemaker-target-model"), None)
        calls.append({"endpoint": name, "target_model": target})
        backend = sagemaker_backends[ACCOUNT][REGION]
        ep = backend.endpoints.get(name)
        if ep is not None:
            config = backend.endpoint_configs[ep.endpoint_config_name]
            container = backend._models[config.production_variants[0]["ModelName"]].primary_container
            multi = container.get("Mode") == "MultiModel"
            if multi and not target:
                return error(f"Endpoint {name} is a multi-model endpoint: TargetModel is required.")
            if not multi and target:
                return error(f"Endpoint {name} is not a multi-model endpoint. It does not support TargetModel.")
            if multi:
                bucket, _, prefix = container["ModelDataUrl"][len("s3://"):].partition("/")
                keys = s3_backends[ACCOUNT]["global"].buckets[bucket].keys
                if prefix + target not in keys:
                    return error(f"Failed to download model data(bucket: {bucket}, key: {prefix + target}).")
        return orig(self)

    monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)
    yield calls


# ------------------------------------------------------------------ deploy --multi-model
def test_dry_run_plans_a_multi_model_endpoint_and_changes_nothing(sm, bucket, sklearn_model):
    before = sm.snapshot()
    res = run_cli(*mme_args("shop", sklearn_model, "--dry-run", "--output", "json"))
    assert res.exit_code == 0, res.stderr
    plan = res.json()["plan"]
    ops = [f"{c['service']}:{c['operation']}" for c in plan["calls"]]
    assert ops == ["s3:put_object", "sagemaker:create_model", "sagemaker:create_endpoint_config",
                   "sagemaker:create_endpoint", "sagemaker:wait_endpoint"]
    container = plan["calls"][1]["params"]["PrimaryContainer"]
    assert container["Mode"] == "MultiModel" and container["ModelDataUrl"] == PREFIX
    assert container["Environment"] == {SERVER_SWITCH: "true"}
    record = json.loads(plan["calls"][0]["params"]["Body"])
    assert plan["calls"][0]["params"]["Key"].startswith("shop/.deployer/environment-")
    tags = {t["Key"]: t["Value"] for t in plan["calls"][1]["params"]["Tags"]}
    assert tags[TAG_LOCK] == record["lock_digest"] == plan["facts"]["lock_digest"]
    assert record["lock_digest"].startswith("sha256:") and "scikit-learn==" in record["lock"]
    assert sm.mutating_actions() == [] and sm.s3_puts == 0
    assert sm.snapshot() == before
    text = run_cli(*mme_args("shop", sklearn_model, "--dry-run"))
    assert text.exit_code == 0 and "multi-model: every model under s3://models/shop/" in text.stdout
