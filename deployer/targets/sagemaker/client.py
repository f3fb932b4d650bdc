"""The boundary to AWS: one boto3 session per command, and botocore errors -> TargetError.

Everything AWS-specific about *connecting* lives here: region resolution, the standard
credential chain (env, profile, SSO, instance role...), endpoint overrides through the
standard ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` settings (boto3 reads them
itself, which is how the tests reach moto's server with deployer's code unmodified), and
the translation of botocore's exceptions into deployer's error tree, so a user sees what
failed, on which resource, and what to do, never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from deployer import __version__
from deployer.errors import MissingDependencyError, TargetError, UsageError

log = logging.getLogger("deployer")

# What to tell the user for the error codes worth a specific hint.
_HINTS = {
    "AccessDenied": (
        "grant the caller the IAM permission for {op} (or use --profile / another role)"
    ),
    "AccessDeniedException": "grant the caller the IAM permission for {op} (or use --profile / "
    "another role)",
    "UnrecognizedClientException": "check your AWS credentials (aws configure, AWS_PROFILE)",
    "InvalidClientTokenId": "check your AWS credentials (aws configure, AWS_PROFILE)",
    "ExpiredTokenException": "refresh your AWS session (aws sso login, or new temporary "
    "credentials)",
    "ResourceLimitExceeded": "raise the SageMaker quota for this instance type, or pick another "
    "--instance-type",
    "ThrottlingException": "retry later; too many AWS calls at once",
    "NoSuchBucket": "create the bucket, or pass an existing one with --bucket",
}


def boto3_module() -> Any:
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - boto3 is in the test env
        raise MissingDependencyError("boto3", "sagemaker", "the SageMaker target") from exc
    return boto3


_LOADER: Any = None


def _botocore_session() -> Any:
    """A fresh botocore session sharing one data loader per process.

    Loading SageMaker's service model (a multi-MB JSON file) takes ~1 s; the loader caches
    it, so targets created repeatedly in one process (a notebook, a test suite) pay it once.
    Credentials, region and config stay per session.
    """
    global _LOADER
    import botocore.session

    session = botocore.session.Session()
    if _LOADER is None:
        _LOADER = session.get_component("data_loader")
    else:
        session.register_component("data_loader", _LOADER)
    return session


class Aws:
    """A boto3 session with deployer's defaults; clients are created once and reused."""

    def __init__(self, region: str | None = None, profile: str | None = None) -> None:
        boto3 = boto3_module()
        from botocore.exceptions import BotoCoreError

        try:
            self.session = boto3.session.Session(
                region_name=region, profile_name=profile, botocore_session=_botocore_session()
            )
        except BotoCoreError as exc:
            raise TargetError(
                f"cannot start an AWS session: {exc}",
                where="--profile",
                fix="check the profile name in ~/.aws/config",
            ) from exc
        if not self.session.region_name:
            raise UsageError(
                "no AWS region configured",
                where="--region",
                fix="pass --region, set AWS_DEFAULT_REGION, or set a region in your AWS profile",
            )
        self._clients: dict[str, Any] = {}
        self._account: str | None = None

    @property
    def region(self) -> str:
        return str(self.session.region_name)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config

            config = Config(
                retries={"mode": "standard", "max_attempts": 5},
                user_agent_extra=f"deployer/{__version__}",
            )
            with aws_errors(f"{service} client", where=self.region):
                self._clients[service] = self.session.client(service, config=config)
        return self._clients[service]

    def call(self, service: str, operation: str, where: str | None = None, **params: Any) -> Any:
        """``client(service).<operation>(**params)`` with errors translated."""
        method = getattr(self.client(service), operation)
        with aws_errors(f"{service}:{operation}", where=where):
            return method(**params)

    def account_id(self) -> str:
        if self._account is None:
            self._account = str(self.call("sts", "get_caller_identity")["Account"])
        return self._account

    def resolve_execution_role(self) -> str:
        """The caller's own role, as MLflow resolves it when no --execution-role-arn is given.

        An assumed-role identity (``arn:aws:sts::ACCOUNT:assumed-role/NAME/session``) maps to
        ``iam.get_role(NAME)``. An IAM user has no role SageMaker could assume: say so instead
        of failing later inside SageMaker.
        """
        arn = str(self.call("sts", "get_caller_identity")["Arn"])
        resource = arn.split(":", 5)[-1]
        kind, _, rest = resource.partition("/")
        if kind not in ("assumed-role", "role") or not rest:
            raise UsageError(
                f"cannot derive a SageMaker execution role from the caller identity {arn!r}",
                where="--execution-role-arn",
                fix="pass --execution-role-arn arn:aws:iam::<account>:role/<role SageMaker can "
                "assume>",
            )
        role_name = rest.split("/")[0]
        role = self.call("iam", "get_role", where=f"role {role_name}", RoleName=role_name)
        return str(role["Role"]["Arn"])


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def is_not_found(exc: BaseException) -> bool:
    """True for the ways AWS says "no such resource" (SageMaker uses ValidationException)."""
    code = error_code(exc)
    if code in (
        "ResourceNotFound",
        "NoSuchKey",
        "NoSuchBucket",
        "404",
        "NotFound",
        "RepositoryNotFoundException",
        "NoSuchEntity",
    ):
        return True
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
    return code == "ValidationException" and (
        "Could not find" in message or "does not exist" in message
    )


@contextlib.contextmanager
def aws_errors(operation: str, where: str | None = None) -> Iterator[None]:
    """Translate botocore exceptions raised inside the block into TargetError."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
    )

    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        fix = _HINTS.get(code, "see the AWS error above; `deployer status` shows the current state")
        raise TargetError(
            f"AWS {operation} failed: {code}: {message}", where=where, fix=fix.format(op=operation)
        ) from exc
    except NoCredentialsError as exc:
        raise TargetError(
            "no AWS credentials found",
            where=operation,
            fix="configure credentials: aws configure / AWS_PROFILE / AWS_ACCESS_KEY_ID + "
            "AWS_SECRET_ACCESS_KEY",
        ) from exc
    except NoRegionError as exc:
        raise UsageError(
            "no AWS region configured",
            where="--region",
            fix="pass --region or set AWS_DEFAULT_REGION",
        ) from exc
    except EndpointConnectionError as exc:
        raise TargetError(
            f"cannot reach AWS for {operation}: {exc}",
            where=where,
            fix="check the network, the region, and any AWS_ENDPOINT_URL setting",
        ) from exc
    except ParamValidationError as exc:
        raise TargetError(
            f"invalid parameters for {operation}: {exc}",
            where=where,
            fix="this is a bug in deployer or a bad option value; run with -v",
        ) from exc
    except BotoCoreError as exc:
        raise TargetError(
            f"AWS {operation} failed: {exc}", where=where, fix="run again with -v for details"
        ) from exc
