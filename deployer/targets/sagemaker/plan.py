"""Pure planning: (request, what exists) -> the ordered AWS calls of a deploy or delete.

No I/O happens here. Everything read from AWS arrives in :class:`DeployContext` (built by
:mod:`deployer.targets.sagemaker.target`), and the result is a :class:`DeployPlan` whose calls
carry every parameter they will be sent with, so ``--dry-run`` shows exactly what
:mod:`deployer.targets.sagemaker.apply` would do. Each creating call carries its ``undo``; the
executor runs them in reverse when a later step fails, so a failed run leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deployer.errors import TargetError, UsageError
from deployer.model.provenance import Provenance
from deployer.targets.base import DeployPlan, PlannedCall
from deployer.targets.sagemaker.multi_model import SERVER_SWITCH, MultiModelSetup
from deployer.targets.sagemaker.names import resource_name
from deployer.targets.sagemaker.spec import Autoscale, DeploySpec, s3_parts, tag_value_ok
from deployer.targets.sagemaker.state import (
    SCALING_DIMENSION,
    SCALING_NAMESPACE,
    SCALING_POLICY,
    TAG_APP,
    TAG_HASH,
    TAG_MODEL_DATA,
    TAG_MODEL_UUID,
    TAG_PREFIX,
    TAG_RUN_ID,
    TAG_VERSION,
    EndpointState,
    ScalingState,
    VariantState,
    scaling_resource,
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
    build_options: Mapping[str, Any] = field(default_factory=dict)
    """The build-option group for the image built from -m (``BuildOptions.to_params``)."""

    @property
    def verify(self) -> bool:
        return self.build_options.get("verify", True) is not False


@dataclass(frozen=True)
class ModelRef:
    uri: str | None = None
    path: str | None = None
    digest: str | None = None
    model_uuid: str | None = None
    run_id: str | None = None
    provenance: Provenance | None = None
    """What the registry knows of the model (written as ``deployer:model-*`` tags)."""


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
    multi_model: MultiModelSetup | None = None
    """``--multi-model``: the prefix and the environment record (no model.tar.gz upload)."""


def endpoint_url(region: str, name: str) -> str:
    return f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{name}/invocations"


def base_tags(ctx: DeployContext) -> dict[str, str]:
    tags = {TAG_VERSION: ctx.version, TAG_APP: ctx.app, TAG_HASH: ctx.config_hash}
    if ctx.model.model_uuid:
        tags[TAG_MODEL_UUID] = ctx.model.model_uuid
    if ctx.model.run_id:
        tags[TAG_RUN_ID] = ctx.model.run_id
    if ctx.model.provenance is not None:  # a value SageMaker refuses (a model name with ','...)
        # is left out rather than failing the deploy: the record then names no registry version
        tags.update(
            (k, v) for k, v in ctx.model.provenance.to_tags(TAG_PREFIX).items() if tag_value_ok(v)
        )
    tags.update(dict(ctx.spec.tags))
    return tags


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def image_calls(ctx_image: ImagePlan, model: ModelRef) -> list[PlannedCall]:
    """Build, repository creation and push, when the image is not prebuilt."""
    calls: list[PlannedCall] = []
    if ctx_image.build:
        from deployer.targets.model_image import build_call

        calls.append(
            build_call(
                {
                    "ModelUri": model.uri,
                    "LocalImage": ctx_image.local_image,
                    "Build": dict(ctx_image.build_options),
                },
                "the serving image",
            )
        )
    if ctx_image.create_repository:
        calls.append(
            PlannedCall(
                "ecr",
                "create_repository",
                {"repositoryName": ctx_image.repository},
                description="create the ECR repository (kept if a later step fails: later deploys "
                "reuse it)",
            )
        )
    if ctx_image.push:
        calls.append(
            PlannedCall(
                "docker",
                "push",
                {
                    "Image": ctx_image.uri,
                    "PushTo": ctx_image.push_to or ctx_image.uri,
                    "LocalImage": ctx_image.local_image,
                    "Registry": "ecr" if ctx_image.ecr else "generic",
                },
                description="log in (ecr:GetAuthorizationToken) and push the image",
            )
        )
    return calls


def model_calls(
    ctx: DeployContext, model_name: str, tags: dict[str, str]
) -> tuple[list[PlannedCall], str | None]:
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
            calls.append(
                PlannedCall(
                    "s3",
                    "create_bucket",
                    params,
                    description="create the default model bucket",
                    undo=PlannedCall("s3", "delete_bucket", {"Bucket": ctx.bucket}),
                )
            )
        key = f"deployer/{ctx.app}/{model_name}/model.tar.gz"
        model_data_url = f"s3://{ctx.bucket}/{key}"
        model_tags[TAG_MODEL_DATA] = model_data_url
        calls.append(
            PlannedCall(
                "s3",
                "upload_model_archive",
                {
                    "Bucket": ctx.bucket,
                    "Key": key,
                    "ModelDir": ctx.model.path,
                    "ModelDigest": ctx.model.digest,
                },
                description="upload model.tar.gz (reproducible archive of the model directory)",
                undo=PlannedCall("s3", "delete_object", {"Bucket": ctx.bucket, "Key": key}),
            )
        )
    container: dict[str, Any] = {
        "Image": ctx.image.uri,
        "Mode": "SingleModel",
        "Environment": dict(spec.env),
    }
    if model_data_url:
        container["ModelDataUrl"] = model_data_url
    if ctx.multi_model is not None:
        calls += environment_record_calls(ctx.multi_model)
        container["Mode"] = "MultiModel"
        container["ModelDataUrl"] = ctx.multi_model.prefix
        container["Environment"][SERVER_SWITCH] = "true"
        model_tags.update(ctx.multi_model.tags())
    if not ctx.image.ecr:
        if not spec.vpc_config:
            raise UsageError(
                f"image {ctx.image.uri!r} is not in ECR, so SageMaker must pull it through a VPC "
                "(RepositoryAccessMode=Vpc), which needs a VPC configuration",
                where="--image-uri",
                fix="pass --subnet and --security-group (or --vpc-config FILE) that reach the "
                "registry, "
                "or push the image to ECR (deployer build-and-push --target sagemaker)",
            )
        image_config: dict[str, Any] = {"RepositoryAccessMode": "Vpc"}
        if spec.registry_credentials_arn:
            image_config["RepositoryAuthConfig"] = {
                "RepositoryCredentialsProviderArn": spec.registry_credentials_arn
            }
        container["ImageConfig"] = image_config
    params = {
        "ModelName": model_name,
        "PrimaryContainer": container,
        "ExecutionRoleArn": ctx.role,
        "Tags": tag_list(model_tags),
    }
    if spec.vpc_config:
        params["VpcConfig"] = dict(spec.vpc_config)
    calls.append(
        PlannedCall(
            "sagemaker",
            "create_model",
            params,
            description="register the model (image + model data)",
            undo=PlannedCall("sagemaker", "delete_model", {"ModelName": model_name}),
        )
    )
    return calls, model_data_url


def environment_record_calls(mme: MultiModelSetup) -> list[PlannedCall]:
    """Store the endpoint's environment record under the prefix, unless it is there already
    (content-addressed: the same environment is the same object)."""
    if mme.record_exists:
        return []
    return [
        PlannedCall(
            "s3",
            "put_object",
            {
                "Bucket": mme.bucket,
                "Key": mme.record_key,
                "Body": mme.record.to_json(),
                "ContentType": "application/json",
            },
            description="record the endpoint's environment (its lock) for `deployer models add`",
            undo=PlannedCall("s3", "delete_object", {"Bucket": mme.bucket, "Key": mme.record_key}),
        )
    ]


def _variant(spec: DeploySpec, model_name: str, variant_name: str | None = None) -> dict[str, Any]:
    variant: dict[str, Any] = {
        "VariantName": variant_name or model_name,
        "ModelName": model_name,
        "InitialVariantWeight": spec.variant_weight,
    }
    if spec.serverless:
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": spec.serverless.memory_mb,
            "MaxConcurrency": spec.serverless.max_concurrency,
        }
    else:
        variant["InstanceType"] = spec.instance_type
        variant["InitialInstanceCount"] = spec.instance_count
    if spec.model_download_timeout is not None:
        variant["ModelDataDownloadTimeoutInSeconds"] = spec.model_download_timeout
    if spec.startup_health_timeout is not None:
        variant["ContainerStartupHealthCheckTimeoutInSeconds"] = spec.startup_health_timeout
    return variant


def _kept_variant(variant: VariantState) -> dict[str, Any]:
    """An existing variant copied into a new config (--mode add) with the weight and instance
    count it has *now*: a reweight or scaling since its config was made must not be undone."""
    config = dict(variant.config)
    for key in ("CurrentWeight", "DesiredWeight", "CurrentInstanceCount", "DesiredInstanceCount"):
        config.pop(key, None)
    if variant.weight is not None:
        config["InitialVariantWeight"] = variant.weight
    if variant.instance_count is not None and "InitialInstanceCount" in config:
        config["InitialInstanceCount"] = variant.instance_count
    return config


def _endpoint_level(ctx: DeployContext, keep_old: bool) -> dict[str, Any]:
    spec, state = ctx.spec, ctx.state
    out: dict[str, Any] = {}
    if spec.async_config:
        conf = spec.async_config
        output: dict[str, Any] = {"S3OutputPath": conf.output}
        notify = {
            k: v
            for k, v in (("SuccessTopic", conf.sns_success), ("ErrorTopic", conf.sns_error))
            if v
        }
        if notify:
            output["NotificationConfig"] = notify
        out["AsyncInferenceConfig"] = {"OutputConfig": output}
        if conf.max_concurrency is not None:
            out["AsyncInferenceConfig"]["ClientConfig"] = {
                "MaxConcurrentInvocationsPerInstance": conf.max_concurrency
            }
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
        out["DataCaptureConfig"] = {
            k: capture[k]
            for k in (
                "EnableCapture",
                "InitialSamplingPercentage",
                "DestinationS3Uri",
                "CaptureOptions",
                "KmsKeyId",
                "CaptureContentTypeHeader",
            )
            if k in capture
        }
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
            f"endpoint {app!r} is {state.status}"
            + (f" ({state.failure_reason})" if state.failure_reason else ""),
            where=f"endpoint {app}",
            fix=f"delete it (deployer delete --target sagemaker --name {app}) and deploy again",
        )
    return mode


def cleanup_calls(state: EndpointState, *, models: bool) -> list[PlannedCall]:
    """Delete a replaced endpoint config, and (``models``) its models and uploaded archives."""
    calls = [
        PlannedCall(
            "sagemaker",
            "delete_endpoint_config",
            {"EndpointConfigName": state.config_name},
            phase="cleanup",
            description="remove the replaced endpoint config",
        )
    ]
    if models:
        for variant in state.variants:
            if variant.model_exists:
                calls.append(
                    PlannedCall(
                        "sagemaker",
                        "delete_model",
                        {"ModelName": variant.model_name},
                        phase="cleanup",
                        description="remove a replaced model",
                    )
                )
            data = variant.model_tags.get(TAG_MODEL_DATA)
            if data:
                bucket, key = s3_parts(data, TAG_MODEL_DATA)
                calls.append(
                    PlannedCall(
                        "s3",
                        "delete_object",
                        {"Bucket": bucket, "Key": key},
                        phase="cleanup",
                        description="remove a replaced model archive",
                    )
                )
    return calls


# ------------------------------------------------------------------ autoscaling
METRIC = "SageMakerVariantInvocationsPerInstance"


def _scaling_ids(app: str, variant: str) -> dict[str, Any]:
    return {
        "ServiceNamespace": SCALING_NAMESPACE,
        "ResourceId": scaling_resource(app, variant),
        "ScalableDimension": SCALING_DIMENSION,
    }


def _policy_body(autoscale: Autoscale) -> dict[str, Any]:
    return {
        "TargetValue": autoscale.target,
        "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
    }


def _policy_matches(policy: Any, autoscale: Autoscale) -> bool:
    if not policy or policy.get("PolicyType") != "TargetTrackingScaling":
        return False
    conf = policy.get("TargetTrackingScalingPolicyConfiguration") or {}
    metric = (conf.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
    return metric == METRIC and float(conf.get("TargetValue", -1)) == autoscale.target


def _put_policy(ids: dict[str, Any], policy: Any) -> PlannedCall:
    return PlannedCall("application-autoscaling", "put_scaling_policy", {**dict(policy), **ids})


def release_scaling(
    app: str, variant: VariantState, phase: str, *, only_ours: bool = False
) -> list[PlannedCall]:
    """Delete a variant's scaling policies, then deregister it (each undone by re-creating it).

    SageMaker refuses to remove (or change the instance type of) a variant that is still
    registered, and Application Auto Scaling keeps a target of a deleted endpoint around
    when the caller may not deregister it: deployer deregisters first, always.
    """
    scaling = variant.scaling
    if scaling is None:
        return []
    ids = _scaling_ids(app, variant.variant_name)
    calls = []
    for policy in scaling.policies:
        if only_ours and policy.get("PolicyName") != SCALING_POLICY:
            continue
        calls.append(
            PlannedCall(
                "application-autoscaling",
                "delete_scaling_policy",
                {"PolicyName": policy["PolicyName"], **ids},
                phase=phase,
                description=f"remove scaling policy {policy['PolicyName']} of variant "
                f"{variant.variant_name}",
                undo=_put_policy(ids, policy),
            )
        )
    if only_ours and any(p.get("PolicyName") != SCALING_POLICY for p in scaling.policies):
        return calls  # someone else's policy still uses the target: leave it registered
    calls.append(
        PlannedCall(
            "application-autoscaling",
            "deregister_scalable_target",
            ids,
            phase=phase,
            description=f"deregister variant {variant.variant_name} from Application Auto Scaling",
            undo=PlannedCall(
                "application-autoscaling",
                "register_scalable_target",
                {**ids, "MinCapacity": scaling.min_capacity, "MaxCapacity": scaling.max_capacity},
            ),
        )
    )
    return calls


def reconcile_scaling(
    app: str,
    variant: str,
    desired: Autoscale | None,
    actual: ScalingState | None,
    phase: str = "post",
) -> list[PlannedCall]:
    """The calls that make ``variant``'s autoscaling ``desired`` (None: deployer's policy
    removed)."""
    ids = _scaling_ids(app, variant)
    if desired is None:
        if actual is None or actual.policy(SCALING_POLICY) is None:
            return []
        state = VariantState(variant_name=variant, model_name="", config={}, scaling=actual)
        return release_scaling(app, state, phase, only_ours=True)
    calls: list[PlannedCall] = []
    if actual is None or (actual.min_capacity, actual.max_capacity) != (
        desired.min_capacity,
        desired.max_capacity,
    ):
        undo = (
            PlannedCall(
                "application-autoscaling",
                "register_scalable_target",
                {**ids, "MinCapacity": actual.min_capacity, "MaxCapacity": actual.max_capacity},
            )
            if actual
            else PlannedCall("application-autoscaling", "deregister_scalable_target", ids)
        )
        calls.append(
            PlannedCall(
                "application-autoscaling",
                "register_scalable_target",
                {**ids, "MinCapacity": desired.min_capacity, "MaxCapacity": desired.max_capacity},
                phase=phase,
                description=f"let Application Auto Scaling run variant {variant} on "
                f"{desired.min_capacity}-{desired.max_capacity} instances",
                undo=undo,
            )
        )
    ours = actual.policy(SCALING_POLICY) if actual else None
    if not _policy_matches(ours, desired):
        calls.append(
            PlannedCall(
                "application-autoscaling",
                "put_scaling_policy",
                {
                    "PolicyName": SCALING_POLICY,
                    **ids,
                    "PolicyType": "TargetTrackingScaling",
                    "TargetTrackingScalingPolicyConfiguration": _policy_body(desired),
                },
                phase=phase,
                description=f"track {desired.target:g} invocations per instance per minute",
                undo=_put_policy(ids, ours)
                if ours
                else PlannedCall(
                    "application-autoscaling",
                    "delete_scaling_policy",
                    {"PolicyName": SCALING_POLICY, **ids},
                ),
            )
        )
    return calls


# ------------------------------------------------------------------ traffic
def _weight(variant: VariantState) -> float:
    if variant.weight is not None:
        return variant.weight
    return float(variant.config.get("InitialVariantWeight", 1.0))


def _weights_call(
    app: str, new: dict[str, float], old: dict[str, float], description: str
) -> PlannedCall:
    def body(weights: dict[str, float]) -> dict[str, Any]:
        return {
            "EndpointName": app,
            "DesiredWeightsAndCapacities": [
                {"VariantName": name, "DesiredWeight": weight} for name, weight in weights.items()
            ],
        }

    return PlannedCall(
        "sagemaker",
        "update_endpoint_weights_and_capacities",
        body(new),
        phase="commit",
        description=description,
        undo=PlannedCall("sagemaker", "update_endpoint_weights_and_capacities", body(old)),
    )


def _wait(ctx: DeployContext, config_name: str | None) -> PlannedCall:
    return PlannedCall(
        "sagemaker",
        "wait_endpoint",
        {"EndpointName": ctx.app, "EndpointConfigName": config_name, "Timeout": ctx.timeout},
        phase="wait",
        description="poll describe_endpoint until InService (reads only)",
    )


def _ours(ctx: DeployContext) -> VariantState:
    """The variant a no-op deploy found serving exactly this request."""
    assert ctx.state is not None
    if ctx.spec.mode == "add":
        return next(v for v in ctx.state.variants if v.model_tags.get(TAG_HASH) == ctx.config_hash)
    return ctx.state.variants[0]


def _tune(ctx: DeployContext) -> list[PlannedCall]:
    """The endpoint serves this request already: bring its weight and autoscaling in line."""
    variant = _ours(ctx)
    calls: list[PlannedCall] = []
    if ctx.state is not None and (ctx.state.scaling_known or ctx.spec.autoscale):
        calls += reconcile_scaling(
            ctx.app, variant.variant_name, ctx.spec.autoscale, variant.scaling
        )
    if abs(_weight(variant) - ctx.spec.variant_weight) > 1e-9:
        calls.append(
            _weights_call(
                ctx.app,
                {variant.variant_name: ctx.spec.variant_weight},
                {variant.variant_name: _weight(variant)},
                f"reweight variant {variant.variant_name} from {_weight(variant):g} to "
                f"{ctx.spec.variant_weight:g} "
                "(no new variant: the model and its configuration are unchanged)",
            )
        )
        if ctx.wait:
            calls.append(_wait(ctx, ctx.state.config_name if ctx.state else None))
    return calls


def plan_shift(ctx: DeployContext) -> DeployPlan:
    """``--mode shift --weights A=0,B=1``: move traffic between the endpoint's variants."""
    state, app = ctx.state, ctx.app
    url = endpoint_url(ctx.region, app)
    if state is None:
        raise TargetError(
            f"no SageMaker endpoint named {app!r} in {ctx.region}",
            where=f"endpoint {app}",
            fix="--mode shift moves traffic between the variants of an existing endpoint",
        )
    if state.status != "InService":
        raise TargetError(
            f"endpoint {app!r} is {state.status}; its traffic cannot be shifted now",
            where=f"endpoint {app}",
            fix=f"wait, then retry (deployer status --target sagemaker --name {app})",
        )
    current = {v.variant_name: _weight(v) for v in state.variants}
    for name, _ in ctx.spec.weights:
        if name not in current:
            import difflib

            close = difflib.get_close_matches(name, list(current), n=1)
            raise UsageError(
                f"endpoint {app} has no variant {name!r}"
                + (f"; did you mean {close[0]!r}?" if close else ""),
                where="--weights",
                fix=f"use the variant names: {', '.join(current)}",
            )
    new = {**current, **dict(ctx.spec.weights)}
    if sum(new.values()) <= 0:
        raise UsageError(
            "every variant would get weight 0, so the endpoint would route nowhere",
            where="--weights",
            fix="give at least one variant a weight above 0",
        )
    changed = {n: w for n, w in ctx.spec.weights if abs(current[n] - w) > 1e-9}
    total = sum(new.values())
    shares = ", ".join(f"{n} {100 * w / total:.0f}%" for n, w in new.items())
    facts = {
        "mode": "shift",
        "region": ctx.region,
        "endpoint_url": url,
        "current_config": state.config_name,
        "weights": new,
        "traffic": shares,
        "wait": ctx.wait,
        "timeout": ctx.timeout,
    }
    if not changed:
        return DeployPlan(
            TARGET,
            app,
            "noop",
            (),
            summary=f"endpoint {app} already routes {shares}; nothing to do",
            facts=facts,
        )
    calls = [
        _weights_call(
            app,
            changed,
            {n: current[n] for n in changed},
            "set the variants' traffic weights (no new config, no new instances)",
        )
    ]
    if ctx.wait:
        calls.append(_wait(ctx, state.config_name))
    idle = [n for n, w in new.items() if w == 0]
    summary = f"shift traffic of endpoint {app}: {shares}"
    if idle:
        summary += (
            f" ({', '.join(idle)} keep(s) their instances with no traffic; `--mode replace` "
            "with the promoted model drops them)"
        )
    return DeployPlan(TARGET, app, "shift", tuple(calls), summary=summary, facts=facts)


