"""Parse the SageMaker target's option values into typed, validated records (pure).

Every value the user typed is checked here, once, with errors naming the option and echoing
the rejected value; planning and execution only ever see :class:`DeploySpec`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deployer.errors import UsageError

MODES = ("create", "replace", "add")
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
RESERVED_TAG_PREFIXES = ("aws:", "deployer:")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")
# SageMaker's tag pattern: letters, numbers, spaces representable in UTF-8, and _ . : / = + - @
_TAG_TEXT = re.compile(r"^[\w .:/=+\-@]*$", re.UNICODE)
_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<key>.*))?$")
#: The MLflow scoring protocol's Parquet content type (images need pyarrow to read it).
PARQUET = "application/vnd.apache.parquet"
_INSTANCE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/\S+$")
_ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")


@dataclass(frozen=True)
class Serverless:
    memory_mb: int
    max_concurrency: int


@dataclass(frozen=True)
class DataCapture:
    destination: str
    percent: int


@dataclass(frozen=True)
class DeploySpec:
    """A validated SageMaker deploy request (everything but the model and image)."""

    mode: str = "create"
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    execution_role_arn: str | None = None
    bucket: str | None = None
    model_in_image: bool = False
    vpc_config: Mapping[str, Any] | None = None
    serverless: Serverless | None = None
    async_output: str | None = None
    data_capture: DataCapture | None = None
    env: tuple[tuple[str, str], ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    archive: bool = False
    variant_weight: float = 1.0
    repository: str | None = None
    registry_override: str | None = None
    registry_credentials_arn: str | None = None
    base_image: str | None = None
    parquet: bool = False  # images built from -m get pyarrow (Parquet request bodies)


@dataclass(frozen=True)
class BatchSpec:
    """A validated batch transform request."""

    input: str
    output: str
    content_type: str = "application/json"
    split_type: str = "None"
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    execution_role_arn: str | None = None
    bucket: str | None = None
    model_in_image: bool = False
    env: tuple[tuple[str, str], ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    max_payload_mb: int | None = None
    archive: bool = False
    repository: str | None = None
    registry_override: str | None = None
    base_image: str | None = None
    parquet: bool = False  # set for a Parquet --content-type: the image must read it


def s3_parts(uri: str, option: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); UsageError naming ``option`` otherwise."""
    m = _S3_URI.match(uri or "")
    if not m:
        raise UsageError(f"{uri!r} is not an S3 URI", where=option,
                         fix="use the form s3://bucket/prefix")
    return m["bucket"], (m["key"] or "")


def is_ecr_image(image_uri: str) -> bool:
    """True if ``image_uri`` lives in an ECR registry (else SageMaker needs Vpc access mode)."""
    host = image_uri.split("/", 1)[0] if "/" in image_uri else ""
    return bool(_ECR_HOST.match(host))


def _pairs(values: Sequence[str] | None, option: str) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for raw in values or ():
        key, sep, value = str(raw).partition("=")
        if not sep or not key:
            raise UsageError(f"{raw!r} is not KEY=VALUE", where=option, fix=f"write {option} NAME=value")
        out[key] = value
    return tuple(out.items())


