"""A download cache for remote models that never hands out a half-downloaded model.

Layout under the cache root (``$DEPLOYER_CACHE_DIR``, else ``$XDG_CACHE_HOME/deployer/models``,
else ``~/.cache/deployer/models``)::

    <key>/model/...          a complete model tree (has an MLmodel file)
    <key>/source.json        what was downloaded (URI without credentials, resolved source)
    .tmp-<key>-<random>/     a download in progress (or the debris of an interrupted one)
    .locks/<key>.lock        fcntl lock serialising downloads of one key

Why it is built this way:

* **Atomic publish.** A download is written into a ``.tmp-*`` directory *inside the cache root*
  (same filesystem), fsynced, checked for an ``MLmodel`` file and only then ``rename``-d to
  ``<key>``. ``rename`` of a directory is atomic on POSIX, so a reader sees either no entry or a
  complete one: a killed process, a network error or a full disk leaves only a ``.tmp-*``
  directory, which nothing ever reads.
* **One downloader per key.** Two processes resolving the same URI take the key's lock in turn;
  the second finds the finished entry once the first releases it and downloads nothing.
* **Stale debris is removed safely.** A ``.tmp-<key>-*`` directory whose key lock can be taken
  belongs to nobody (its writer holds that lock while alive, and the kernel drops the lock when
  the process dies), so it is deleted: no PID files, no age heuristics.
* **The key is the caller's job.** :func:`cache_key` hashes a canonical description of the
  *resolved* source (e.g. a concrete model version, S3 ETags), so a moved alias or a changed
  object is a different key and is never served stale.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.errors import ModelURIError

log = logging.getLogger("deployer")

MLMODEL = "MLmodel"
_TMP_PREFIX = ".tmp-"
_LOCKS = ".locks"


def default_cache_dir() -> Path:
    """``$DEPLOYER_CACHE_DIR``, else ``$XDG_CACHE_HOME/deployer/models``, else ``~/.cache/...``."""
    explicit = os.environ.get("DEPLOYER_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "deployer" / "models"


def cache_key(source: dict[str, Any]) -> str:
    """Stable key of a canonical source description (JSON with sorted keys, sha256, 32 hex)."""
    canonical = json.dumps(source, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CacheResult:
    """Where the model is, and whether this call had to download it."""

    path: Path
    downloaded: bool


Downloader = Callable[[Path], Path]


def source_record(model_dir: Path) -> dict[str, Any] | None:
    """What a cached model was downloaded from (its ``source.json``: the resolved registry
    version, run id...); None for a directory that is not a cache entry."""
    record = model_dir.parent / "source.json"
    if model_dir.name != "model" or not record.is_file():
        return None
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


"""Fills the empty directory it is given and returns the directory holding the MLmodel
(the given one or a directory below it)."""


@dataclass(frozen=True)
class ModelCache:
    root: Path

    @classmethod
    def at(cls, root: Path | None) -> ModelCache:
        return cls((root or default_cache_dir()).expanduser().absolute())

    def entry(self, key: str) -> Path:
        return self.root / key / "model"

    def lookup(self, key: str) -> Path | None:
        path = self.entry(key)
        if not (path / MLMODEL).is_file():
            return None
        with contextlib.suppress(OSError):
            os.utime(path.parent)  # last use, for `deployer prune`
        return path

    def fetch(
        self, key: str, download: Downloader, *, describe: dict[str, Any], uri: str
    ) -> CacheResult:
        """Return the cached model for ``key``, downloading it with ``download`` on a miss.

        ``describe`` is written next to the model as ``source.json`` (it must hold no secret);
        ``uri`` (already redacted) is only used in error messages.
        """
        hit = self.lookup(key)
        if hit is not None:
            log.debug("model cache hit: %s -> %s", uri, hit)
            return CacheResult(hit, downloaded=False)
        self._ensure_root(uri)
        with self._key_lock(key):
            hit = self.lookup(key)  # someone else finished it while we waited
            if hit is not None:
                return CacheResult(hit, downloaded=False)
            self._remove_debris(key)
            final = self.root / key
            if final.exists():  # an entry without MLmodel: not ours to trust, replace it
                shutil.rmtree(final, ignore_errors=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{key}-", dir=self.root))
            try:
                dl_dir = staging / "download"
                dl_dir.mkdir()
                log.info("downloading %s", uri)
                model_dir = Path(download(dl_dir))
                self._check_model_dir(model_dir, dl_dir, uri)
                model_dir.rename(staging / "model")
                shutil.rmtree(dl_dir, ignore_errors=True)
                (staging / "source.json").write_text(json.dumps(describe, indent=2, default=str))
                _fsync_tree(staging)
                try:
                    os.rename(staging, final)
                except OSError as exc:
                    # Only possible without fcntl (another writer won the race): keep theirs.
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not self.lookup(key):
                        raise
                    shutil.rmtree(staging, ignore_errors=True)
                _fsync_dir(self.root)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        self._sweep_other_debris()
        return CacheResult(self.entry(key), downloaded=True)

    # ------------------------------------------------------------------ internals
    def _ensure_root(self, uri: str) -> None:
        try:
            (self.root / _LOCKS).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelURIError(
                f"cannot create the model cache directory ({exc.strerror})",
                where=str(self.root),
                fix="set DEPLOYER_CACHE_DIR to a writable directory",
            ) from exc

    @contextlib.contextmanager
    def _key_lock(self, key: str, *, blocking: bool = True) -> Iterator[bool]:
        """Hold the key's lock; yields False if ``blocking`` is False and it is taken."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: atomic rename still protects readers
            yield True
            return
        fd = os.open(self.root / _LOCKS / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(fd, flags)
            except BlockingIOError:
                yield False
                return
            if blocking:
                log.debug("model cache lock taken: %s", key)
            yield True
        finally:
            os.close(fd)  # closing drops the lock

    def _remove_debris(self, key: str) -> None:
        """Delete ``.tmp-<key>-*`` dirs; only call while holding ``key``'s lock."""
        for tmp in self.root.glob(f"{_TMP_PREFIX}{key}-*"):
            log.info("removing an interrupted download: %s", tmp)
            shutil.rmtree(tmp, ignore_errors=True)

    def _sweep_other_debris(self) -> None:
        """Remove interrupted downloads of other keys whose lock nobody holds."""
        for tmp in self.root.glob(f"{_TMP_PREFIX}*"):
            key = tmp.name[len(_TMP_PREFIX) :].split("-", 1)[0]
            if not key:
                continue
            with self._key_lock(key, blocking=False) as got:
                if got:
                    self._remove_debris(key)

    @staticmethod
    def _check_model_dir(model_dir: Path, dl_dir: Path, uri: str) -> None:
        if not model_dir.is_relative_to(dl_dir):  # pragma: no cover - downloader bug guard
            raise ModelURIError("download landed outside the staging directory", where=uri)
        if model_dir.is_file():
            raise ModelURIError(
                "the URI names a file, not a model directory",
                where=uri,
                fix="point the URI at the directory that contains the MLmodel file",
            )
        if not (model_dir / MLMODEL).is_file():
            found = sorted(str(p.parent.relative_to(model_dir)) for p in model_dir.rglob(MLMODEL))[
                :3
            ]
            if found and uri.startswith(("s3://", "runs:/")):
                hint = f"did you mean {uri.rstrip('/')}/{found[0]} ?"
            elif found:
                hint = f"MLmodel files were found below it, in: {', '.join(found)}"
            else:
                hint = "point the URI at a directory saved by mlflow (it contains an MLmodel file)"
            raise ModelURIError(
                "no MLmodel file at the root of the downloaded model", where=uri, fix=hint
            )


def _fsync_tree(root: Path) -> None:
    """Flush files and directories to disk before publishing, so a crash after the rename
    cannot leave an entry with empty files."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # pragma: no cover - some filesystems refuse fsync on dirs
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)
