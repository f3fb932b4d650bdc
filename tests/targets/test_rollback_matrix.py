"""The one undo rule, on every target: a failure at any step leaves no orphan and the old endpoint.

Each target deploys once (the "old" endpoint), then plans a second deploy that replaces it.
That plan runs through the one executor with the target's real operations (local Docker, moto's
SageMaker over HTTP, azure-ai-ml against the fake ARM transport, the kubernetes client against
the fake API server for Kubernetes and KServe), except that one step fails:

* ``before``: the step raises without doing anything (the service refused it);
* ``after`` (``create`` steps only): the step is carried out, then raises (the service accepted
  it and failed later, leaving a half-made resource): its own undo must remove it.

After every failure: the run raised a TargetError that tells the story, the resources are
exactly those before the second deploy (nothing this run made is left behind), and the old
endpoint still serves. SageMaker's wait is not injected: a wait that fails while the update
actually took effect does not happen there (SageMaker rolls back itself; tests/targets/
sagemaker/test_safety.py covers that with its simulation).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deployer.errors import TargetError
from deployer.targets.base import DeployPlan, DeployRequest, PlannedCall
from deployer.targets.executor import execute
from tests.targets.azureml.conftest import (  # noqa: F401
    StaticToken,  # noqa: F401 - used by make_target
    arm,
    front_door,
    make_target,
    sklearn_score_server,
)
from tests.targets.sagemaker.conftest import (  # noqa: F401 - fixtures
    ECR_IMAGE,
    REGION,
    ROLE,
    _sagemaker_extensions,
    bucket,
    sm,
)

pytestmark = pytest.mark.slow


class FailAt:
    """The target's real operations, except that plan step ``index`` fails."""

    def __init__(self, real: Any, plan: DeployPlan, index: int, after: bool) -> None:
        self.real, self.step, self.after = real, plan.calls[index], after

    def handle(self, call: PlannedCall, outputs: Mapping[str, Any]) -> Any:
        if call is self.step:
            if self.after:
                self.real.handle(call, outputs)
            raise TargetError(f"injected failure of {call.operation}", where="the test")
        return self.real.handle(call, outputs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@dataclass
class Scenario:
    plan: DeployPlan
    operations: Any
    snapshot: Callable[[], Any]
    serves_old: Callable[[], None]


# ---------------------------------------------------------------------------- SageMaker
def _sagemaker(request: pytest.FixtureRequest) -> Scenario:
    import boto3

    from deployer.targets.sagemaker import SageMakerTarget

    sim, models = request.getfixturevalue("sm"), request.getfixturevalue("bucket")
    options = {"execution_role_arn": ROLE, "bucket": models}
    first = SageMakerTarget(region=REGION)
    first.apply(first.plan(DeployRequest("iris", model_uri=str(request.getfixturevalue("sklearn_model")),
                                         image_uri=ECR_IMAGE, options=options)))
    old = boto3.client("sagemaker").describe_endpoint(EndpointName="iris")["EndpointConfigName"]
    target = SageMakerTarget(region=REGION)
    plan = target.plan(DeployRequest("iris", model_uri=str(request.getfixturevalue("no_signature_model")),
                                     image_uri=ECR_IMAGE, options={**options, "mode": "replace"}))

    def serves_old() -> None:
        ep = boto3.client("sagemaker").describe_endpoint(EndpointName="iris")
        assert (ep["EndpointStatus"], ep["EndpointConfigName"]) == ("InService", old)

    return Scenario(plan, target.operations(), sim.snapshot, serves_old)


# ---------------------------------------------------------------------------- Azure ML
def _azure(request: pytest.FixtureRequest) -> Scenario:
    fake, door = request.getfixturevalue("arm"), request.getfixturevalue("front_door")
    make, server = request.getfixturevalue("make_target"), request.getfixturevalue("sklearn_score_server")
    endpoint, image = "iris-ep", "myregistry.azurecr.io/iris:1"
    model = request.getfixturevalue("sklearn_model")
    options = {"instance_type": "Standard_DS3_v2", "instance_count": 1, "smoke_test": True}
    for deployment in ("blue", "green"):
        door.backends[(endpoint, deployment)] = server.url
    make().apply(make().plan(DeployRequest(endpoint, model_uri=str(model), image_uri=image, options=options)))
    target = make()
    plan = target.plan(DeployRequest(endpoint, model_uri=str(model), image_uri=image.replace(":1", ":2"),
                                     options=options))

    def snapshot() -> Any:
        prefix = f"{fake.workspace_path()}/onlineEndpoints/{endpoint}/deployments/".lower()
        deployments = sorted(k[len(prefix):] for k in fake.resources if k.startswith(prefix))
        return deployments, fake.get(f"onlineEndpoints/{endpoint}")["properties"].get("traffic")

    def serves_old() -> None:
        assert snapshot() == (["blue"], {"blue": 100})

    return Scenario(plan, target.operations(), snapshot, serves_old)


# ---------------------------------------------------------------------------- local Docker
def _local(request: pytest.FixtureRequest) -> Scenario:
    from deployer.targets.local import LocalTarget

    client, image = request.getfixturevalue("docker_client"), request.getfixturevalue("local_matrix_image")
    name = "t-rollback-matrix"
    target = LocalTarget(client=client, ready_timeout=120)
    LocalTarget(client=client).delete(name)
    first = target.apply(target.plan(DeployRequest(name, image_uri=image, options={"port": 0})))
    old_url = first.endpoint_url
    request.addfinalizer(lambda: LocalTarget(client=client).delete(name))
    plan = target.plan(DeployRequest(name, image_uri=image, options={"port": 0}))

    def snapshot() -> Any:
        return sorted((c.name, c.status) for c in client.containers.list(
            all=True, filters={"label": f"io.deployer.endpoint={name}"}))

    def serves_old() -> None:
        assert snapshot() == [(f"deployer-{name}", "running")]
        container = client.containers.get(f"deployer-{name}")
        container.reload()
        port = container.ports["8080/tcp"][0]["HostPort"]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(240):
            try:
                with opener.open(f"http://127.0.0.1:{port}/ping", timeout=2) as resp:
                    assert resp.status == 200
                    return
            except OSError:
                import time

                time.sleep(0.5)
        raise AssertionError(f"the old container does not answer (was {old_url})")

    return Scenario(plan, target.operations(), snapshot, serves_old)


@pytest.fixture(scope="module")
def local_matrix_image(docker_client, base_image: str, no_signature_model: Path) -> str:  # type: ignore[no-untyped-def]
    from deployer.building.execute import build_model_image
    from deployer.building.plan import BuildOptions

    _plan, result = build_model_image(str(no_signature_model), BuildOptions(base_image=base_image, verify=False,
                                                                            tag="deployer-test/rollback:1"),
                                      client=docker_client)
    return result.image


# ---------------------------------------------------------------------------- Kubernetes / KServe
def _kube(request: pytest.FixtureRequest, kind: str) -> Scenario:
    import yaml

    from deployer.targets.kubernetes import KServeTarget, KubernetesTarget
    from tests.targets.kubernetes.fake_apiserver import FakeApiServer, kubeconfig

    server = FakeApiServer()
    url = server.start()
    request.addfinalizer(server.stop)
    config = request.getfixturevalue("tmp_path") / "kubeconfig"
    config.write_text(yaml.safe_dump(kubeconfig(url)))
    factory = KubernetesTarget if kind == "kubernetes" else KServeTarget
    old, new = ("registry.example.com/ml/iris@sha256:" + c * 64 for c in "12")
    first = factory(kubeconfig=str(config))
    first.apply(first.plan(DeployRequest("iris", image_uri=old, options={"cpu": "1"})))
    target = factory(kubeconfig=str(config))
    plan = target.plan(DeployRequest("iris", image_uri=new, options={"cpu": "2"}))

    def snapshot() -> Any:
        return sorted((key, obj.get("spec"), obj["metadata"].get("annotations"))
                      for key, obj in server.objects.items() if "owner" not in obj and key[2] != "events")

    def serves_old() -> None:
        workload = server.get("Deployment" if kind == "kubernetes" else "InferenceService", "ml", "iris")
        assert workload is not None and old in str(workload["spec"]) and new not in str(workload["spec"])

    return Scenario(plan, target.operations(), snapshot, serves_old)


# ---------------------------------------------------------------------------- the matrix
SCENARIOS: dict[str, Callable[[pytest.FixtureRequest], Scenario]] = {
    "sagemaker": _sagemaker, "azureml": _azure, "local": _local,
    "kubernetes": lambda request: _kube(request, "kubernetes"), "kserve": lambda request: _kube(request, "kserve")}
#: target -> (operation, phase, modes) of each step of the replacing deploy that undoes on failure
STEPS: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "sagemaker": [("upload_model_archive", "create", ("before", "after")), ("create_model", "create", ("before", "after")),
                  ("create_endpoint_config", "create", ("before", "after")), ("update_endpoint", "commit", ("before",))],
    "azureml": [("environments.create_or_update", "create", ("before", "after")),
                ("online_deployments.begin_create_or_update", "create", ("before", "after")),
                ("smoke_test", "create", ("before",)), ("online_endpoints.update_traffic", "commit", ("before",))],
    "local": [("set_aside", "prepare", ("before",)), ("run", "create", ("before", "after")),
              ("wait_ready", "wait", ("before",))],
    # an apply is named by the kind it applies; a failed wait is the rollout that did not heal
    "kubernetes": [("apply Deployment", "commit", ("before",)), ("apply Service", "commit", ("before",)),
                   ("wait_deployment", "wait", ("before",))],
    "kserve": [("apply ServingRuntime", "commit", ("before",)), ("apply InferenceService", "commit", ("before",)),
               ("wait_inference_service", "wait", ("before",))],
}


