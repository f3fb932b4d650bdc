"""Azure Container Registry login through azure-identity (no ``az acr login`` needed).

ACR accepts an Azure AD access token in exchange for a registry refresh token
(``POST https://<registry>/oauth2/exchange`` with ``grant_type=access_token``); Docker then
logs in with the fixed user name ``00000000-0000-0000-0000-000000000000`` and that refresh
token as the password. This is exactly what ``az acr login`` does, minus the Azure CLI: the
AD token comes from ``DefaultAzureCredential`` (environment, managed identity, ``az login``...).
The tokens are handed to the docker SDK as :class:`Credentials` and never logged or written
to a Docker config file.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from deployer.errors import MissingDependencyError, RegistryAuthError, RegistryError
from deployer.registries.credentials import Credentials, resolve

#: The user name ACR expects with a refresh token as the password.
ACR_TOKEN_USER = "00000000-0000-0000-0000-000000000000"
#: Azure AD scope of the token ACR exchanges (Azure Resource Manager).
ARM_SCOPE = "https://management.azure.com/.default"
_ACR_HOST = re.compile(r"^[a-z0-9]{5,50}\.azurecr\.(io|cn|us)$")


def is_acr(host: str) -> bool:
    """True for ``<name>.azurecr.io`` (and the sovereign clouds' suffixes)."""
    return bool(_ACR_HOST.match(host.lower()))


def push_credentials(
    host: str, *, username: str | None = None, password: str | None = None, credential: Any = None
) -> Credentials | None:
    """Credentials to push to ``host``: explicit ones, else Docker's config; an Azure Container
    Registry with neither logs in through azure-identity (``credential``: a TokenCredential,
    default DefaultAzureCredential). None: push anonymously."""
    login = resolve(host, username=username, password=password)
    if login is None and is_acr(host):
        login = acr_login(host, credential=credential)
    return login


def acr_login(
    registry: str,
    *,
    credential: Any = None,
    tenant: str | None = None,
    scheme: str = "https",
    timeout: float = 30.0,
) -> Credentials:
    """Docker credentials for ``registry`` from an Azure AD token.

    ``credential`` is any azure-core TokenCredential (default: DefaultAzureCredential);
    ``scheme`` exists for tests against a local exchange server.
    """
    if credential is None:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError as exc:
            raise MissingDependencyError(
                "azure-identity", "azureml", "Azure Container Registry login"
            ) from exc
        credential = DefaultAzureCredential()
    aad_token = _aad_token(credential, registry)
    form = {"grant_type": "access_token", "service": registry, "access_token": aad_token}
    if tenant:
        form["tenant"] = tenant
    request = urllib.request.Request(
        f"{scheme}://{registry}/oauth2/exchange",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - registry host
            payload = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise RegistryAuthError(
                f"the registry refused the Azure AD token (HTTP {exc.code})",
                where=registry,
                fix="grant the signed-in identity the AcrPush role on the registry "
                "(az role assignment create --role AcrPush ...)",
            ) from None
        raise RegistryError(
            f"token exchange failed with HTTP {exc.code}",
            where=registry,
            fix="check the registry name; retry later if the registry is busy",
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise RegistryError(
            f"cannot reach the registry's token endpoint: {reason}",
            where=registry,
            fix="check the registry name and the network",
        ) from None
    refresh = payload.get("refresh_token") if isinstance(payload, dict) else None
    if not refresh or not isinstance(refresh, str):
        raise RegistryError(
            "the registry's token exchange returned no refresh_token",
            where=registry,
            fix="check that this is an Azure Container Registry",
        )
    return Credentials(username=ACR_TOKEN_USER, password=refresh, registry=registry, source="acr")


def _aad_token(credential: Any, registry: str) -> str:
    try:
        from azure.core.exceptions import ClientAuthenticationError
    except ImportError as exc:  # pragma: no cover - azure-core comes with azure-identity
        raise MissingDependencyError(
            "azure-identity", "azureml", "Azure Container Registry login"
        ) from exc
    try:
        return str(credential.get_token(ARM_SCOPE).token)
    except ClientAuthenticationError as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise RegistryAuthError(
            f"no usable Azure credentials to log in to the registry ({first})",
            where=registry,
            fix="sign in with `az login`, or set AZURE_TENANT_ID / AZURE_CLIENT_ID / "
            "AZURE_CLIENT_SECRET",
        ) from None