def _env(values: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    pairs = _pairs(values, "--env")
    for key, _ in pairs:
        if not _ENV_KEY.match(key):
            raise UsageError(f"{key!r} is not a valid environment variable name", where="--env",
                             fix="use letters, digits and '_', not starting with a digit")
    return pairs


def _tags(values: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    pairs = _pairs(values, "--tags")
    for key, value in pairs:
        if key.lower().startswith(RESERVED_TAG_PREFIXES):
            raise UsageError(f"tag key {key!r} uses a reserved prefix", where="--tags",
                             fix="tag keys must not start with 'aws:' or 'deployer:'")
        if not (1 <= len(key) <= 128) or len(value) > 256 or not (_TAG_TEXT.match(key) and _TAG_TEXT.match(value)):
            raise UsageError(
                f"tag {key}={value!r} is not a valid SageMaker tag",
                where="--tags",
                fix="keys 1-128 and values 0-256 characters of letters, digits, spaces and _.:/=+-@",
            )
    return pairs


def _serverless(raw: str | None) -> Serverless | None:
    if not raw:
        return None
    fields: dict[str, str] = {}
    for part in str(raw).split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            fields = {}
            break
        fields[key.strip().lower()] = value.strip()
    usage = "write --serverless memory=MB,concurrency=N (e.g. memory=2048,concurrency=5)"
    if set(fields) != {"memory", "concurrency"}:
        raise UsageError(f"{raw!r} is not memory=MB,concurrency=N", where="--serverless", fix=usage)
    try:
        memory, concurrency = int(fields["memory"]), int(fields["concurrency"])
    except ValueError:
        raise UsageError(f"{raw!r}: memory and concurrency must be integers", where="--serverless",
                         fix=usage) from None
    if memory not in SERVERLESS_MEMORY_MB:
        raise UsageError(f"serverless memory {memory} MB is not supported", where="--serverless",
                         fix=f"use one of {', '.join(map(str, SERVERLESS_MEMORY_MB))}")
    if not 1 <= concurrency <= 200:
        raise UsageError(f"serverless concurrency {concurrency} is out of range", where="--serverless",
                         fix="use 1 to 200")
    return Serverless(memory, concurrency)


def _data_capture(raw: str | None) -> DataCapture | None:
    if not raw:
        return None
    uri, _, pct = str(raw).partition(",")
    s3_parts(uri.strip(), "--data-capture")
    try:
        percent = int(pct.strip()) if pct.strip() else 100
    except ValueError:
        raise UsageError(f"{pct!r} is not a percentage", where="--data-capture",
                         fix="write --data-capture s3://bucket/prefix,PERCENT (0-100)") from None
    if not 0 <= percent <= 100:
        raise UsageError(f"sampling percentage {percent} is out of range", where="--data-capture",
                         fix="use 0 to 100")
    return DataCapture(uri.strip(), percent)


def _vpc_config(path: str | None) -> Mapping[str, Any] | None:
    if not path:
        return None
    file = Path(path)
    fix = 'write JSON like {"SecurityGroupIds": ["sg-..."], "Subnets": ["subnet-..."]}'
    try:
        data = json.loads(file.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read VPC config: {exc.strerror}", where=str(file), fix=fix) from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"VPC config is not valid JSON: {exc}", where=str(file), fix=fix) from exc
    if not isinstance(data, dict) or set(data) != {"SecurityGroupIds", "Subnets"}:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise UsageError(f"VPC config must have exactly SecurityGroupIds and Subnets (got {got})",
                         where=str(file), fix=fix)
    for key in ("SecurityGroupIds", "Subnets"):
        value = data[key]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise UsageError(f"{key} must be a non-empty list of strings", where=str(file), fix=fix)
    return {"SecurityGroupIds": list(data["SecurityGroupIds"]), "Subnets": list(data["Subnets"])}


def _instance_type(value: Any, option: str = "--instance-type") -> str:
    text = str(value)
    if not _INSTANCE.match(text):
        raise UsageError(f"{text!r} is not a SageMaker instance type", where=option,
                         fix="use e.g. ml.m5.large or ml.c5.xlarge")
    return text


def _count(value: Any, option: str = "--instance-count") -> int:
    count = int(value)
    if count < 1:
        raise UsageError(f"instance count {count} must be at least 1", where=option, fix="use 1 or more")
    return count


def _role(value: Any) -> str | None:
    if not value:
        return None
    if not _ROLE_ARN.match(str(value)):
        raise UsageError(f"{value!r} is not an IAM role ARN", where="--execution-role-arn",
                         fix="use arn:aws:iam::<account>:role/<name>")
    return str(value)


def _bucket(value: Any) -> str | None:
    if not value:
        return None
    text = str(value).removeprefix("s3://").rstrip("/")
    s3_parts(f"s3://{text}", "--bucket")
    if "/" in text:
        raise UsageError(f"--bucket takes a bucket name, got {value!r}", where="--bucket",
                         fix="pass only the bucket name; deployer picks the key")
    return text


def _shared(options: Mapping[str, Any]) -> dict[str, Any]:
    """The fields deploy and batch have in common, parsed and checked in one place."""
    shared = {
        "instance_type": _instance_type(options.get("instance_type") or "ml.m5.large"),
        "instance_count": _count(1 if options.get("instance_count") is None else options["instance_count"]),
        "execution_role_arn": _role(options.get("execution_role_arn")),
        "bucket": _bucket(options.get("bucket")),
        "model_in_image": bool(options.get("model_in_image")),
        "env": _env(options.get("env")),
        "tags": _tags(options.get("tags")),
        "archive": bool(options.get("archive")),
        "repository": options.get("repository") or None,
        "registry_override": options.get("registry_override") or None,
        "base_image": options.get("base_image") or None,
        "parquet": bool(options.get("parquet")),
    }
    if shared["model_in_image"] and shared["bucket"]:
        raise UsageError("--model-in-image and --bucket exclude each other", where="--bucket",
                         fix="drop --bucket (the model is baked into the image) or --model-in-image")
    return shared


def parse_deploy(options: Mapping[str, Any]) -> DeploySpec:
    """``DeployRequest.options`` -> :class:`DeploySpec` (UsageError on any bad value)."""
    mode = str(options.get("mode") or "create")
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}", where="--mode", fix=f"use one of {', '.join(MODES)}")
    async_output = options.get("async_output") or None
    if async_output:
        s3_parts(str(async_output), "--async-output")
    weight = float(options.get("variant_weight") if options.get("variant_weight") is not None else 1.0)
    if weight < 0:
        raise UsageError(f"variant weight {weight} must be >= 0", where="--variant-weight", fix="use e.g. 1.0")
    return DeploySpec(
        mode=mode,
        **_shared(options),
        vpc_config=_vpc_config(options.get("vpc_config")),
        serverless=_serverless(options.get("serverless")),
        async_output=str(async_output) if async_output else None,
        data_capture=_data_capture(options.get("data_capture")),
        variant_weight=weight,
        registry_credentials_arn=options.get("registry_credentials_arn") or None,
    )


def parse_batch(input_uri: str, output_uri: str, options: Mapping[str, Any]) -> BatchSpec:
    s3_parts(input_uri, "--input")
    s3_parts(output_uri, "--output")
    split = str(options.get("split_type") or "None")
    if split not in ("None", "Line", "RecordIO", "TFRecord"):
        raise UsageError(f"unknown split type {split!r}", where="--split-type",
                         fix="use None, Line, RecordIO or TFRecord")
    max_payload = options.get("max_payload_mb")
    content_type = str(options.get("content_type") or "application/json")
    shared = _shared(options)
    # a Parquet job needs an image that reads Parquet, flag or not
    shared["parquet"] = shared["parquet"] or content_type.split(";")[0].strip() == PARQUET
    return BatchSpec(
        input=input_uri,
        output=output_uri,
        content_type=content_type,
        split_type=split,
        max_payload_mb=int(max_payload) if max_payload else None,
        **shared,
    )


def config_hash(spec: DeploySpec, *, image: str, model_digest: str | None, role: str) -> str:
    """What an endpoint serves, as one hex digest: same hash => same deployment (idempotence).

    Only what changes serving counts: not the mode, the bucket (where the same bytes are
    stored), ``--archive`` or the registry override.
    """
    serving = asdict(spec)
    for key in ("mode", "bucket", "archive", "registry_override", "repository", "execution_role_arn"):
        serving.pop(key)
    serving.update(image=image, model_digest=model_digest, role=role)
    blob = json.dumps(serving, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()
