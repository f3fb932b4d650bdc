"""Model URIs -> a local model directory.

Supported::

    ./path/to/model, /abs/path, ~/model      a local directory (used in place)
    file:///abs/path                         the same, as a URI
    s3://bucket/prefix                       every object under the prefix (boto3)
    runs:/<run_id>/<path>                    a run's artifacts       } through the MLflow
    models:/<name>/<version>|latest|<stage>  a registered version    } tracking client
    models:/<name>@<alias>                   the version an alias names  } (MLFLOW_TRACKING_URI)
    models:/<model_id>                       an MLflow 3 logged model    }

Remote models land in the download cache (:mod:`deployer.model.cache`). Each remote URI is first
*resolved* to something immutable, and the cache key is a hash of that: an alias or ``latest``
becomes a concrete version (so a moved alias is never served stale), an S3 prefix becomes its
objects' keys + ETags (so a changed object is downloaded again, and each object is fetched with
``If-Match`` so a model rewritten mid-download fails instead of mixing two versions).

SDKs are imported lazily and their exceptions are translated here, at the boundary, into
:class:`~deployer.errors.ModelURIError` / :class:`~deployer.errors.MissingDependencyError`;
messages never carry credentials (URL userinfo, signatures, secret env values are redacted).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn, TypeVar
from urllib.parse import unquote, urlparse

from deployer.errors import (
    DeployerError,
    MissingDependencyError,
    ModelNotFoundError,
    ModelURIError,
    UnsafePathError,
)
from deployer.model.cache import ModelCache, cache_key

# One redaction for every message (URL userinfo, tokens, signed-URL secrets, secret env values).
from deployer.redact import redact_text as redact

log = logging.getLogger("deployer")
T = TypeVar("T")

SCHEMES = "a local path, file://, s3://, runs:/ or models:/"


def resolve_model_uri(uri: str | os.PathLike[str], *, cache_dir: Path | None = None) -> Path:
    """Return a local directory holding the model named by ``uri`` (a string or a path object,
    e.g. ``pathlib.Path``, as MLflow accepts).

    Local paths are returned in place (resolved); remote models are downloaded into the cache
    (``cache_dir``, default :func:`deployer.model.cache.default_cache_dir`) unless a complete
    copy of the same resolved source is already there.
    """
    uri = model_uri_text(uri)
    if uri.startswith(("runs:/", "models:/")):
        return _resolve_mlflow(uri, ModelCache.at(cache_dir))
    if "://" not in uri:
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
    if parsed.scheme == "s3":
        return _resolve_s3(uri, ModelCache.at(cache_dir))
    raise ModelURIError(
        f"unsupported model URI scheme {parsed.scheme!r}",
        where=redact(uri),
        fix=f"use {SCHEMES}",
    )


def model_uri_text(uri: str | os.PathLike[str]) -> str:
    """A model URI as text: strings as they are, path objects through ``os.fspath``; anything
    else is refused (naming the type, rather than an ``AttributeError`` later)."""
    if isinstance(uri, str):
        return uri
    if isinstance(uri, os.PathLike):
        text = os.fspath(uri)
        if isinstance(text, str):
            return text
    raise ModelURIError(
        f"a model URI must be a string or a path, not {type(uri).__name__}",
        where="model_uri",
        fix=f"pass {SCHEMES} (str or pathlib.Path)",
    )


def _local(path: Path, uri: str) -> Path:
    if not path.exists():
        raise ModelNotFoundError(
            "model path does not exist", where=uri, fix="check the -m/--model path"
        )
    if not path.is_dir():
        raise ModelNotFoundError(
            "model path is a file, not a model directory",
            where=uri,
            fix="point -m at the directory that contains the MLmodel file",
        )
    return path.resolve()


# ------------------------------------------------------------------------------------ S3


@dataclass(frozen=True)
class _S3Object:
    key: str
    rel: PurePosixPath
    etag: str
    size: int


def _parse_s3(uri: str) -> tuple[str, str]:
    # Not urlparse: S3 keys are literal, and '?', '#' or '%' are legal characters in them.
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or "@" in bucket:
        raise ModelURIError(
            "an s3:// URI needs a bucket name",
            where=redact(uri),
            fix="write s3://<bucket>/<prefix of the model directory>",
        )
    return bucket, key.lstrip("/")


def _resolve_s3(uri: str, cache: ModelCache) -> Path:
    bucket, key = _parse_s3(uri)
    shown = redact(uri)
    try:
        import boto3
        import botocore.exceptions
    except ImportError as exc:
        raise MissingDependencyError("boto3", "s3", "s3:// model URIs") from exc

    def translate(exc: Exception) -> NoReturn:
        raise _s3_error(exc, shown, bucket) from exc

    try:
        client = boto3.session.Session().client("s3")
        prefix = key if (not key or key.endswith("/")) else key + "/"
        objects = _list_s3(client, bucket, prefix, shown)
        if not objects:
            _raise_s3_empty(client, bucket, key, shown)
        endpoint = str(client.meta.endpoint_url)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        translate(exc)

    source = {
        "scheme": "s3",
        "endpoint": redact(endpoint),
        "bucket": bucket,
        "prefix": prefix,
        "objects": [[str(o.rel), o.etag, o.size] for o in objects],
    }

    def download(dest: Path) -> Path:
        try:
            for obj in objects:
                _get_s3_object(client, bucket, obj, dest)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            translate(exc)
        except OSError as exc:
            raise ModelURIError(
                f"could not write the downloaded model: {exc.strerror or exc}",
                where=shown,
                fix="check free space and permissions of the cache (DEPLOYER_CACHE_DIR)",
            ) from exc
        return dest

    return cache.fetch(
        cache_key(source), download, describe={"uri": shown, **source}, uri=shown
    ).path


def _list_s3(client: Any, bucket: str, prefix: str, shown: str) -> list[_S3Object]:
    objects: list[_S3Object] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"]
            if name.endswith("/"):  # "folder" placeholder objects made by consoles
                continue
            objects.append(
                _S3Object(name, _safe_rel(name[len(prefix) :], shown), item["ETag"], item["Size"])
            )
    return objects


_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def _safe_rel(rel: str, shown: str) -> PurePosixPath:
    """An object key below the prefix, as a path that cannot leave the download directory."""
    parts = rel.split("/")
    if rel.startswith("/") or _BAD_CHARS.search(rel) or any(p in ("", ".", "..") for p in parts):
        raise UnsafePathError(
            f"object key {rel!r} would be written outside the model directory",
            where=shown,
            fix="remove or rename the object; keys below a model prefix must be plain relative "
            "paths",
        )
    return PurePosixPath(rel)


def _raise_s3_empty(client: Any, bucket: str, key: str, shown: str) -> NoReturn:
    exact = client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
    if key and exact and exact[0]["Key"] == key:
        raise ModelURIError(
            "the URI names a single object, not a model directory",
            where=shown,
            fix="point the URI at the prefix that contains MLmodel (drop the file name)",
        )
    raise ModelURIError(
        "no objects found under this S3 prefix",
        where=shown,
        fix="check the bucket and key (aws s3 ls s3://<bucket>/<prefix>/)",
    )


def _get_s3_object(client: Any, bucket: str, obj: _S3Object, dest: Path) -> None:
    target = dest.joinpath(*obj.rel.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    # If-Match: the bytes must be the ones the listing (and so the cache key) described.
    resp = client.get_object(Bucket=bucket, Key=obj.key, IfMatch=obj.etag)
    with open(target, "wb") as fh:
        for chunk in resp["Body"].iter_chunks(chunk_size=1 << 20):
            fh.write(chunk)


_S3_FIXES = {
    "NoSuchBucket": (
        "the bucket does not exist",
        "check the bucket name and the AWS account/region",
    ),
    "NoSuchKey": (
        "an object disappeared while downloading",
        "retry; if it persists, check the prefix",
    ),
    "AccessDenied": (
        "access denied",
        "grant s3:ListBucket on the bucket and s3:GetObject on the prefix to these AWS credentials",
    ),
    "AllAccessDisabled": ("access to the bucket is disabled", "use another bucket"),
    "InvalidAccessKeyId": (
        "the AWS access key id is not valid",
        "check AWS_ACCESS_KEY_ID / the profile",
    ),
    "SignatureDoesNotMatch": (
        "the AWS secret key is wrong",
        "check AWS_SECRET_ACCESS_KEY / the profile",
    ),
    "ExpiredToken": ("the AWS session token has expired", "refresh your AWS credentials"),
    "InvalidObjectState": (
        "an object is archived (e.g. Glacier) and cannot be read",
        "restore the archived objects of this model first (aws s3api restore-object)",
    ),
    "PreconditionFailed": (
        "the model changed while it was being downloaded",
        "retry once the upload has finished",
    ),
}


def _s3_error(exc: Exception, shown: str, bucket: str) -> ModelURIError:
    import botocore.exceptions as bce

    if isinstance(exc, bce.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        what, fix = _S3_FIXES.get(code) or (
            ("access denied", _S3_FIXES["AccessDenied"][1])
            if status == 403
            else ("the bucket does not exist", _S3_FIXES["NoSuchBucket"][1])
            if status == 404 and not code
            else (f"S3 request failed ({code or status})", "check the URI and your AWS access")
        )
        operation = getattr(exc, "operation_name", "request")
        return ModelURIError(f"S3 {operation}: {what}", where=shown, fix=fix)
    if isinstance(exc, (bce.NoCredentialsError, bce.PartialCredentialsError)):
        return ModelURIError(
            "no AWS credentials were found",
            where=shown,
            fix="configure credentials (aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY)",
        )
    if isinstance(exc, bce.ProfileNotFound):
        return ModelURIError(redact(str(exc)), where=shown, fix="check AWS_PROFILE / ~/.aws/config")
    if isinstance(
        exc, (bce.EndpointConnectionError, bce.ConnectTimeoutError, bce.ReadTimeoutError)
    ):
        return ModelURIError(
            f"cannot reach S3: {redact(str(exc))}",
            where=shown,
            fix="check the network and AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 if you set them",
        )
    return ModelURIError(
        f"S3 error: {redact(str(exc))}", where=shown, fix="check the URI and your AWS setup"
    )


# -------------------------------------------------------------------------------- MLflow


@dataclass(frozen=True)
class _MlflowRef:
    """A parsed runs:/ or models:/ URI (exactly one form is set)."""

    run_id: str | None = None
    path: str = ""
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    stage: str | None = None  # "latest" means: the highest version
    model_id: str | None = None


def _parse_mlflow(uri: str) -> _MlflowRef:
    bad = ModelURIError(
        "not a valid MLflow model URI",
        where=redact(uri),
        fix="use runs:/<run_id>/<path>, models:/<name>/<version>, models:/<name>@<alias>, "
        "models:/<name>/latest or models:/<model_id>",
    )
    if uri.startswith("runs:/"):
        run_id, _, path = uri[len("runs:/") :].lstrip("/").partition("/")
        parts = [p for p in path.split("/") if p]
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", run_id) or any(p in (".", "..") for p in parts):
            raise bad
        return _MlflowRef(run_id=run_id, path="/".join(parts))
    body = uri[len("models:/") :].lstrip("/").rstrip("/")
    parts = body.split("/")
    if not body or len(parts) > 2 or not all(p.strip() for p in parts):
        raise bad
    if len(parts) == 2:
        name, suffix = parts
        if "@" in name:
            raise bad
        if suffix.isdigit():
            return _MlflowRef(name=name, version=suffix)
        return _MlflowRef(name=name, stage="latest" if suffix.lower() == "latest" else suffix)
    if "@" in body:
        name, _, alias = body.rpartition("@")
        if not name or not alias:
            raise bad
        return _MlflowRef(name=name, alias=alias)
    return _MlflowRef(model_id=body)


@dataclass(frozen=True)
class _Mlflow:
    """The mlflow pieces we use, imported lazily, plus the URIs they talk to."""

    client: Any
    download_artifacts: Callable[..., str]
    exception: type[Exception]
    tracking_uri: str
    registry_uri: str | None


def _mlflow(uri: str) -> _Mlflow:
    try:
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        err = MissingDependencyError("mlflow", "serve", "runs:/ and models:/ model URIs")
        err.fix = "pip install mlflow-skinny (or pip install 'deployer[serve]')"
        raise err from exc
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not tracking:
        raise ModelURIError(
            "runs:/ and models:/ URIs are resolved by an MLflow tracking server, "
            "but MLFLOW_TRACKING_URI is not set",
            where=redact(uri),
            fix="export MLFLOW_TRACKING_URI=http://<your-mlflow-server>:5000 (credentials via "
            "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN), "
            "or download the model and pass its directory",
        )
    registry = os.environ.get("MLFLOW_REGISTRY_URI", "").strip() or None
    return _Mlflow(
        client=MlflowClient(tracking_uri=tracking, registry_uri=registry),
        download_artifacts=mlflow.artifacts.download_artifacts,
        exception=MlflowException,
        tracking_uri=tracking,
        registry_uri=registry,
    )


def _resolve_mlflow(uri: str, cache: ModelCache) -> Path:
    ref = _parse_mlflow(uri)
    ml = _mlflow(uri)
    shown = redact(uri)
    call = _caller(ml, shown)
    server = {"tracking": redact(ml.tracking_uri), "registry": redact(ml.registry_uri or "")}

    if ref.run_id is not None:
        run = call(
            lambda: ml.client.get_run(ref.run_id),
            f"MLflow run '{ref.run_id}'",
            f"check the run id in the MLflow UI of {server['tracking']}",
        )
        source: dict[str, Any] = {
            "scheme": "runs",
            **server,
            "run_id": ref.run_id,
            "path": ref.path,
            "artifact_uri": redact(str(run.info.artifact_uri)),
        }
        artifact_uri = f"runs:/{ref.run_id}/{ref.path}"
    elif ref.model_id is not None:
        if not hasattr(ml.client, "get_logged_model"):
            raise ModelURIError(
                "models:/<model_id> URIs need MLflow 3 (logged models)",
                where=shown,
                fix="use models:/<name>/<version> or @<alias>, or upgrade mlflow",
            )
        model = call(
            lambda: ml.client.get_logged_model(ref.model_id),
            f"MLflow logged model '{ref.model_id}'",
            f"for a registered model write models:/{ref.model_id}/<version>, "
            f"models:/{ref.model_id}/latest or models:/{ref.model_id}@<alias>",
        )
        source = {
            "scheme": "models",
            **server,
            "model_id": ref.model_id,
            "artifact_location": redact(str(model.artifact_location)),
        }
        artifact_uri = f"models:/{ref.model_id}"
    else:
        mv = _model_version(ml, ref, call)
        if str(getattr(mv, "status", "READY")) != "READY":
            raise ModelURIError(
                f"model version {mv.name}/{mv.version} is not ready (status {mv.status})",
                where=shown,
                fix="wait for the registration to finish, or pick another version",
            )
        source = {
            "scheme": "models",
            **server,
            "name": mv.name,
            "version": str(mv.version),
            # A deleted and re-created model restarts at version 1: these tell them apart.
            "source": redact(str(mv.source)),
            "run_id": mv.run_id,
            "created": mv.creation_timestamp,
        }
        if ref.version is None:
            log.info("%s resolved to version %s", shown, mv.version)
        artifact_uri = f"models:/{mv.name}/{mv.version}"

    def download(dest: Path) -> Path:
        # mlflow refuses "runs:/<id>/" with an empty path: the whole run goes by run_id.
        where = (
            {"run_id": ref.run_id}
            if ref.run_id is not None and not ref.path
            else {"artifact_uri": artifact_uri}
        )
        local = call(
            lambda: ml.download_artifacts(
                **where,
                dst_path=str(dest),
                tracking_uri=ml.tracking_uri,
                registry_uri=ml.registry_uri,
            ),
            f"the artifacts at {artifact_uri}",
        )
        return Path(local)

    describe = {"uri": shown, "resolved": artifact_uri, **source}
    return cache.fetch(cache_key(source), download, describe=describe, uri=shown).path


def uri_alias(uri: str) -> str | None:
    """The alias a ``models:/name@alias`` URI names (None for any other URI)."""
    if not uri.startswith("models:/"):
        return None
    return _parse_mlflow(uri).alias


@dataclass(frozen=True)
class RegisteredVersion:
    """The registered model version a ``models:/`` URI names right now."""

    name: str
    version: str
    run_id: str | None
    alias: str | None


def registered_version(uri: str) -> RegisteredVersion:
    """Ask the registry which version ``models:/name@alias`` (or ``/version``, ``/latest``)
    names now, without downloading it. Other URIs are a :class:`ModelURIError`."""
    shown = redact(uri)
    ref = _parse_mlflow(uri) if uri.startswith("models:/") else None
    if ref is None or ref.name is None:
        raise ModelURIError(
            "not a registered model version URI",
            where=shown,
            fix="use models:/<name>@<alias> (or models:/<name>/<version>)",
        )
    ml = _mlflow(uri)
    mv = _model_version(ml, ref, _caller(ml, shown))
    return RegisteredVersion(
        name=str(mv.name),
        version=str(mv.version),
        run_id=str(mv.run_id) if mv.run_id else None,
        alias=ref.alias,
    )


def _model_version(ml: _Mlflow, ref: _MlflowRef, call: Callable[..., Any]) -> Any:
    name = ref.name
    if ref.version is not None:
        return call(
            lambda: ml.client.get_model_version(name, ref.version),
            f"version {ref.version} of registered model '{name}'",
            f"list its versions: MlflowClient().search_model_versions(\"name='{name}'\")",
        )
    if ref.alias is not None:
        return call(
            lambda: ml.client.get_model_version_by_alias(name, ref.alias),
            f"alias '{ref.alias}' of registered model '{name}'",
            f"list its aliases: MlflowClient().get_registered_model('{name}').aliases",
        )
    if ref.stage == "latest":
        call(lambda: ml.client.get_registered_model(name), f"registered model '{name}'")
        quote = "'" if "'" not in str(name) else '"'
        found = call(
            lambda: ml.client.search_model_versions(
                f"name={quote}{name}{quote}", max_results=1, order_by=["version_number DESC"]
            ),
            f"the versions of registered model '{name}'",
        )
        if not found:
            raise ModelURIError(
                f"registered model '{name}' has no versions",
                where=f"models:/{name}/latest",
                fix="register a version first (mlflow.register_model)",
            )
        return found[0]

    def by_stage() -> Any:
        with warnings.catch_warnings():  # stages are deprecated in MLflow, but still served
            warnings.simplefilter("ignore", FutureWarning)
            return ml.client.get_latest_versions(name, stages=[ref.stage])

    found = call(by_stage, f"registered model '{name}'")
    if not found:
        raise ModelURIError(
            f"registered model '{name}' has no version in stage '{ref.stage}'",
            where=f"models:/{name}/{ref.stage}",
            fix="use a version number, 'latest', or an alias (models:/<name>@<alias>)",
        )
    return max(found, key=lambda mv: int(mv.version))


def _caller(ml: _Mlflow, shown: str) -> Callable[..., Any]:
    """Run one MLflow call about ``subject``; its failures become ModelURIError."""

    def call(fn: Callable[[], T], subject: str, fix: str | None = None) -> T:
        try:
            return fn()
        except DeployerError:
            raise
        except ml.exception as exc:
            raise _mlflow_error(exc, subject, fix, shown, ml) from exc
        except OSError as exc:  # includes requests' ConnectionError
            raise ModelURIError(
                f"could not get {subject}: {redact(str(exc))}",
                where=shown,
                fix="check MLFLOW_TRACKING_URI, the network, and free space in the cache",
            ) from exc

    return call


_AUTH_STATUS = re.compile(r"error code (401|403)\b")
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def _mlflow_error(
    exc: Exception, subject: str, fix: str | None, shown: str, ml: _Mlflow
) -> ModelURIError:
    code = str(getattr(exc, "error_code", "") or "")
    message = redact(str(getattr(exc, "message", "") or exc)).strip()
    if code and message.startswith(f"{code}: "):
        message = message[len(code) + 2 :]
    server = redact(ml.tracking_uri)
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED") or _AUTH_STATUS.search(message):
        return ModelURIError(
            f"the MLflow server denied access to {subject}: {message}",
            where=shown,
            fix="check MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN",
        )
    if code in _NOT_FOUND:
        # MLflow's own text adds nothing when it just says "not found" too.
        detail = "" if "not found" in message else f": {message}"
        return ModelURIError(
            f"{subject} not found{detail}",
            where=shown,
            fix=fix or f"check the name/version/alias/run id on the tracking server {server}",
        )
    return ModelURIError(
        f"could not get {subject} from the MLflow server: {message}",
        where=shown,
        fix=f"check that MLFLOW_TRACKING_URI ({server}) points at a running MLflow server",
    )
