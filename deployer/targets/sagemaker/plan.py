"""Pure planning: (request, what exists) -> the ordered AWS calls of a deploy or delete.

No I/O happens here. Everything read from AWS arrives in :class:`DeployContext` (built by
:mod:`deployer.targets.sagemaker.target`), and the result is a :class:`DeployPlan` whose calls
carry every parameter they will be sent with, so ``--dry-run`` shows exactly what
:mod:`deployer.targets.sagemaker.apply` would do. Each creating call carries its ``undo``; the
executor runs them in reverse when a later step fails, so a failed run leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deployer.errors import TargetError, UsageError
from deployer.targets.base import DeployPlan, PlannedCall
from deployer.targets.sagemaker.names import resource_name
from deployer.targets.sagemaker.spec import DeploySpec, s3_parts
from deployer.targets.sagemaker.state import (
    TAG_APP,
    TAG_HASH,
    TAG_MODEL_DATA,
    TAG_MODEL_UUID,
    TAG_RUN_ID,
    TAG_VERSION,
    EndpointState,
)

TARGET = "sagemaker"
BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")


@dataclass(frozen=True)
class ImagePlan:
    """The serving image: prebuilt (``--image-uri``) or built from the model and pushed."""

    uri: str
    """What SageMaker pulls."""
    ecr: bool = True
    build: bool = False
    push: bool = False
    repository: str | None = None
    create_repository: bool = False
    push_to: str | None = None
    """Where the image bytes go when that differs from ``uri`` (registry override)."""
    local_image: str | None = None
    """The local tag the builder gives the image (pushed as ``uri`` / ``push_to``)."""
    base_image: str | None = None
    parquet: bool = False


@dataclass(frozen=True)
class ModelRef:
    uri: str | None = None
    path: str | None = None
    digest: str | None = None
    model_uuid: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class DeployContext:
    app: str
    region: str
    spec: DeploySpec
    role: str
    image: ImagePlan
    model: ModelRef
    bucket: str | None
    """Bucket for model.tar.gz; None when the model is baked into the image."""
    create_bucket: bool
    state: EndpointState | None
    config_hash: str
    suffix: str
    version: str
    wait: bool = True
    timeout: float | None = None


def endpoint_url(region: str, name: str) -> str:
    return f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{name}/invocations"


def base_tags(ctx: DeployContext) -> dict[str, str]:
    tags = {TAG_VERSION: ctx.version, TAG_APP: ctx.app, TAG_HASH: ctx.config_hash}
    if ctx.model.model_uuid:
        tags[TAG_MODEL_UUID] = ctx.model.model_uuid
    if ctx.model.run_id:
        tags[TAG_RUN_ID] = ctx.model.run_id
    tags.update(dict(ctx.spec.tags))
    return tags


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def image_calls(ctx_image: ImagePlan, model: ModelRef) -> list[PlannedCall]:
    """Build, repository creation and push, when the image is not prebuilt."""
    calls: list[PlannedCall] = []
    if ctx_image.build:
        calls.append(PlannedCall(
            "deployer", "build_image",
            {"ModelUri": model.uri, "LocalImage": ctx_image.local_image, "BaseImage": ctx_image.base_image,
             "Parquet": ctx_image.parquet},
            description="build the serving image on the local Docker engine",
        ))
    if ctx_image.create_repository:
        calls.append(PlannedCall(
            "ecr", "create_repository", {"repositoryName": ctx_image.repository},
            description="create the ECR repository (kept if a later step fails: later deploys reuse it)",
        ))
    if ctx_image.push:
        calls.append(PlannedCall(
            "docker", "push",
            {"Image": ctx_image.uri, "PushTo": ctx_image.push_to or ctx_image.uri,
             "LocalImage": ctx_image.local_image, "Registry": "ecr" if ctx_image.ecr else "generic"},
            description="log in (ecr:GetAuthorizationToken) and push the image",
        ))
    return calls


def model_calls(ctx: DeployContext, model_name: str, tags: dict[str, str]) -> tuple[list[PlannedCall], str | None]:
    """S3 upload (if any) and create_model. Returns the calls and the ModelDataUrl."""
    spec = ctx.spec
    calls: list[PlannedCall] = []
    model_data_url = None
    model_tags = dict(tags)
    if ctx.bucket and ctx.model.path:
        if ctx.create_bucket:
            params: dict[str, Any] = {"Bucket": ctx.bucket}
            if ctx.region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": ctx.region}
            calls.append(PlannedCall(
                "s3", "create_bucket", params, description="create the default model bucket",
                undo=PlannedCall("s3", "delete_bucket", {"Bucket": ctx.bucket}),
            ))
        key = f"deployer/{ctx.app}/{model_name}/model.tar.gz"
        model_data_url = f"s3://{ctx.bucket}/{key}"
        model_tags[TAG_MODEL_DATA] = model_data_url
        calls.append(PlannedCall(
            "s3", "upload_model_archive",
            {"Bucket": ctx.bucket, "Key": key, "ModelDir": ctx.model.path, "ModelDigest": ctx.model.digest},
            description="upload model.tar.gz (reproducible archive of the model directory)",
            undo=PlannedCall("s3", "delete_object", {"Bucket": ctx.bucket, "Key": key}),
        ))
    container: dict[str, Any] = {"Image": ctx.image.uri, "Mode": "SingleModel",
                                 "Environment": dict(spec.env)}
    if model_data_url:
        container["ModelDataUrl"] = model_data_url
    if not ctx.image.ecr:
        if not spec.vpc_config:
            raise UsageError(
                f"image {ctx.image.uri!r} is not in ECR, so SageMaker must pull it through a VPC "
                "(RepositoryAccessMode=Vpc), which needs a VPC configuration",
                where="--image-uri",
                fix="pass --vpc-config FILE with SecurityGroupIds and Subnets that reach the registry, "
                "or push the image to ECR (deployer build-and-push --target sagemaker)",
            )
        image_config: dict[str, Any] = {"RepositoryAccessMode": "Vpc"}
        if spec.registry_credentials_arn:
            image_config["RepositoryAuthConfig"] = {
                "RepositoryCredentialsProviderArn": spec.registry_credentials_arn}
        container["ImageConfig"] = image_config
    params = {"ModelName": model_name, "PrimaryContainer": container,
              "ExecutionRoleArn": ctx.role, "Tags": tag_list(model_tags)}
    if spec.vpc_config:
        params["VpcConfig"] = dict(spec.vpc_config)
    calls.append(PlannedCall(
        "sagemaker", "create_model", params, description="register the model (image + model data)",
        undo=PlannedCall("sagemaker", "delete_model", {"ModelName": model_name}),
    ))
    return calls, model_data_url


def _variant(spec: DeploySpec, model_name: str) -> dict[str, Any]:
    variant: dict[str, Any] = {"VariantName": model_name, "ModelName": model_name,
                               "InitialVariantWeight": spec.variant_weight}
    if spec.serverless:
        variant["ServerlessConfig"] = {"MemorySizeInMB": spec.serverless.memory_mb,
                                       "MaxConcurrency": spec.serverless.max_concurrency}
    else:
        variant["InstanceType"] = spec.instance_type
        variant["InitialInstanceCount"] = spec.instance_count
    return variant


def _endpoint_level(ctx: DeployContext, keep_old: bool) -> dict[str, Any]:
    spec, state = ctx.spec, ctx.state
    out: dict[str, Any] = {}
    if spec.async_output:
        if spec.serverless:
            raise UsageError("asynchronous inference does not run on serverless endpoints",
                             where="--async-output", fix="drop --serverless or --async-output")
        out["AsyncInferenceConfig"] = {"OutputConfig": {"S3OutputPath": spec.async_output}}
    elif keep_old and state is not None and state.async_config:
        out["AsyncInferenceConfig"] = dict(state.async_config)
    if spec.data_capture:
        out["DataCaptureConfig"] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": spec.data_capture.percent,
            "DestinationS3Uri": spec.data_capture.destination,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        }
    elif keep_old and state is not None and state.data_capture:
        capture = dict(state.data_capture)
        out["DataCaptureConfig"] = {k: capture[k] for k in (
            "EnableCapture", "InitialSamplingPercentage", "DestinationS3Uri", "CaptureOptions",
            "KmsKeyId", "CaptureContentTypeHeader") if k in capture}
    return out


def _decide(ctx: DeployContext) -> str:
    """'create' | 'replace' | 'add' | 'noop' from the mode and what exists."""
    state, mode, app = ctx.state, ctx.spec.mode, ctx.app
    if state is None:
        return "create"
    if state.status in BUSY:
        raise TargetError(
            f"endpoint {app!r} is {state.status}; it cannot be changed until that finishes",
            where=f"endpoint {app}",
            fix=f"wait, then retry (deployer status --target sagemaker --name {app})",
        )
    if mode == "add":
        if any(v.model_tags.get(TAG_HASH) == ctx.config_hash for v in state.variants):
            return "noop"
    elif state.config_hash == ctx.config_hash and state.status == "InService":
        return "noop"
    if mode == "create":
        raise UsageError(
            f"endpoint {app!r} already exists and serves a different model or configuration",
            where="--mode create",
            fix="use --mode replace to swap it, --mode add to add a variant, or another --name",
        )
    if state.status != "InService":
        raise TargetError(
            f"endpoint {app!r} is {state.status}" + (f" ({state.failure_reason})" if state.failure_reason else ""),
            where=f"endpoint {app}",
            fix=f"delete it (deployer delete --target sagemaker --name {app}) and deploy again",
        )
    return mode


def cleanup_calls(state: EndpointState, *, models: bool) -> list[PlannedCall]:
    """Delete a replaced endpoint config, and (``models``) its models and uploaded archives."""
    calls = [PlannedCall("sagemaker", "delete_endpoint_config", {"EndpointConfigName": state.config_name},
                         phase="cleanup", description="remove the replaced endpoint config")]
    if models:
        for variant in state.variants:
            if variant.model_exists:
                calls.append(PlannedCall("sagemaker", "delete_model", {"ModelName": variant.model_name},
                                         phase="cleanup", description="remove a replaced model"))
            data = variant.model_tags.get(TAG_MODEL_DATA)
            if data:
                bucket, key = s3_parts(data, TAG_MODEL_DATA)
                calls.append(PlannedCall("s3", "delete_object", {"Bucket": bucket, "Key": key},
                                         phase="cleanup", description="remove a replaced model archive"))
    return calls


def plan_deploy(ctx: DeployContext) -> DeployPlan:
    action = _decide(ctx)
    url = endpoint_url(ctx.region, ctx.app)
    facts: dict[str, Any] = {
        "mode": ctx.spec.mode, "config_hash": ctx.config_hash, "region": ctx.region,
        "image": ctx.image.uri, "role": ctx.role, "wait": ctx.wait, "timeout": ctx.timeout,
        "archive": ctx.spec.archive, "endpoint_url": url,
        "current_config": ctx.state.config_name if ctx.state else None,
    }
    if action == "noop":
        return DeployPlan(TARGET, ctx.app, "noop", (), summary=(
            f"endpoint {ctx.app} already serves this model and configuration "
            f"(config hash {ctx.config_hash[:12]}); nothing to do"), facts=facts)

    tags = base_tags(ctx)
    model_name = resource_name(ctx.app, "model", ctx.suffix)
    config_name = resource_name(ctx.app, "config", ctx.suffix)
    calls = image_calls(ctx.image, ctx.model)
    mcalls, model_data_url = model_calls(ctx, model_name, tags)
    calls += mcalls

    variants = [_variant(ctx.spec, model_name)]
    if action == "add" and ctx.state is not None:
        variants = [dict(v.config) for v in ctx.state.variants] + variants
    config_params: dict[str, Any] = {"EndpointConfigName": config_name, "ProductionVariants": variants}
    config_params.update(_endpoint_level(ctx, keep_old=action == "add"))
    # The config's hash tag says "this endpoint serves exactly this request". A config made by
    # --mode add also serves the older variants, so it must not carry the new variant's hash.
    config_tags = {k: v for k, v in tags.items() if not (action == "add" and k == TAG_HASH)}
    config_params["Tags"] = tag_list(config_tags)
    calls.append(PlannedCall(
        "sagemaker", "create_endpoint_config", config_params, description="describe how to serve it",
        undo=PlannedCall("sagemaker", "delete_endpoint_config", {"EndpointConfigName": config_name}),
    ))
    if action == "create":
        endpoint_tags = {k: v for k, v in tags.items() if k != TAG_HASH}
        calls.append(PlannedCall(
            "sagemaker", "create_endpoint",
            {"EndpointName": ctx.app, "EndpointConfigName": config_name, "Tags": tag_list(endpoint_tags)},
            phase="commit", description="create the endpoint",
            undo=PlannedCall("sagemaker", "delete_endpoint", {"EndpointName": ctx.app}),
        ))
    else:
        calls.append(PlannedCall(
            "sagemaker", "update_endpoint", {"EndpointName": ctx.app, "EndpointConfigName": config_name},
            phase="commit",
            description="switch the endpoint to the new config (SageMaker keeps the old one serving if this fails)",
        ))
    cleanup: list[PlannedCall] = []
    if ctx.state is not None and action in ("replace", "add") and not ctx.spec.archive:
        cleanup = cleanup_calls(ctx.state, models=action == "replace")
    if ctx.wait:
        calls.append(PlannedCall(
            "sagemaker", "wait_endpoint",
            {"EndpointName": ctx.app, "EndpointConfigName": config_name, "Timeout": ctx.timeout},
            phase="wait", description="poll describe_endpoint until InService (reads only)",
        ))
        calls += cleanup
    else:
        facts["left_behind"] = [dict(c.params) for c in cleanup]
    facts.update(model_name=model_name, config_name=config_name, model_data_url=model_data_url,
                 variants=[v["VariantName"] for v in variants])
    verb = {"create": "create", "replace": "replace the model of", "add": "add a variant to"}[action]
    summary = f"{verb} endpoint {ctx.app}: model {model_name}, config {config_name}, image {ctx.image.uri}"
    if ctx.state is None and ctx.spec.mode != "create":
        summary += f" (endpoint does not exist yet, so --mode {ctx.spec.mode} creates it)"
    return DeployPlan(TARGET, ctx.app, action, tuple(calls), summary=summary, facts=facts)


def plan_delete(state: EndpointState, region: str, *, archive: bool, wait: bool = True,
                timeout: float | None = None) -> DeployPlan:
    """Delete the endpoint, then (unless ``archive``) its config, models and model archives."""
    calls = [PlannedCall("sagemaker", "delete_endpoint", {"EndpointName": state.name}, phase="commit",
                         description="delete the endpoint")]
    if wait:
        calls.append(PlannedCall("sagemaker", "wait_endpoint_deleted",
                                 {"EndpointName": state.name, "Timeout": timeout}, phase="wait",
                                 description="poll describe_endpoint until it is gone (reads only)"))
    if not archive:
        calls += cleanup_calls(state, models=True)
    return DeployPlan(TARGET, state.name, "delete", tuple(calls),
                      summary=f"delete endpoint {state.name}" + (" (keeping models and configs)" if archive else ""),
                      facts={"region": region, "archive": archive, "config": state.config_name,
                             "models": [v.model_name for v in state.variants]})
