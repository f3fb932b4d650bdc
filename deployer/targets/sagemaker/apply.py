"""SageMaker's operations for the one plan executor (:mod:`deployer.targets.executor`).

The executor runs the calls and owns the rollback rule; this module only says how each call
is carried out (a boto3 call through :class:`~deployer.targets.sagemaker.client.Aws`, or one of
the handlers below: the model.tar.gz upload and the waits) and what SageMaker adds to a
failure's story:

* an update that SageMaker rolls back (endpoint InService again, but on the old config) is
  reported as such: the old config keeps serving and the new resources are removed;
* a wait that times out undoes nothing (the change is still in progress in AWS) and says so;
  an endpoint in UpdateRollbackFailed undoes nothing either (it may still reference the new
  resources): both are :class:`~deployer.targets.executor.NoRollback`;
* ``--archive`` keeps models, configs and archives, but never a failed endpoint this run
  created;
* a ``post`` step (autoscaling of the variant now serving) that fails leaves the endpoint on
  the new configuration, and a re-run applies only the missing autoscaling.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from deployer.errors import DeployerError, TargetError
from deployer.model.files import write_model_archive
from deployer.targets.base import DeployPlan, DeployResult, PlannedCall
from deployer.targets.executor import BaseOperations, NoRollback, execute
from deployer.targets.sagemaker.client import Aws, aws_errors, is_not_found
from deployer.targets.sagemaker.state import describe_endpoint

log = logging.getLogger("deployer")

Handler = Callable[[Mapping[str, Any]], Any]
FAILED = ("Failed", "UpdateRollbackFailed", "OutOfService")


class WaitTimeout(NoRollback):
    """The change is still in progress when --timeout ran out."""


class UpdateRolledBack(TargetError):
    """SageMaker could not apply the new config and went back to the old one."""


class EndpointBroken(NoRollback):
    """The endpoint is in UpdateRollbackFailed: neither config is known to serve."""


def describe_call(call: PlannedCall) -> str:
    """``create_model foo-model-1234`` for logs and messages."""
    params = call.params
    for key in (
        "ModelName",
        "EndpointName",
        "EndpointConfigName",
        "TransformJobName",
        "Key",
        "repositoryName",
        "Image",
        "ResourceId",
        "Bucket",
    ):
        if key in params and params[key]:
            if key == "Key":
                return f"{call.operation} s3://{params.get('Bucket')}/{params[key]}"
            return f"{call.operation} {params[key]}"
    return call.operation


class SageMakerOperations(BaseOperations):
    """Carries out SageMaker plans' calls (see module docstring)."""

    def __init__(
        self,
        aws: Aws,
        *,
        poll_interval: float = 10.0,
        handlers: Mapping[tuple[str, str], Handler] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.aws = aws
        self.poll_interval = poll_interval
        self.sleep = sleep
        self.clock = clock
        self.handlers: dict[tuple[str, str], Handler] = {
            ("s3", "upload_model_archive"): self._upload_archive,
            ("sagemaker", "wait_endpoint"): self._wait_endpoint,
            ("sagemaker", "wait_endpoint_deleted"): self._wait_deleted,
            ("sagemaker", "wait_transform_job"): self._wait_transform_job,
        }
        self.handlers.update(handlers or {})

    # ------------------------------------------------------------------ the executor's hooks
    def run(self, plan: DeployPlan) -> DeployResult:
        """Execute ``plan``; the result's status is the last wait's (else "submitted")."""
        report = execute(plan, self)
        waits = [c.operation for c in plan.calls if c.phase == "wait"]
        status = str(report.outputs.get(waits[-1])) if waits else "submitted"
        details = dict(plan.facts)
        details.update(created=report.created, removed=report.removed, warnings=report.warnings)
        return DeployResult(
            plan.target,
            plan.name,
            plan.action,
            status,
            endpoint_url=plan.facts.get("endpoint_url"),
            details=details,
        )

    def handle(self, call: PlannedCall, outputs: Mapping[str, Any] | None = None) -> Any:
        handler = self.handlers.get((call.service, call.operation))
        if handler is not None:
            return handler(call.params)
        return self.aws.call(
            call.service, call.operation, where=describe_call(call), **dict(call.params)
        )

    def label(self, call: PlannedCall) -> str:
        return describe_call(call)

    def is_not_found(self, exc: DeployerError) -> bool:
        return exc.__cause__ is not None and is_not_found(exc.__cause__)

    def keeps(self, plan: DeployPlan, call: PlannedCall) -> bool:
        """--archive keeps what was made, but never a (failed) endpoint."""
        return (
            bool(plan.facts.get("archive"))
            and call.undo is not None
            and call.undo.operation != "delete_endpoint"
        )

    def story(self, plan: DeployPlan, call: PlannedCall, exc: DeployerError) -> Sequence[str]:
        if call.phase == "post":
            config = plan.facts.get("config_name") or ""
            return [f"endpoint {plan.name} serves the new configuration {config}".rstrip()]
        if isinstance(exc, UpdateRolledBack):
            return [
                f"SageMaker rolled the update back; endpoint {plan.name} still serves "
                f"{plan.facts.get('current_config')}"
            ]
        if call.operation == "update_endpoint":
            return [
                f"endpoint {plan.name} was not changed and still serves "
                f"{plan.facts.get('current_config')}"
            ]
        return []

    # ------------------------------------------------------------------ handlers
    def _upload_archive(self, params: Mapping[str, Any]) -> str:
        from boto3.exceptions import S3UploadFailedError

        bucket, key = params["Bucket"], params["Key"]
        with tempfile.TemporaryDirectory(prefix="deployer-sm-") as tmp:
            archive = write_model_archive(Path(params["ModelDir"]), Path(tmp) / "model.tar.gz")
            size = archive.stat().st_size
            log.info("uploading model.tar.gz (%.1f MB) to s3://%s/%s", size / 1e6, bucket, key)
            metadata = {str(k): str(v) for k, v in (params.get("Metadata") or {}).items()}
            metadata["deployer-model-digest"] = str(params.get("ModelDigest") or "")
            extra = {"Metadata": metadata}
            try:
                with aws_errors("s3:upload", where=f"s3://{bucket}/{key}"):
                    self.aws.client("s3").upload_file(str(archive), bucket, key, ExtraArgs=extra)
            except S3UploadFailedError as exc:
                raise TargetError(
                    f"upload of model.tar.gz failed: {exc}",
                    where=f"s3://{bucket}/{key}",
                    fix="check the bucket exists, its region, and your s3:PutObject permission",
                ) from exc
        return f"s3://{bucket}/{key}"

    def _poll(self, what: str, timeout: float | None, read: Callable[[], tuple[bool, str]]) -> str:
        """Call ``read`` until it says done; log each status change and a heartbeat."""
        start = self.clock()
        last_status, last_log = None, start
        while True:
            finished, status = read()
            now = self.clock()
            if status != last_status or now - last_log >= 60:
                log.info("%s: %s (%.0fs)", what, status, now - start)
                last_status, last_log = status, now
            if finished:
                return status
            if timeout is not None and now - start >= timeout:
                raise WaitTimeout(
                    f"{what} is still {status} after {now - start:.0f}s (--timeout {timeout:g})",
                    where=what,
                    fix="the change continues in AWS; check it with `deployer status --target "
                    "sagemaker "
                    "--name ...`, or wait longer with a larger --timeout",
                )
            self.sleep(self.poll_interval)

    def _wait_endpoint(self, params: Mapping[str, Any]) -> str:
        name, config = params["EndpointName"], params.get("EndpointConfigName")
        seen: dict[str, Any] = {}

        def read() -> tuple[bool, str]:
            desc = describe_endpoint(self.aws, name)
            if desc is None:
                raise TargetError(
                    f"endpoint {name} disappeared while deploying",
                    where=f"endpoint {name}",
                    fix="someone deleted it; deploy again",
                )
            seen.update(desc)
            status = str(desc.get("EndpointStatus"))
            return status not in ("Creating", "Updating", "SystemUpdating", "RollingBack"), status

        status = self._poll(f"endpoint {name}", params.get("Timeout"), read)
        reason = seen.get("FailureReason") or "no reason given"
        if status == "InService" and config and seen.get("EndpointConfigName") != config:
            raise UpdateRolledBack(
                f"the update did not take effect: {reason}",
                where=f"endpoint {name}",
                fix="fix the cause (see the reason, and the model's CloudWatch logs) and deploy "
                "again",
            )
        if status == "UpdateRollbackFailed":
            raise EndpointBroken(
                f"endpoint {name} is {status}: {reason}",
                where=f"endpoint {name}",
                fix="nothing was removed; inspect it with `deployer status` and the AWS "
                "console, then update or delete it",
            )
        if status != "InService":
            raise TargetError(
                f"endpoint {name} is {status}: {reason}",
                where=f"endpoint {name}",
                fix="see the reason and the container's CloudWatch logs (/aws/sagemaker/Endpoints/"
                f"{name}); test the image locally with `deployer run-local`",
            )
        return status

    def _wait_deleted(self, params: Mapping[str, Any]) -> str:
        name = params["EndpointName"]

        def read() -> tuple[bool, str]:
            desc = describe_endpoint(self.aws, name)
            return desc is None, "deleted" if desc is None else str(desc.get("EndpointStatus"))

        return self._poll(f"endpoint {name}", params.get("Timeout"), read)

    def _wait_transform_job(self, params: Mapping[str, Any]) -> str:
        name = params["TransformJobName"]
        seen: dict[str, Any] = {}

        def read() -> tuple[bool, str]:
            desc = self.aws.call(
                "sagemaker",
                "describe_transform_job",
                where=f"transform job {name}",
                TransformJobName=name,
            )
            seen.update(desc)
            status = str(desc.get("TransformJobStatus"))
            return status in ("Completed", "Failed", "Stopped"), status

        status = self._poll(f"transform job {name}", params.get("Timeout"), read)
        if status != "Completed" and not params.get("AcceptStopped"):
            raise TargetError(
                f"transform job {name} is {status}: "
                f"{seen.get('FailureReason') or 'no reason given'}",
                where=f"transform job {name}",
                fix=f"see the job's CloudWatch logs (/aws/sagemaker/TransformJobs/{name})",
            )
        return status
