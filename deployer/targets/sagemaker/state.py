"""What SageMaker currently has for an endpoint, read once at plan time into frozen records.

Planning compares this with the request (idempotence, mode rules); execution never re-reads
it except to wait. Reads only: ``describe_*`` and ``list_tags``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from deployer.errors import TargetError
from deployer.targets.sagemaker.client import Aws, aws_errors, error_code, is_not_found

TAG_PREFIX = "deployer:"
TAG_VERSION = "deployer:version"
TAG_APP = "deployer:app"
TAG_HASH = "deployer:config-hash"
TAG_MODEL_UUID = "deployer:model-uuid"
TAG_RUN_ID = "deployer:run-id"
TAG_MODEL_DATA = "deployer:model-data"

SCALING_NAMESPACE = "sagemaker"
SCALING_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
#: The target-tracking policy deployer puts on a variant (others' policies are left alone).
SCALING_POLICY = "deployer-invocations-per-instance"


def scaling_resource(endpoint: str, variant: str) -> str:
    """Application Auto Scaling's ResourceId of a production variant."""
    return f"endpoint/{endpoint}/variant/{variant}"


@dataclass(frozen=True)
class ScalingState:
    """A variant registered with Application Auto Scaling, and its scaling policies."""

    resource_id: str
    min_capacity: int
    max_capacity: int
    policies: tuple[Mapping[str, Any], ...] = ()
    """Each as PutScalingPolicy takes it: PolicyName, PolicyType and its configuration."""

    def policy(self, name: str) -> Mapping[str, Any] | None:
        return next((p for p in self.policies if p.get("PolicyName") == name), None)


@dataclass(frozen=True)
class VariantState:
    variant_name: str
    model_name: str
    config: Mapping[str, Any]
    """The ProductionVariant exactly as the endpoint config holds it (reused by --mode add)."""
    model_tags: Mapping[str, str] = field(default_factory=dict)
    model_data_url: str | None = None
    model_exists: bool = True
    weight: float | None = None
    """The weight the endpoint routes with now (DescribeEndpoint's DesiredWeight): it differs
    from the config's InitialVariantWeight after UpdateEndpointWeightsAndCapacities."""
    instance_count: int | None = None
    scaling: ScalingState | None = None


@dataclass(frozen=True)
class EndpointState:
    name: str
    arn: str
    status: str
    config_name: str
    config_tags: Mapping[str, str]
    endpoint_tags: Mapping[str, str]
    variants: tuple[VariantState, ...]
    async_config: Mapping[str, Any] | None = None
    data_capture: Mapping[str, Any] | None = None
    failure_reason: str | None = None
    created: str | None = None
    modified: str | None = None
    scaling_known: bool = True
    """False when Application Auto Scaling could not be read (no permission)."""

    @property
    def config_hash(self) -> str | None:
        return self.config_tags.get(TAG_HASH)

    @property
    def managed(self) -> bool:
        return TAG_VERSION in self.endpoint_tags or TAG_VERSION in self.config_tags


def tags_dict(tags: Any) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value", "")) for t in tags or ()}


