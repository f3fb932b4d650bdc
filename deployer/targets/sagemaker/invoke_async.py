"""Predictions from asynchronous endpoints: upload, InvokeEndpointAsync, read the result.

An endpoint whose config has ``AsyncInferenceConfig`` rejects ``InvokeEndpoint``. Its
requests live in S3: the body is uploaded, ``InvokeEndpointAsync`` queues it and answers at
once with the S3 locations of the result and of the failure report, and the caller polls
them. deployer removes the uploaded request once a result or failure arrived; when
``timeout`` runs out first the request is left in place (SageMaker has not read it yet) and
the error names both locations.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from deployer.errors import TargetError, UsageError
from deployer.targets.sagemaker.client import Aws, error_code, is_not_found
from deployer.targets.sagemaker.spec import s3_parts
from deployer.targets.sagemaker.state import describe_endpoint

log = logging.getLogger("deployer")

INPUT_PREFIX = "deployer-async-inputs"
_DENIED = ("AccessDenied", "AccessDeniedException")


def async_config(aws: Aws, app: str) -> Mapping[str, Any] | None:
    """The endpoint's AsyncInferenceConfig, or None for a real-time / serverless endpoint.

    A caller allowed to invoke but not to describe the endpoint is treated as real-time.
    """
    try:
        endpoint = describe_endpoint(aws, app)
        if endpoint is None:
            return None  # invoke_endpoint reports the missing endpoint in AWS's words
        config = aws.call(
            "sagemaker",
            "describe_endpoint_config",
            where=f"endpoint {app}",
            EndpointConfigName=endpoint["EndpointConfigName"],
        )
    except TargetError as exc:
        if exc.__cause__ is not None and error_code(exc.__cause__) in _DENIED:
            log.debug(
                "cannot describe endpoint %s (%s): invoking it as a real-time endpoint",
                app,
                exc.what,
            )
            return None
        raise
    found = config.get("AsyncInferenceConfig")
    return dict(found) if found else None


def _input_location(
    app: str, config: Mapping[str, Any], prefix: str | None, content_type: str
) -> tuple[str, str]:
    if prefix:
        bucket, key = s3_parts(prefix, "--async-input")
    else:
        output = str((config.get("OutputConfig") or {}).get("S3OutputPath", ""))
        bucket, _ = s3_parts(output, "AsyncInferenceConfig.OutputConfig.S3OutputPath")
        key = f"{INPUT_PREFIX}/{app}"
    suffix = {"text/csv": ".csv", "application/json": ".json"}.get(
        content_type.split(";")[0].strip(), ""
    )
    return bucket, f"{key.strip('/')}/{uuid.uuid4().hex}{suffix}".lstrip("/")


def _read(aws: Aws, uri: str) -> bytes | None:
    bucket, key = s3_parts(uri, "async result")
    try:
        response = aws.call("s3", "get_object", where=uri, Bucket=bucket, Key=key)
    except TargetError as exc:
        if exc.__cause__ is not None and is_not_found(exc.__cause__):
            return None
        raise
    return bytes(response["Body"].read())


def predict_async(
    aws: Aws,
    app: str,
    body: bytes,
    content_type: str,
    config: Mapping[str, Any],
    *,
    input_prefix: str | None,
    timeout: float,
    poll_interval: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bytes:
    """Queue ``body`` on the async endpoint ``app`` and return its result body."""
    if timeout <= 0:
        raise UsageError(
            f"--async-timeout {timeout:g} must be positive",
            where="--async-timeout",
            fix="pass a number of seconds, e.g. --async-timeout 600",
        )
    bucket, key = _input_location(app, config, input_prefix, content_type)
    location = f"s3://{bucket}/{key}"
    aws.call(
        "s3",
        "put_object",
        where=location,
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType=content_type,
    )
    finished = queued = False
    try:
        response = aws.call(
            "sagemaker-runtime",
            "invoke_endpoint_async",
            where=f"endpoint {app}",
            EndpointName=app,
            InputLocation=location,
            ContentType=content_type,
            Accept="application/json",
            InferenceId=key.rsplit("/", 1)[-1].split(".")[0],
        )
        queued = True
        output, failure = response.get("OutputLocation"), response.get("FailureLocation")
        log.info("endpoint %s queued the request (%s); waiting for %s", app, location, output)
        start = clock()
        while True:
            result = _read(aws, output) if output else None
            if result is not None:
                finished = True
                return result
            report = _read(aws, failure) if failure else None
            if report is not None:
                finished = True
                raise TargetError(
                    f"the asynchronous inference failed: {report.decode(errors='replace')[:2000]}",
                    where=f"endpoint {app} ({failure})",
                    fix=f"see the container's CloudWatch logs (/aws/sagemaker/Endpoints/{app})",
                )
            if clock() - start >= timeout:
                raise TargetError(
                    f"no result from endpoint {app} after {timeout:g}s; the request is still "
                    "queued or running",
                    where=f"endpoint {app}",
                    fix=f"the result will appear at {output} (a failure at {failure}); wait longer "
                    "with "
                    "--async-timeout SECONDS",
                )
            sleep(poll_interval)
    finally:
        # SageMaker reads the request when it runs it: keep it while it may still do so
        if finished or not queued:
            try:
                aws.call("s3", "delete_object", where=location, Bucket=bucket, Key=key)
            except TargetError as exc:
                log.warning("could not remove the uploaded request %s: %s", location, exc.what)
