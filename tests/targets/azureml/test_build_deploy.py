"""``deploy --target azureml -m MODEL --registry R``: deployer's own image for Azure ML, built
from the model with the build options, verified, pushed to a real registry and deployed as a
custom container through the real azure-ai-ml SDK against the fake ARM transport.

The smoke test reaches the image Azure would run: the front door's backend for the new
deployment pulls the environment's image from the registry (as Azure's compute does) and runs
it in the real engine (deployer's local target, started as Azure ML starts it: azmlinfsrv +
score.py on port 8080).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from deployer.building.plan import BuildOptions
from deployer.errors import UsageError
from deployer.targets.base import DeployRequest

pytestmark = [pytest.mark.docker, pytest.mark.slow]

EP = "built-ep"


def _docker_config(tmp_path: Path, registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "docker-config"
    config.mkdir()
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))


def test_registry_builds_verifies_pushes_and_deploys_the_image(  # type: ignore[no-untyped-def]
        make_target, arm, front_door, registry, sklearn_model, base_image, docker_client, tmp_path, monkeypatch):
    from deployer.console import to_json
    from deployer.targets.local import LocalTarget

    _docker_config(tmp_path, registry, monkeypatch)
    build = BuildOptions(base_image=base_image, env=(("GREETING", "from-build"),), labels=(("team", "ml"),))
    request = DeployRequest(EP, model_uri=str(sklearn_model), build=build,
                            options={"registry": f"{registry.host}/team", "instance_count": 1})
    target = make_target()

    plan = target.plan(request)
    ops = [f"{c.service}:{c.operation}" for c in plan.calls]
    assert ops == ["deployer:build_image", "docker:push", "azure-ai-ml:online_endpoints.begin_create_or_update",
                   "azure-ai-ml:environments.create_or_update",
                   "azure-ai-ml:online_deployments.begin_create_or_update", "scoring-uri:smoke_test",
                   "azure-ai-ml:online_endpoints.update_traffic"]
    data = json.loads(to_json(plan))
    step = data["calls"][0]["params"]
    assert step["Build"]["target"] == "azureml" and step["Build"]["labels"] == [["team", "ml"]]
    assert "run it offline and score its input example" in data["calls"][0]["description"]
    image = data["facts"]["image"]
    assert image == f"{registry.host}/team/{step['LocalImage']}" == data["calls"][1]["params"]["Image"]
    env_call = data["calls"][3]["params"]
    assert env_call["image"] == image and env_call["inference_config"]["scoring_route"] == {"path": "/score",
                                                                                             "port": 8080}
    assert [r for r in arm.requests if r.method != "GET"] == []  # planning only reads
    pushed_before = len(registry.requests())

    started: list[str] = []
    local = LocalTarget(client=docker_client, ready_timeout=240)

    def run_pulled_image() -> str:
        """What Azure's compute does with the environment: pull its image and start it."""
        env_image = arm.bodies("PUT", f"environments/{EP}-blue-env/versions/1")[0]["properties"]["image"]
        docker_client.images.remove(env_image, force=True)  # run what the registry holds
        repo, _, tag = env_image.rpartition(":")
        docker_client.images.pull(repo, tag=tag,
                                  auth_config={"username": registry.username, "password": registry.password})
        deployed = local.apply(local.plan(DeployRequest(name="azure-built-blue", image_uri=env_image,
                                                        options={"port": 0, "serve_as": "azureml"})))
        started.append("azure-built-blue")
        return f"{deployed.endpoint_url}/score"

    front_door.backends[(EP, "blue")] = run_pulled_image
    try:
        result = target.apply(plan)
        assert result.status == "Succeeded", result
        assert result.details["traffic"] == {"blue": 100}
        assert started == ["azure-built-blue"]  # the smoke test scored the pulled image
        assert front_door.seen[-1]["headers"]["azureml-model-deployment"] == "blue"
        pulled = docker_client.images.get(image)
        assert pulled.labels["io.deployer.verify.status"] == "passed"
        assert pulled.labels["io.deployer.verify.route"] == "/score"
        assert pulled.labels["team"] == "ml" and "GREETING=from-build" in pulled.attrs["Config"]["Env"]
        tag = image.rsplit(":", 1)[1]
        name = step["LocalImage"].rsplit(":", 1)[0]
        manifests = [r for r in registry.requests()[pushed_before:] if r.method == "PUT" and r.path == f"/v2/team/{name}/manifests/{tag}"]
        assert len(manifests) == 1
        dep_body = arm.bodies("PUT", f"onlineEndpoints/{EP}/deployments/blue")[0]
        assert dep_body["properties"]["environmentId"].endswith(f"/environments/{EP}-blue-env/versions/1")
        assert "model" not in dep_body["properties"] or not dep_body["properties"]["model"]

        # The same model again: blue already runs this image, so nothing is built, pushed or
        # rolled out.
        before, arm_before = len(registry.requests()), len(arm.requests)
        again = target.plan(request)
        assert (again.action, list(again.calls)) == ("noop", [])
        target.apply(again)
        assert registry.requests()[before:] == []
        assert [r for r in arm.requests[arm_before:] if r.method != "GET"] == []
    finally:
        for name in started:
            local.delete(name)


def test_an_image_that_fails_verification_changes_nothing(  # type: ignore[no-untyped-def]
        make_target, arm, registry, example_fails_model, base_image, tmp_path, monkeypatch):
    """The build comes first and verifies: a model whose example fails to score is stopped there,
    with the container's own message; nothing is pushed, and no endpoint, environment or
    deployment is created."""
    from deployer.errors import BuildError

    _docker_config(tmp_path, registry, monkeypatch)
    target = make_target()
    plan = target.plan(DeployRequest(EP, model_uri=str(example_fails_model), build=BuildOptions(base_image=base_image),
                                     options={"registry": registry.host}))
    before = len(registry.requests())
    with pytest.raises(BuildError, match="image verification failed") as info:
        target.apply(plan)
    assert "model failure on purpose" in str(info.value) + str(info.value.fix or "")
    assert [r for r in arm.requests if r.method != "GET"] == []
    assert registry.requests()[before:] == []


@pytest.mark.parametrize("registry_value, kwargs, message", [
    ("Bad Host/x", {}, "bad registry"),
    ("ok.example/ns", {"image_uri": "ok.example/ns/img:1"}, "needs -m MODEL"),
    ("ok.example/ns", {"model_uri": "azureml:iris:1"}, "needs -m MODEL"),
])
def test_registry_needs_a_model_directory_and_a_registry_name(  # type: ignore[no-untyped-def]
        make_target, arm, sklearn_model, registry_value, kwargs, message):
    args: dict[str, Any] = {"model_uri": str(sklearn_model), **kwargs}
    with pytest.raises(UsageError, match=message) as info:
        make_target().plan(DeployRequest(EP, options={"registry": registry_value}, **args))
    assert info.value.where == "--registry"
    assert [r for r in arm.requests if r.method != "GET"] == []
