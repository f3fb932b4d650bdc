"""Push a local image to a registry through the Docker engine, safely.

Why it is built this way:

* The docker SDK talks to the engine's API, so pushes work with any docker CLI version (or
  none) and credentials are passed per call (``auth_config``), never written to disk.
* A registry only creates a tag when the manifest is PUT, after every blob is uploaded. So an
  interrupted push never leaves a tag pointing at missing layers; what deployer adds on top is
  to *check* that: after a push it reads the tag's digest back from the registry
  (``inspect_distribution``) and fails if it is not the digest just pushed.
* Transient failures (connection refused/reset, EOF, timeouts, HTTP 5xx) are retried with
  exponential backoff; authentication failures are not (retrying a wrong password only
  locks accounts) and become :class:`RegistryAuthError` with the next step to take.
* ``skip_if_present``: for content-addressed tags, an existing tag means the same content,
  so the push is skipped after one manifest lookup.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from deployer.building.engine import docker_client
from deployer.errors import RegistryAuthError, RegistryError
from deployer.registries.credentials import Credentials, registry_host

log = logging.getLogger("deployer")

_AUTH = re.compile(
    r"unauthorized|authentication required|no basic auth credentials|access denied|denied:|"
    r"\b401\b|\b403\b|incorrect username or password|authorization failed",
    re.IGNORECASE,
)
_TRANSIENT = re.compile(
    r"connection refused|connection reset|broken pipe|\bEOF\b|timeout|timed out|"
    r"unexpected HTTP status: 5\d\d|\b50[0234]\b|service unavailable|bad gateway|"
    r"server closed|temporarily unavailable|i/o timeout|TLS handshake",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PushResult:
    image: str
    """The pushed reference, ``host/repo:tag``."""
    digest: str | None
    """The manifest digest the registry now serves for the tag."""
    attempts: int
    skipped: bool = False
    bytes_pushed: int = 0


class _Transient(Exception):
    pass


def split_reference(ref: str) -> tuple[str, str]:
    """``host:5000/ns/repo:tag`` -> (``host:5000/ns/repo``, ``tag``); tag defaults to latest."""
    if "@" in ref:
        raise RegistryError(
            f"cannot push to a digest reference {ref!r}",
            where=ref,
            fix="push to a tag (repo:tag); the digest is assigned by the registry",
        )
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def classify(message: str, registry: str, credentials: Credentials | None) -> Exception:
    """A push error message -> RegistryAuthError | _Transient | RegistryError."""
    if _AUTH.search(message):
        source = (
            f" (from {credentials.source}, user {credentials.username!r})"
            if credentials
            else " (none found)"
        )
        return RegistryAuthError(
            f"the registry refused our credentials{source}: {message}",
            where=registry,
            fix=f"check the user/password (docker login {registry}, or --username with "
            "--password-stdin)",
        )
    if _TRANSIENT.search(message):
        return _Transient(message)
    return RegistryError(
        f"push failed: {message}",
        where=registry,
        fix="see the registry's message above; run with -v for the push log",
    )


def remote_digest(client: Any, ref: str, credentials: Credentials | None) -> str | None:
    """The digest the registry serves for ``ref``, or None if the tag does not exist."""
    import docker

    try:
        data = client.api.inspect_distribution(
            ref, auth_config=credentials.auth_config() if credentials else None
        )
    except docker.errors.APIError as exc:
        text = str(getattr(exc, "explanation", "") or exc)
        if "manifest unknown" in text or "not found" in text.lower() or exc.status_code == 404:
            return None
        err = classify(text, registry_host(ref), credentials)
        if isinstance(err, _Transient):
            raise RegistryError(
                f"cannot read {ref} from the registry: {text}",
                where=ref,
                fix="check the registry is up and retry",
            ) from exc
        raise err from exc
    return str(data.get("Descriptor", {}).get("digest") or "") or None


def _consume(
    stream: Iterable[dict[str, Any]], registry: str, credentials: Credentials | None
) -> tuple[str | None, int]:
    """Read the engine's push progress; return (digest, bytes). Raise on an error line."""
    digest = None
    layers: dict[str, int] = {}
    last_status: dict[str, str] = {}
    for item in stream:
        if "error" in item or "errorDetail" in item:
            message = (
                (item.get("errorDetail") or {}).get("message")
                or item.get("error")
                or "unknown error"
            )
            raise classify(str(message), registry, credentials)
        aux = item.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = str(aux["Digest"])
        layer, status = item.get("id"), item.get("status")
        if layer and status and last_status.get(layer) != status:
            last_status[layer] = status
            log.debug("  %s: %s", layer, status)
        detail = item.get("progressDetail") or {}
        if layer and detail.get("total"):
            layers[layer] = int(detail["total"])
    return digest, sum(layers.values())


def push_image(
    local_image: str,
    dest: str,
    *,
    credentials: Credentials | None = None,
    client: Any = None,
    retries: int = 4,
    backoff: float = 1.0,
    skip_if_present: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> PushResult:
    """Tag ``local_image`` as ``dest`` and push it; retry transient failures; verify the tag."""
    import requests

    import docker

    client = client or docker_client()
    registry = registry_host(dest)
    repo, tag = split_reference(dest)
    try:
        image = client.images.get(local_image)
    except docker.errors.ImageNotFound as exc:
        raise RegistryError(
            f"no local image {local_image!r} to push",
            where=local_image,
            fix="build it first (deployer build -m MODEL)",
        ) from exc
    if skip_if_present:
        existing = remote_digest(client, dest, credentials)
        if existing:
            log.info("%s already in the registry (%s): push skipped", dest, existing[:19])
            return PushResult(dest, existing, attempts=0, skipped=True)
    image.tag(repo, tag)
    auth = credentials.auth_config() if credentials else None
    attempt = 0
    while True:
        attempt += 1
        log.info("pushing %s%s", dest, f" (attempt {attempt}/{retries + 1})" if attempt > 1 else "")
        try:
            stream = client.api.push(repo, tag, stream=True, decode=True, auth_config=auth)
            digest, size = _consume(stream, registry, credentials)
            break
        except _Transient as exc:
            reason = str(exc)
        except docker.errors.APIError as exc:
            err = classify(str(exc.explanation or exc), registry, credentials)
            if not isinstance(err, _Transient):
                raise err from exc
            reason = str(exc.explanation or exc)
        except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout) as exc:
            reason = f"lost the Docker engine connection: {exc}"
        if attempt > retries:
            raise RegistryError(
                f"push of {dest} failed after {attempt} attempts: {reason}",
                where=registry,
                fix="check the registry is reachable and healthy, then run the same command again "
                "(a partial push never creates the tag)",
            )
        delay = backoff * (2 ** (attempt - 1))
        log.warning("push of %s failed (%s); retrying in %.0fs", dest, reason, delay)
        sleep(delay)
    served = remote_digest(client, dest, credentials)
    if digest and served != digest:
        raise RegistryError(
            f"after the push, the registry serves {served or 'nothing'} for {dest}, not the pushed "
            f"{digest}",
            where=registry,
            fix="another client may be pushing the same tag; push again, or use a unique tag",
        )
    log.info("pushed %s (%s)", dest, (digest or served or "?")[:19])
    return PushResult(dest, digest or served, attempts=attempt, bytes_pushed=size)