def step_name(call: PlannedCall) -> str:
    obj = call.params.get("object") if call.operation == "apply" else None
    return f"apply {obj['kind']}" if isinstance(obj, dict) else call.operation
CASES = [pytest.param(target, op, phase, mode, id=f"{target}-{op}-{mode}",
                      marks=[pytest.mark.docker] if target == "local" else [])
         for target, steps in STEPS.items() for op, phase, modes in steps for mode in modes]


@pytest.mark.parametrize(("target", "operation", "phase", "mode"), CASES)
def test_a_failure_at_any_step_leaves_no_orphan_and_the_old_endpoint(
        request: pytest.FixtureRequest, target: str, operation: str, phase: str, mode: str) -> None:
    scenario = SCENARIOS[target](request)
    steps = [i for i, c in enumerate(scenario.plan.calls) if step_name(c) == operation]
    assert len(steps) == 1, [step_name(c) for c in scenario.plan.calls]
    assert scenario.plan.calls[steps[0]].phase == phase
    # every undoing step of the plan is in the matrix
    undoing = [step_name(c) for c in scenario.plan.calls if c.phase in ("create", "commit", "prepare", "wait")]
    assert undoing == [op for op, _, _ in STEPS[target]] or target == "sagemaker" and \
        undoing == [op for op, _, _ in STEPS[target]] + ["wait_endpoint"]
    before = scenario.snapshot()

    with pytest.raises(TargetError) as failure:
        execute(scenario.plan, FailAt(scenario.operations, scenario.plan, steps[0], mode == "after"))

    message = failure.value.format_message()
    assert f"injected failure of {scenario.plan.calls[steps[0]].operation}" in message
    if steps[0] > 0:  # later steps tell what was undone; a first step's own error is the whole story
        assert "rolled back:" in message or "restored:" in message or "nothing to remove" in message
    assert "COULD NOT" not in message
    assert scenario.snapshot() == before, message
    scenario.serves_old()
