"""``deployer lock`` for conda models: conda-lock runs for real; here no channel is reachable.

The offline failure path runs conda-lock itself (installed with the ``conda`` extra) and checks
the error is clean and no lockfile is left behind. The success path needs a reachable conda
channel: it is marked ``needs_conda_channel`` and runs only with ``DEPLOYER_CONDA_CHANNEL_OK=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployer.cli import cli
from deployer.environment.conda_lock import conda_environment, find_conda_lock, run_conda_lock
from deployer.environment.lock import TargetPlatform
from deployer.errors import MissingDependencyError
from deployer.intake import load_model


def test_the_conda_yaml_given_to_conda_lock_comes_from_the_spec(conda_model: Path) -> None:
    spec = load_model(str(conda_model)).environment
    assert spec.kind == "conda"
    env = conda_environment(spec, "3.11")
    assert env["channels"] == ["conda-forge"]
    deps = env["dependencies"]
    assert isinstance(deps, list)
    assert deps[0] == "python=3.11" and "libgomp" in deps
    pip = [d for d in deps if isinstance(d, dict)]
    assert pip and "scikit-learn" in " ".join(pip[0]["pip"])


def test_missing_conda_lock_is_a_missing_dependency(conda_model: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    assert find_conda_lock(str(empty)) is None
    out = tmp_path / "conda-lock.yml"
    spec = load_model(str(conda_model)).environment
    with pytest.raises(MissingDependencyError, match=r"conda-lock") as info:
        run_conda_lock(spec, TargetPlatform.parse("linux/amd64", "3.11"), out, search_path=str(empty))
    assert "deployer[conda]" in (info.value.fix or "")
    assert not out.exists()


@pytest.mark.slow
def test_lock_conda_model_without_channel_access_fails_cleanly(conda_model: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    if find_conda_lock() is None:
        pytest.skip("conda-lock is not installed (extra 'conda')")
    if os.environ.get("DEPLOYER_CONDA_CHANNEL_OK") == "1":
        pytest.skip("a conda channel is reachable here; the offline path cannot be observed")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["lock", "-m", str(conda_model), "--platform", "linux/arm64"])
    assert result.exit_code == 1, result.output
    err = result.stderr
    assert "Traceback" not in err and "Traceback" not in result.stdout
    assert "conda-forge" in err and "channel" in err
    assert "linux-aarch64" in err
    assert not (tmp_path / "conda-lock.yml").exists()
    assert not list(tmp_path.glob(".conda-lock.yml.*"))


@pytest.mark.needs_conda_channel
def test_lock_conda_model_writes_a_lockfile(conda_model: Path, tmp_path: Path) -> None:
    if os.environ.get("DEPLOYER_CONDA_CHANNEL_OK") != "1":
        pytest.skip("no conda channel is reachable here (set DEPLOYER_CONDA_CHANNEL_OK=1 where one is)")
    out = tmp_path / "out" / "lock.yml"
    result = CliRunner().invoke(cli, ["lock", "-m", str(conda_model), "-o", str(out)])
    assert result.exit_code == 0, result.output
    from deployer.building.conda import parse_conda_lock

    parsed = parse_conda_lock(out)
    assert "linux-64" in parsed.platforms
    assert parsed.python_version("linux-64") == "3.11"
