"""ACR login: the Azure AD token -> refresh token exchange, against a local HTTP server that
speaks ACR's /oauth2/exchange protocol."""

from __future__ import annotations

import http.server
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from deployer.errors import RegistryAuthError, RegistryError
from deployer.registries.acr import ACR_TOKEN_USER, ARM_SCOPE, acr_login, is_acr


class Token:
    def __init__(self, token: str = "aad-token") -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


class NoCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.identity import CredentialUnavailableError

        raise CredentialUnavailableError("EnvironmentCredential authentication unavailable")


@pytest.fixture
def exchange() -> Iterator[Any]:
    seen: list[dict[str, list[str]]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            seen.append(form)
            if self.path != "/oauth2/exchange" or form.get("access_token") != ["aad-token"]:
                body, status = b'{"errors":[{"code":"UNAUTHORIZED"}]}', 401
            else:
                body, status = b'{"refresh_token":"acr-refresh-token"}', 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.seen = seen  # type: ignore[attr-defined]
    server.host = f"127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()


def test_exchange_gives_docker_credentials(exchange):
    cred = Token()
    creds = acr_login(exchange.host, credential=cred, tenant="t-1", scheme="http")
    assert (creds.username, creds.password, creds.source) == (ACR_TOKEN_USER, "acr-refresh-token", "acr")
    assert cred.scopes == [(ARM_SCOPE,)]
    form = exchange.seen[0]
    assert form == {"grant_type": ["access_token"], "service": [exchange.host],
                    "access_token": ["aad-token"], "tenant": ["t-1"]}
    assert "acr-refresh-token" not in repr(creds)  # the password never shows


def test_refused_token_is_an_auth_error_without_secrets(exchange):
    with pytest.raises(RegistryAuthError) as err:
        acr_login(exchange.host, credential=Token("wrong-token"), scheme="http")
    assert "AcrPush" in err.value.format_message()
    assert "wrong-token" not in err.value.format_message()


def test_missing_azure_credentials(exchange):
    with pytest.raises(RegistryAuthError, match="no usable Azure credentials"):
        acr_login(exchange.host, credential=NoCredential(), scheme="http")
    assert exchange.seen == []


def test_unreachable_registry():
    with pytest.raises(RegistryError, match="cannot reach"):
        acr_login("127.0.0.1:9", credential=Token(), scheme="http", timeout=2)


def test_is_acr():
    assert is_acr("myregistry.azurecr.io") and is_acr("Team01.azurecr.cn")
    assert not is_acr("azurecr.io") and not is_acr("myregistry.azurecr.io.evil.com") and not is_acr("docker.io")
