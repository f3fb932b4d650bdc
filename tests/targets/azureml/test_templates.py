"""Golden files for templates/azureml/*.j2: every change to a rendered file is reviewed.

Regenerate after an intended change with: UPDATE_GOLDEN=1 pytest tests/targets/azureml/test_templates.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import RenderError
from deployer.rendering.render import render_template
from deployer.targets.azureml.plan import ImageRoutes
from tests.golden import assert_golden

GOLDEN = Path(__file__).with_name("golden")
COMMON = {"deployer_version": "0.0.0-test", "model_label": "iris", "endpoint": "iris-ep", "deployment": "blue"}

CASES = {
    "endpoint.yml": ("azureml/endpoint.yml.j2", dict(COMMON, mode="conda", auth_mode="key", description="Serves iris")),
    "environment.conda.yml": ("azureml/environment.yml.j2", dict(
        COMMON, mode="conda", env_name="iris-ep-env", description="env", image="", routes=ImageRoutes(),
        base_image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest", conda_file="conda.yaml")),
    "environment.image.yml": ("azureml/environment.yml.j2", dict(
        COMMON, mode="image", env_name="iris-ep-env", description="env", image="reg.example/iris:1",
        routes=ImageRoutes(port=8080, liveness="/", readiness="/", scoring="/score"), base_image="", conda_file="")),
    "deployment.conda.yml": ("azureml/deployment.yml.j2", dict(
        COMMON, mode="conda", environment_ref="azureml:iris-ep-env@latest", model_path="model", code_path=".",
        scoring_script="score.py", instance_type="Standard_DS3_v2", instance_count=2,
        environment_variables={"LOG_LEVEL": "debug", "NOTE": 'say "hi" $(not run)'}, request_timeout_ms=5000,
        max_concurrent_requests=1, probe_initial_delay=10)),
    "create_service.sh": ("azureml/create_service.sh.j2", dict(COMMON, mode="conda", traffic="blue=90 green=10")),
    "README.md": ("azureml/README.md.j2", dict(
        COMMON, mode="conda", image="", python_version="3.11.7", instance_type="Standard_DS3_v2",
        instance_count="1", has_example=True)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    template, context = CASES[name]
    rendered = render_template(template, **context)
    assert_golden(rendered, GOLDEN / name)


def test_templates_refuse_unsafe_names() -> None:
    template, context = CASES["deployment.conda.yml"]
    with pytest.raises(RenderError):
        render_template(template, **{**context, "endpoint": "iris\nmalicious: true"})
    with pytest.raises(RenderError):
        render_template(template, **{**context, "environment_variables": {"BAD KEY": "1"}})
    template, context = CASES["create_service.sh"]
    with pytest.raises(RenderError):
        render_template(template, **{**context, "traffic": "a\nrm -rf /"})
