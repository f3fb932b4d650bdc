"""The model's locked environment on this host (deployer.building.host_env), with real
resolutions, wheels and installs; shared with Spark's packed environments (tests/spark)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(sklearn_model: Path) -> Any:
    from deployer.building.host_env import build_host_env, plan_host_env

    plan = plan_host_env(sklearn_model)
    return plan, build_host_env(plan)


def test_a_built_environment_is_found_again_without_resolving(built: Any, sklearn_model: Path) -> None:
    from deployer.building.host_env import build_host_env, find_host_env, plan_host_env

    plan, env = built
    again = find_host_env(plan_host_env(sklearn_model))  # pure lookup: no resolver at all
    assert again is not None and (again.prefix, again.lock_digest, again.reused) == (env.prefix, env.lock_digest, True)
    # the lock it was installed from is kept in it, and its digest is the environment's key
    lock_copy = (env.prefix / "deployer-requirements.lock").read_text()
    assert "scikit-learn==" in lock_copy and "--hash=sha256:" in lock_copy
    # build_host_env takes the same path: nothing is resolved (a resolver that cannot run)
    assert build_host_env(plan, resolver=object()).reused
    # --refresh-lock asks for a fresh resolution: the record is not used
    fresh = dataclasses.replace(plan, build=dataclasses.replace(plan.build, refresh_lock=True))
    assert find_host_env(fresh) is None


def test_the_environment_runs_deployers_runtime_and_nothing_of_this_host(built: Any, tmp_path: Path) -> None:
    """Only the runtime zip is on PYTHONPATH: the serving code imports, the CLI (not part of the
    runtime) does not, and this host's PYTHONPATH cannot leak a package in."""
    from deployer.building.host_env import run_env, runtime_zip

    plan, env = built
    runtime = runtime_zip(plan)
    assert runtime_zip(plan) == runtime  # once per digest
    (tmp_path / "leak").mkdir()
    (tmp_path / "leak" / "leaked_module.py").write_text("")
    os.environ["PYTHONPATH"], previous = str(tmp_path / "leak"), os.environ.get("PYTHONPATH")
    try:
        environ = run_env(runtime)
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous

    def probe(code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(env.python), "-c", code], capture_output=True, text=True, env=environ,
                              cwd=tmp_path)

    ok = probe("import deployer.serving.core, sklearn, sys; print(deployer.serving.core.__file__); print(sys.prefix)")
    assert ok.returncode == 0, ok.stderr
    where, prefix = ok.stdout.split()
    assert where.startswith(str(runtime)) and Path(prefix) == env.prefix
    for module in ("deployer.cli", "leaked_module"):
        assert probe(f"import {module}").returncode != 0, module
