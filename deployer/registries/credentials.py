"""Registry credentials: where they come from, and how they never leak.

Sources, in the order a push uses them:

1. explicit ``--username`` + ``--password-stdin`` (the password is read from stdin, never
   from argv, which every user on the machine can see in ``ps``);
2. a cloud login (ECR's ``get_authorization_token``, see :mod:`deployer.registries.ecr`);
3. the Docker client configuration: ``$DOCKER_CONFIG/config.json`` (or ``~/.docker``),
   including ``credsStore`` / ``credHelpers`` credential helpers. The docker SDK's own
   resolver is used, so deployer finds exactly what ``docker login`` stored;
4. nothing: anonymous (public or unauthenticated registries).

:class:`Credentials` never shows its password in ``repr``/``str`` or in JSON output.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from deployer.errors import RegistryAuthError, UsageError

log = logging.getLogger("deployer")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    registry: str
    source: str
    """Where they came from: "stdin", "ecr", "docker-config", ... (for messages)."""

    def auth_config(self) -> dict[str, str]:
        """The dict the docker SDK's push/pull take."""
        return {
            "username": self.username,
            "password": self.password,
            "serveraddress": self.registry,
        }

    def to_dict(self) -> dict[str, str]:
        return {"username": self.username, "registry": self.registry, "source": self.source}


def registry_host(image_ref: str) -> str:
    """``host:port/repo:tag`` -> ``host:port``; Docker Hub references -> ``docker.io``."""
    first, sep, _ = image_ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def from_stdin(username: str | None, password: str | None, registry: str) -> Credentials | None:
    """``--username`` with ``--password-stdin``; both or neither."""
    if not username and password is None:
        return None
    if not username:
        raise UsageError(
            "--password-stdin needs --username",
            where="--username",
            fix="pass --username NAME together with --password-stdin",
        )
    if password is None:
        raise UsageError(
            "--username needs the password on stdin",
            where="--password-stdin",
            fix='echo "$PASSWORD" | deployer ... --username NAME --password-stdin',
        )
    password = password.rstrip("\r\n")
    if not password:
        raise UsageError(
            "the password read from stdin is empty",
            where="--password-stdin",
            fix="pipe the password into the command",
        )
    return Credentials(username, password, registry, "stdin")


def from_docker_config(registry: str) -> Credentials | None:
    """Credentials ``docker login`` stored for ``registry`` (config file or credential helper)."""
    from docker.credentials.errors import StoreError

    from docker import auth

    try:
        config = auth.load_config()
        found = auth.resolve_authconfig(config, registry)
    except StoreError as exc:
        raise RegistryAuthError(
            f"the Docker credential helper failed for {registry}: {exc}",
            where=registry,
            fix=f"run `docker login {registry}` again, or pass --username and --password-stdin",
        ) from exc
    if not found:
        return None
    username = found.get("username") or found.get("Username")
    password = found.get("password") or found.get("Password") or found.get("IdentityToken")
    if not username or not password:
        return None
    return Credentials(str(username), str(password), registry, "docker-config")


def resolve(
    registry: str, *, username: str | None = None, password: str | None = None
) -> Credentials | None:
    """Explicit credentials if given, else the Docker config's, else None (anonymous)."""
    explicit = from_stdin(username, password, registry)
    if explicit is not None:
        return explicit
    found = from_docker_config(registry)
    if found is None:
        log.debug("no stored credentials for %s: pushing anonymously", registry)
    return found
