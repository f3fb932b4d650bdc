"""Build a model's image and push it once: what ``deployer build-and-push`` does, as a library.

Destinations (:class:`Destination`): any registry ``HOST[/NAMESPACE]``, or Amazon ECR (the
repository is created when missing; ``registry_override`` sends the image bytes to another
host while the ECR API calls still go to AWS). Credentials follow the one login rule of
:mod:`deployer.registries.login`.

The image tag is content-addressed (model files + environment + deployer version), so when the
registry already has that tag nothing is built and nothing is pushed. A built image is verified
(run offline, input example scored) before the push; a local image of the same content whose
labels say it passed is pushed without verifying it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deployer.errors import UsageError

log = logging.getLogger("deployer")


@dataclass(frozen=True)
class Destination:
    """Where the image goes: ``registry`` (HOST[/NAMESPACE]) or ECR (``ecr=True``)."""

    registry: str | None = None
    ecr: bool = False
    repository: str | None = None  # default: the model's image name
    region: str | None = None  # ECR
    profile: str | None = None  # ECR
    registry_override: str | None = None  # ECR: push the bytes to this host instead
    username: str | None = None
    password: str | None = None

    def check(self) -> Destination:
        """Refuse contradictory destinations (before anything is planned or built)."""
        if self.ecr and self.registry:
            raise UsageError(
                "--registry and --target sagemaker exclude each other",
                where="--registry",
                fix="ECR's registry is derived from the AWS account and region; drop --registry",
            )
        if not self.ecr and not self.registry:
            raise UsageError(
                "where to push?",
                where="--registry",
                fix="pass --registry HOST[/NAMESPACE], or --target sagemaker for Amazon ECR",
            )
        if self.registry_override and not self.ecr:
            raise UsageError(
                "--registry-override only applies to ECR pushes",
                where="--registry-override",
                fix="use --registry HOST directly",
            )
        return self

    def describe(self, image_tag: str) -> str:
        """Where ``image_tag`` (a planned ``name:tag``) would go, for ``--dry-run`` (no AWS
        call)."""
        name, _, tag = image_tag.rpartition(":")
        if self.ecr:
            override = (
                f"{self.registry_override.rstrip('/')} (bytes), " if self.registry_override else ""
            )
            region = f", {self.region}" if self.region else ""
            return (
                f"ECR {override}repository {self.repository or name} (account and region from the "
                f"AWS SDK{region})"
            )
        return f"{(self.registry or '').rstrip('/')}/{self.repository or name}:{tag}"


@dataclass(frozen=True)
class Published:
    image: str  # where it is now
    local_image: str
    digest: str | None
    built: bool
    pushed: bool
    repository_created: bool = False
    attempts: int = 0
    verification: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image": self.image,
            "local_image": self.local_image,
            "repository_created": self.repository_created,
            "digest": self.digest,
            "built": self.built,
            "pushed": self.pushed,
        }
        if self.pushed:
            out["attempts"] = self.attempts
            out["verification"] = self.verification.to_dict() if self.verification else None
        return out


def build_and_push(
    model_uri: Any,
    options: Any,
    destination: Destination,
    *,
    retries: int = 4,
    build: Callable[[], tuple[Any, Any]] | None = None,
) -> Published:
    """Plan the image, skip everything when the registry has its content-addressed tag, else
    build (and verify) it and push it. ``build``: how to build (default
    :func:`~deployer.building.execute.build_model_image` with ``if_needed``; the CLI passes
    one with progress)."""
    from deployer.building.engine import docker_client
    from deployer.building.execute import build_model_image
    from deployer.building.sources import plan_source
    from deployer.registries.login import login_for
    from deployer.registries.push import push_image, remote_digest

    destination.check()
    plan = plan_source(model_uri, options, warn=lambda _w: None)  # build_model_image warns
    name, _, tag = plan.tag.rpartition(":")
    repo = destination.repository or name
    created = False
    ecr = None
    if destination.ecr:
        from deployer.registries.ecr import Ecr, validate_repository

        ecr = Ecr.connect(destination.region, destination.profile)
        uri, created = ecr.ensure_repository(validate_repository(repo))
        override = destination.registry_override
        dest = f"{override.rstrip('/')}/{repo}:{tag}" if override else f"{uri}:{tag}"
    else:
        dest = f"{(destination.registry or '').rstrip('/')}/{repo}:{tag}"
    login = login_for(dest, ecr=ecr, username=destination.username, password=destination.password)
    custom_tag = bool(getattr(options, "tag", None))
    existing = None if custom_tag else remote_digest(docker_client(), dest, login)
    if existing:
        log.info(
            "%s is already in the registry (content-addressed tag): nothing to build or push", dest
        )
        return Published(
            dest, plan.tag, existing, built=False, pushed=False, repository_created=created
        )
    _plan, result = (build or (lambda: build_model_image(model_uri, options, if_needed=True)))()
    pushed = push_image(result.image, dest, credentials=login, retries=retries)
    return Published(
        dest,
        plan.tag,
        pushed.digest,
        built=not result.skipped,
        pushed=True,
        repository_created=created,
        attempts=pushed.attempts,
        verification=result.verification,
    )