def list_tags(aws: Aws, arn: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    token = None
    while True:
        kwargs: dict[str, Any] = {"ResourceArn": arn}
        if token:
            kwargs["NextToken"] = token
        page = aws.call("sagemaker", "list_tags", where=arn, **kwargs)
        tags.update(tags_dict(page.get("Tags")))
        token = page.get("NextToken")
        if not token:
            return tags


def _describe(aws: Aws, operation: str, where: str, **params: Any) -> dict[str, Any] | None:
    """describe_* that returns None for "not found" instead of raising."""
    method = getattr(aws.client("sagemaker"), operation)
    try:
        with aws_errors(f"sagemaker:{operation}", where=where):
            return dict(method(**params))
    except TargetError as exc:
        if exc.__cause__ is not None and is_not_found(exc.__cause__):
            return None
        raise


def describe_endpoint(aws: Aws, name: str) -> dict[str, Any] | None:
    return _describe(aws, "describe_endpoint", f"endpoint {name}", EndpointName=name)


def read_endpoint(aws: Aws, name: str) -> EndpointState | None:
    """The endpoint ``name`` with its config, variants, models and tags; None if absent."""
    endpoint = describe_endpoint(aws, name)
    if endpoint is None:
        return None
    config_name = str(endpoint.get("EndpointConfigName", ""))
    live = {str(v.get("VariantName")): v for v in endpoint.get("ProductionVariants", []) or []}
    config = (
        _describe(
            aws,
            "describe_endpoint_config",
            f"endpoint config {config_name}",
            EndpointConfigName=config_name,
        )
        or {}
    )
    variants = []
    for variant in config.get("ProductionVariants", []) or []:
        model_name = str(variant.get("ModelName", ""))
        model = _describe(aws, "describe_model", f"model {model_name}", ModelName=model_name)
        model_tags = list_tags(aws, model["ModelArn"]) if model and model.get("ModelArn") else {}
        container = (model or {}).get("PrimaryContainer") or {}
        now = live.get(str(variant.get("VariantName", ""))) or {}
        weight = now.get(
            "DesiredWeight", now.get("CurrentWeight", variant.get("InitialVariantWeight"))
        )
        count = now.get(
            "DesiredInstanceCount",
            now.get("CurrentInstanceCount", variant.get("InitialInstanceCount")),
        )
        variants.append(
            VariantState(
                variant_name=str(variant.get("VariantName", "")),
                model_name=model_name,
                config=dict(variant),
                model_tags=model_tags,
                model_data_url=container.get("ModelDataUrl"),
                model_exists=model is not None,
                weight=float(weight) if weight is not None else None,
                instance_count=int(count) if count is not None else None,
            )
        )
    scaling, known = read_scaling(aws, name, [v.variant_name for v in variants])
    variants = [replace(v, scaling=scaling.get(v.variant_name)) for v in variants]
    return EndpointState(
        name=name,
        arn=str(endpoint.get("EndpointArn", "")),
        status=str(endpoint.get("EndpointStatus", "")),
        config_name=config_name,
        config_tags=list_tags(aws, config["EndpointConfigArn"])
        if config.get("EndpointConfigArn")
        else {},
        endpoint_tags=list_tags(aws, endpoint["EndpointArn"])
        if endpoint.get("EndpointArn")
        else {},
        variants=tuple(variants),
        async_config=config.get("AsyncInferenceConfig"),
        data_capture=config.get("DataCaptureConfig"),
        failure_reason=endpoint.get("FailureReason"),
        created=str(endpoint.get("CreationTime")) if endpoint.get("CreationTime") else None,
        modified=str(endpoint.get("LastModifiedTime"))
        if endpoint.get("LastModifiedTime")
        else None,
        scaling_known=known,
    )


def read_scaling(
    aws: Aws, endpoint: str, variants: list[str]
) -> tuple[dict[str, ScalingState], bool]:
    """The variants of ``endpoint`` registered with Application Auto Scaling, with their policies.

    Returns (variant -> state, known). Without permission to read Application Auto Scaling,
    ``known`` is False and the planner leaves scaling alone (it cannot tell what is there).
    """
    if not variants:
        return {}, True
    ids = {scaling_resource(endpoint, v): v for v in variants}
    try:
        page = aws.call(
            "application-autoscaling",
            "describe_scalable_targets",
            where=f"endpoint {endpoint}",
            ServiceNamespace=SCALING_NAMESPACE,
            ResourceIds=list(ids),
            ScalableDimension=SCALING_DIMENSION,
        )
    except TargetError as exc:
        code = error_code(exc.__cause__) if exc.__cause__ is not None else ""
        if code in ("AccessDenied", "AccessDeniedException", "UnrecognizedClientException"):
            return {}, False
        raise
    out: dict[str, ScalingState] = {}
    for target in page.get("ScalableTargets", []) or []:
        rid = str(target.get("ResourceId"))
        if rid not in ids:
            continue
        policies = (
            aws.call(
                "application-autoscaling",
                "describe_scaling_policies",
                where=rid,
                ServiceNamespace=SCALING_NAMESPACE,
                ResourceId=rid,
                ScalableDimension=SCALING_DIMENSION,
            ).get("ScalingPolicies", [])
            or []
        )
        kept = []
        for policy in policies:
            if policy.get("ResourceId") != rid:  # some servers match ResourceId as a prefix
                continue
            entry = {"PolicyName": policy["PolicyName"], "PolicyType": policy["PolicyType"]}
            for key in (
                "TargetTrackingScalingPolicyConfiguration",
                "StepScalingPolicyConfiguration",
            ):
                if policy.get(key):
                    entry[key] = _plain(policy[key])
            kept.append(entry)
        out[ids[rid]] = ScalingState(
            rid, int(target.get("MinCapacity", 0)), int(target.get("MaxCapacity", 0)), tuple(kept)
        )
    return out, True


def _plain(value: Any) -> Any:
    """A describe_* structure as plain JSON-able data (policies are re-sent by undo steps)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if k not in ("Alarms",)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
