"""``SageMakerTarget``: the ``sagemaker`` entry point of the ``deployer.targets`` group.

This class is the seam between the generic CLI and the SageMaker modules: it declares its
options as data (read without instantiating it), gathers what planning needs by *reading*
AWS (caller identity, the endpoint's current state, bucket/repository existence), hands that
to the pure planner, and runs plans with the executor. boto3 is imported only when a method
actually talks to AWS.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deployer import __version__
from deployer.errors import TargetError, UsageError
from deployer.targets.base import (
    BatchRequest,
    DeployPlan,
    DeployRequest,
    DeployResult,
    EndpointStatus,
    OptionSpec,
)
from deployer.targets.sagemaker.names import unique_suffix, validate_name
from deployer.targets.sagemaker.plan import (
    DeployContext,
    ImagePlan,
    ModelRef,
    endpoint_url,
    plan_delete,
    plan_deploy,
)
from deployer.targets.sagemaker.spec import DeploySpec, config_hash, is_ecr_image, parse_deploy
from deployer.targets.sagemaker.state import (
    TAG_HASH,
    TAG_MODEL_UUID,
    TAG_RUN_ID,
    TAG_VERSION,
    list_tags,
    read_endpoint,
)

log = logging.getLogger("deployer")

#: How long deploy waits for InService when --timeout is not given (real endpoints take 5-15 min).
DEFAULT_TIMEOUT = 3600.0

_ALL = ("deploy", "status", "list", "delete", "predict", "batch")

OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("region", "AWS region (default: the AWS SDK's: AWS_DEFAULT_REGION, profile...).",
               commands=_ALL, connection=True),
    OptionSpec("profile", "AWS profile from ~/.aws/config.", commands=_ALL, connection=True),
    OptionSpec("mode", "create: fail if the endpoint exists; replace: swap in the new model; "
               "add: add the model as a new variant.", type="choice", choices=("create", "replace", "add"),
               default="create"),
    OptionSpec("instance_type", "SageMaker instance type.", default="ml.m5.large",
               commands=("deploy", "batch")),
    OptionSpec("instance_count", "Number of instances.", type="int", default=1, commands=("deploy", "batch")),
    OptionSpec("execution_role_arn", "IAM role SageMaker runs the model with (default: the caller's role).",
               metavar="ARN", commands=("deploy", "batch")),
    OptionSpec("bucket", "S3 bucket for model.tar.gz (default: deployer-sagemaker-REGION-ACCOUNT).",
               commands=("deploy", "batch")),
    OptionSpec("model_in_image", "The image already contains the model: upload nothing to S3.",
               type="bool", default=False, commands=("deploy", "batch")),
    OptionSpec("vpc_config", "JSON file with SecurityGroupIds and Subnets for the model.", type="path",
               metavar="FILE"),
    OptionSpec("serverless", "Serverless endpoint: memory=MB,concurrency=N.", metavar="memory=MB,concurrency=N"),
    OptionSpec("async_output", "Asynchronous inference: S3 prefix for results.", metavar="S3URI"),
    OptionSpec("data_capture", "Capture requests/responses to S3: s3://bucket/prefix[,PERCENT].",
               metavar="S3URI[,PCT]"),
    OptionSpec("env", "Environment variable for the container (repeatable).", multiple=True, metavar="K=V",
               commands=("deploy", "batch")),
    OptionSpec("tags", "Tag for every resource created (repeatable).", multiple=True, metavar="K=V",
               commands=("deploy", "batch")),
    OptionSpec("archive", "Keep replaced/deleted models, configs and model archives.", type="bool",
               default=False, commands=("deploy", "delete", "batch")),
    OptionSpec("variant_weight", "Traffic weight of the new variant (--mode add).", type="float", default=1.0),
    OptionSpec("repository", "ECR repository for images built from -m (default: deployer/<name>).",
               commands=("deploy", "batch")),
    OptionSpec("registry_override", "Push image bytes to this registry host instead of ECR's "
               "(ECR API calls still go to AWS; for mirrors and tests).", metavar="HOST",
               commands=("deploy", "batch")),
    OptionSpec("base_image", "Base image for images built from -m (see `deployer build --base-image`).",
               metavar="IMAGE", commands=("deploy", "batch")),
    OptionSpec("registry_credentials_arn", "Lambda ARN giving SageMaker credentials for a private "
               "(non-ECR) registry.", metavar="ARN"),
    OptionSpec("parquet", "Add pyarrow to images built from -m so they also take Parquet bodies "
               "(automatic for batch jobs whose --content-type is Parquet).", type="bool", default=False,
               commands=("deploy", "batch")),
    OptionSpec("content_type", "Content type of the batch input.", default="application/json",
               commands=("batch",)),
    OptionSpec("split_type", "How to split batch input files.", type="choice",
               choices=("None", "Line", "RecordIO", "TFRecord"), default="None", commands=("batch",)),
)


class SageMakerTarget:
    """Deploy to Amazon SageMaker real-time, serverless or async endpoints; batch transform."""

    name = "sagemaker"
    options = OPTIONS

    def __init__(self, region: str | None = None, profile: str | None = None,
                 poll_interval: float | None = None) -> None:
        self._region = region
        self._profile = profile
        self._aws: Any = None
        env_poll = os.environ.get("DEPLOYER_SAGEMAKER_POLL_INTERVAL")
        self.poll_interval = float(poll_interval if poll_interval is not None else env_poll or 10.0)

    @property
    def aws(self) -> Any:
        if self._aws is None:
            from deployer.targets.sagemaker.client import Aws

            self._aws = Aws(self._region, self._profile)
        return self._aws

    # ------------------------------------------------------------------ planning
    def _model_ref(self, uri: str | None) -> ModelRef:
        if not uri:
            return ModelRef()
        from deployer.model import load_model
        from deployer.targets.sagemaker.artifact import model_digest

        loaded = load_model(uri)
        for warning in loaded.warnings:
            log.warning("%s", warning)
        return ModelRef(uri=uri, path=str(loaded.path), digest=model_digest(Path(loaded.path)),
                        model_uuid=loaded.mlmodel.model_uuid, run_id=loaded.mlmodel.run_id)

    def _image_plan(self, request_image: str | None, spec: DeploySpec | Any, model: ModelRef,
                    app: str) -> ImagePlan:
        if request_image:
            return ImagePlan(uri=request_image, ecr=is_ecr_image(request_image))
        if not model.uri:
            raise UsageError("nothing to deploy", where="deploy",
                             fix="pass -m MODEL (deployer builds the image) or --image-uri IMAGE")
        from deployer.targets.sagemaker.images import plan_image

        return plan_image(self.aws, model, repository=spec.repository, app=app,
                          registry_override=spec.registry_override, base_image=spec.base_image,
                          parquet=spec.parquet)

    def _bucket(self, spec: Any, model: ModelRef, image: ImagePlan) -> tuple[str | None, bool]:
        """Where model.tar.gz goes, and whether that bucket must be created first."""
        if spec.model_in_image or not model.path or (image.build and not spec.bucket):
            return None, False
        if spec.bucket:
            return spec.bucket, False
        from deployer.targets.sagemaker.client import is_not_found

        bucket = f"deployer-sagemaker-{self.aws.region}-{self.aws.account_id()}"
        try:
            self.aws.call("s3", "head_bucket", where=f"s3://{bucket}", Bucket=bucket)
        except TargetError as exc:
            if exc.__cause__ is not None and is_not_found(exc.__cause__):
                return bucket, True
            raise
        return bucket, False

    def plan(self, request: DeployRequest) -> DeployPlan:
        app = validate_name(request.name)
        spec = parse_deploy(request.options)
        if not request.model_uri and not request.image_uri:
            raise UsageError("nothing to deploy", where="deploy",
                             fix="pass -m MODEL (deployer builds the image) or --image-uri IMAGE")
        timeout = DEFAULT_TIMEOUT if request.timeout is None else request.timeout
        if timeout <= 0:
            raise UsageError(f"--timeout {timeout:g} must be positive", where="--timeout",
                             fix="pass a number of seconds, e.g. --timeout 1800")
        model = self._model_ref(request.model_uri)
        image = self._image_plan(request.image_uri, spec, model, app)
        role = spec.execution_role_arn or self.aws.resolve_execution_role()
        bucket, create_bucket = self._bucket(spec, model, image)
        digest = config_hash(spec, image=image.uri, model_digest=model.digest, role=role)
        state = read_endpoint(self.aws, app)
        ctx = DeployContext(
            app=app, region=self.aws.region, spec=spec, role=role, image=image, model=model,
            bucket=bucket, create_bucket=create_bucket, state=state, config_hash=digest,
            suffix=unique_suffix(digest), version=__version__, wait=request.wait, timeout=timeout,
        )
        return plan_deploy(ctx)

    def _executor(self) -> Any:
        from deployer.targets.sagemaker.apply import Executor
        from deployer.targets.sagemaker.images import image_handlers

        return Executor(self.aws, poll_interval=self.poll_interval, handlers=image_handlers(self.aws))

    def apply(self, plan: DeployPlan) -> DeployResult:
        if plan.action == "noop":
            log.info("%s", plan.summary)
            return DeployResult(self.name, plan.name, "noop", "InService",
                                endpoint_url=plan.facts.get("endpoint_url"), details=dict(plan.facts))
        return self._executor().run(plan)

    # ------------------------------------------------------------------ inspecting
    def _require(self, name: str) -> Any:
        state = read_endpoint(self.aws, validate_name(name))
        if state is None:
            raise TargetError(f"no SageMaker endpoint named {name!r} in {self.aws.region}",
                              where=f"endpoint {name}",
                              fix="check the name and --region (deployer list --target sagemaker)")
        return state

    def status(self, name: str) -> EndpointStatus:
        state = self._require(name)
        variants = []
        for v in state.variants:
            cfg = v.config
            entry: dict[str, Any] = {"variant": v.variant_name, "model": v.model_name,
                                     "weight": cfg.get("InitialVariantWeight")}
            if cfg.get("ServerlessConfig"):
                entry["serverless"] = cfg["ServerlessConfig"]
            else:
                entry.update(instance_type=cfg.get("InstanceType"), instance_count=cfg.get("InitialInstanceCount"))
            entry.update(model_uuid=v.model_tags.get(TAG_MODEL_UUID), run_id=v.model_tags.get(TAG_RUN_ID),
                         model_data=v.model_data_url)
            variants.append(entry)
        details = {
            "region": self.aws.region, "config": state.config_name, "variants": variants,
            "managed_by_deployer": state.managed, "deployer_version": state.endpoint_tags.get(TAG_VERSION),
            "config_hash": state.config_tags.get(TAG_HASH), "failure_reason": state.failure_reason,
            "created": state.created, "modified": state.modified,
            "async": bool(state.async_config), "data_capture": bool(state.data_capture),
            "endpoint_url": endpoint_url(self.aws.region, state.name),
        }
        return EndpointStatus(self.name, state.name, state.status, details)

    def list(self) -> Sequence[EndpointStatus]:
        out: list[EndpointStatus] = []
        token = None
        while True:
            kwargs: dict[str, Any] = {"MaxResults": 100}
            if token:
                kwargs["NextToken"] = token
            page = self.aws.call("sagemaker", "list_endpoints", **kwargs)
            for ep in page.get("Endpoints", []):
                tags = list_tags(self.aws, ep["EndpointArn"])
                out.append(EndpointStatus(self.name, ep["EndpointName"], ep.get("EndpointStatus", ""), {
                    "managed_by_deployer": TAG_VERSION in tags,
                    "deployer_version": tags.get(TAG_VERSION),
                    "created": str(ep.get("CreationTime")), "modified": str(ep.get("LastModifiedTime")),
                }))
            token = page.get("NextToken")
            if not token:
                return sorted(out, key=lambda s: s.name)

    # ------------------------------------------------------------------ changing
    def plan_delete(self, name: str, archive: bool = False) -> DeployPlan:
        return plan_delete(self._require(name), self.aws.region, archive=bool(archive))

    def delete(self, name: str, archive: bool = False) -> DeployResult:
        plan = self.plan_delete(name, archive=archive)
        result = self._executor().run(plan)
        return DeployResult(self.name, name, "delete", "deleted", details=result.details)

    def predict(self, name: str, body: bytes, content_type: str) -> bytes:
        """One request through sagemaker-runtime ``invoke_endpoint``; the response body."""
        app = validate_name(name)
        response = self.aws.call("sagemaker-runtime", "invoke_endpoint", where=f"endpoint {app}",
                                 EndpointName=app, Body=body, ContentType=content_type,
                                 Accept="application/json")
        return bytes(response["Body"].read())

    # ------------------------------------------------------------------ batch
    def plan_batch(self, request: BatchRequest) -> DeployPlan:
        from deployer.targets.sagemaker.batch import plan_batch_job

        return plan_batch_job(self, request)

    def stop_batch(self, job_name: str) -> DeployResult:
        from deployer.targets.sagemaker.batch import stop_job

        return stop_job(self, job_name)
