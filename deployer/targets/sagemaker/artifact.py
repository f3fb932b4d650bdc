"""The model as SageMaker receives it: a reproducible ``model.tar.gz`` and its digest.

SageMaker extracts ``ModelDataUrl`` into ``/opt/ml/model``, so the archive holds the model
directory's *contents* at its root. The archive is byte-for-byte reproducible (sorted entries,
zeroed timestamps and owners, fixed gzip header) so the same model always uploads the same
object, and its digest is computed from the files themselves, so idempotence checks never
need to build the archive. Symlinks that leave the model directory are refused.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
from pathlib import Path

from deployer.errors import UnsafePathError


def _files(model_dir: Path) -> list[tuple[str, Path]]:
    root = model_dir.resolve()
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            real = path.resolve()
            if real != root and root not in real.parents:
                raise UnsafePathError(
                    f"{path.relative_to(root)} points outside the model directory (to {real})",
                    where=str(model_dir),
                    fix="replace the symlink with the file it points to",
                )
            if real.is_file():
                out.append((path.relative_to(root).as_posix(), real))
    return sorted(out)


def model_digest(model_dir: Path) -> str:
    """sha256 over (relative path, content sha256) of every file, in sorted order."""
    outer = hashlib.sha256()
    for rel, path in _files(model_dir):
        inner = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                inner.update(chunk)
        outer.update(rel.encode() + b"\0" + inner.hexdigest().encode() + b"\n")
    return outer.hexdigest()


def write_model_archive(model_dir: Path, dest: Path) -> Path:
    """Write a reproducible ``model.tar.gz`` of ``model_dir``'s contents to ``dest``."""
    buffer_file = dest.open("wb")
    try:
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer_file, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel, path in _files(model_dir):
                info = tarfile.TarInfo(rel)
                info.size = path.stat().st_size
                info.mtime = 0
                info.mode = 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
    finally:
        buffer_file.close()
    return dest


def archive_bytes(model_dir: Path) -> bytes:
    """The archive in memory (tests and small models)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = write_model_archive(model_dir, Path(tmp) / "model.tar.gz")
        return path.read_bytes()

