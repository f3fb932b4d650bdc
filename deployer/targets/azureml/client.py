"""The boundary to Azure: one MLClient per command, and azure-core errors -> TargetError.

Everything Azure-specific about *connecting* lives here:

* credentials come from azure-identity's ``DefaultAzureCredential`` (environment variables,
  workload/managed identity, ``az login``, ...), the chain every Azure tool uses; deployer
  never reads or stores a secret itself;
* the workspace is named by subscription / resource group / workspace (flags, ``DEPLOYER_*``
  variables, the config file, or Azure's own ``AZURE_SUBSCRIPTION_ID`` /
  ``AZURE_RESOURCE_GROUP`` / ``AZUREML_WORKSPACE_NAME``);
* ``transport`` is azure-core's HTTP seam: tests pass a transport that answers like ARM, so
  the real SDK runs unmodified with no network;
* the SDK prints progress dots and INFO lines to stdout; :func:`azure_errors` sends them to
  stderr so ``--output json`` stays one clean document, and translates every azure-core /
  azure-ai-ml / azure-identity exception into deployer's error tree.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from deployer.errors import MissingDependencyError, TargetError, UsageError

log = logging.getLogger("deployer")

_CREDENTIAL_FIX = (
    "sign in with `az login`, or set AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET "
    "for a service principal, or run where a managed identity is available"
)


@dataclass(frozen=True)
class Workspace:
    """Which Azure ML workspace a command talks to."""

    subscription: str
    resource_group: str
    workspace: str

    def describe(self) -> str:
        return (
            f"workspace {self.workspace} (resource group {self.resource_group}, "
            f"subscription {self.subscription})"
        )


def resolve_workspace(
    subscription: str | None, resource_group: str | None, workspace: str | None
) -> Workspace:
    """Fill the three names from Azure's usual environment variables; say which is missing."""
    values = {
        "--subscription": subscription or os.environ.get("AZURE_SUBSCRIPTION_ID"),
        "--resource-group": resource_group or os.environ.get("AZURE_RESOURCE_GROUP"),
        "--workspace": workspace or os.environ.get("AZUREML_WORKSPACE_NAME"),
    }
    missing = [flag for flag, value in values.items() if not value]
    if missing:
        raise UsageError(
            f"the Azure ML target needs {', '.join(missing)}",
            where="--target azureml",
            fix="pass --subscription, --resource-group and --workspace (or set them under "
            "[targets.azureml] in deployer.toml, or AZURE_SUBSCRIPTION_ID / AZURE_RESOURCE_GROUP / "
            "AZUREML_WORKSPACE_NAME)",
        )
    return Workspace(
        str(values["--subscription"]), str(values["--resource-group"]), str(values["--workspace"])
    )


def sdk_modules() -> Any:
    """Import azure.ai.ml lazily, with the extra's name when it is missing."""
    try:
        import azure.ai.ml as aml
    except ImportError as exc:
        raise MissingDependencyError("azure-ai-ml", "azureml", "the Azure ML target") from exc
    _quiet_sdk_loggers()
    return aml


def default_credential() -> Any:
    """azure-identity's DefaultAzureCredential (tokens are fetched on first use)."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as exc:
        raise MissingDependencyError("azure-identity", "azureml", "Azure sign-in") from exc
    return DefaultAzureCredential()


def ml_client(ws: Workspace, *, credential: Any = None, transport: Any = None) -> Any:
    """An ``MLClient`` bound to ``ws``; ``transport`` replaces azure-core's HTTP transport."""
    aml = sdk_modules()
    kwargs: dict[str, Any] = {"user_agent": _user_agent()}
    if transport is not None:
        kwargs["transport"] = transport
    with azure_errors("connect to Azure ML", where=ws.describe()):
        return aml.MLClient(
            credential if credential is not None else default_credential(),
            ws.subscription,
            ws.resource_group,
            ws.workspace,
            **kwargs,
        )


def _user_agent() -> str:
    from deployer import __version__

    return f"deployer/{__version__}"


