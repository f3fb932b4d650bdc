"""The packed environment (``env_manager="virtualenv"``, and the host environments built from the
same lock) of a model saved from a uv project holds uv.lock's versions, as its image does."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.fixtures.uv_projects import UvProject

pytestmark = pytest.mark.slow

PROBE = """
import importlib.metadata as m, importlib.util
print(m.version("uvpinned"), m.version("uvdep"), importlib.util.find_spec("uvdevonly") is None)
"""


def test_packed_environment_has_the_uv_lock_versions(uv_model: Path, uv_project: UvProject) -> None:
    from deployer.spark.environment import build_environment, plan_environment

    plan = plan_environment(uv_model)
    assert plan.to_dict()["requirements"]["lock_source"] == "uv.lock"
    packed = build_environment(plan)
    probe = subprocess.run([str(packed.prefix / "bin" / "python"), "-c", PROBE], capture_output=True, text=True)
    assert probe.stdout.split() == ["1.0", "0.5", "True"], probe.stderr
    locked = uv_project.locked()
    assert locked["uvpinned"][0] == "1.0" and locked["uvdep"][0] == "0.5"
