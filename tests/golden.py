"""Golden-file comparison shared by the template tests.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest <the test file>``.
"""

from __future__ import annotations

import os
from pathlib import Path


def assert_golden(rendered: str, path: Path) -> None:
    """``rendered`` must equal the approved file at ``path`` (written instead with UPDATE_GOLDEN=1)."""
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(rendered)
    assert path.is_file(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert rendered == path.read_text(), f"{path.name} changed; review and run with UPDATE_GOLDEN=1"
