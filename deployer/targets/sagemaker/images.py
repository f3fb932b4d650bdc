"""Images for SageMaker: build from the model, ensure the ECR repository, log in, push.

Planning (:func:`plan_image`) only reads: the builder's pure ``plan_build`` (which fixes the
content-addressed tag) and ECR's ``describe_repositories``. The handlers run at apply time.
``registry_override`` sends the image *bytes* to another registry host (a mirror, or the
tests' local registry) while every ECR API call (repository, login) still goes to AWS.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from deployer.registries.ecr import Ecr, ecr_host, validate_repository
from deployer.targets.sagemaker.plan import ImagePlan, ModelRef

log = logging.getLogger("deployer")


def plan_image(
    aws: Any,
    model: ModelRef,
    *,
    repository: str | None,
    app: str,
    registry_override: str | None,
    build_options: Any = None,
) -> ImagePlan:
    """``build_options``: the request's build-option group (None: the defaults)."""
    from deployer.targets.model_image import plan_model_image

    assert model.uri
    build, step = plan_model_image(model.uri, build_options, "sagemaker")
    tag = build.tag.rsplit(":", 1)[-1]
    repo = validate_repository(repository or f"deployer/{app.lower()}")
    uri = f"{ecr_host(aws.account_id(), aws.region)}/{repo}:{tag}"
    exists = Ecr(aws.session, aws.region).repository_uri(repo) is not None
    push_to = f"{registry_override.rstrip('/')}/{repo}:{tag}" if registry_override else None
    return ImagePlan(
        uri=uri,
        ecr=True,
        build=True,
        push=True,
        repository=repo,
        create_repository=not exists,
        push_to=push_to,
        local_image=build.tag,
        build_options=step["Build"],
    )


def image_handlers(aws: Any) -> Mapping[tuple[str, str], Any]:
    """Executor handlers for the image steps of a plan."""
    from deployer.targets.model_image import BUILD_STEP, build_step

    def create_repository(params: Mapping[str, Any]) -> str:
        uri, created = Ecr(aws.session, aws.region).ensure_repository(str(params["repositoryName"]))
        log.info("ECR repository %s %s", uri, "created" if created else "exists")
        return uri

    def push(params: Mapping[str, Any]) -> Any:
        from deployer.registries.login import login_for
        from deployer.registries.push import push_image

        dest = str(params["PushTo"])
        login = login_for(dest, ecr=Ecr(aws.session, aws.region))
        return push_image(str(params["LocalImage"]), dest, credentials=login, skip_if_present=True)

    return {
        BUILD_STEP: build_step,
        ("ecr", "create_repository"): create_repository,
        ("docker", "push"): push,
    }
