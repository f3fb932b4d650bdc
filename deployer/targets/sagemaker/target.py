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
from collections.abc import Iterator, Sequence
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
    TAG_PREFIX,
    TAG_RUN_ID,
    TAG_VERSION,
    list_tags,
    read_endpoint,
)

log = logging.getLogger("deployer")

#: How long deploy waits for InService when --timeout is not given (real endpoints take 5-15 min).
DEFAULT_TIMEOUT = 3600.0

_ALL = ("deploy", "status", "list", "delete", "predict", "batch", "models")

OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "region",
        "AWS region (default: the AWS SDK's: AWS_DEFAULT_REGION, profile...).",
        commands=_ALL,
        connection=True,
    ),
    OptionSpec("profile", "AWS profile from ~/.aws/config.", commands=_ALL, connection=True),
    OptionSpec(
        "mode",
        "create: fail if the endpoint exists; replace: swap in the new model; "
        "add: add the model as a new variant; shift: move traffic between variants (--weights).",
        type="choice",
        choices=("create", "replace", "add", "shift"),
        default="create",
    ),
    OptionSpec(
        "instance_type",
        "SageMaker instance type.",
        default="ml.m5.large",
        commands=("deploy", "batch"),
    ),
    OptionSpec(
        "instance_count",
        "Number of instances.",
        type="int",
        default=1,
        commands=("deploy", "batch"),
    ),
    OptionSpec(
        "execution_role_arn",
        "IAM role SageMaker runs the model with (default: the caller's role).",
        metavar="ARN",
        commands=("deploy", "batch"),
    ),
    OptionSpec(
        "bucket",
        "S3 bucket for model.tar.gz (default: deployer-sagemaker-REGION-ACCOUNT).",
        commands=("deploy", "batch"),
    ),
    OptionSpec(
        "model_in_image",
        "The image already contains the model: upload nothing to S3.",
        type="bool",
        default=False,
        commands=("deploy", "batch"),
    ),
    OptionSpec(
        "vpc_config",
        "JSON file with SecurityGroupIds and Subnets for the model.",
        type="path",
        metavar="FILE",
    ),
    OptionSpec(
        "serverless",
        "Serverless endpoint: memory=MB,concurrency=N.",
        metavar="memory=MB,concurrency=N",
    ),
    OptionSpec("async_output", "Asynchronous inference: S3 prefix for results.", metavar="S3URI"),
    OptionSpec(
        "data_capture",
        "Capture requests/responses to S3: s3://bucket/prefix[,PERCENT].",
        metavar="S3URI[,PCT]",
    ),
    OptionSpec(
        "env",
        "Environment variable for the container (repeatable).",
        multiple=True,
        metavar="K=V",
        commands=("deploy", "batch"),
    ),
    OptionSpec(
        "tags",
        "Tag for every resource created (repeatable).",
        multiple=True,
        metavar="K=V",
        commands=("deploy", "batch"),
    ),
    OptionSpec(
        "archive",
        "Keep replaced/deleted models, configs and model archives.",
        type="bool",
        default=False,
        commands=("deploy", "delete", "batch"),
    ),
    OptionSpec(
        "variant_weight",
        "Traffic weight of the new variant (--mode add).",
        type="float",
        default=1.0,
    ),
    OptionSpec(
        "repository",
        "ECR repository for images built from -m (default: deployer/<name>).",
        commands=("deploy", "batch"),
    ),
    OptionSpec(
        "registry_override",
        "Push image bytes to this registry host instead of ECR's "
        "(ECR API calls still go to AWS; for mirrors and tests).",
        metavar="HOST",
        commands=("deploy", "batch"),
    ),
    OptionSpec(
        "registry_credentials_arn",
        "Lambda ARN giving SageMaker credentials for a private (non-ECR) registry.",
        metavar="ARN",
        commands=("deploy", "batch"),
    ),
    OptionSpec(
        "subnet",
        "VPC subnet for the model's containers (repeatable; with --security-group; "
        "instead of --vpc-config). Needed for images outside ECR.",
        multiple=True,
        metavar="SUBNET_ID",
        commands=("deploy", "batch"),
    ),
    OptionSpec(
        "security_group",
        "VPC security group for the model's containers (repeatable; with --subnet).",
        multiple=True,
        metavar="SG_ID",
        commands=("deploy", "batch"),
    ),
    OptionSpec(
        "weights",
        "--mode shift: new traffic weights of existing variants, e.g. v1=0,v2=1 "
        "(variant names: deployer status).",
        metavar="VARIANT=W,...",
    ),
    OptionSpec(
        "rollout",
        "How an update shifts traffic (blue/green): canary:SIZE:WAIT, linear:SIZE:WAIT or "
        "all-at-once, optional :BAKE; SIZE 10% or an instance count, e.g. canary:10%:600s.",
        metavar="TYPE[:SIZE:WAIT][:BAKE]",
    ),
    OptionSpec(
        "alarm",
        "CloudWatch alarm that rolls a --rollout back when it fires (repeatable; needs "
        "--auto-rollback).",
        multiple=True,
        metavar="NAME",
    ),
    OptionSpec(
        "auto_rollback",
        "Let SageMaker roll the update back when an --alarm fires.",
        type="bool",
        default=False,
    ),
    OptionSpec(
        "autoscale",
        "Application Auto Scaling of the variant: MIN:MAX:TARGET instances and invocations "
        "per instance per minute, e.g. 1:4:100.",
        metavar="MIN:MAX:TARGET",
    ),
    OptionSpec(
        "async_sns_success", "Asynchronous inference: SNS topic told of each result.", metavar="ARN"
    ),
    OptionSpec(
        "async_sns_error", "Asynchronous inference: SNS topic told of each failure.", metavar="ARN"
    ),
    OptionSpec(
        "async_max_concurrency",
        "Asynchronous inference: concurrent requests per instance (1-1000).",
        type="int",
        metavar="N",
    ),
    OptionSpec(
        "startup_health_timeout",
        "Seconds the container may take to pass /ping after start (60-3600; large models).",
        type="int",
        metavar="SECONDS",
    ),
    OptionSpec(
        "model_download_timeout",
        "Seconds SageMaker may take to download and unpack model.tar.gz (60-3600; large models).",
        type="int",
        metavar="SECONDS",
    ),
    OptionSpec(
        "multi_model",
        "A multi-model endpoint: one image (built from -m, whose environment every model "
        "shares) serving every model.tar.gz under --model-prefix (deployer models add).",
        type="bool",
        default=False,
    ),
    OptionSpec(
        "model_prefix",
        "--multi-model: the S3 prefix the endpoint loads its models from.",
        metavar="S3URI",
    ),
    OptionSpec(
        "target_model",
        "Multi-model endpoints: the model to invoke (NAME or NAME.tar.gz under the prefix).",
        metavar="NAME",
        commands=("predict",),
    ),
    OptionSpec(
        "async_input",
        "Asynchronous endpoints: S3 prefix the request is uploaded to (default: the "
        "endpoint's output bucket, under deployer-async-inputs/).",
        metavar="S3URI",
        commands=("predict",),
    ),
    OptionSpec(
        "async_timeout",
        "Asynchronous endpoints: seconds to wait for the result.",
        type="float",
        default=300.0,
        metavar="SECONDS",
        commands=("predict",),
    ),
    OptionSpec(
        "content_type",
        "Content type of the batch input.",
        default="application/json",
        commands=("batch",),
    ),
    OptionSpec(
        "split_type",
        "How to split batch input files.",
        type="choice",
        choices=("None", "Line", "RecordIO", "TFRecord"),
        default="None",
        commands=("batch",),
    ),
    OptionSpec(
        "accept",
        "Content type the batch job asks the model for.",
        default="application/json",
        commands=("batch",),
    ),
    OptionSpec(
        "max_payload_mb",
        "Largest request a batch job sends, in MB (0-100).",
        type="int",
        metavar="MB",
        commands=("batch",),
    ),
    OptionSpec(
        "compression",
        "Compression of the batch input files.",
        type="choice",
        choices=("None", "Gzip"),
        default="None",
        commands=("batch",),
    ),
    OptionSpec(
        "assemble_with",
        "How results are put together per file (default: Line with --split-type Line).",
        type="choice",
        choices=("Line", "None"),
        commands=("batch",),
    ),
    OptionSpec(
        "input_filter",
        "JSONPath selecting what of each input record is sent, e.g. '$[1:]'.",
        metavar="JSONPATH",
        commands=("batch",),
    ),
    OptionSpec(
        "output_filter",
        "JSONPath selecting what of each joined result is written.",
        metavar="JSONPATH",
        commands=("batch",),
    ),
    OptionSpec(
        "join_source",
        "Input: write each input record next to its prediction.",
        type="choice",
        choices=("Input", "None"),
        commands=("batch",),
    ),
)


