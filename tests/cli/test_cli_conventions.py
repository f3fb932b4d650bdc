"""Conventions every command follows, exercised through `deployer inspect`.

--version/--help, exit codes 0/1/2, --output json on stdout with logs on stderr, -q/-v
(tracebacks only with -v), and configuration precedence:
flag > DEPLOYER_* env > deployer.toml / [tool.deployer] (target > command > top level) > default.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from deployer import __version__
from deployer.cli import cli
from deployer.cli.common import command, get_console

DEPLOYER = Path(sys.executable).parent / "deployer"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory, with no DEPLOYER_* variables from the outside."""
    import os

    for key in list(os.environ):
        if key.startswith("DEPLOYER_"):
            monkeypatch.delenv(key)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# --- version, help, exit codes --------------------------------------------------------------


def test_version(in_tmp: Path) -> None:
    for flag in ("--version", "-V"):
        result = run(flag)
        assert result.exit_code == 0
        assert result.stdout.strip() == f"deployer, version {__version__}"


def test_help_lists_inspect(in_tmp: Path) -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert "inspect" in result.stdout
    sub = run("inspect", "--help")
    assert sub.exit_code == 0
    for option in ("-m, --model", "--output [text|json]", "-v, --verbose", "-q, --quiet"):
        assert option in sub.stdout


def test_exit_0_on_success(in_tmp: Path, sklearn_model: Path) -> None:
    assert run("inspect", "-m", str(sklearn_model)).exit_code == 0


def test_exit_1_on_bad_model(in_tmp: Path) -> None:
    assert run("inspect", "-m", str(in_tmp)).exit_code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect"], "Missing option '-m'"),
        (["inspect", "-m", "x", "--output", "yaml"], "Invalid value for '--output'"),
        (["inspect", "-m", "x", "--bogus"], "No such option"),
        (["inspekt"], "Did you mean 'inspect'?"),
    ],
)
def test_exit_2_on_usage_errors(in_tmp: Path, args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


# --- output streams, verbosity ----------------------------------------------------------------


def test_json_on_stdout_logs_on_stderr(in_tmp: Path, sklearn_model: Path) -> None:
    result = run("inspect", "-m", str(sklearn_model), "--output", "json", "-v")
    assert result.exit_code == 0
    assert is_json(result.stdout)
    assert "inspecting" in result.stderr and "debug: model directory" in result.stderr
    assert "inspecting" not in result.stdout


def test_group_level_output_flag(in_tmp: Path, sklearn_model: Path) -> None:
    assert is_json(run("--output", "json", "inspect", "-m", str(sklearn_model)).stdout)


def test_quiet_silences_info(in_tmp: Path, sklearn_model: Path) -> None:
    result = run("inspect", "-m", str(sklearn_model), "-q")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert "Loader:" in result.stdout
    assert run("-q", "inspect", "-m", str(sklearn_model)).stderr == ""


def test_default_verbosity_has_no_debug(in_tmp: Path, sklearn_model: Path) -> None:
    result = run("inspect", "-m", str(sklearn_model))
    assert "inspecting" in result.stderr and "debug:" not in result.stderr


def test_traceback_only_with_verbose(in_tmp: Path) -> None:
    plain = run("inspect", "-m", str(in_tmp))
    assert plain.exit_code == 1 and "Traceback" not in plain.stderr
    verbose = run("inspect", "-m", str(in_tmp), "-v")
    assert verbose.exit_code == 1 and "Traceback (most recent call last)" in verbose.stderr
    assert "ModelNotFoundError" in verbose.stderr


def test_quiet_still_shows_errors(in_tmp: Path) -> None:
    result = run("inspect", "-m", str(in_tmp / "missing"), "-q")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")


# --- configuration precedence -----------------------------------------------------------------


def test_config_file_beats_default(in_tmp: Path, sklearn_model: Path) -> None:
    (in_tmp / "deployer.toml").write_text('output = "json"\n')
    assert is_json(run("inspect", "-m", str(sklearn_model)).stdout)


def test_command_section_beats_top_level(in_tmp: Path, sklearn_model: Path) -> None:
    (in_tmp / "deployer.toml").write_text('output = "text"\n[inspect]\noutput = "json"\n')
    assert is_json(run("inspect", "-m", str(sklearn_model)).stdout)


def test_env_beats_config_file(in_tmp: Path, sklearn_model: Path) -> None:
    (in_tmp / "deployer.toml").write_text('[inspect]\noutput = "json"\n')
    result = run("inspect", "-m", str(sklearn_model), env={"DEPLOYER_OUTPUT": "text"})
    assert not is_json(result.stdout) and "Loader:" in result.stdout


def test_flag_beats_env(in_tmp: Path, sklearn_model: Path) -> None:
    result = run("inspect", "-m", str(sklearn_model), "--output", "json", env={"DEPLOYER_OUTPUT": "text"})
    assert is_json(result.stdout)


def test_group_flag_beats_config_file(in_tmp: Path, sklearn_model: Path) -> None:
    """Regression: `deployer --output json inspect` used to lose against output = "text" in the file."""
    (in_tmp / "deployer.toml").write_text('output = "text"\n')
    assert is_json(run("--output", "json", "inspect", "-m", str(sklearn_model)).stdout)


def test_model_from_env(in_tmp: Path, sklearn_model: Path) -> None:
    result = run("inspect", "--output", "json", env={"DEPLOYER_MODEL_URI": str(sklearn_model)})
    assert result.exit_code == 0
    assert json.loads(result.stdout)["path"] == str(sklearn_model.resolve())


def test_pyproject_tool_section(in_tmp: Path, sklearn_model: Path) -> None:
    (in_tmp / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.deployer.inspect]\noutput = "json"\n')
    assert is_json(run("inspect", "-m", str(sklearn_model)).stdout)


def test_deployer_toml_preferred_over_pyproject(in_tmp: Path, sklearn_model: Path) -> None:
    (in_tmp / "pyproject.toml").write_text('[tool.deployer]\noutput = "json"\n')
    (in_tmp / "deployer.toml").write_text('output = "text"\n')
    assert not is_json(run("inspect", "-m", str(sklearn_model)).stdout)


def test_config_named_by_flag_and_env(in_tmp: Path, sklearn_model: Path) -> None:
    other = in_tmp / "elsewhere.toml"
    other.write_text('output = "json"\n')
    assert is_json(run("--config", str(other), "inspect", "-m", str(sklearn_model)).stdout)
    assert is_json(run("inspect", "-m", str(sklearn_model), env={"DEPLOYER_CONFIG": str(other)}).stdout)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("output = \n", "not valid TOML"),
        ("[bogus]\noutput = 'json'\n", "unknown section [bogus]"),
        ("targets = 3\n", "'targets' must be a table"),
        ('output = "yaml"\n', "invalid value 'yaml' for 'output'"),
    ],
)
def test_bad_config_is_exit_2(in_tmp: Path, sklearn_model: Path, content: str, message: str) -> None:
    (in_tmp / "deployer.toml").write_text(content)
    result = run("inspect", "-m", str(sklearn_model))
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_named_by_flag(in_tmp: Path, sklearn_model: Path) -> None:
    result = run("--config", str(in_tmp / "nope.toml"), "inspect", "-m", str(sklearn_model))
    assert result.exit_code == 2 and "config file not found" in result.stderr


