"""Run a SageMaker plan: calls in order, undo on failure, cleanup only after success.

The executor is the only code that changes anything in AWS. Its guarantees:

* a failure in a ``create`` or ``commit`` step undoes, in reverse order, every step of this
  run that already succeeded (``--archive`` keeps models, configs and archives, but never a
  failed endpoint this run created), then raises a TargetError saying what failed, what was
  removed, and what could not be;
* an update that SageMaker rolls back (endpoint InService again, but on the old config) is
  reported as such: the old config keeps serving and the new resources are removed;
* a wait that times out undoes nothing (the change is still in progress in AWS) and says so;
* ``cleanup`` steps (replaced configs/models) run only after the wait succeeded; their
  failures are warnings in the result;
* ``prepare`` steps (deregistering a variant from autoscaling before SageMaker may remove it)
  are undone like ``create`` steps when a later step fails;
* ``post`` steps (autoscaling of the variant now serving) run after the wait: if one fails,
  the endpoint change stands (it serves, and undoing it would be a second risky update), the
  post steps of this run are undone, the cleanup still runs, and the error says to run the
  same command again (autoscaling is compared with the live state, so only it is retried).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.errors import DeployerError, TargetError
from deployer.targets.base import DeployPlan, DeployResult, PlannedCall
from deployer.targets.sagemaker.artifact import write_model_archive
from deployer.targets.sagemaker.client import Aws, aws_errors, is_not_found
from deployer.targets.sagemaker.state import describe_endpoint

log = logging.getLogger("deployer")

Handler = Callable[[Mapping[str, Any]], Any]
FAILED = ("Failed", "UpdateRollbackFailed", "OutOfService")


class WaitTimeout(TargetError):
    """The change is still in progress when --timeout ran out."""


class UpdateRolledBack(TargetError):
    """SageMaker could not apply the new config and went back to the old one."""


class EndpointBroken(TargetError):
    """The endpoint is in UpdateRollbackFailed: neither config is known to serve."""


@dataclass
class _Run:
    done: list[PlannedCall] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def describe_call(call: PlannedCall) -> str:
    """``create_model foo-model-1234`` for logs and messages."""
    params = call.params
    for key in ("ModelName", "EndpointName", "EndpointConfigName", "TransformJobName", "Key",
                "repositoryName", "Image", "ResourceId", "Bucket"):
        if key in params and params[key]:
            if key == "Key":
                return f"{call.operation} s3://{params.get('Bucket')}/{params[key]}"
            return f"{call.operation} {params[key]}"
    return call.operation


class Executor:
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

    # ------------------------------------------------------------------ running a plan
    def run(self, plan: DeployPlan) -> DeployResult:
        archive = bool(plan.facts.get("archive"))
        run = _Run()
        outputs: dict[str, Any] = {}
        for call in plan.calls:
            label = describe_call(call)
            if call.phase == "cleanup":
                try:
                    self.do(call)
                    run.removed.append(label.split(" ", 1)[-1])
                except DeployerError as exc:
                    if exc.__cause__ is not None and is_not_found(exc.__cause__):
                        continue
                    run.warnings.append(f"could not {label}: {exc.what}")
                    log.warning("could not %s: %s", label, exc.what)
                continue
            log.info("%s%s", label, f"  ({call.description})" if call.description and call.phase == "wait" else "")
            try:
                outputs[call.operation] = self.do(call)
            except WaitTimeout:
                raise
            except DeployerError as exc:
                if call.phase == "post":
                    self._fail_post(plan, call, exc, run)
                self._fail(plan, call, exc, run, archive)
            run.done.append(call)
            if call.phase in ("create", "commit") and call.undo is not None:
                run.created.append(label.split(" ", 1)[-1])
        waits = [c.operation for c in plan.calls if c.phase == "wait"]
        status = str(outputs.get(waits[-1])) if waits else "submitted"
        details = dict(plan.facts)
        details.update(created=run.created, removed=run.removed, warnings=run.warnings)
        return DeployResult(plan.target, plan.name, plan.action, status,
                            endpoint_url=plan.facts.get("endpoint_url"), details=details)

    def do(self, call: PlannedCall) -> Any:
        handler = self.handlers.get((call.service, call.operation))
        if handler is not None:
            return handler(call.params)
        return self.aws.call(call.service, call.operation, where=describe_call(call), **dict(call.params))

    def _fail_post(self, plan: DeployPlan, call: PlannedCall, exc: DeployerError, run: _Run) -> None:
        """A step after the endpoint settled failed: undo this run's post steps, clean up, explain."""
        undone: list[str] = []
        failed: list[str] = []
        for done in reversed([c for c in run.done if c.phase == "post"]):
            if done.undo is None:
                continue
            try:
                self.do(done.undo)
                undone.append(describe_call(done.undo))
            except DeployerError as undo_exc:
                failed.append(f"{describe_call(done.undo)} ({undo_exc.what})")
        for cleanup in (c for c in plan.calls if c.phase == "cleanup"):
            try:
                self.do(cleanup)
            except DeployerError as clean_exc:
                if not (clean_exc.__cause__ is not None and is_not_found(clean_exc.__cause__)):
                    failed.append(f"{describe_call(cleanup)} ({clean_exc.what})")
        story = [f"{describe_call(call)} failed: {exc.what}",
                 f"endpoint {plan.name} serves the new configuration {plan.facts.get('config_name') or ''}".rstrip(),
                 "undone: " + (", ".join(undone) if undone else "nothing")]
        if failed:
            story.append("COULD NOT: " + ", ".join(failed))
        raise TargetError("; ".join(story), where=exc.where or f"endpoint {plan.name}",
                          fix=(exc.fix + "; then " if exc.fix else "") + "run the same command again: only the "
                          "missing autoscaling is applied") from exc

    def _fail(self, plan: DeployPlan, call: PlannedCall, exc: DeployerError, run: _Run, archive: bool) -> None:
        """Undo this run's steps in reverse order, then raise one error telling the story."""
        removed: list[str] = []
        restored: list[str] = []
        kept: list[str] = []
        failed: list[str] = []
        # An endpoint stuck in UpdateRollbackFailed may still reference the new resources:
        # removing them could take it down for good, so nothing is undone then.
        steps = [] if isinstance(exc, EndpointBroken) else list(run.done)
        for done in reversed(steps):
            undo = done.undo
            if undo is None:
                continue
            target = describe_call(undo).split(" ", 1)[-1]
            if archive and undo.operation != "delete_endpoint" and done.phase != "prepare":
                kept.append(target)
                continue
            try:
                self.do(undo)
                (restored if done.phase == "prepare" else removed).append(describe_call(undo))
                log.info("rolled back: %s", describe_call(undo))
            except DeployerError as undo_exc:
                if undo_exc.__cause__ is not None and is_not_found(undo_exc.__cause__):
                    removed.append(target)
                    continue
                failed.append(f"{target} ({undo_exc.what})")
        story = [f"{describe_call(call)} failed: {exc.what}"]
        if isinstance(exc, UpdateRolledBack):
            story.append(f"SageMaker rolled the update back; endpoint {plan.name} still serves "
                         f"{plan.facts.get('current_config')}")
        elif call.operation == "update_endpoint":
            story.append(f"endpoint {plan.name} was not changed and still serves {plan.facts.get('current_config')}")
        story.append("removed what this run created: " + (", ".join(r.split(" ", 1)[-1] for r in removed)
                                                           if removed else "nothing to remove"))
        if restored:
            story.append("restored: " + ", ".join(restored))
        if kept:
            story.append("kept (--archive): " + ", ".join(kept))
        if failed:
            story.append("COULD NOT REMOVE: " + ", ".join(failed))
        fix = exc.fix or "fix the cause above and run the same command again"
        if failed:
            fix += "; remove the resources listed as COULD NOT REMOVE by hand (aws sagemaker delete-...)"
        raise TargetError("; ".join(story), where=exc.where or f"endpoint {plan.name}", fix=fix) from exc

    # ------------------------------------------------------------------ handlers
    def _upload_archive(self, params: Mapping[str, Any]) -> str:
        from boto3.exceptions import S3UploadFailedError

        bucket, key = params["Bucket"], params["Key"]
        with tempfile.TemporaryDirectory(prefix="deployer-sm-") as tmp:
            archive = write_model_archive(Path(params["ModelDir"]), Path(tmp) / "model.tar.gz")
            size = archive.stat().st_size
            log.info("uploading model.tar.gz (%.1f MB) to s3://%s/%s", size / 1e6, bucket, key)
            extra = {"Metadata": {"deployer-model-digest": str(params.get("ModelDigest") or "")}}
            try:
                with aws_errors("s3:upload", where=f"s3://{bucket}/{key}"):
                    self.aws.client("s3").upload_file(str(archive), bucket, key, ExtraArgs=extra)
            except S3UploadFailedError as exc:
                raise TargetError(f"upload of model.tar.gz failed: {exc}", where=f"s3://{bucket}/{key}",
                                  fix="check the bucket exists, its region, and your s3:PutObject permission") from exc
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
                    fix="the change continues in AWS; check it with `deployer status --target sagemaker "
                    "--name ...`, or wait longer with a larger --timeout",
                )
            self.sleep(self.poll_interval)

    def _wait_endpoint(self, params: Mapping[str, Any]) -> str:
        name, config = params["EndpointName"], params.get("EndpointConfigName")
        seen: dict[str, Any] = {}

        def read() -> tuple[bool, str]:
            desc = describe_endpoint(self.aws, name)
            if desc is None:
                raise TargetError(f"endpoint {name} disappeared while deploying", where=f"endpoint {name}",
                                  fix="someone deleted it; deploy again")
            seen.update(desc)
            status = str(desc.get("EndpointStatus"))
            return status not in ("Creating", "Updating", "SystemUpdating", "RollingBack"), status

        status = self._poll(f"endpoint {name}", params.get("Timeout"), read)
        reason = seen.get("FailureReason") or "no reason given"
        if status == "InService" and config and seen.get("EndpointConfigName") != config:
            raise UpdateRolledBack(f"the update did not take effect: {reason}", where=f"endpoint {name}",
                                   fix="fix the cause (see the reason, and the model's CloudWatch logs) and deploy again")
        if status == "UpdateRollbackFailed":
            raise EndpointBroken(f"endpoint {name} is {status}: {reason}", where=f"endpoint {name}",
                                 fix="nothing was removed; inspect it with `deployer status` and the AWS "
                                 "console, then update or delete it")
        if status != "InService":
            raise TargetError(f"endpoint {name} is {status}: {reason}", where=f"endpoint {name}",
                              fix="see the reason and the container's CloudWatch logs (/aws/sagemaker/Endpoints/"
                              f"{name}); test the image locally with `deployer run-local`")
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
            desc = self.aws.call("sagemaker", "describe_transform_job", where=f"transform job {name}",
                                 TransformJobName=name)
            seen.update(desc)
            status = str(desc.get("TransformJobStatus"))
            return status in ("Completed", "Failed", "Stopped"), status

        status = self._poll(f"transform job {name}", params.get("Timeout"), read)
        if status != "Completed" and not params.get("AcceptStopped"):
            raise TargetError(f"transform job {name} is {status}: {seen.get('FailureReason') or 'no reason given'}",
                              where=f"transform job {name}",
                              fix=f"see the job's CloudWatch logs (/aws/sagemaker/TransformJobs/{name})")
        return status
