"""Model URIs -> a local model directory.

Supported: a local path, ``file://``. (Remote schemes are added by the URI work item.)
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from deployer.errors import ModelNotFoundError, ModelURIError


def resolve_model_uri(uri: str, *, cache_dir: Path | None = None) -> Path:
    """Return a local directory holding the model named by ``uri``."""
    if "://" not in uri and not uri.startswith(("runs:/", "models:/")):
        return _local(Path(uri).expanduser(), uri)
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ModelURIError(
                f"file:// URI with a host ({parsed.netloc!r}) is not supported",
                where=uri,
                fix="use file:///absolute/path or a plain path",
            )
        return _local(Path(unquote(parsed.path)), uri)
    raise ModelURIError(
        f"unsupported model URI scheme {parsed.scheme!r}",
        where=uri,
        fix="use a local path, file://, s3://, runs:/ or models:/",
    )


def _local(path: Path, uri: str) -> Path:
    if not path.exists():
        raise ModelNotFoundError("model path does not exist", where=uri, fix="check the -m/--model path")
    if not path.is_dir():
        raise ModelNotFoundError(
            "model path is a file, not a model directory",
            where=uri,
            fix="point -m at the directory that contains the MLmodel file",
        )
    return path.resolve()