class SageMakerTarget:
    """Deploy to Amazon SageMaker real-time, serverless or async endpoints; batch transform."""

    name = "sagemaker"
    options = OPTIONS

    def __init__(
        self,
        region: str | None = None,
        profile: str | None = None,
        poll_interval: float | None = None,
    ) -> None:
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
        from deployer.intake import load_model
        from deployer.model.files import model_digest
        from deployer.model.provenance import model_provenance

        loaded = load_model(uri)
        for warning in loaded.warnings:
            log.warning("%s", warning)
        digest = model_digest(Path(loaded.path))
        return ModelRef(
            uri=uri,
            path=str(loaded.path),
            digest=digest,
            model_uuid=loaded.mlmodel.model_uuid,
            run_id=loaded.mlmodel.run_id,
            provenance=model_provenance(uri, Path(loaded.path), digest=digest),
        )

    def _image_plan(
        self,
        request_image: str | None,
        spec: DeploySpec | Any,
        model: ModelRef,
        app: str,
        build: Any = None,
    ) -> ImagePlan:
        if request_image:
            return ImagePlan(uri=request_image, ecr=is_ecr_image(request_image))
        if not model.uri:
            raise UsageError(
                "nothing to deploy",
                where="deploy",
                fix="pass -m MODEL (deployer builds the image) or --image-uri IMAGE",
            )
        from deployer.targets.sagemaker.images import plan_image

        return plan_image(
            self.aws,
            model,
            repository=spec.repository,
            app=app,
            registry_override=spec.registry_override,
            build_options=build,
        )

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
        if spec.mode == "shift":
            return self._plan_shift(app, spec, request)
        if not request.model_uri and not request.image_uri:
            raise UsageError(
                "nothing to deploy",
                where="deploy",
                fix="pass -m MODEL (deployer builds the image) or --image-uri IMAGE",
            )
        timeout = DEFAULT_TIMEOUT if request.timeout is None else request.timeout
        if timeout <= 0:
            raise UsageError(
                f"--timeout {timeout:g} must be positive",
                where="--timeout",
                fix="pass a number of seconds, e.g. --timeout 1800",
            )
        self._check_alarms(spec.alarms)
        model = self._model_ref(request.model_uri)
        build, mme = request.build, None
        if spec.multi_model:
            from deployer.targets.sagemaker.multi_model import plan_setup

            build, mme = plan_setup(self.aws, spec, model, request)
        image = self._image_plan(request.image_uri, spec, model, app, build)
        role = spec.execution_role_arn or self.aws.resolve_execution_role()
        bucket, create_bucket = (None, False) if mme else self._bucket(spec, model, image)
        digest = config_hash(
            spec,
            image=image.uri,
            model_digest=None if mme else model.digest,
            role=role,
            lock_digest=mme.record.lock_digest if mme else None,
        )
        state = read_endpoint(self.aws, app)
        ctx = DeployContext(
            app=app,
            region=self.aws.region,
            spec=spec,
            role=role,
            image=image,
            model=model,
            bucket=bucket,
            create_bucket=create_bucket,
            state=state,
            config_hash=digest,
            suffix=unique_suffix(digest),
            version=__version__,
            wait=request.wait,
            timeout=timeout,
            multi_model=mme,
        )
        return plan_deploy(ctx)

    def _plan_shift(self, app: str, spec: DeploySpec, request: DeployRequest) -> DeployPlan:
        if request.model_uri or request.image_uri:
            raise UsageError(
                "--mode shift moves traffic between the variants the endpoint has; it deploys "
                "nothing",
                where="--mode shift",
                fix="drop -m/--image-uri (deploy with --mode add first)",
            )
        timeout = DEFAULT_TIMEOUT if request.timeout is None else request.timeout
        ctx = DeployContext(
            app=app,
            region=self.aws.region,
            spec=spec,
            role="",
            image=ImagePlan(uri=""),
            model=ModelRef(),
            bucket=None,
            create_bucket=False,
            state=read_endpoint(self.aws, app),
            config_hash="",
            suffix="",
            version=__version__,
            wait=request.wait,
            timeout=timeout,
        )
        return plan_deploy(ctx)

    def _check_alarms(self, alarms: Sequence[str]) -> None:
        """Every --alarm must exist: SageMaker would only find out in the middle of a rollout."""
        if not alarms:
            return
        found = self.aws.call(
            "cloudwatch",
            "describe_alarms",
            where="--alarm",
            AlarmNames=list(alarms),
            AlarmTypes=["MetricAlarm", "CompositeAlarm"],
        )
        names = {
            a["AlarmName"] for a in found.get("MetricAlarms", []) + found.get("CompositeAlarms", [])
        }
        missing = [a for a in alarms if a not in names]
        if missing:
            raise UsageError(
                f"no CloudWatch alarm named {', '.join(map(repr, missing))} in {self.aws.region}",
                where="--alarm",
                fix="create the alarm first (aws cloudwatch put-metric-alarm), "
                "or check the name and --region",
            )

    def operations(self) -> Any:
        from deployer.targets.sagemaker.apply import SageMakerOperations
        from deployer.targets.sagemaker.images import image_handlers

        return SageMakerOperations(
            self.aws, poll_interval=self.poll_interval, handlers=image_handlers(self.aws)
        )

    def apply(self, plan: DeployPlan) -> DeployResult:
        if plan.action == "noop":
            log.info("%s", plan.summary)
            return DeployResult(
                self.name,
                plan.name,
                "noop",
                "InService",
                endpoint_url=plan.facts.get("endpoint_url"),
                details=dict(plan.facts),
            )
        result = self.operations().run(plan)
        if plan.action == "clean":
            return DeployResult(self.name, plan.name, "clean", "cleaned", details=result.details)
        if plan.action in ("tune", "shift") and result.status == "submitted":
            # nothing to wait for (autoscaling only) or --no-wait: say what was done, not
            # "submitted"
            status = (
                "InService"
                if plan.action == "tune" and all(c.phase != "commit" for c in plan.calls)
                else "Updating"
            )
            return DeployResult(
                self.name,
                plan.name,
                plan.action,
                status,
                endpoint_url=result.endpoint_url,
                details=result.details,
            )
        return result

    # ------------------------------------------------------------------ inspecting
    def _require(self, name: str) -> Any:
        state = read_endpoint(self.aws, validate_name(name))
        if state is None:
            raise TargetError(
                f"no SageMaker endpoint named {name!r} in {self.aws.region}",
                where=f"endpoint {name}",
                fix="check the name and --region (deployer list --target sagemaker)",
            )
        return state

    def provenance(self, name: str) -> Any:
        """What the endpoint serves, from the tags of the config it serves (every deploy
        writes a new config; endpoint tags are written on create only). None: absent."""
        state = read_endpoint(self.aws, validate_name(name))
        return None if state is None else _provenance(state)

    def status(self, name: str) -> EndpointStatus:
        state = self._require(name)
        variants = []
        for v in state.variants:
            cfg = v.config
            entry: dict[str, Any] = {
                "variant": v.variant_name,
                "model": v.model_name,
                "weight": v.weight if v.weight is not None else cfg.get("InitialVariantWeight"),
            }
            if v.scaling is not None:
                entry["autoscaling"] = {
                    "min": v.scaling.min_capacity,
                    "max": v.scaling.max_capacity,
                    "policies": [p.get("PolicyName") for p in v.scaling.policies],
                }
            if cfg.get("ServerlessConfig"):
                entry["serverless"] = cfg["ServerlessConfig"]
            else:
                entry.update(
                    instance_type=cfg.get("InstanceType"),
                    instance_count=v.instance_count
                    if v.instance_count is not None
                    else cfg.get("InitialInstanceCount"),
                )
            entry.update(
                model_uuid=v.model_tags.get(TAG_MODEL_UUID),
                run_id=v.model_tags.get(TAG_RUN_ID),
                model_data=v.model_data_url,
            )
            variants.append(entry)
        details = {
            "region": self.aws.region,
            "config": state.config_name,
            "variants": variants,
            "managed_by_deployer": state.managed,
            "deployer_version": state.endpoint_tags.get(TAG_VERSION),
            "config_hash": state.config_tags.get(TAG_HASH),
            "provenance": (p.to_dict() if (p := _provenance(state)) else None),
            "failure_reason": state.failure_reason,
            "created": state.created,
            "modified": state.modified,
            "async": bool(state.async_config),
            "data_capture": bool(state.data_capture),
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
                out.append(
                    EndpointStatus(
                        self.name,
                        ep["EndpointName"],
                        ep.get("EndpointStatus", ""),
                        {
                            "managed_by_deployer": TAG_VERSION in tags,
                            "deployer_version": tags.get(TAG_VERSION),
                            "created": str(ep.get("CreationTime")),
                            "modified": str(ep.get("LastModifiedTime")),
                        },
                    )
                )
            token = page.get("NextToken")
            if not token:
                return sorted(out, key=lambda s: s.name)

    # ------------------------------------------------------------------ changing
    def plan_delete(self, name: str, archive: bool = False) -> DeployPlan:
        return plan_delete(self._require(name), self.aws.region, archive=bool(archive))

    def delete(self, name: str, archive: bool = False) -> DeployResult:
        plan = self.plan_delete(name, archive=archive)
        result = self.operations().run(plan)
        return DeployResult(self.name, name, "delete", "deleted", details=result.details)

    def predict(
        self,
        name: str,
        body: bytes,
        content_type: str,
        async_input: str | None = None,
        async_timeout: float | None = None,
        target_model: str | None = None,
    ) -> bytes:
        """One request through sagemaker-runtime ``invoke_endpoint``; the response body.

        An asynchronous endpoint (its config has AsyncInferenceConfig) rejects InvokeEndpoint:
        the body goes to S3, InvokeEndpointAsync queues it, and the result is read from the
        output (or failure) location SageMaker names, within ``async_timeout`` seconds.
        ``target_model``: the model of a multi-model endpoint (its archive under the prefix).
        """
        app = validate_name(name)
        from deployer.targets.sagemaker.invoke_async import async_config, predict_async

        extra: dict[str, Any] = {}
        if target_model:
            from deployer.targets.sagemaker.models import target_model_key

            extra["TargetModel"] = target_model_key(target_model)
        config = async_config(self.aws, app)
        if config is not None:
            if target_model:
                raise UsageError(
                    f"endpoint {app} is asynchronous, and InvokeEndpointAsync takes no TargetModel",
                    where="--target-model",
                    fix="drop --target-model",
                )
            return predict_async(
                self.aws,
                app,
                body,
                content_type,
                config,
                input_prefix=async_input,
                timeout=300.0 if async_timeout is None else float(async_timeout),
                poll_interval=min(self.poll_interval, 2.0),
            )
        response = self.aws.call(
            "sagemaker-runtime",
            "invoke_endpoint",
            where=f"endpoint {app}",
            EndpointName=app,
            Body=body,
            ContentType=content_type,
            Accept="application/json",
            **extra,
        )
        return bytes(response["Body"].read())

    def predict_stream(self, name: str, body: bytes, content_type: str) -> Iterator[bytes]:
        """sagemaker-runtime ``invoke_endpoint_with_response_stream``: the response's payload
        parts as they arrive (for deployer's images: server-sent events, see
        :mod:`deployer.serving.streaming`). SageMaker forwards ``Accept`` to the container,
        which streams on ``text/event-stream``."""
        from deployer.targets.sagemaker.client import aws_errors

        app = validate_name(name)
        response = self.aws.call(
            "sagemaker-runtime",
            "invoke_endpoint_with_response_stream",
            where=f"endpoint {app}",
            EndpointName=app,
            Body=body,
            ContentType=content_type,
            Accept="text/event-stream",
        )
        # errors inside the stream (ModelStreamError, InternalStreamFailure) surface while
        # iterating: translated like the call's own
        with aws_errors(
            "sagemaker-runtime:invoke_endpoint_with_response_stream", where=f"endpoint {app}"
        ):
            for event in response["Body"]:
                part = event.get("PayloadPart")
                if part and part.get("Bytes"):
                    yield bytes(part["Bytes"])

    # ------------------------------------------------------------------ multi-model endpoints
    def plan_models_add(self, name: str, model_uri: str, as_name: str | None = None) -> DeployPlan:
        """``deployer models add``: upload ``model_uri``'s model.tar.gz under the endpoint's
        prefix, after checking its environment against the endpoint's."""
        from deployer.targets.sagemaker.models import plan_add

        return plan_add(self.aws, self._require(name), model_uri, as_name)

    def plan_models_remove(self, name: str, model_name: str) -> DeployPlan:
        from deployer.targets.sagemaker.models import plan_remove

        return plan_remove(self.aws, self._require(name), model_name)

    def list_models(self, name: str) -> EndpointStatus:
        from deployer.targets.sagemaker.models import list_archives

        return list_archives(self.aws, self._require(name))

    def apply_models(self, plan: DeployPlan) -> DeployResult:
        if plan.action == "noop":
            return DeployResult(self.name, plan.name, "noop", "unchanged", details=dict(plan.facts))
        result = self.operations().run(plan)
        return DeployResult(self.name, plan.name, plan.action, "done", details=result.details)

    # ------------------------------------------------------------------ batch
    def plan_batch(self, request: BatchRequest) -> DeployPlan:
        from deployer.targets.sagemaker.batch import plan_batch_job

        return plan_batch_job(self, request)

    def stop_batch(self, job_name: str) -> DeployResult:
        from deployer.targets.sagemaker.batch import stop_job

        return stop_job(self, job_name)

    def batch_status(self, job_name: str) -> EndpointStatus:
        from deployer.targets.sagemaker.batch import job_status

        return job_status(self, job_name)

    def list_batch(self) -> Sequence[EndpointStatus]:
        from deployer.targets.sagemaker.batch import list_jobs

        return list_jobs(self)

    def plan_clean_batch(self, job_name: str | None = None) -> DeployPlan:
        from deployer.targets.sagemaker.batch import plan_clean

        return plan_clean(self, job_name)


def _provenance(state: Any) -> Any:
    """The serving config's provenance tags (a :class:`~deployer.model.provenance.Provenance`)."""
    from deployer.model.provenance import Provenance

    return Provenance.from_tags(state.config_tags, TAG_PREFIX)