def _deployment_config(spec: DeploySpec) -> dict[str, Any] | None:
    rollout = spec.rollout
    if rollout is None:
        return None
    routing: dict[str, Any] = {"Type": rollout.type, "WaitIntervalInSeconds": rollout.wait_seconds}
    if rollout.size is not None:
        routing["CanarySize" if rollout.type == "CANARY" else "LinearStepSize"] = {
            "Type": rollout.size_type,
            "Value": rollout.size,
        }
    policy: dict[str, Any] = {"TrafficRoutingConfiguration": routing}
    if rollout.bake_seconds is not None:
        policy["TerminationWaitInSeconds"] = rollout.bake_seconds
    config: dict[str, Any] = {"BlueGreenUpdatePolicy": policy}
    if spec.alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in spec.alarms]}
    return config


def _new_variant_name(ctx: DeployContext, action: str, model_name: str) -> str:
    """A rollout shifts traffic between the old and new fleet of *one* variant, so SageMaker
    wants the new config to keep the variant's name; otherwise the name is the model's."""
    state = ctx.state
    if action != "replace" or ctx.spec.rollout is None or state is None:
        return model_name
    if len(state.variants) != 1:
        raise UsageError(
            f"endpoint {ctx.app} has {len(state.variants)} variants; a --rollout replaces the "
            "fleet of one variant",
            where="--rollout",
            fix="promote one variant first (--mode shift), or replace without --rollout",
        )
    return state.variants[0].variant_name


