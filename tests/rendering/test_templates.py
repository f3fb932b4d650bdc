"""Golden files for every template deployer renders, from fixed plans.

A change to a template (or to what Python feeds it) shows up as a diff here, to be read and
approved. Regenerate after an intended change with: UPDATE_GOLDEN=1 pytest tests/rendering
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from deployer.building.context import (
    create_service_context,
    dockerfile_context,
    render_create_service,
    serve_context,
)
from deployer.building.dependencies import ImageRequirements
from deployer.building.plan import (
    CONDA_PREFIX,
    VENV_DIR,
    BuildPlan,
    Layer,
    OsPackages,
    _healthcheck,
)
from deployer.building.runtime import RuntimeFiles
from deployer.environment.lock import TargetPlatform
from deployer.errors import RenderError
from deployer.rendering.render import render_template
from tests.golden import assert_golden

GOLDEN = Path(__file__).with_name("golden")
UV_SHA = "f" * 64


def fixed_plan(**changes: object) -> BuildPlan:
    plan = BuildPlan(
        model_name="iris", model_uri="s3://bucket/models/iris", model_path=Path("/models/iris"),
        model_digest="sha256:" + "1" * 64, target="local", tag="iris:0123456789ab",
        base_image="python:3.11-slim", env_kind="virtualenv",
        platform=TargetPlatform.parse("linux/amd64", "3.11"),
        requirements=ImageRequirements(python_version="3.11", requirements=("scikit-learn==1.5.0",)),
        runtime=RuntimeFiles(files=("deployer/__init__.py",), digest="sha256:" + "2" * 64),
        layers=(Layer("base", "FROM python:3.11-slim"),),
        labels=(("io.deployer.model.uuid", "abc123"), ("org.opencontainers.image.title", "iris")),
        env=(("PYTHONUNBUFFERED", "1"), ("GREETING", 'say "hi" to $USER \\o/')),
        user="1000:1000", port=8080, entrypoint=(f"{VENV_DIR}/bin/dumb-init", "--"), cmd=("serve",),
        healthcheck=_healthcheck(f"{VENV_DIR}/bin/python", "/ping", 8080), python=f"{VENV_DIR}/bin/python",
        env_prefix=VENV_DIR, fingerprint="sha256:" + "3" * 64,
    )
    return replace(plan, **changes)  # type: ignore[arg-type]


CASES = {
    "Dockerfile.classic": lambda: render_template(
        "Dockerfile.j2", **dockerfile_context(fixed_plan(), buildkit=False, uv_sha256=UV_SHA)),
    "Dockerfile.buildkit": lambda: render_template(
        "Dockerfile.j2", **dockerfile_context(fixed_plan(), buildkit=True, uv_sha256=UV_SHA)),
    "Dockerfile.root-sagemaker": lambda: render_template("Dockerfile.j2", **dockerfile_context(
        fixed_plan(user="root", target="sagemaker"), buildkit=False, uv_sha256="")),
    "Dockerfile.local-env": lambda: render_template("Dockerfile.j2", **dockerfile_context(
        fixed_plan(env_kind="local", env_prefix="", python="python3", entrypoint=("/usr/bin/env",),
                   healthcheck=_healthcheck("python3", "/ping", 8080)), buildkit=False, uv_sha256="")),
    "Dockerfile.conda": lambda: render_template("Dockerfile.j2", **dockerfile_context(
        fixed_plan(env_kind="conda", env_prefix=CONDA_PREFIX, python=f"{CONDA_PREFIX}/bin/python",
                   base_image="debian:bookworm-slim", entrypoint=(f"{CONDA_PREFIX}/bin/dumb-init", "--"),
                   healthcheck=_healthcheck(f"{CONDA_PREFIX}/bin/python", "/ping", 8080)),
        buildkit=True, uv_sha256=UV_SHA)),
    "Dockerfile.part1-deps.buildkit": lambda: render_template("Dockerfile.j2", **dockerfile_context(
        fixed_plan(), buildkit=True, uv_sha256=UV_SHA, part="deps")),
    "Dockerfile.part1-deps.classic": lambda: render_template("Dockerfile.j2", **dockerfile_context(
        fixed_plan(), buildkit=False, uv_sha256=UV_SHA, part="deps")),
    "Dockerfile.part2-model": lambda: render_template("Dockerfile.j2", **dockerfile_context(
        fixed_plan(), buildkit=True, uv_sha256=UV_SHA, part="model", deps_image="deployer-env:0123456789abcdef0123")),
    "Dockerfile.os-packages": lambda: render_template("Dockerfile.j2", **dockerfile_context(
        fixed_plan(os_packages=OsPackages(("default-jre-headless", "libgomp1"),
                                          ("default-jre-headless: the spark flavor needs a JVM",))),
        buildkit=True, uv_sha256=UV_SHA, part="deps")),
    "serve.local": lambda: render_template("serve.j2", **serve_context(fixed_plan())),
    "serve.azureml": lambda: render_template("serve.j2", **serve_context(fixed_plan(target="azureml"))),
    "dockerignore": lambda: render_template("dockerignore.j2", deployer_version="0.1.0",
                                            plan_file="deployer-plan.json"),
    "create_service.sh": lambda: render_create_service(
        fixed_plan(target="azureml", tag="myregistry.azurecr.io/iris:1")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    rendered = CASES[name]().replace("0.1.0", "<version>")
    assert_golden(rendered, GOLDEN / name)


def test_os_packages_layer_sits_between_the_base_and_the_python_environment() -> None:
    plan = fixed_plan(os_packages=OsPackages(("libgomp1",)))
    for buildkit in (False, True):
        text = render_template("Dockerfile.j2", **dockerfile_context(plan, buildkit=buildkit, uv_sha256=UV_SHA))
        final = text[text.rindex("\nFROM "):]
        apt = final.index("apt-get install -y --no-install-recommends libgomp1")
        assert final.index("FROM ") < apt < final.index("useradd") < final.index("/opt/venv")
        # lists and caches go in the same RUN: one layer, nothing of apt's left in it
        run = final[final.rindex("\nRUN ", 0, apt):final.index("\n", apt)]
        assert "rm -rf /var/lib/apt/lists/*" in run
    without = render_template("Dockerfile.j2", **dockerfile_context(fixed_plan(), buildkit=True, uv_sha256=UV_SHA))
    assert "apt-get" not in without


def test_dockerfile_layer_order_and_invariants() -> None:
    for buildkit in (False, True):
        text = render_template("Dockerfile.j2", **dockerfile_context(fixed_plan(), buildkit=buildkit,
                                                                     uv_sha256=UV_SHA))
        final = text[text.rindex("\nFROM "):]
        steps = [line.split()[0] for line in final.splitlines() if line and line[0].isupper()]
        # model files are the last filesystem step; only metadata (LABEL) may follow
        assert steps[-2:] == ["COPY", "LABEL"], steps
        assert final.index("useradd") < final.index("/opt/venv") < final.index("COPY --from=runtime")
        code = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        assert "apt-get" not in code and "curl" not in code and "wget" not in code
        assert "# syntax" not in text  # would make BuildKit pull a frontend image
        if buildkit:
            assert "RUN --mount=type=bind,source=wheels" in final  # wheels never form a layer
        else:
            assert 'COPY ["wheels"' not in final  # wheels stay in the deps stage


def test_env_values_are_escaped_in_the_dockerfile() -> None:
    text = render_template("Dockerfile.j2", **dockerfile_context(fixed_plan(), buildkit=False, uv_sha256=""))
    assert 'ENV GREETING="say \\"hi\\" to \\$USER \\\\o/"' in text


@pytest.mark.parametrize("changes", [
    {"env": (("X", "line1\nRUN curl evil | sh"),)},
    {"labels": (("io.deployer.model.flavors", "sklearn\nRUN evil"),)},
    {"labels": (("Bad Key", "v"),)},
    {"base_image": "python:3.11\nRUN evil"},
    {"user": "root\nRUN evil"},
    {"healthcheck": ("python", "-c", "x\nRUN evil")},
    {"model_name": "iris\nRUN evil"},
    {"tag": "iris:1\nRUN evil"},
])
def test_hostile_values_are_refused_not_rendered(changes: dict[str, object]) -> None:
    with pytest.raises(RenderError):
        render_template("Dockerfile.j2", **dockerfile_context(fixed_plan(**changes), buildkit=False, uv_sha256=""))


def test_create_service_refuses_bad_azure_names() -> None:
    ctx = create_service_context(fixed_plan(target="azureml"), endpoint_name="bad name; rm -rf /")
    with pytest.raises(RenderError):
        render_template("create_service.sh.j2", **ctx)


def test_rendered_scripts_pass_shellcheck(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (scripts/test.sh installs it: apt-get install shellcheck)")
    for name in ("serve.local", "serve.azureml", "create_service.sh"):
        script = tmp_path / name
        script.write_text(CASES[name]())
        proc = subprocess.run(["shellcheck", "-S", "warning", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout
