"""`deployer inspect` and `build --dry-run` on a model saved from a uv project: both say the lock
is the model's uv.lock; a uv.lock that does not cover the requirements is a clean exit 1."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from deployer.cli import cli
from tests.fixtures.uv_projects import UvProject, save_model


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_inspect_shows_the_uv_lock(uv_model: Path, uv_project: UvProject) -> None:
    result = run("inspect", "-m", str(uv_model), "--output", "json")
    assert result.exit_code == 0, result.stderr
    uv = json.loads(result.stdout)["environment"]["uv_lock"]
    assert uv["path"] == "uv.lock" and uv["project"] == "trainer"
    assert {p["name"]: p["version"] for p in uv["packages"]} == {"uvpinned": "1.0", "uvdep": "0.5"}
    assert uv["index_urls"] == [uv_project.simple.as_uri()]
    text = run("inspect", "-m", str(uv_model)).stdout
    assert "Lock:           uv.lock (uv project trainer): 2 packages" in text
    assert "    uvpinned==1.0" in text


def test_dry_run_plan_says_the_lock_is_the_models_uv_lock(uv_model: Path, uv_project: UvProject) -> None:
    result = run("build", "-m", str(uv_model), "--dry-run", "--output", "json")
    assert result.exit_code == 0, result.stderr
    reqs = json.loads(result.stdout)["plan"]["requirements"]
    assert reqs["lock_source"] == "uv.lock"
    (_, hashes), = [v for k, v in uv_project.locked().items() if k == "uvpinned"]
    assert f"uvpinned==1.0 --hash=sha256:{hashes.pop()}" in reqs["requirements"]
    assert not any(r.startswith("uvdevonly") for r in reqs["requirements"])
    text = run("build", "-m", str(uv_model), "--dry-run").stdout
    assert "lock       the model's uv.lock" in text
    assert "  uvpinned==1.0  (1 hash)" in text


def test_uncovered_uv_lock_is_exit_1_with_the_fix(uv_project: UvProject, tmp_path: Path) -> None:
    model = save_model(uv_project, tmp_path / "model", ["uvpinned>=2"])
    for args in (["inspect"], ["build", "--dry-run"]):
        result = run(*args, "-m", str(model))
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert "uvpinned>=2 (uv.lock has 1.0)" in result.stderr
        assert str((model / "uv.lock").resolve()) in result.stderr
        assert "re-run `uv lock`" in result.stderr
