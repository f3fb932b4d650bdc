"""Batch transform: score files in S3 with the model; stop, inspect, list and clean up jobs.

The job is planned like a deploy (same image, upload and model steps, same undo rules); the
transform job is the commit step. With ``--wait`` the SageMaker model made for the job (and
its model.tar.gz) is removed once the job ends, unless ``--archive``: a transform job needs
its model only while it runs. A ``--no-wait`` job keeps them until ``batch --clean`` (planned
like everything else: ``--dry-run`` lists what it would remove) finds the job finished.
Jobs are deployer's when they carry its ``deployer:version`` tag; others are never touched.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from typing import Any

from deployer import __version__
from deployer.errors import TargetError, UsageError
from deployer.targets.base import (
    BatchRequest,
    DeployPlan,
    DeployResult,
    EndpointStatus,
    PlannedCall,
)
from deployer.targets.sagemaker.names import resource_name, suggest, unique_suffix, validate_name
from deployer.targets.sagemaker.plan import (
    TARGET,
    DeployContext,
    base_tags,
    image_calls,
    model_calls,
    tag_list,
)
from deployer.targets.sagemaker.spec import PARQUET, DeploySpec, parse_batch, s3_parts
from deployer.targets.sagemaker.state import TAG_MODEL_DATA, TAG_VERSION, list_tags


def plan_batch_job(target: Any, request: BatchRequest) -> DeployPlan:
    spec = parse_batch(request.input, request.output, request.options)
    if not request.model_uri and not request.image_uri:
        raise UsageError("nothing to run", where="batch", fix="pass -m MODEL or --image-uri IMAGE")
    aws = target.aws
    model = target._model_ref(request.model_uri)
    base = request.name or (model.path.rstrip("/").rsplit("/", 1)[-1] if model.path else "batch")
    from deployer.building.plan import BuildOptions

    build = request.build
    if spec.content_type.split(";")[0].strip() == PARQUET:  # the image must read the job's Parquet
        build = replace(build or BuildOptions(), parquet=True)
    image = target._image_plan(
        request.image_uri, spec, model, suggest(base)[:40].strip("-") or "batch", build
    )
    role = spec.execution_role_arn or aws.resolve_execution_role()
    bucket, create_bucket = target._bucket(spec, model, image)
    digest = hashlib.sha256(
        json.dumps(
            {**asdict(spec), "image": image.uri, "model": model.digest, "role": role},
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    suffix = unique_suffix(digest)
    job = (
        validate_name(request.name, what="job name")
        if request.name
        else resource_name(base, "batch", suffix)
    )
    model_spec = DeploySpec(
        env=spec.env,
        tags=spec.tags,
        model_in_image=spec.model_in_image,
        vpc_config=spec.vpc_config,
        registry_credentials_arn=spec.registry_credentials_arn,
    )
    ctx = DeployContext(
        app=job,
        region=aws.region,
        spec=model_spec,
        role=role,
        image=image,
        model=model,
        bucket=bucket,
        create_bucket=create_bucket,
        state=None,
        config_hash=digest,
        suffix=suffix,
        version=__version__,
        wait=request.wait,
        timeout=request.timeout,
    )
    tags = base_tags(ctx)
    model_name = resource_name(base, "model", suffix)
    calls = image_calls(image, model)
    mcalls, model_data_url = model_calls(ctx, model_name, tags)
    calls += mcalls
    in_bucket, _ = s3_parts(spec.input, "--input")
    transform_input: dict[str, Any] = {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": spec.input}},
        "ContentType": spec.content_type,
        "SplitType": spec.split_type,
    }
    if spec.compression != "None":
        transform_input["CompressionType"] = spec.compression
    transform_output: dict[str, Any] = {"S3OutputPath": spec.output, "Accept": spec.accept}
    if spec.assemble_with:
        transform_output["AssembleWith"] = spec.assemble_with
    params: dict[str, Any] = {
        "TransformJobName": job,
        "ModelName": model_name,
        "TransformInput": transform_input,
        "TransformOutput": transform_output,
        "TransformResources": {
            "InstanceType": spec.instance_type,
            "InstanceCount": spec.instance_count,
        },
        "Tags": tag_list(tags),
    }
    if spec.env:
        params["Environment"] = dict(spec.env)
    if spec.max_payload_mb is not None:
        params["MaxPayloadInMB"] = spec.max_payload_mb
    processing = {
        k: v
        for k, v in (
            ("InputFilter", spec.input_filter),
            ("OutputFilter", spec.output_filter),
            ("JoinSource", spec.join_source),
        )
        if v
    }
    if processing:
        params["DataProcessing"] = processing
    if spec.split_type == "Line":
        params["BatchStrategy"] = "MultiRecord"
    calls.append(
        PlannedCall(
            "sagemaker",
            "create_transform_job",
            params,
            phase="commit",
            description="start the batch transform job",
        )
    )
    if request.wait:
        calls.append(
            PlannedCall(
                "sagemaker",
                "wait_transform_job",
                {"TransformJobName": job, "Timeout": request.timeout},
                phase="wait",
                description="poll describe_transform_job until it ends (reads only)",
            )
        )
        if not spec.archive:
            calls.append(
                PlannedCall(
                    "sagemaker",
                    "delete_model",
                    {"ModelName": model_name},
                    phase="cleanup",
                    description="the job's model is not needed once the job ended",
                )
            )
            if model_data_url:
                b, k = s3_parts(model_data_url, "model data")
                calls.append(
                    PlannedCall(
                        "s3",
                        "delete_object",
                        {"Bucket": b, "Key": k},
                        phase="cleanup",
                        description="remove the job's model.tar.gz",
                    )
                )
    return DeployPlan(
        TARGET,
        job,
        "batch",
        tuple(calls),
        summary=f"transform {spec.input} -> {spec.output} with job {job} (model {model_name})",
        facts={
            "job": job,
            "model_name": model_name,
            "input": spec.input,
            "output": spec.output,
            "image": image.uri,
            "archive": spec.archive,
            "region": aws.region,
            "input_bucket": in_bucket,
            "model_data_url": model_data_url,
        },
    )


def stop_job(target: Any, job_name: str) -> DeployResult:
    """Stop a running transform job, wait until it stopped, then remove deployer's model."""
    from deployer.targets.sagemaker.apply import SageMakerOperations

    aws = target.aws
    name = validate_name(job_name, what="job name", option="--stop")
    desc = aws.call(
        "sagemaker", "describe_transform_job", where=f"transform job {name}", TransformJobName=name
    )
    status = str(desc.get("TransformJobStatus"))
    if status != "InProgress":
        raise TargetError(
            f"transform job {name} is {status}; only a running job can be stopped",
            where=f"transform job {name}",
            fix="nothing to do",
        )
    operations: SageMakerOperations = target.operations()
    operations.handle(PlannedCall("sagemaker", "stop_transform_job", {"TransformJobName": name}))
    final = operations.handle(
        PlannedCall(
            "sagemaker",
            "wait_transform_job",
            {"TransformJobName": name, "Timeout": 900, "AcceptStopped": True},
        )
    )
    removed: list[str] = []
    model_name = str(desc.get("ModelName") or "")
    if model_name:
        try:
            model = aws.call(
                "sagemaker", "describe_model", where=f"model {model_name}", ModelName=model_name
            )
        except TargetError:
            model = None
        tags = list_tags(aws, model["ModelArn"]) if model else {}
        if TAG_VERSION in tags:
            aws.call("sagemaker", "delete_model", where=f"model {model_name}", ModelName=model_name)
            removed.append(model_name)
            if tags.get(TAG_MODEL_DATA):
                b, k = s3_parts(tags[TAG_MODEL_DATA], "model data")
                aws.call("s3", "delete_object", where=tags[TAG_MODEL_DATA], Bucket=b, Key=k)
                removed.append(tags[TAG_MODEL_DATA])
    return DeployResult(
        TARGET, name, "stop", final, details={"removed": removed, "previous_status": status}
    )


