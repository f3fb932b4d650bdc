"""What SageMaker currently has for an endpoint, read once at plan time into frozen records.

Planning compares this with the request (idempotence, mode rules); execution never re-reads
it except to wait. Reads only: ``describe_*`` and ``list_tags``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deployer.errors import TargetError
from deployer.targets.sagemaker.client import Aws, aws_errors, is_not_found

TAG_PREFIX = "deployer:"
TAG_VERSION = "deployer:version"
TAG_APP = "deployer:app"
TAG_HASH = "deployer:config-hash"
TAG_MODEL_UUID = "deployer:model-uuid"
TAG_RUN_ID = "deployer:run-id"
TAG_MODEL_DATA = "deployer:model-data"


@dataclass(frozen=True)
class VariantState:
    variant_name: str
    model_name: str
    config: Mapping[str, Any]
    """The ProductionVariant exactly as the endpoint config holds it (reused by --mode add)."""
    model_tags: Mapping[str, str] = field(default_factory=dict)
    model_data_url: str | None = None
    model_exists: bool = True


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
    config = _describe(aws, "describe_endpoint_config", f"endpoint config {config_name}",
                       EndpointConfigName=config_name) or {}
    variants = []
    for variant in config.get("ProductionVariants", []) or []:
        model_name = str(variant.get("ModelName", ""))
        model = _describe(aws, "describe_model", f"model {model_name}", ModelName=model_name)
        model_tags = list_tags(aws, model["ModelArn"]) if model and model.get("ModelArn") else {}
        container = (model or {}).get("PrimaryContainer") or {}
        variants.append(
            VariantState(
                variant_name=str(variant.get("VariantName", "")),
                model_name=model_name,
                config=dict(variant),
                model_tags=model_tags,
                model_data_url=container.get("ModelDataUrl"),
                model_exists=model is not None,
            )
        )
    return EndpointState(
        name=name,
        arn=str(endpoint.get("EndpointArn", "")),
        status=str(endpoint.get("EndpointStatus", "")),
        config_name=config_name,
        config_tags=list_tags(aws, config["EndpointConfigArn"]) if config.get("EndpointConfigArn") else {},
        endpoint_tags=list_tags(aws, endpoint["EndpointArn"]) if endpoint.get("EndpointArn") else {},
        variants=tuple(variants),
        async_config=config.get("AsyncInferenceConfig"),
        data_capture=config.get("DataCaptureConfig"),
        failure_reason=endpoint.get("FailureReason"),
        created=str(endpoint.get("CreationTime")) if endpoint.get("CreationTime") else None,
        modified=str(endpoint.get("LastModifiedTime")) if endpoint.get("LastModifiedTime") else None,
    )
