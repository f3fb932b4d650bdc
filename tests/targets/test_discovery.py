"""Target discovery through the ``deployer.targets`` entry-point group, with a fake plugin.

The plugin (tests/targets/fake_plugin/deployer_echo_target.py) is installed the way pip
would: a ``*.dist-info`` with ``entry_points.txt`` on the import path. The CLI runs in a
subprocess, so discovery happens exactly as for a user (importlib.metadata at startup).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN_SRC = Path(__file__).parent / "fake_plugin"
DEPLOYER = Path(sys.executable).with_name("deployer")


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    info = site / "deployer_echo_target-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deployer-echo-target\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[deployer.targets]\n"
        "echo = deployer_echo_target:EchoTarget\n"
        "badopts = deployer_echo_target:BadOptionsTarget\n"
        "broken = deployer_missing_module:Target\n"
        "xclash = deployer_echo_target:ClashTarget\n"  # sorts after echo: echo keeps --color
    )
    return site


def run(plugin_path: Path, tmp_path: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    state = tmp_path / "echo"
    state.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYER_")}
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_path), str(PLUGIN_SRC)])
    env["ECHO_STATE"] = str(state)
    env["COLUMNS"] = "300"  # one help line per option
    return subprocess.run([str(DEPLOYER), *args], capture_output=True, text=True, env=env,
                          cwd=cwd or tmp_path, timeout=120)


def test_help_lists_every_targets_options(plugin_path, tmp_path):
    res = run(plugin_path, tmp_path, "deploy", "--help")
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())  # independent of line wrapping
    assert "--color [red|blue] [echo] Color of the echo." in text
    assert "[sagemaker] SageMaker instance type." in text
    assert "[echo] Shared with sagemaker's --env (same type: allowed)." in text  # shared option: both helps
    assert "[sagemaker] Environment variable for the container" in text
    assert "shade" not in text  # a plugin with broken declarations adds nothing


def test_third_party_target_deploys_with_its_options(plugin_path, tmp_path):
    res = run(plugin_path, tmp_path, "deploy", "--target", "echo", "--name", "hello", "--color", "blue",
              "--echo-region", "mars", "--env", "A=1", "--no-wait", "--output", "json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["details"] == {"name": "hello", "region": "mars", "color": "blue", "env": ["A=1"],
                              "model": None, "wait": False}
    status = run(plugin_path, tmp_path, "status", "--target", "echo", "--name", "hello", "--output", "json")
    assert json.loads(status.stdout)["details"]["color"] == "blue"
    listed = run(plugin_path, tmp_path, "list", "--target", "echo", "--output", "json")
    assert [e["name"] for e in json.loads(listed.stdout)["endpoints"]] == ["hello"]
    deleted = run(plugin_path, tmp_path, "delete", "--target", "echo", "--name", "hello", "--purge",
                  "--output", "json")
    assert json.loads(deleted.stdout)["details"] == {"purge": True}
    assert run(plugin_path, tmp_path, "status", "--target", "echo", "--name", "hello").returncode == 1


def test_defaults_of_unset_options_come_from_the_declaration(plugin_path, tmp_path):
    res = run(plugin_path, tmp_path, "deploy", "--target", "echo", "--name", "d", "--dry-run", "--output", "json")
    assert res.returncode == 0, res.stderr
    params = json.loads(res.stdout)["plan"]["calls"][0]["params"]
    assert params["color"] == "red" and params["region"] == "local" and params["env"] == []


def test_config_file_sets_target_options(plugin_path, tmp_path):
    (tmp_path / "deployer.toml").write_text('[targets.echo]\ncolor = "blue"\n\n[targets.sagemaker]\n'
                                            'instance_type = "ml.c5.large"\n')
    res = run(plugin_path, tmp_path, "deploy", "--target", "echo", "--name", "c", "--dry-run",
              "--output", "json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["plan"]["calls"][0]["params"]["color"] == "blue"


@pytest.mark.parametrize(("args", "message"), [
    (["--target", "echo", "--execution-role-arn", "arn:aws:iam::1:role/r"],
     "--execution-role-arn is an option of target sagemaker, not of 'echo'"),
    (["--target", "sagemaker", "--color", "red"], "--color is an option of target echo, not of 'sagemaker'"),
    (["--target", "ecoh"], "did you mean 'echo'?"),
    (["--name", "x"], "needs --target"),
])
def test_usage_errors_name_the_right_target(plugin_path, tmp_path, args, message):
    res = run(plugin_path, tmp_path, "deploy", "--name", "x", *args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_broken_plugins_fail_cleanly_only_when_selected(plugin_path, tmp_path):
    res = run(plugin_path, tmp_path, "deploy", "--target", "broken", "--name", "x")
    assert res.returncode == 1
    assert "target 'broken' could not be loaded" in res.stderr and "pip install" in res.stderr
    res = run(plugin_path, tmp_path, "deploy", "--target", "badopts", "--name", "x")
    assert res.returncode == 1
    assert "bad option declaration" in res.stderr and "'colour'" in res.stderr and "badopts" in res.stderr


def test_a_clashing_declaration_only_breaks_its_own_plugin(plugin_path, tmp_path):
    res = run(plugin_path, tmp_path, "deploy", "--target", "echo", "--name", "x", "--color", "blue", "--dry-run")
    assert res.returncode == 0, res.stderr
    res = run(plugin_path, tmp_path, "deploy", "--target", "xclash", "--name", "x")
    assert res.returncode == 1
    assert "target 'xclash' declares --color as int, but target(s) echo declare it as choice" in res.stderr