def _quiet_sdk_loggers() -> None:
    """The SDK logs each step at INFO ("Check: endpoint exists"); keep that for -v."""
    deployer_level = logging.getLogger("deployer").getEffectiveLevel()
    level = logging.DEBUG if deployer_level <= logging.DEBUG else logging.WARNING
    for name in ("azure", "azure.ai.ml", "azure.identity", "azure.core"):
        logging.getLogger(name).setLevel(level)


def error_code(exc: BaseException) -> str:
    """ARM's error code ("ResourceNotFound", "QuotaExceeded"...) of an azure-core error."""
    code = getattr(exc, "error", None)
    code = getattr(code, "code", None) if code is not None else None
    return str(code or getattr(exc, "error_code", None) or "")


def is_not_found(exc: BaseException) -> bool:
    try:
        from azure.core.exceptions import ResourceNotFoundError
    except ImportError:  # pragma: no cover
        return False
    return (
        isinstance(exc, ResourceNotFoundError)
        or error_code(exc) in ("ResourceNotFound", "NotFound")
        or type(exc).__name__ == "LocalEndpointNotFoundError"
    )


_HINTS = {
    "AuthorizationFailed": "ask for the 'AzureML Data Scientist' (or Contributor) role on the "
    "workspace",
    "QuotaExceeded": "pick another --instance-type, lower --instance-count, or request more quota",
    "OutOfQuota": "pick another --instance-type, lower --instance-count, or request more quota",
    "SubscriptionNotFound": "check --subscription (az account list)",
    "ResourceGroupNotFound": "check --resource-group",
    "ResourceNotReady": "the container did not become ready: check `az ml online-deployment "
    "get-logs`",
    "BadArgument": "check the values passed to deployer (names, traffic, instance type)",
}


@contextlib.contextmanager
def azure_errors(action: str, *, where: str | None = None) -> Iterator[None]:
    """Run SDK code: its stdout chatter goes to stderr, its errors become TargetError."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    except TargetError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated below, or re-raised untouched
        translated = translate(exc, action, where)
        if translated is None:
            raise
        raise translated from exc


def translate(exc: BaseException, action: str, where: str | None) -> TargetError | None:
    """The TargetError a user should see for an SDK exception (None: not an Azure error)."""
    try:
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
        )
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        # raised by the credential itself: nothing could sign in
        return TargetError(
            f"cannot {action}: no usable Azure credentials ({_first_line(exc)})",
            where=where,
            fix=_CREDENTIAL_FIX,
        )
    if isinstance(exc, HttpResponseError):
        code = error_code(exc)
        status = getattr(exc, "status_code", None)
        if status in (401, 403) and not code:
            code = "AuthorizationFailed"
        message = _arm_message(exc)
        fix = _HINTS.get(code)
        if fix is None and status in (401, 403):
            fix = _HINTS["AuthorizationFailed"]
        if fix is None and is_not_found(exc):
            fix = "check the names (deployer list --target azureml shows the endpoints)"
        label = f"{code}: " if code else ""
        return TargetError(f"cannot {action}: {label}{message}", where=where, fix=fix)
    if isinstance(exc, ServiceRequestError):
        return TargetError(
            f"cannot {action}: Azure could not be reached ({_first_line(exc)})",
            where=where,
            fix="check the network / proxy settings, then retry",
        )
    if isinstance(exc, AzureError):  # azure-ai-ml's MlException / ValidationException too
        return TargetError(f"cannot {action}: {_first_line(exc)}", where=where, fix=_ml_fix(exc))
    return None


def _arm_message(exc: BaseException) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) if error is not None else None
    if not message:
        message = getattr(exc, "message", None) or str(exc)
    return _first_line(message)


def _first_line(value: object) -> str:
    text = str(value).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("Code:", "Message:")):
            return line[:500]
    return text[:500]


def _ml_fix(exc: BaseException) -> str | None:
    name = type(exc).__name__
    if name == "ValidationException":
        return "fix the value the message names"
    if name in ("DockerEngineNotAvailableError",):
        return "start the Docker engine (docker info must work)"
    return None