# Per-target sections apply to commands that take --target. inspect has none, so a command
# built the same way (deployer.cli.common.command) checks the target layer of the precedence.


@command("deploy")
@click.option("--target", default=None)
@click.option("--region", default="us-east-1")
def _target_command(target: str | None, region: str) -> None:
    get_console().result({"target": target, "region": region}, text=f"{target} {region}")


TARGET_TOML = 'region = "top"\n[deploy]\nregion = "command"\n[targets.sagemaker]\nregion = "eu-west-1"\n'


def _deploy(*args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(_target_command, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_target_section_beats_command_section(in_tmp: Path) -> None:
    (in_tmp / "deployer.toml").write_text(TARGET_TOML)
    assert _deploy("--target", "sagemaker") == "sagemaker eu-west-1"
    assert _deploy("--target", "azureml") == "azureml command"  # no section for that target


def test_target_layers_below_env_and_flag(in_tmp: Path) -> None:
    (in_tmp / "deployer.toml").write_text(TARGET_TOML)
    assert _deploy("--target", "sagemaker", env={"DEPLOYER_REGION": "env"}) == "sagemaker env"
    assert _deploy("--target", "sagemaker", "--region", "flag", env={"DEPLOYER_REGION": "env"}) == "sagemaker flag"


def test_target_chosen_in_config(in_tmp: Path) -> None:
    (in_tmp / "deployer.toml").write_text('[deploy]\ntarget = "sagemaker"\nregion = "command"\n')
    assert _deploy() == "sagemaker command"


def test_default_when_nothing_set(in_tmp: Path) -> None:
    assert _deploy() == "None us-east-1"


# --- the real console script -------------------------------------------------------------------


def test_console_script_conventions(in_tmp: Path, sklearn_model: Path) -> None:
    version = subprocess.run([str(DEPLOYER), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and __version__ in version.stdout
    usage = subprocess.run([str(DEPLOYER), "inspect"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "Missing option" in usage.stderr
    (in_tmp / "deployer.toml").write_text('output = "json"\n')
    proc = subprocess.run([str(DEPLOYER), "inspect", "-m", str(sklearn_model), "-q"],
                          capture_output=True, text=True, timeout=120, cwd=in_tmp)
    assert proc.returncode == 0 and proc.stderr == ""
    assert json.loads(proc.stdout)["loader_module"] == "mlflow.sklearn"
