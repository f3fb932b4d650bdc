"""The model directory as it leaves this host: which files, with which bytes, and its digest.

One walk for everything that ships a model - the image's model layer, SageMaker's
``model.tar.gz``, Azure's export bundle, the archive Spark sends to its executors - so they all
ship the same files and refuse the same things:

* every regular file, sorted; ``__pycache__``, ``.git``, ``.DS_Store`` and bytecode are left
  out (they differ per machine and nothing loads them);
* a symlink is followed only when its target stays inside the model directory (and is not a
  directory); a file name with a control character (a newline breaks line-based tools), or a
  socket, device or pipe, is refused (:class:`~deployer.errors.UnsafePathError`);
* root-level environment files (requirements*.txt, python_env.yaml, conda.yaml...) ship with the
  ``user:token@`` part of every URL removed: the host resolves with the model's private index
  credentials, nothing downstream needs them (:func:`shipped_bytes`).

:func:`model_digest` hashes exactly what ships, so two models with the same digest ship the same
bytes. :func:`copy_model` and :func:`write_model_archive` (reproducible ``tar.gz``: sorted
entries, fixed times and owners, fixed gzip header) carry it out.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

from deployer.errors import UnsafePathError

#: Files never shipped from a model directory (bytecode differs per machine, VCS metadata).
SKIPPED_NAMES = frozenset({"__pycache__", ".git", ".DS_Store"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL_USERINFO = re.compile(rb"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]+@")
_ENV_FILE = re.compile(r"^[^/]+\.(txt|ya?ml|cfg|toml)$")


def iter_model_files(model_dir: Path) -> list[tuple[str, Path]]:
    """Every file that ships (relative POSIX path, path), top-down and sorted per folder; see the
    module docstring."""
    root = Path(model_dir).resolve()
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_NAMES)
        base = Path(dirpath)
        for name in [*dirnames, *sorted(filenames)]:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if _CONTROL.search(name):
                raise UnsafePathError(
                    f"model file name {rel!r} contains a control character",
                    where=str(root),
                    fix="rename the file to plain characters",
                )
            if path.is_symlink():
                _check_link(root, path, rel)
            if name in dirnames:
                continue
            if name.endswith((".pyc", ".pyo")) or name in SKIPPED_NAMES:
                continue
            if not stat.S_ISREG(path.stat().st_mode):
                raise UnsafePathError(
                    f"{rel!r} is not a regular file",
                    where=str(root),
                    fix="remove sockets, devices and pipes from the model directory",
                )
            out.append((rel, path))
    return out


def _check_link(root: Path, path: Path, rel: str) -> None:
    target = path.resolve()
    if target != root and root not in target.parents:
        raise UnsafePathError(
            f"{rel!r} is a symlink to {str(target)!r}, outside the model directory",
            where=str(root),
            fix="copy the file into the model directory instead of linking to it",
        )
    if target.is_dir():
        raise UnsafePathError(
            f"{rel!r} is a symlink to a directory",
            where=str(root),
            fix="replace the directory link with a real directory",
        )


def sanitized_content(rel: str, path: Path) -> bytes | None:
    """The bytes to ship for an environment file whose URLs carry credentials, else None.

    A model's requirements.txt may name ``--extra-index-url https://user:token@host/simple``:
    the host uses it to resolve, but what ships must not contain it. Root-level text files
    (requirements*.txt, constraints.txt, python_env.yaml, conda.yaml...) ship with the
    ``user:token@`` part of every URL removed; everything else ships byte for byte.
    """
    if not _ENV_FILE.match(rel) or path.stat().st_size > 1 << 20:
        return None
    data = path.read_bytes()
    cleaned = _URL_USERINFO.sub(rb"\g<scheme>", data)
    return cleaned if cleaned != data else None


def scrubbed_files(model_dir: Path) -> list[str]:
    """The files whose shipped copy has credentials removed (for a warning)."""
    return [
        rel for rel, path in iter_model_files(model_dir) if sanitized_content(rel, path) is not None
    ]


def _chunks(rel: str, path: Path) -> Iterator[bytes]:
    cleaned = sanitized_content(rel, path)
    if cleaned is not None:
        yield cleaned
        return
    with path.open("rb") as fh:
        yield from iter(lambda: fh.read(1 << 20), b"")


def shipped_bytes(rel: str, path: Path) -> bytes:
    """The whole content one file ships with (scrubbed when it is an environment file)."""
    return b"".join(_chunks(rel, path))


def model_digest(model_dir: Path) -> str:
    """``sha256:`` over (relative path, shipped bytes) of every file that ships."""
    h = hashlib.sha256()
    for rel, path in iter_model_files(model_dir):
        h.update(rel.encode() + b"\0")
        for chunk in _chunks(rel, path):
            h.update(chunk)
        h.update(b"\0")
    return "sha256:" + h.hexdigest()


def copy_model(model_dir: Path, dest: Path) -> list[str]:
    """Copy what ships into ``dest`` (created; files 0644); returns the relative paths."""
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for rel, path in iter_model_files(model_dir):
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as fh:
            for chunk in _chunks(rel, path):
                fh.write(chunk)
        os.chmod(out, 0o644)
        copied.append(rel)
    return copied


def write_model_archive(model_dir: Path, dest: Path) -> Path:
    """A reproducible ``tar.gz`` of what ships, rooted at the model's contents (what SageMaker
    extracts into /opt/ml/model, what Spark unpacks on its executors)."""
    with (
        dest.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel, path in iter_model_files(model_dir):
            data = sanitized_content(rel, path)
            info = tarfile.TarInfo(rel)
            info.size = len(data) if data is not None else path.stat().st_size
            info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
                0,
                0o644,
                0,
                0,
                "",
                "",
            )
            if data is not None:
                tar.addfile(info, io.BytesIO(data))
            else:
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
    return dest
