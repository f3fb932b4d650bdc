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


def build_options(base_image: str | None, parquet: bool, *, verify: bool = True, auto_deps: bool = True) -> Any:
    """The builder's options for SageMaker images (planning and building use the same)."""
    from deployer.building.plan import BuildOptions

    return BuildOptions(target="sagemaker", base_image=base_image or None, parquet=parquet, verify=verify,
                        auto_deps=auto_deps)


def plan_image(aws: Any, model: ModelRef, *, repository: str | None, app: str,
               registry_override: str | None, base_image: str | None = None,
               parquet: bool = False, verify: bool = True, auto_deps: bool = True) -> ImagePlan:
    from deployer.building.plan import plan_build
    from deployer.model import load_model

    assert model.uri
    build = plan_build(load_model(model.uri), build_options(base_image, parquet, verify=verify, auto_deps=auto_deps))
    tag = build.tag.rsplit(":", 1)[-1]
    repo = validate_repository(repository or f"deployer/{app.lower()}")
    uri = f"{ecr_host(aws.account_id(), aws.region)}/{repo}:{tag}"
    exists = Ecr(aws.session, aws.region).repository_uri(repo) is not None
    push_to = f"{registry_override.rstrip('/')}/{repo}:{tag}" if registry_override else None
    return ImagePlan(uri=uri, ecr=True, build=True, push=True, repository=repo,
                     create_repository=not exists, push_to=push_to, local_image=build.tag,
                     base_image=base_image, parquet=parquet, verify=verify, auto_deps=auto_deps)


def image_handlers(aws: Any) -> Mapping[tuple[str, str], Any]:
    """Executor handlers for the image steps of a plan."""

    def build(params: Mapping[str, Any]) -> str:
        from deployer.building.execute import build_model_image

        options = build_options(params.get("BaseImage") or None, bool(params.get("Parquet")),
                                verify=params.get("Verify") is not False, auto_deps=params.get("AutoDeps") is not False)
        plan, result = build_model_image(str(params["ModelUri"]), options, if_needed=True, step=log.info)
        if plan.tag != params.get("LocalImage"):
            log.warning("the image tag changed since planning (%s, planned %s): the model or its "
                        "environment changed meanwhile", plan.tag, params.get("LocalImage"))
        return str(result.image)

    def create_repository(params: Mapping[str, Any]) -> str:
        uri, created = Ecr(aws.session, aws.region).ensure_repository(str(params["repositoryName"]))
        log.info("ECR repository %s %s", uri, "created" if created else "exists")
        return uri

    def push(params: Mapping[str, Any]) -> Any:
        from deployer.registries import credentials as creds
        from deployer.registries.push import push_image

        dest = str(params["PushTo"])
        ecr = Ecr(aws.session, aws.region)
        token = ecr.login()  # ECR login always runs: it proves the caller may push to ECR
        if dest != params["Image"]:
            host = creds.registry_host(dest)
            login = creds.from_docker_config(host)
            log.info("registry override: pushing the image bytes to %s (ECR login done for %s)", host, token.registry)
        else:
            login = token
        return push_image(str(params["LocalImage"]), dest, credentials=login, skip_if_present=True)

    return {
        ("deployer", "build_image"): build,
        ("ecr", "create_repository"): create_repository,
        ("docker", "push"): push,
    }
