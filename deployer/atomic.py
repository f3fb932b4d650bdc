"""Files written whole or not at all: write a temporary file beside the target, rename it over
the target on success, remove it on failure. Readers (a concurrent build, Spark's executors, a
user's next command) never see a half-written file, and a failed or interrupted write leaves
the previous file intact."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(target: Path, *, prefix: str = ".partial-", suffix: str = "") -> Iterator[Path]:
    """Yield an unused temporary path in ``target``'s directory (created if missing) for the
    block to write; when the block ends normally it replaces ``target``, when it raises it is
    removed. The block creates the file itself, so it gets the usual permissions (umask), as
    ``target`` would."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{prefix}{secrets.token_hex(8)}{suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
