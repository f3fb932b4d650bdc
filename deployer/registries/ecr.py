"""Amazon ECR: repository creation and login through boto3 (no ``aws`` CLI needed).

``get_authorization_token`` returns base64("AWS:<password>") valid for 12 hours; it is
turned into :class:`~deployer.registries.credentials.Credentials` and handed to the docker
SDK, never written to a Docker config file or logged. Repositories are created when
missing (a concurrent creator is fine: RepositoryAlreadyExists counts as success).
ECR API calls honour the standard ``AWS_ENDPOINT_URL*`` settings, so they can go to a
test server while the image bytes go to another registry (``registry_override``).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from deployer.errors import MissingDependencyError, RegistryAuthError, RegistryError, UsageError
from deployer.registries.credentials import Credentials

_REPO = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"
)


def ecr_host(account: str, region: str) -> str:
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    return f"{account}.dkr.ecr.{region}{suffix}"


def parse_ecr_host(host: str) -> tuple[str, str] | None:
    """``123456789012.dkr.ecr.eu-west-1.amazonaws.com`` -> (account, region)."""
    m = _ECR_HOST.match(host)
    return (m["account"], m["region"]) if m else None


def validate_repository(name: str) -> str:
    if not (2 <= len(name) <= 256) or not _REPO.match(name):
        raise UsageError(
            f"{name!r} is not a valid ECR repository name",
            where="--repository",
            fix="use lowercase letters, digits and . _ - / (e.g. deployer/my-model)",
        )
    return name


def _client(session: Any, region: str | None) -> Any:
    if session is None:
        try:
            import boto3
        except ImportError as exc:  # pragma: no cover
            raise MissingDependencyError("boto3", "sagemaker", "pushing to Amazon ECR") from exc
        session = boto3.session.Session(region_name=region)
    return session.client("ecr", region_name=region or session.region_name)


def _translate(exc: Exception, what: str, where: str) -> RegistryError:
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return RegistryAuthError(
            "no AWS credentials found for ECR",
            where=where,
            fix="configure AWS credentials (aws configure, AWS_PROFILE, env vars)",
        )
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        msg = exc.response.get("Error", {}).get("Message", "")
        cls = (
            RegistryAuthError
            if "AccessDenied" in code or "Unrecognized" in code or "Token" in code
            else RegistryError
        )
        return cls(
            f"ECR {what} failed: {code}: {msg}",
            where=where,
            fix="check your AWS credentials and the ecr:* permissions of the caller",
        )
    return RegistryError(
        f"ECR {what} failed: {exc}", where=where, fix="check the region and network"
    )


class Ecr:
    """ECR operations for one account/region (``session`` is a boto3 Session, or None)."""

    def __init__(self, session: Any = None, region: str | None = None) -> None:
        self.client = _client(session, region)
        self.region = str(self.client.meta.region_name)

    @classmethod
    def connect(cls, region: str | None = None, profile: str | None = None) -> Ecr:
        """ECR of the standard AWS configuration (``--region`` / ``--profile`` win)."""
        try:
            import boto3
            from botocore.exceptions import BotoCoreError
        except ImportError as exc:  # pragma: no cover
            raise MissingDependencyError("boto3", "sagemaker", "pushing to Amazon ECR") from exc
        try:
            session = boto3.session.Session(region_name=region, profile_name=profile)
        except BotoCoreError as exc:
            raise RegistryError(
                f"cannot start an AWS session: {exc}",
                where="--profile",
                fix="check the profile name in ~/.aws/config",
            ) from exc
        if not session.region_name:
            raise UsageError(
                "no AWS region configured",
                where="--region",
                fix="pass --region, set AWS_DEFAULT_REGION, or set a region in your AWS profile",
            )
        return cls(session, session.region_name)

    def ensure_repository(self, name: str, tags: dict[str, str] | None = None) -> tuple[str, bool]:
        """The repository URI, creating the repository if needed; (uri, created)."""
        from botocore.exceptions import BotoCoreError, ClientError

        validate_repository(name)
        uri = self.repository_uri(name)
        if uri is not None:
            return uri, False
        params: dict[str, Any] = {"repositoryName": name, "imageTagMutability": "MUTABLE"}
        if tags:
            params["tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        try:
            created = self.client.create_repository(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "RepositoryAlreadyExistsException":
                return str(self.repository_uri(name)), False
            raise _translate(exc, "create_repository", f"repository {name}") from exc
        except BotoCoreError as exc:
            raise _translate(exc, "create_repository", f"repository {name}") from exc
        return str(created["repository"]["repositoryUri"]), True

    def repository_uri(self, name: str) -> str | None:
        """URI of repository ``name``, or None if it does not exist (a read)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            found = self.client.describe_repositories(repositoryNames=[name])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "RepositoryNotFoundException":
                return None
            raise _translate(exc, "describe_repositories", f"repository {name}") from exc
        except BotoCoreError as exc:
            raise _translate(exc, "describe_repositories", f"repository {name}") from exc
        return str(found["repositories"][0]["repositoryUri"])

    def login(self) -> Credentials:
        """Docker credentials for this account's registry (valid 12 hours)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            data = self.client.get_authorization_token()["authorizationData"][0]
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "get_authorization_token", "ECR login") from exc
        try:
            user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError) as exc:
            raise RegistryAuthError(
                "ECR returned an authorization token that is not base64 user:password",
                where="ECR login",
                fix="retry; report a bug if it persists",
            ) from exc
        endpoint = str(data.get("proxyEndpoint", ""))
        host = endpoint.replace("https://", "").replace("http://", "").rstrip("/")
        return Credentials(user, password, host, "ecr")
