"""deployer/atomic.py: a file is written whole or not at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from deployer.atomic import atomic_output


def test_success_replaces_the_target_with_the_usual_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    old = os.umask(0o022)
    try:
        with atomic_output(target, prefix=".out-") as tmp:
            assert tmp.parent == target.parent and tmp.name.startswith(".out-") and not tmp.exists()
            tmp.write_text("new")
            assert not target.exists()  # nothing visible before the block ends
    finally:
        os.umask(old)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_a_failure_keeps_the_previous_file_and_leaves_no_debris(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("previous")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
