"""``--model-config`` in images: baked as ``SERVING_MODEL_CONFIG`` (escaped by the Dockerfile
filter), part of the content digest, used by the verification run and by the running container.

The planning tests need no engine; the docker test builds the config model with the sklearn
image's requirements and options, so it shares that image's environment layer.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from deployer.building.plan import BuildOptions, plan_build
from deployer.errors import UsageError
from deployer.intake import load_model
from deployer.serving.model_config import ENV, model_config_json
from tests.building.conftest import SK_IMAGE_OPTIONS, BuiltImage, Secrets, build_with_cli

#: Quotes, backslashes, $VARIABLES, a newline and a line separator: each one would break out of
#: a Dockerfile ENV word or a shell command if it were pasted unescaped.
NASTY = {"x": 'say "hi" to $USER \\o/ ${HOME}\nRUN touch /pwned \u2028 end', "scale": 2.0}
ROWS = {"dataframe_split": {"columns": ["a"], "data": [[1.0], [4.0]]}}


def _oracle(model_dir: Path, config: dict[str, Any] | None) -> list[dict[str, Any]]:
    import mlflow.pyfunc
    import pandas as pd

    kwargs = {"model_config": config} if config is not None else {}
    out = mlflow.pyfunc.load_model(str(model_dir), **kwargs).predict(pd.DataFrame({"a": [1.0, 4.0]}))
    return json.loads(out.to_json(orient="records"))


# ----------------------------------------------------------------------------- planning
def test_config_is_baked_canonical_and_changes_the_tag(config_model: Path) -> None:
    loaded = load_model(str(config_model))
    plain = plan_build(loaded, BuildOptions())
    one = plan_build(loaded, BuildOptions(model_config=model_config_json({"x": "a"})))
    two = plan_build(loaded, BuildOptions(model_config=model_config_json({"x": "b"})))
    assert ENV not in dict(plain.env)
    assert dict(one.env)[ENV] == '{"x":"a"}'
    assert len({plain.tag, one.tag, two.tag}) == 3
    assert len({plain.fingerprint, one.fingerprint, two.fingerprint}) == 3
    assert plan_build(loaded, BuildOptions(model_config='{"x":"a"}')).tag == one.tag  # stable


def test_keys_the_model_did_not_save_are_a_plan_warning(config_model: Path) -> None:
    plan = plan_build(load_model(str(config_model)), BuildOptions(model_config='{"x":1,"typo":2}'))
    assert any("typo" in w and "ignores" in w for w in plan.warnings), plan.warnings


def test_config_given_twice_is_refused(config_model: Path) -> None:
    options = BuildOptions(model_config='{"x":1}', env=((ENV, '{"x":2}'),))
    with pytest.raises(UsageError, match="given twice"):
        plan_build(load_model(str(config_model)), options)


def test_generated_dockerfile_escapes_the_config(config_model: Path, tmp_path: Path) -> None:
    """`deployer generate`: one ENV line whose Dockerfile word unescapes to the canonical JSON."""
    from click.testing import CliRunner

    from deployer.cli import cli

    out = tmp_path / "ctx"
    res = CliRunner().invoke(cli, ["generate", "-m", str(config_model), "-o", str(out),
                                   "--model-config", json.dumps(NASTY)])
    assert res.exit_code == 0, res.output
    dockerfile = (out / "Dockerfile").read_text()
    lines = [line for line in dockerfile.splitlines() if line.startswith(f"ENV {ENV}=")]
    assert len(lines) == 1
    assert "RUN touch" not in dockerfile.replace(lines[0], "")
    word = lines[0][len(f"ENV {ENV}="):]
    assert word.startswith('"') and word.endswith('"')
    unescaped = word[1:-1].replace('\\"', '"').replace("\\$", "$").replace("\\\\", "\\")
    assert json.loads(unescaped) == NASTY


# ----------------------------------------------------------------------------- a real image
def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=60) as resp:
        return resp.status, json.loads(resp.read())


@pytest.fixture(scope="session")
def config_image(docker_client, base_image: str, sk_image: BuiltImage, config_model: Path,  # type: ignore[no-untyped-def]
                 build_secrets: Secrets, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """The config model with the sklearn image's requirements (same environment layer), built
    by the real CLI with --model-config."""
    path = tmp_path_factory.mktemp("cfg") / "config_echo"
    shutil.copytree(config_model, path)
    for name in ("requirements.txt", "python_env.yaml", "conda.yaml"):
        shutil.copyfile(sk_image.model_dir / name, path / name)
    return build_with_cli(path, "deployer-test/config-echo:1", base_image, build_secrets.env,
                          *SK_IMAGE_OPTIONS, "--model-config", json.dumps(NASTY))


@pytest.mark.docker
@pytest.mark.slow
def test_image_built_with_a_config_answers_with_it(docker_client, config_image: BuiltImage,  # type: ignore[no-untyped-def]
                                                   local_target) -> None:
    image = docker_client.images.get(config_image.tag)
    env = dict(item.split("=", 1) for item in image.attrs["Config"]["Env"])
    assert json.loads(env[ENV]) == NASTY
    labels = image.attrs["Config"]["Labels"]
    assert labels["io.deployer.verify.status"] == "passed"  # verification loaded it with the config
    url = local_target(config_image.tag, "t-config-echo")
    status, body = _post(url.rstrip("/") + "/invocations", ROWS)
    assert status == 200
    assert body["predictions"] == _oracle(config_image.model_dir, NASTY)
    assert body["predictions"] != _oracle(config_image.model_dir, None)


def test_build_dry_run_shows_it_in_the_image_env(config_model: Path) -> None:
    from click.testing import CliRunner

    from deployer.cli import cli

    res = CliRunner().invoke(cli, ["--output", "json", "build", "-m", str(config_model), "--dry-run",
                                   "--model-config", '{"x": "dry"}'])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["plan"]["env"][ENV] == '{"x":"dry"}'


@pytest.mark.docker
@pytest.mark.slow
def test_verification_loads_the_model_with_the_config(docker_client, config_image: BuiltImage, base_image: str,  # type: ignore[no-untyped-def]
                                                      build_secrets: Secrets) -> None:
    """A config under which the model cannot predict (scale is not a number) fails the build at
    verification: the verification run loaded the model with it. Nothing gets the tag."""
    from tests.building.conftest import deployer_cli

    tag = "deployer-test/config-echo:bad"
    proc = deployer_cli(["build", "-m", str(config_image.model_dir), "-t", tag, "--base-image", base_image,
                         *SK_IMAGE_OPTIONS, "--model-config", '{"x": "ok", "scale": "not-a-number"}'],
                        build_secrets.env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "verif" in proc.stderr.lower() and "not-a-number" in proc.stderr, proc.stderr[-3000:]
    assert not docker_client.images.list(name=tag)
