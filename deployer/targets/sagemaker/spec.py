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

MODES = ("create", "replace", "add", "shift")
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
_SNS_ARN = re.compile(r"^arn:aws[a-z\-]*:sns:[a-z0-9\-]+:\d{12}:[A-Za-z0-9_\-]{1,256}(\.fifo)?$")
_PREFIX_KEY = re.compile(r"^[A-Za-z0-9._\-/]{0,200}$")
_DURATION = re.compile(r"^(\d+)([smh]?)$")
_VPC_ID = {
    "--subnet": re.compile(r"^subnet-[0-9a-z]+$"),
    "--security-group": re.compile(r"^sg-[0-9a-z]+$"),
}
#: Names SageMaker (and deployer) accept for the traffic-routing part of --rollout.
ROLLOUTS = ("all-at-once", "canary", "linear")


@dataclass(frozen=True)
class Serverless:
    memory_mb: int
    max_concurrency: int


@dataclass(frozen=True)
class DataCapture:
    destination: str
    percent: int


@dataclass(frozen=True)
class Autoscale:
    """Target tracking on SageMakerVariantInvocationsPerInstance between min and max instances."""

    min_capacity: int
    max_capacity: int
    target: float


@dataclass(frozen=True)
class Rollout:
    """UpdateEndpoint's blue/green traffic routing: ALL_AT_ONCE, CANARY or LINEAR."""

    type: str  # ALL_AT_ONCE | CANARY | LINEAR
    size_type: str | None = None  # CAPACITY_PERCENT | INSTANCE_COUNT
    size: int | None = None
    wait_seconds: int = 0
    bake_seconds: int | None = (
        None  # TerminationWaitInSeconds: watch the new fleet before the old goes
    )


@dataclass(frozen=True)
class AsyncConfig:
    output: str
    sns_success: str | None = None
    sns_error: str | None = None
    max_concurrency: int | None = None


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
    async_config: AsyncConfig | None = None
    startup_health_timeout: int | None = None
    model_download_timeout: int | None = None
    # how to change the endpoint, not what it serves: none of these is in the config hash
    weights: tuple[tuple[str, float], ...] = ()  # --mode shift
    autoscale: Autoscale | None = None
    rollout: Rollout | None = None
    alarms: tuple[str, ...] = ()
    auto_rollback: bool = False
    # a multi-model endpoint (--multi-model): every model under model_prefix, loaded on demand
    multi_model: bool = False
    model_prefix: str | None = None


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
    vpc_config: Mapping[str, Any] | None = None
    registry_credentials_arn: str | None = None
    accept: str = "application/json"
    compression: str = "None"
    assemble_with: str | None = None
    input_filter: str | None = None
    output_filter: str | None = None
    join_source: str | None = None


