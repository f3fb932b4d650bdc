"""The build-option group (deployer/cli/build_options.py): declared once, every option
reaches the build plan from every command that builds from -m.

Here the image commands' ``--dry-run`` (build, generate, run-local, build-and-push) and
``deploy --target local`` (which reads the engine); SageMaker's deploy and batch are in
tests/targets/sagemaker/test_build_options.py, the MLflow plugin's ``-C`` keys in
tests/integrations/test_mlflow_deployments.py. Each case checks the option's value in the
plan's options and, for an option that changes what is in the image, that the
content-addressed tag changes with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from deployer.cli import cli
from deployer.targets.build_options import GROUP
from tests.fixtures.build_option_cases import FIELD_OF_PARAM, OPTION_CASES, OptionCase


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _image_plan(command: str, model: Path, extra: list[str], tmp: Path) -> dict[str, Any]:
    """(options, tag) of the build plan ``deployer COMMAND --dry-run`` prints."""
    args = {"build": ["build"], "generate": ["generate", "-o", str(tmp / "ctx")], "run-local": ["run-local"],
            "build-and-push": ["build-and-push", "--registry", "127.0.0.1:5000/team"]}[command]
    code, out, err = _run(*args, "-m", str(model), "--dry-run", "--output", "json", *extra)
    assert code == 0, err
    data = json.loads(out)
    assert data["dry_run"] is True
    return {"options": data["plan"]["options"], "tag": data["plan"]["tag"], "data": data}


def test_the_cases_cover_every_option_of_the_group() -> None:
    fields = {FIELD_OF_PARAM.get(o.name, o.name) for o in GROUP}
    assert {c.name for c in OPTION_CASES} == fields


@pytest.mark.parametrize("command", ["build", "generate", "run-local", "build-and-push", "deploy", "batch"])
def test_every_command_declares_the_same_group(command: str) -> None:
    """Same names, types, defaults and help on every command (--env is --image-env on the
    commands whose --env is the endpoint's)."""
    cmd = cli.get_command(click.Context(cli), command)
    assert cmd is not None
    params = {p.name: p for p in cmd.params}
    for opt in GROUP:
        param = params[opt.name]
        assert isinstance(param, click.Option)
        assert param.help == dict(opt.kwargs)["help"]
        assert param.default == dict(opt.kwargs).get("default", param.default)
        assert opt.flag in param.opts + param.secondary_opts
    env = params["env_vars"]
    assert isinstance(env, click.Option)
    assert env.opts == (["--image-env"] if command in ("deploy", "batch") else ["--env", "--image-env"])


@pytest.mark.parametrize("command", ["build", "generate", "run-local", "build-and-push"])
@pytest.mark.parametrize("case", OPTION_CASES, ids=lambda c: c.id)
def test_each_option_reaches_the_plan_of_each_image_command(command: str, case: OptionCase, sklearn_model: Path,
                                                            option_files: Path, tmp_path: Path) -> None:
    base = _image_plan(command, sklearn_model, [], tmp_path)
    got = _image_plan(command, sklearn_model, case.args(option_files), tmp_path)
    assert got["options"][case.name] == case.expected(option_files)
    assert case.name not in base["options"]
    assert (got["tag"] != base["tag"]) is case.changes_tag


def test_build_still_takes_env_for_the_baked_environment(sklearn_model: Path, tmp_path: Path) -> None:
    a = _image_plan("build", sklearn_model, ["--env", "A=1"], tmp_path)
    b = _image_plan("build", sklearn_model, ["--image-env", "A=1"], tmp_path)
    assert a["options"]["env"] == b["options"]["env"] == [["A", "1"]] and a["tag"] == b["tag"]
    assert a["data"]["plan"]["env"]["A"] == "1"


def test_dry_runs_of_generate_run_local_and_build_and_push_do_nothing(sklearn_model: Path, tmp_path: Path) -> None:
    gen = _image_plan("generate", sklearn_model, [], tmp_path)
    assert gen["data"]["out_dir"] == str(tmp_path / "ctx") and not (tmp_path / "ctx").exists()
    run = _image_plan("run-local", sklearn_model, ["--target", "sagemaker"], tmp_path)
    assert run["data"]["run"]["serve_as"] == "sagemaker" and run["data"]["plan"]["cmd"] == ["serve"]
    push = _image_plan("build-and-push", sklearn_model, [], tmp_path)
    assert push["data"]["push_to"] == f"127.0.0.1:5000/team/{push['tag']}"


# ---------------------------------------------------------------- deploy: refusals (no engine)
def _refused(args: list[str]) -> str:
    code, out, err = _run(*args)
    assert code == 2, out + err
    return err


def test_build_options_with_a_prebuilt_image_are_refused(sklearn_model: Path) -> None:
    err = _refused(["deploy", "--target", "local", "--name", "x", "--image-uri", "deployer-test/none:1",
                    "--pip", "six", "--dry-run"])
    assert "--pip" in err and "--image-uri deploys a prebuilt image" in err


def test_azure_builds_an_image_from_m_only_with_registry(sklearn_model: Path) -> None:
    err = _refused(["deploy", "--target", "azureml", "--name", "x", "-m", str(sklearn_model),
                    "--system-package", "libgomp1", "--no-verify", "--dry-run"])
    assert "--system-package, --no-verify" in err or "--no-verify, --system-package" in err
    assert "builds an image from -m only with --registry" in err and "add --registry HOST" in err


def test_spark_batch_refuses_image_options(sklearn_model: Path, tmp_path: Path) -> None:
    spark = ["batch", "--target", "spark", "-m", str(sklearn_model), "--input", str(tmp_path / "in.parquet"),
             "--output", str(tmp_path / "out.parquet"), "--dry-run"]
    err = _refused([*spark, "--base-image", "x:1", "--pip", "six"])
    assert "--base-image shapes an image" in err and "builds none" in err and "--pip" not in err.split("hint")[0]
    err = _refused([*spark, "--pip", "six==1.16.0"])  # the executors' own Python: nothing to add it to
    assert "--env-manager virtualenv" in err


def test_batch_job_management_takes_no_build_options() -> None:
    err = _refused(["batch", "--target", "sagemaker", "--status", "job-1", "--system-package", "libgomp1"])
    assert "--system-package shapes an image, and --status starts no job" in err


def test_a_target_may_not_declare_a_build_option() -> None:
    from deployer.cli.targets_common import GENERIC

    assert {o.name for o in GROUP} <= GENERIC


# ---------------------------------------------------------------- deploy --target local (engine)
def _local_plan(model: Path, extra: list[str]) -> tuple[int, dict[str, Any], str]:
    code, out, err = _run("deploy", "--target", "local", "--name", "group-test", "-m", str(model),
                          "--dry-run", "--output", "json", *extra)
    return code, (json.loads(out)["plan"] if code == 0 else {}), err


@pytest.mark.docker
@pytest.mark.parametrize("case", OPTION_CASES, ids=lambda c: c.id)
def test_each_option_reaches_the_local_deploy_plan(case: OptionCase, sklearn_model: Path, option_files: Path) -> None:
    code, base, err = _local_plan(sklearn_model, [])
    assert code == 0, err
    code, got, err = _local_plan(sklearn_model, case.args(option_files))
    if case.name == "gpu" and code != 0:  # no NVIDIA runtime here: refused before building
        assert "--gpu" in err and "nvidia" in err.lower()
        return
    assert code == 0, err
    assert got["facts"]["build"][case.name] == case.expected(option_files)
    assert got["facts"]["build"].get("target", "local") == "local"  # started as the local target runs it
    assert (got["facts"]["image"] != base["facts"]["image"]) is case.changes_tag
    # the same options give `deployer build` the same image (content-addressed, one plan)
    code, out, err = _run("build", "-m", str(sklearn_model), "--dry-run", "--output", "json",
                          *case.args(option_files))
    assert code == 0, err
    assert json.loads(out)["plan"]["tag"] == got["facts"]["image"]
    run = next(c for c in got["calls"] if c["operation"] == "run")
    assert run["params"]["image"] == got["facts"]["image"]
    build = [c for c in got["calls"] if c["operation"] == "build_image"]
    if build:  # planned when the image is not on the engine yet: it builds with the same options
        assert build[0]["params"]["Build"] == got["facts"]["build"]
        assert build[0]["service"] == "deployer"  # the build step every target plans (model_image)



@pytest.mark.docker
@pytest.mark.slow
def test_deploy_local_builds_with_the_group_and_serves(sklearn_model: Path, base_image: str,
                                                       docker_client: Any) -> None:
    """For real: deploy --target local -m with several group options builds (and verifies)
    an image that has them, runs it and serves."""
    import urllib.request

    args = ["--base-image", base_image, "--pip", "six==1.16.0", "--image-env", "GROUP_TEST=on",
            "--label", "team=ml", "--system-package", "libgomp1", "--port", "0"]
    code, out, err = _run("deploy", "--target", "local", "--name", "group-real", "-m", str(sklearn_model),
                          "--output", "json", *args)
    try:
        assert code == 0, err
        result = json.loads(out)
        attrs = docker_client.images.get(result["details"]["image"]).attrs
        assert attrs["Config"]["Labels"]["team"] == "ml"
        assert attrs["Config"]["Labels"]["io.deployer.verify.status"] == "passed"
        assert "GROUP_TEST=on" in attrs["Config"]["Env"]
        container = docker_client.containers.get(result["details"]["container"])
        probe = container.exec_run(["/opt/venv/bin/python", "-c", "import six; print(six.__version__)"])
        assert probe.output.decode().strip() == "1.16.0", probe.output
        libgomp = container.exec_run(["sh", "-c", "ls /usr/lib/*/libgomp.so.1"])
        assert libgomp.exit_code == 0, libgomp.output
        with urllib.request.urlopen(result["endpoint_url"] + "/ping", timeout=10) as resp:
            assert resp.status == 200
    finally:
        _run("delete", "--target", "local", "--name", "group-real")
