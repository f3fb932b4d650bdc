"""Files written whole or not at all: write a temporary file beside the target, rename it over
the target on success, remove it on failure. Readers (a concurrent build, Spark's executors, a
user's next command) never see a half-written file, and a failed or interrupted write leaves
the previous file intact."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from deployer.errors import UsageError


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


def check_output_dir(out: Path, *, force: bool = False, flag: str = "-o/--output-dir") -> None:
    """A usage error unless ``out`` is absent, an empty folder, or a folder ``force`` replaces."""
    if out.exists() and not out.is_dir():
        raise UsageError(
            "the output path exists and is not a folder", where=str(out), fix=f"pick another {flag}"
        )
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(
            "the output folder is not empty",
            where=str(out),
            fix=f"pass --force to replace it, or pick another {flag}",
        )


@contextlib.contextmanager
def atomic_directory(
    out: Path, *, force: bool = False, flag: str = "-o/--output-dir"
) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``out`` for the block to fill; when the block ends
    normally the folder becomes ``out`` (an existing ``out`` is replaced only then, and only
    with ``force``), when it raises it is removed. A non-empty ``out`` without ``force`` is a
    usage error before anything is written."""
    check_output_dir(out, force=force, flag=flag)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder to ``out``; an existing ``out`` is replaced only after that."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