def plan_deploy(ctx: DeployContext) -> DeployPlan:
    if ctx.spec.mode == "shift":
        return plan_shift(ctx)
    action = _decide(ctx)
    url = endpoint_url(ctx.region, ctx.app)
    facts: dict[str, Any] = {
        "mode": ctx.spec.mode,
        "config_hash": ctx.config_hash,
        "region": ctx.region,
        "image": ctx.image.uri,
        "role": ctx.role,
        "wait": ctx.wait,
        "timeout": ctx.timeout,
        "archive": ctx.spec.archive,
        "endpoint_url": url,
        "current_config": ctx.state.config_name if ctx.state else None,
    }
    if ctx.multi_model is not None:
        facts.update(ctx.multi_model.facts())
    if action == "noop":
        tune = _tune(ctx)
        if tune:
            what = sorted(
                {
                    "weight" if c.service == "sagemaker" else "autoscaling"
                    for c in tune
                    if c.phase != "wait"
                }
            )
            return DeployPlan(
                TARGET,
                ctx.app,
                "tune",
                tuple(tune),
                summary=(
                    f"endpoint {ctx.app} already serves this model and configuration; change its "
                    f"{' and '.join(what)} only"
                ),
                facts=facts,
            )
        return DeployPlan(
            TARGET,
            ctx.app,
            "noop",
            (),
            summary=(
                f"endpoint {ctx.app} already serves this model and configuration "
                f"(config hash {ctx.config_hash[:12]}); nothing to do"
            ),
            facts=facts,
        )

    tags = base_tags(ctx)
    model_name = resource_name(ctx.app, "model", ctx.suffix)
    config_name = resource_name(ctx.app, "config", ctx.suffix)
    variant_name = _new_variant_name(ctx, action, model_name)
    calls = image_calls(ctx.image, ctx.model)
    mcalls, model_data_url = model_calls(ctx, model_name, tags)
    calls += mcalls

    variants = [_variant(ctx.spec, model_name, variant_name)]
    if action == "add" and ctx.state is not None:
        variants = [_kept_variant(v) for v in ctx.state.variants] + variants
    config_params: dict[str, Any] = {
        "EndpointConfigName": config_name,
        "ProductionVariants": variants,
    }
    config_params.update(_endpoint_level(ctx, keep_old=action == "add"))
    # The config's hash tag says "this endpoint serves exactly this request". A config made by
    # --mode add also serves the older variants, so it must not carry the new variant's hash.
    config_tags = {k: v for k, v in tags.items() if not (action == "add" and k == TAG_HASH)}
    config_params["Tags"] = tag_list(config_tags)
    calls.append(
        PlannedCall(
            "sagemaker",
            "create_endpoint_config",
            config_params,
            description="describe how to serve it",
            undo=PlannedCall(
                "sagemaker", "delete_endpoint_config", {"EndpointConfigName": config_name}
            ),
        )
    )
    kept_scaling: ScalingState | None = None
    if action == "create":
        endpoint_tags = {k: v for k, v in tags.items() if k != TAG_HASH}
        calls.append(
            PlannedCall(
                "sagemaker",
                "create_endpoint",
                {
                    "EndpointName": ctx.app,
                    "EndpointConfigName": config_name,
                    "Tags": tag_list(endpoint_tags),
                },
                phase="commit",
                description="create the endpoint",
                undo=PlannedCall("sagemaker", "delete_endpoint", {"EndpointName": ctx.app}),
            )
        )
        if ctx.spec.rollout:
            facts["rollout"] = (
                "not used: a new endpoint takes all traffic at once (--rollout applies to updates)"
            )
    else:
        assert ctx.state is not None
        if action == "replace":
            for old in ctx.state.variants:
                same_fleet = (
                    old.variant_name == variant_name
                    and "ServerlessConfig" not in variants[-1]
                    and old.config.get("InstanceType") == variants[-1].get("InstanceType")
                )
                if same_fleet:
                    kept_scaling = old.scaling
                else:
                    calls += release_scaling(ctx.app, old, "prepare")
        update: dict[str, Any] = {"EndpointName": ctx.app, "EndpointConfigName": config_name}
        deployment = _deployment_config(ctx.spec)
        description = (
            "switch the endpoint to the new config "
            "(SageMaker keeps the old one serving if this fails)"
        )
        if deployment:
            update["DeploymentConfig"] = deployment
            rollout = ctx.spec.rollout
            assert rollout is not None
            description = (
                f"blue/green update, {rollout.type.lower().replace('_', '-')} traffic shifting"
                + (
                    f" watching alarm(s) {', '.join(ctx.spec.alarms)}: SageMaker rolls back if one "
                    "fires"
                    if ctx.spec.alarms
                    else ""
                )
            )
            facts["rollout"] = deployment
        calls.append(
            PlannedCall(
                "sagemaker", "update_endpoint", update, phase="commit", description=description
            )
        )
    post = reconcile_scaling(ctx.app, variant_name, ctx.spec.autoscale, kept_scaling)
    if post and not ctx.wait:
        raise UsageError(
            "--autoscale registers the new variant once the endpoint serves it, which --no-wait "
            "skips",
            where="--autoscale",
            fix="drop --no-wait (or run the same deploy again once it is InService)",
        )
    cleanup: list[PlannedCall] = []
    if ctx.state is not None and action in ("replace", "add") and not ctx.spec.archive:
        cleanup = cleanup_calls(ctx.state, models=action == "replace")
    if ctx.wait:
        calls.append(_wait(ctx, config_name))
        calls += post
        calls += cleanup
    else:
        facts["left_behind"] = [dict(c.params) for c in cleanup]
    facts.update(
        model_name=model_name,
        config_name=config_name,
        model_data_url=model_data_url,
        variants=[v["VariantName"] for v in variants],
    )
    if ctx.multi_model is not None:
        facts["model_data_url"] = ctx.multi_model.prefix
    if ctx.spec.autoscale:
        facts["autoscale"] = {
            "variant": variant_name,
            "min": ctx.spec.autoscale.min_capacity,
            "max": ctx.spec.autoscale.max_capacity,
            "target": ctx.spec.autoscale.target,
        }
    verb = {"create": "create", "replace": "replace the model of", "add": "add a variant to"}[
        action
    ]
    summary = (
        f"{verb} endpoint {ctx.app}: model {model_name}, config {config_name}, "
        f"image {ctx.image.uri}"
    )
    if ctx.multi_model is not None:
        summary += f" (multi-model: every model under {ctx.multi_model.prefix})"
    if ctx.state is None and ctx.spec.mode != "create":
        summary += f" (endpoint does not exist yet, so --mode {ctx.spec.mode} creates it)"
    return DeployPlan(TARGET, ctx.app, action, tuple(calls), summary=summary, facts=facts)


def plan_delete(
    state: EndpointState,
    region: str,
    *,
    archive: bool,
    wait: bool = True,
    timeout: float | None = None,
) -> DeployPlan:
    """Deregister autoscaling, delete the endpoint, then (unless ``archive``) its config, models
    and model archives."""
    calls: list[PlannedCall] = []
    for variant in state.variants:
        calls += release_scaling(state.name, variant, "prepare")
    calls.append(
        PlannedCall(
            "sagemaker",
            "delete_endpoint",
            {"EndpointName": state.name},
            phase="commit",
            description="delete the endpoint",
        )
    )
    if wait:
        calls.append(
            PlannedCall(
                "sagemaker",
                "wait_endpoint_deleted",
                {"EndpointName": state.name, "Timeout": timeout},
                phase="wait",
                description="poll describe_endpoint until it is gone (reads only)",
            )
        )
    if not archive:
        calls += cleanup_calls(state, models=True)
    return DeployPlan(
        TARGET,
        state.name,
        "delete",
        tuple(calls),
        summary=f"delete endpoint {state.name}"
        + (" (keeping models and configs)" if archive else ""),
        facts={
            "region": region,
            "archive": archive,
            "config": state.config_name,
            "models": [v.model_name for v in state.variants],
        },
    )
