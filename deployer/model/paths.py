"""Safe path checks: no path read from a model may leave the model directory.

MLmodel, python_env.yaml, requirements files and conda.yaml are untrusted input: a model
downloaded from a registry could name ``../../etc/passwd`` or a symlink to ``/root/.aws`` as
its "data", and the builder would then copy that into an image. Every relative path a model
names goes through :func:`safe_model_path` before anything opens it.

The same paths later end up in rendered files (Dockerfiles, entry scripts), so characters that
have no business in a model-relative path and break quoting (control characters, newlines,
quotes, backslashes, ``$`` and backticks) are rejected here as well, once, at the edge.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from deployer.errors import UnsafePathError

# Characters rejected anywhere in a model-relative path. Backslash is rejected because MLflow
# writes POSIX paths; a backslash is either a Windows separator (ambiguous) or an escape.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\"'`$\\]")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def check_relative_path(value: object, *, field: str, where: str) -> PurePosixPath:
    """Check the *text* of a model-relative path (no filesystem access).

    Rejects non-strings, empty strings, forbidden characters, absolute paths (POSIX, Windows
    drive, UNC) and any ``..`` component. Returns the path as a PurePosixPath.
    """
    if not isinstance(value, str):
        raise UnsafePathError(
            f"'{field}' must be a relative path string, got {type(value).__name__} {value!r}",
            where=where,
            fix=f"set '{field}' to a path inside the model directory, e.g. 'data/model.pkl'",
        )
    if not value.strip():
        raise UnsafePathError(
            f"'{field}' is an empty path",
            where=where,
            fix=f"set '{field}' to a path inside the model directory or remove it",
        )
    bad = _FORBIDDEN.search(value)
    if bad:
        raise UnsafePathError(
            f"'{field}' path {value!r} contains the character {bad.group()!r}, which is not "
            "allowed in a model path (control characters, quotes, backslashes, '$' and '`' "
            "break rendered files)",
            where=where,
            fix="rename the file inside the model directory to plain characters",
        )
    if value.startswith("/") or _WINDOWS_DRIVE.match(value):
        raise UnsafePathError(
            f"'{field}' is an absolute path ({value!r}); model paths must be relative to the "
            "model directory",
            where=where,
            fix="save the model again so the file is inside the model directory, with a relative "
            "path",
        )
    pure = PurePosixPath(value)
    if ".." in pure.parts:
        raise UnsafePathError(
            f"'{field}' path {value!r} contains '..' and could point outside the model directory",
            where=where,
            fix="keep every file the model needs inside the model directory",
        )
    return pure


def safe_model_path(model_dir: Path, value: object, *, field: str, where: str) -> Path:
    """Resolve a model-relative path, refusing anything that ends up outside ``model_dir``.

    The text is checked first (:func:`check_relative_path`); then the path is resolved with
    symlinks followed, so a symlink inside the model that points elsewhere is refused too.
    The path does not need to exist. Returns the resolved absolute path.
    """
    pure = check_relative_path(value, field=field, where=where)
    root = model_dir.resolve()
    candidate = (root / Path(*pure.parts)).resolve()
    if candidate != root and root not in candidate.parents:
        raise UnsafePathError(
            f"'{field}' path {value!r} resolves (through a symlink) to {candidate}, outside the "
            f"model directory {root}",
            where=where,
            fix="replace the symlink with the real file inside the model directory",
        )
    return candidate