FINISHED = ("Completed", "Failed", "Stopped")


def _job(aws: Any, name: str) -> dict[str, Any]:
    return dict(
        aws.call(
            "sagemaker",
            "describe_transform_job",
            where=f"transform job {name}",
            TransformJobName=validate_name(name, what="job name", option="--name"),
        )
    )


def _job_model(aws: Any, desc: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    """(model name if it still exists, its tags)."""
    from deployer.targets.sagemaker.state import _describe

    name = str(desc.get("ModelName") or "")
    if not name:
        return None, {}
    model = _describe(aws, "describe_model", f"model {name}", ModelName=name)
    if model is None:
        return None, {}
    return name, list_tags(aws, model["ModelArn"]) if model.get("ModelArn") else {}


def job_status(target: Any, job_name: str) -> EndpointStatus:
    aws = target.aws
    desc = _job(aws, job_name)
    tags = list_tags(aws, desc["TransformJobArn"]) if desc.get("TransformJobArn") else {}
    model, model_tags = _job_model(aws, desc)
    details = {
        "managed_by_deployer": TAG_VERSION in tags,
        "model": desc.get("ModelName"),
        "model_exists": model is not None,
        "model_data": model_tags.get(TAG_MODEL_DATA),
        "input": ((desc.get("TransformInput") or {}).get("DataSource") or {})
        .get("S3DataSource", {})
        .get("S3Uri"),
        "output": (desc.get("TransformOutput") or {}).get("S3OutputPath"),
        "failure_reason": desc.get("FailureReason") or None,
        "created": str(desc.get("CreationTime")) if desc.get("CreationTime") else None,
        "ended": str(desc.get("TransformEndTime")) if desc.get("TransformEndTime") else None,
    }
    if (
        model is not None
        and str(desc.get("TransformJobStatus")) in FINISHED
        and TAG_VERSION in model_tags
    ):
        details["cleanup"] = (
            f"deployer batch --target sagemaker --clean --name {desc['TransformJobName']}"
        )
    return EndpointStatus(
        TARGET, str(desc["TransformJobName"]), str(desc.get("TransformJobStatus")), details
    )


def list_jobs(target: Any) -> list[EndpointStatus]:
    """deployer's transform jobs (tagged ``deployer:version``), newest first."""
    aws = target.aws
    out: list[EndpointStatus] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {
            "MaxResults": 100,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
        }
        if token:
            kwargs["NextToken"] = token
        page = aws.call("sagemaker", "list_transform_jobs", **kwargs)
        for job in page.get("TransformJobSummaries", []) or []:
            tags = list_tags(aws, job["TransformJobArn"])
            if TAG_VERSION not in tags:
                continue
            out.append(
                EndpointStatus(
                    TARGET,
                    job["TransformJobName"],
                    str(job.get("TransformJobStatus")),
                    {
                        "managed_by_deployer": True,
                        "deployer_version": tags.get(TAG_VERSION),
                        "created": str(job.get("CreationTime")),
                        "ended": str(job.get("TransformEndTime") or "") or None,
                    },
                )
            )
        token = page.get("NextToken")
        if not token:
            return out


def plan_clean(target: Any, job_name: str | None = None) -> DeployPlan:
    """Remove the models and model.tar.gz of finished deployer jobs (one job, or all of them)."""
    aws = target.aws
    names = [job_name] if job_name else [j.name for j in list_jobs(target)]
    calls: list[PlannedCall] = []
    skipped: dict[str, str] = {}
    for name in names:
        desc = _job(aws, name)
        status = str(desc.get("TransformJobStatus"))
        if status not in FINISHED:
            skipped[name] = f"{status}: its model is in use (stop it with --stop {name})"
            continue
        model, tags = _job_model(aws, desc)
        if model is None:
            continue
        if TAG_VERSION not in tags:
            skipped[name] = f"model {model} was not made by deployer"
            continue
        calls.append(
            PlannedCall(
                "sagemaker",
                "delete_model",
                {"ModelName": model},
                phase="cleanup",
                description=f"job {name} is {status}: its model is no longer needed",
            )
        )
        if tags.get(TAG_MODEL_DATA):
            b, k = s3_parts(tags[TAG_MODEL_DATA], "model data")
            calls.append(
                PlannedCall(
                    "s3",
                    "delete_object",
                    {"Bucket": b, "Key": k},
                    phase="cleanup",
                    description=f"remove job {name}'s model.tar.gz",
                )
            )
    what = f"job {job_name}" if job_name else f"{len(names)} deployer job(s)"
    summary = (
        f"remove the models and archives of {what}" if calls else f"nothing to clean up in {what}"
    )
    if skipped:
        summary += f" ({len(skipped)} skipped)"
    return DeployPlan(
        TARGET,
        job_name or "batch-jobs",
        "clean" if calls else "noop",
        tuple(calls),
        summary=summary,
        facts={"region": aws.region, "jobs": names, "skipped": skipped, "archive": False},
    )