def s3_parts(uri: str, option: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); UsageError naming ``option`` otherwise."""
    m = _S3_URI.match(uri or "")
    if not m:
        raise UsageError(
            f"{uri!r} is not an S3 URI", where=option, fix="use the form s3://bucket/prefix"
        )
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
            raise UsageError(
                f"{raw!r} is not KEY=VALUE", where=option, fix=f"write {option} NAME=value"
            )
        out[key] = value
    return tuple(out.items())


def _env(values: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    pairs = _pairs(values, "--env")
    for key, _ in pairs:
        if not _ENV_KEY.match(key):
            raise UsageError(
                f"{key!r} is not a valid environment variable name",
                where="--env",
                fix="use letters, digits and '_', not starting with a digit",
            )
    return pairs


def _tags(values: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    pairs = _pairs(values, "--tags")
    for key, value in pairs:
        if key.lower().startswith(RESERVED_TAG_PREFIXES):
            raise UsageError(
                f"tag key {key!r} uses a reserved prefix",
                where="--tags",
                fix="tag keys must not start with 'aws:' or 'deployer:'",
            )
        if (
            not (1 <= len(key) <= 128)
            or len(value) > 256
            or not (_TAG_TEXT.match(key) and _TAG_TEXT.match(value))
        ):
            raise UsageError(
                f"tag {key}={value!r} is not a valid SageMaker tag",
                where="--tags",
                fix="keys 1-128 and values 0-256 characters of letters, digits, spaces "
                "and _.:/=+-@",
            )
    return pairs


def tag_value_ok(value: str) -> bool:
    """Whether SageMaker accepts ``value`` as a tag value (0-256 of its characters)."""
    return len(value) <= 256 and bool(_TAG_TEXT.match(value))


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
        raise UsageError(
            f"{raw!r}: memory and concurrency must be integers", where="--serverless", fix=usage
        ) from None
    if memory not in SERVERLESS_MEMORY_MB:
        raise UsageError(
            f"serverless memory {memory} MB is not supported",
            where="--serverless",
            fix=f"use one of {', '.join(map(str, SERVERLESS_MEMORY_MB))}",
        )
    if not 1 <= concurrency <= 200:
        raise UsageError(
            f"serverless concurrency {concurrency} is out of range",
            where="--serverless",
            fix="use 1 to 200",
        )
    return Serverless(memory, concurrency)


def _data_capture(raw: str | None) -> DataCapture | None:
    if not raw:
        return None
    uri, _, pct = str(raw).partition(",")
    s3_parts(uri.strip(), "--data-capture")
    try:
        percent = int(pct.strip()) if pct.strip() else 100
    except ValueError:
        raise UsageError(
            f"{pct!r} is not a percentage",
            where="--data-capture",
            fix="write --data-capture s3://bucket/prefix,PERCENT (0-100)",
        ) from None
    if not 0 <= percent <= 100:
        raise UsageError(
            f"sampling percentage {percent} is out of range",
            where="--data-capture",
            fix="use 0 to 100",
        )
    return DataCapture(uri.strip(), percent)


def _vpc_config(path: str | None) -> Mapping[str, Any] | None:
    if not path:
        return None
    file = Path(path)
    fix = 'write JSON like {"SecurityGroupIds": ["sg-..."], "Subnets": ["subnet-..."]}'
    try:
        data = json.loads(file.read_text())
    except OSError as exc:
        raise UsageError(
            f"cannot read VPC config: {exc.strerror}", where=str(file), fix=fix
        ) from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"VPC config is not valid JSON: {exc}", where=str(file), fix=fix) from exc
    if not isinstance(data, dict) or set(data) != {"SecurityGroupIds", "Subnets"}:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise UsageError(
            f"VPC config must have exactly SecurityGroupIds and Subnets (got {got})",
            where=str(file),
            fix=fix,
        )
    for key in ("SecurityGroupIds", "Subnets"):
        value = data[key]
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v for v in value)
        ):
            raise UsageError(f"{key} must be a non-empty list of strings", where=str(file), fix=fix)
    return {"SecurityGroupIds": list(data["SecurityGroupIds"]), "Subnets": list(data["Subnets"])}


def _vpc(options: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """--vpc-config FILE, or --subnet/--security-group (repeatable); not both."""
    subnets = tuple(str(v) for v in options.get("subnet") or ())
    groups = tuple(str(v) for v in options.get("security_group") or ())
    from_file = _vpc_config(options.get("vpc_config"))
    if not subnets and not groups:
        return from_file
    fix = "pass both, e.g. --subnet subnet-0abc --subnet subnet-0def --security-group sg-0123"
    if from_file is not None:
        raise UsageError(
            "--vpc-config and --subnet/--security-group exclude each other",
            where="--subnet",
            fix="give the VPC either as a file (--vpc-config) or as --subnet/--security-group",
        )
    if not subnets or not groups:
        missing = "--subnet" if not subnets else "--security-group"
        raise UsageError(f"a VPC configuration needs {missing} too", where=missing, fix=fix)
    for option, values in (("--subnet", subnets), ("--security-group", groups)):
        for value in values:
            if not _VPC_ID[option].match(value):
                kind = "subnet-..." if option == "--subnet" else "sg-..."
                raise UsageError(
                    f"{value!r} is not a {option[2:]} ID",
                    where=option,
                    fix=f"use an ID like {kind}",
                )
    if len(subnets) > 16 or len(groups) > 5:
        raise UsageError(
            f"{len(subnets)} subnets / {len(groups)} security groups: SageMaker takes at most 16 / "
            "5",
            where="--subnet",
            fix="pass fewer",
        )
    return {
        "SecurityGroupIds": list(dict.fromkeys(groups)),
        "Subnets": list(dict.fromkeys(subnets)),
    }


def _seconds(text: str, option: str, what: str) -> int:
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(
            f"{what} {text!r} is not a duration",
            where=option,
            fix="write seconds (600 or 600s), minutes (10m) or hours (1h)",
        )
    return int(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[m[2]]


def _rollout(raw: Any, instance_count: int, serverless: bool) -> Rollout | None:
    """``all-at-once[:BAKE]``, ``canary:SIZE:WAIT[:BAKE]``, ``linear:SIZE:WAIT[:BAKE]``.

    SIZE is ``10%`` (CAPACITY_PERCENT) or ``2`` (INSTANCE_COUNT); WAIT and BAKE are durations.
    SageMaker's rules, checked here: WaitIntervalInSeconds and TerminationWaitInSeconds 0-3600;
    a canary at most 50% of the variant's instances; a linear step 10-50% of them.
    """
    if not raw:
        return None
    text = str(raw).strip()
    parts = text.split(":")
    kind = parts[0].lower()
    usage = (
        "write --rollout canary:10%:600s, linear:20%:300s or all-at-once "
        "(optionally :BAKE, e.g. :900s)"
    )
    if kind not in ROLLOUTS:
        raise UsageError(f"unknown rollout {parts[0]!r} in {text!r}", where="--rollout", fix=usage)
    if kind == "all-at-once":
        if len(parts) > 2:
            raise UsageError(
                f"{text!r}: all-at-once takes only an optional baking time",
                where="--rollout",
                fix=usage,
            )
        bake = _seconds(parts[1], "--rollout", "baking time") if len(parts) == 2 else None
        rollout = Rollout("ALL_AT_ONCE", wait_seconds=0, bake_seconds=bake)
    else:
        if len(parts) not in (3, 4):
            raise UsageError(
                f"{text!r} is not {kind}:SIZE:WAIT[:BAKE]", where="--rollout", fix=usage
            )
        size_text = parts[1].strip()
        percent = size_text.endswith("%")
        try:
            size = int(size_text.rstrip("%"))
        except ValueError:
            raise UsageError(
                f"{kind} size {size_text!r} is not a number",
                where="--rollout",
                fix="write a percentage of the instances (10%) or an instance count (2)",
            ) from None
        wait = _seconds(parts[2], "--rollout", "wait interval")
        bake = _seconds(parts[3], "--rollout", "baking time") if len(parts) == 4 else None
        rollout = Rollout(
            kind.upper(), "CAPACITY_PERCENT" if percent else "INSTANCE_COUNT", size, wait, bake
        )
        _check_step(rollout, instance_count, serverless)
    for label, value in (
        ("wait interval", rollout.wait_seconds),
        ("baking time", rollout.bake_seconds),
    ):
        if value is not None and not 0 <= value <= 3600:
            raise UsageError(
                f"{label} {value}s is out of range in {text!r}",
                where="--rollout",
                fix="SageMaker takes 0 to 3600 seconds",
            )
    return rollout


def _check_step(rollout: Rollout, instances: int, serverless: bool) -> None:
    assert rollout.size is not None
    name = rollout.type.lower()
    if rollout.size_type == "INSTANCE_COUNT":
        if serverless:
            raise UsageError(
                f"a {name} of {rollout.size} instance(s) cannot apply to a serverless endpoint",
                where="--rollout",
                fix=f"give the {name} size as a percentage, e.g. {name}:10%:600s",
            )
        low = 1 if rollout.type == "CANARY" else max(1, -(-instances // 10))
        high = instances // 2
        if not low <= rollout.size <= high:
            rule = "at most 50%" if rollout.type == "CANARY" else "10-50%"
            raise UsageError(
                f"a {name} of {rollout.size} instance(s) is not {rule} of the variant's "
                f"{instances} instance(s)",
                where="--rollout",
                fix=(
                    f"use {low} to {high} instances"
                    if low <= high
                    else f"raise --instance-count (now {instances}) or give the size as a "
                    "percentage"
                ),
            )
        return
    low = 1 if rollout.type == "CANARY" else 10
    if not low <= rollout.size <= 50:
        raise UsageError(
            f"a {name} of {rollout.size}% is out of range",
            where="--rollout",
            fix=f"SageMaker takes {low}% to 50% for a {name} step",
        )


def _autoscale(raw: Any, serverless: bool) -> Autoscale | None:
    if not raw:
        return None
    text = str(raw).strip()
    usage = (
        "write --autoscale MIN:MAX:TARGET, e.g. 1:4:100 "
        "(1 to 4 instances, 100 invocations/instance/minute)"
    )
    parts = text.split(":")
    if len(parts) != 3:
        raise UsageError(f"{text!r} is not MIN:MAX:TARGET", where="--autoscale", fix=usage)
    try:
        low, high, target = int(parts[0]), int(parts[1]), float(parts[2])
    except ValueError:
        raise UsageError(
            f"{text!r}: MIN and MAX must be integers, TARGET a number",
            where="--autoscale",
            fix=usage,
        ) from None
    if low < 1 or high < low:
        raise UsageError(f"{text!r}: need 1 <= MIN <= MAX", where="--autoscale", fix=usage)
    if not target > 0:
        raise UsageError(
            f"{text!r}: the target must be more than 0 invocations per instance",
            where="--autoscale",
            fix=usage,
        )
    if serverless:
        raise UsageError(
            "--autoscale scales instances, and a serverless endpoint has none",
            where="--autoscale",
            fix="drop --autoscale (serverless endpoints scale by themselves up to their "
            "concurrency)",
        )
    return Autoscale(low, high, target)


def _async(options: Mapping[str, Any], serverless: bool) -> AsyncConfig | None:
    output = options.get("async_output") or None
    extras = {
        k: options.get(k)
        for k in ("async_sns_success", "async_sns_error", "async_max_concurrency")
        if options.get(k) not in (None, "")
    }
    if not output:
        if extras:
            flag = "--" + next(iter(extras)).replace("_", "-")
            raise UsageError(
                f"{flag} is a setting of asynchronous inference",
                where=flag,
                fix="add --async-output s3://bucket/prefix (where the results go)",
            )
        return None
    s3_parts(str(output), "--async-output")
    if serverless:
        raise UsageError(
            "asynchronous inference does not run on serverless endpoints",
            where="--async-output",
            fix="drop --serverless or --async-output",
        )
    for key in ("async_sns_success", "async_sns_error"):
        if key in extras and not _SNS_ARN.match(str(extras[key])):
            flag = "--" + key.replace("_", "-")
            raise UsageError(
                f"{extras[key]!r} is not an SNS topic ARN",
                where=flag,
                fix="use arn:aws:sns:<region>:<account>:<topic>",
            )
    concurrency = extras.get("async_max_concurrency")
    if concurrency is not None and not 1 <= int(concurrency) <= 1000:
        raise UsageError(
            f"max concurrent invocations {concurrency} is out of range",
            where="--async-max-concurrency",
            fix="use 1 to 1000 per instance",
        )
    return AsyncConfig(
        str(output),
        extras.get("async_sns_success"),
        extras.get("async_sns_error"),
        int(concurrency) if concurrency is not None else None,
    )


def _timeout(options: Mapping[str, Any], key: str, serverless: bool) -> int | None:
    value = options.get(key)
    if value in (None, ""):
        return None
    flag = "--" + key.replace("_", "-")
    seconds = int(value)
    if not 60 <= seconds <= 3600:
        raise UsageError(
            f"{flag} {seconds} is out of range",
            where=flag,
            fix="SageMaker takes 60 to 3600 seconds",
        )
    if serverless:
        raise UsageError(
            f"{flag} applies to instance-backed variants, not serverless ones",
            where=flag,
            fix=f"drop {flag} or --serverless",
        )
    return seconds


def _weights(raw: Any) -> tuple[tuple[str, float], ...]:
    if not raw:
        return ()
    usage = "write --weights VARIANT=WEIGHT[,VARIANT=WEIGHT...] (variant names: deployer status)"
    out: dict[str, float] = {}
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    for item in items:
        for part in str(item).split(","):
            key, sep, value = part.strip().partition("=")
            if not sep or not key.strip():
                raise UsageError(
                    f"{part.strip()!r} is not VARIANT=WEIGHT", where="--weights", fix=usage
                )
            try:
                weight = float(value)
            except ValueError:
                raise UsageError(
                    f"weight {value!r} of {key.strip()!r} is not a number",
                    where="--weights",
                    fix=usage,
                ) from None
            if weight < 0:
                raise UsageError(
                    f"weight {weight:g} of {key.strip()!r} must be >= 0",
                    where="--weights",
                    fix=usage,
                )
            out[key.strip()] = weight
    return tuple(out.items())


def _instance_type(value: Any, option: str = "--instance-type") -> str:
    text = str(value)
    if not _INSTANCE.match(text):
        raise UsageError(
            f"{text!r} is not a SageMaker instance type",
            where=option,
            fix="use e.g. ml.m5.large or ml.c5.xlarge",
        )
    return text


def _count(value: Any, option: str = "--instance-count") -> int:
    count = int(value)
    if count < 1:
        raise UsageError(
            f"instance count {count} must be at least 1", where=option, fix="use 1 or more"
        )
    return count


def _role(value: Any) -> str | None:
    if not value:
        return None
    if not _ROLE_ARN.match(str(value)):
        raise UsageError(
            f"{value!r} is not an IAM role ARN",
            where="--execution-role-arn",
            fix="use arn:aws:iam::<account>:role/<name>",
        )
    return str(value)


def _bucket(value: Any) -> str | None:
    if not value:
        return None
    text = str(value).removeprefix("s3://").rstrip("/")
    s3_parts(f"s3://{text}", "--bucket")
    if "/" in text:
        raise UsageError(
            f"--bucket takes a bucket name, got {value!r}",
            where="--bucket",
            fix="pass only the bucket name; deployer picks the key",
        )
    return text


def _shared(options: Mapping[str, Any]) -> dict[str, Any]:
    """The fields deploy and batch have in common, parsed and checked in one place."""
    shared = {
        "instance_type": _instance_type(options.get("instance_type") or "ml.m5.large"),
        "instance_count": _count(
            1 if options.get("instance_count") is None else options["instance_count"]
        ),
        "execution_role_arn": _role(options.get("execution_role_arn")),
        "bucket": _bucket(options.get("bucket")),
        "model_in_image": bool(options.get("model_in_image")),
        "env": _env(options.get("env")),
        "tags": _tags(options.get("tags")),
        "archive": bool(options.get("archive")),
        "repository": options.get("repository") or None,
        "registry_override": options.get("registry_override") or None,
    }
    if shared["model_in_image"] and shared["bucket"]:
        raise UsageError(
            "--model-in-image and --bucket exclude each other",
            where="--bucket",
            fix="drop --bucket (the model is baked into the image) or --model-in-image",
        )
    return shared


def parse_deploy(options: Mapping[str, Any]) -> DeploySpec:
    """``DeployRequest.options`` -> :class:`DeploySpec` (UsageError on any bad value)."""
    mode = str(options.get("mode") or "create")
    if mode not in MODES:
        raise UsageError(
            f"unknown mode {mode!r}", where="--mode", fix=f"use one of {', '.join(MODES)}"
        )
    weight = float(
        options.get("variant_weight") if options.get("variant_weight") is not None else 1.0
    )
    if weight < 0:
        raise UsageError(
            f"variant weight {weight} must be >= 0", where="--variant-weight", fix="use e.g. 1.0"
        )
    shared = _shared(options)
    serverless = _serverless(options.get("serverless"))
    capture = _data_capture(options.get("data_capture"))
    if serverless and capture:
        raise UsageError(
            "SageMaker does not capture data of serverless endpoints",
            where="--data-capture",
            fix="drop --data-capture, or deploy to instances (drop --serverless)",
        )
    weights = _weights(options.get("weights"))
    if mode == "shift" and not weights:
        raise UsageError(
            "--mode shift needs --weights",
            where="--weights",
            fix="pass --weights VARIANT=WEIGHT,... (the variant names are in `deployer status`)",
        )
    if weights and mode != "shift":
        raise UsageError(
            f"--weights moves traffic between existing variants; it is not for --mode {mode}",
            where="--weights",
            fix="use --mode shift --weights ... (or --variant-weight with --mode add)",
        )
    rollout = _rollout(options.get("rollout"), shared["instance_count"], serverless is not None)
    alarms = tuple(dict.fromkeys(str(a) for a in options.get("alarm") or ()))
    auto_rollback = bool(options.get("auto_rollback"))
    for alarm in alarms:
        if not 1 <= len(alarm) <= 255:
            raise UsageError(
                f"alarm name {alarm[:40]!r}... is not 1-255 characters",
                where="--alarm",
                fix="pass the CloudWatch alarm's name",
            )
    if len(alarms) > 10:
        raise UsageError(
            f"{len(alarms)} alarms: SageMaker watches at most 10", where="--alarm", fix="pass fewer"
        )
    if alarms and not auto_rollback:
        raise UsageError(
            "--alarm names alarms that roll the update back, which needs --auto-rollback",
            where="--alarm",
            fix="add --auto-rollback",
        )
    if auto_rollback and not alarms:
        raise UsageError(
            "--auto-rollback needs the CloudWatch alarm(s) that trigger it",
            where="--auto-rollback",
            fix="add --alarm NAME (repeatable)",
        )
    if alarms and not rollout:
        raise UsageError(
            "alarms are watched while a --rollout shifts traffic",
            where="--alarm",
            fix="add --rollout canary:10%:600s, linear:20%:300s or all-at-once:BAKE",
        )
    if rollout and mode in ("add", "shift"):
        raise UsageError(
            "--rollout shifts traffic from the old fleet of a variant to its new one; --mode "
            f"{mode} does not "
            "replace a variant",
            where="--rollout",
            fix="use --rollout with --mode replace; with --mode add, promote later with --mode "
            "shift --weights",
        )
    autoscale = _autoscale(options.get("autoscale"), serverless is not None)
    if autoscale and mode == "shift":
        raise UsageError(
            "--autoscale applies to the variant a deploy creates, not to --mode shift",
            where="--autoscale",
            fix="drop --autoscale, or pass it with the deploy of the variant",
        )
    multi_model, prefix = _multi_model(options, mode, shared, serverless)
    return DeploySpec(
        mode=mode,
        **shared,
        vpc_config=_vpc(options),
        serverless=serverless,
        async_output=str(options.get("async_output")) if options.get("async_output") else None,
        async_config=_async(options, serverless is not None),
        data_capture=capture,
        variant_weight=weight,
        registry_credentials_arn=options.get("registry_credentials_arn") or None,
        startup_health_timeout=_timeout(options, "startup_health_timeout", serverless is not None),
        model_download_timeout=_timeout(options, "model_download_timeout", serverless is not None),
        weights=weights,
        autoscale=autoscale,
        rollout=rollout,
        alarms=alarms,
        auto_rollback=auto_rollback,
        multi_model=multi_model,
        model_prefix=prefix,
    )


def model_prefix(uri: str, option: str = "--model-prefix") -> str:
    """``s3://bucket/prefix/``: the S3 prefix of a multi-model endpoint, always ending in ``/``
    (SageMaker appends the invoked TargetModel to it)."""
    bucket, key = s3_parts(str(uri).strip(), option)
    key = key.strip("/")
    # recorded in a tag (SageMaker's tag characters, 256 at most): plain path characters only
    if not _PREFIX_KEY.match(key) or ".." in key.split("/") or "//" in key:
        raise UsageError(
            f"{uri!r} is not a plain S3 prefix (letters, digits, '.', '_', '-' and '/', at most "
            "200 characters)",
            where=option,
            fix="use e.g. s3://bucket/models/",
        )
    return f"s3://{bucket}/{key}/" if key else f"s3://{bucket}/"


def _multi_model(
    options: Mapping[str, Any], mode: str, shared: Mapping[str, Any], serverless: Any
) -> tuple[bool, str | None]:
    """--multi-model and --model-prefix: both or neither; and what a multi-model endpoint
    cannot be (each refusal names the option and what to do instead)."""
    multi = bool(options.get("multi_model"))
    prefix = options.get("model_prefix") or None
    if not multi:
        if prefix:
            raise UsageError(
                "--model-prefix is where a multi-model endpoint finds its models",
                where="--model-prefix",
                fix="add --multi-model, or drop --model-prefix",
            )
        return False, None
    if not prefix:
        raise UsageError(
            "a multi-model endpoint needs the S3 prefix its models are stored under",
            where="--multi-model",
            fix="add --model-prefix s3://bucket/models/ (`deployer models add` uploads there)",
        )
    refusals = (
        (
            serverless is not None,
            "--serverless",
            "SageMaker serverless endpoints do not host multi-model endpoints",
            "drop --serverless (deploy to instances: --instance-type)",
        ),
        (
            bool(shared.get("model_in_image")),
            "--model-in-image",
            "a multi-model endpoint loads its models from --model-prefix, not from the image",
            "drop --model-in-image",
        ),
        (
            bool(shared.get("bucket")),
            "--bucket",
            "a multi-model endpoint uploads nothing at deploy time; its models live under "
            "--model-prefix",
            "drop --bucket (add models with `deployer models add`)",
        ),
        (
            mode in ("add", "shift"),
            f"--mode {mode}",
            "a multi-model endpoint has one variant serving every model under its prefix",
            "use --mode create or --mode replace (add models with `deployer models add`)",
        ),
    )
    for refused, option, why, fix in refusals:
        if refused:
            raise UsageError(
                f"{option} does not apply to --multi-model: {why}", where=option, fix=fix
            )
    return True, model_prefix(str(prefix))


_JSONPATH = re.compile(r"^\$[^\s]{0,62}$")


def _filter(options: Mapping[str, Any], key: str) -> str | None:
    value = options.get(key)
    if not value:
        return None
    flag = "--" + key.replace("_", "-")
    if not _JSONPATH.match(str(value)):
        raise UsageError(
            f"{value!r} is not a JSONPath expression SageMaker accepts",
            where=flag,
            fix="write a JSONPath starting with $ (at most 63 characters), e.g. '$[1:]' or "
            "'$.features'",
        )
    return str(value)


def parse_batch(input_uri: str, output_uri: str, options: Mapping[str, Any]) -> BatchSpec:
    s3_parts(input_uri, "--input")
    s3_parts(output_uri, "--output")
    split = str(options.get("split_type") or "None")
    if split not in ("None", "Line", "RecordIO", "TFRecord"):
        raise UsageError(
            f"unknown split type {split!r}",
            where="--split-type",
            fix="use None, Line, RecordIO or TFRecord",
        )
    max_payload = options.get("max_payload_mb")
    content_type = str(options.get("content_type") or "application/json")
    shared = _shared(options)
    if max_payload is not None and not 0 <= int(max_payload) <= 100:
        raise UsageError(
            f"max payload {max_payload} MB is out of range",
            where="--max-payload-mb",
            fix="SageMaker takes 0 to 100 MB (0: no limit, for streamed single records)",
        )
    compression = str(options.get("compression") or "None")
    if compression not in ("None", "Gzip"):
        raise UsageError(
            f"unknown compression {compression!r}", where="--compression", fix="use None or Gzip"
        )
    assemble = options.get("assemble_with") or ("Line" if split == "Line" else None)
    if assemble not in (None, "None", "Line"):
        raise UsageError(
            f"unknown assemble mode {assemble!r}", where="--assemble-with", fix="use Line or None"
        )
    join = options.get("join_source") or None
    if join not in (None, "None", "Input"):
        raise UsageError(
            f"unknown join source {join!r}", where="--join-source", fix="use Input or None"
        )
    accept = str(options.get("accept") or "application/json")
    if join == "Input" and accept.split(";")[0].strip() not in ("application/json", "text/csv"):
        raise UsageError(
            f"--join-source Input joins input and prediction as JSON or CSV, not {accept}",
            where="--join-source",
            fix="use --accept application/json or text/csv, or drop --join-source",
        )
    return BatchSpec(
        input=input_uri,
        output=output_uri,
        content_type=content_type,
        split_type=split,
        max_payload_mb=int(max_payload) if max_payload is not None else None,
        **shared,
        vpc_config=_vpc(options),
        registry_credentials_arn=options.get("registry_credentials_arn") or None,
        accept=accept,
        compression=compression,
        assemble_with=assemble,
        input_filter=_filter(options, "input_filter"),
        output_filter=_filter(options, "output_filter"),
        join_source=join,
    )


def config_hash(
    spec: DeploySpec,
    *,
    image: str,
    model_digest: str | None,
    role: str,
    lock_digest: str | None = None,
) -> str:
    """What an endpoint serves, as one hex digest: same hash => same deployment (idempotence).

    Only what changes serving counts: not the mode, the bucket (where the same bytes are
    stored), ``--archive`` or the registry override, nor the traffic weight, autoscaling and
    rollout settings (those are compared with the endpoint's live state instead).
    """
    serving = asdict(spec)
    for key in (
        "mode",
        "bucket",
        "archive",
        "registry_override",
        "repository",
        "execution_role_arn",
        # how traffic reaches the variant and how it changes, not what it serves:
        # re-running with another weight reweights, another --autoscale rescales
        "variant_weight",
        "weights",
        "autoscale",
        "rollout",
        "alarms",
        "auto_rollback",
    ):
        serving.pop(key)
    if not spec.multi_model:  # hashes of single-model endpoints stay what they were
        serving.pop("multi_model")
        serving.pop("model_prefix")
    serving.update(image=image, model_digest=model_digest, role=role)
    if lock_digest is not None:
        serving["lock_digest"] = lock_digest
    blob = json.dumps(serving, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()
