"""``deployer build-and-push``: build the model's image and push it to a registry.

Destinations: ``--registry HOST[/NAMESPACE]`` (any registry: credentials from
``--username`` + ``--password-stdin``, else ``docker login``'s config and credential helpers)
or ``--target sagemaker`` (Amazon ECR: the repository is created if missing, login through
``ecr:GetAuthorizationToken``); an Azure Container Registry (``*.azurecr.io``) without stored
credentials logs in through azure-identity (the BYOC images of ``--target azureml``). ``--registry-override`` sends the bytes of an ECR push to
another host (a mirror, the tests' registry) while the ECR API calls still go to AWS.

The image tag is content-addressed (model files + environment + deployer version), so when
the registry already has that tag, nothing is built and nothing is pushed. A built image is
verified (run offline, input example scored) before the push; a local image of the same
content whose labels say it passed is pushed without verifying it again.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from deployer.cli.build_cmd import run_build
from deployer.cli.build_options import build_options, image_options
from deployer.cli.common import command, get_console, model_option

log = logging.getLogger("deployer")


@command("build-and-push")
@model_option
@image_options
@click.option("--registry", metavar="HOST[/NAMESPACE]", help="Registry to push to (not with --target sagemaker).")
@click.option("--repository", metavar="NAME", help="Repository name (default: the model's image name).")
@click.option("--username", metavar="USER", help="Registry user (with --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the registry password from stdin.")
@click.option("--region", metavar="REGION", help="AWS region for ECR (--target sagemaker).")
@click.option("--profile", metavar="PROFILE", help="AWS profile for ECR (--target sagemaker).")
@click.option("--registry-override", metavar="HOST",
              help="ECR only: push the bytes to HOST instead of the ECR registry (API calls still go to AWS).")
@click.option("--retries", type=click.IntRange(0, 10), default=4, show_default=True,
              help="Retries on transient push failures (connection reset, 5xx), with backoff.")
@click.option("--dry-run", is_flag=True, default=False,
              help="Print the build plan and where the image would go; build, log in and push nothing.")
def command(model_uri: str, registry: str | None, repository: str | None, username: str | None,
            password_stdin: bool, region: str | None, profile: str | None, registry_override: str | None,
            retries: int, dry_run: bool, **build_params: Any) -> None:
    """Build the model's serving image and push it; print the pushed image reference.

    \b
      deployer build-and-push -m ./model --registry registry.example.com/ml
      echo "$PW" | deployer build-and-push -m ./model --registry HOST --username me --password-stdin
      deployer build-and-push -m ./model --target sagemaker --region eu-west-1
    """
    from deployer.building.plan import plan_build
    from deployer.errors import UsageError
    from deployer.model import load_model
    from deployer.registries import credentials as creds
    from deployer.registries.push import docker_client, push_image, remote_digest

    target = build_params.get("target") or "local"
    ecr = target == "sagemaker"
    if ecr and registry:
        raise UsageError("--registry and --target sagemaker exclude each other", where="--registry",
                         fix="ECR's registry is derived from the AWS account and region; drop --registry")
    if not ecr and not registry:
        raise UsageError("where to push?", where="--registry",
                         fix="pass --registry HOST[/NAMESPACE], or --target sagemaker for Amazon ECR")
    if registry_override and not ecr:
        raise UsageError("--registry-override only applies to ECR pushes", where="--registry-override",
                         fix="use --registry HOST directly")
    if dry_run:
        from deployer.cli.build_cmd import print_build_plan

        def destination(plan: Any) -> tuple[dict[str, Any], str]:
            name, _, tag = plan.tag.rpartition(":")
            where = (f"ECR {(registry_override.rstrip('/') + ' (bytes), ') if registry_override else ''}"
                     f"repository {repository or name} (account and region from the AWS SDK"
                     f"{', ' + region if region else ''})" if ecr
                     else f"{(registry or '').rstrip('/')}/{repository or name}:{tag}")
            return {"push_to": where}, f"push to    {where}"

        print_build_plan(model_uri, build_params, destination)
        return
    password = sys.stdin.readline() if password_stdin else None

    plan = plan_build(load_model(model_uri), build_options(build_params))
    name, _, tag = plan.tag.rpartition(":")
    custom_tag = bool(build_params.get("tag"))
    repo = repository or name

    repository_created = False
    if ecr:
        from deployer.registries.ecr import validate_repository

        ecr_api = _ecr(region, profile)
        validate_repository(repo)
        uri, repository_created = ecr_api.ensure_repository(repo)
        token = ecr_api.login()
        if registry_override:
            host = registry_override.rstrip("/")
            login = creds.resolve(host, username=username, password=password)
            dest = f"{host}/{repo}:{tag}"
        else:
            login, dest = token, f"{uri}:{tag}"
    else:
        assert registry is not None
        host = creds.registry_host(registry.rstrip("/") + "/x")
        from deployer.registries.acr import push_credentials

        login = push_credentials(host, username=username, password=password)
        dest = f"{registry.rstrip('/')}/{repo}:{tag}"

    console = get_console()
    result: dict[str, Any] = {"image": dest, "local_image": plan.tag, "repository_created": repository_created}
    existing = None if custom_tag else remote_digest(docker_client(), dest, login)
    if existing:
        log.info("%s is already in the registry (content-addressed tag): nothing to build or push", dest)
        result.update(digest=existing, built=False, pushed=False)
    else:
        _plan, build = run_build(model_uri, build_params, if_needed=True)
        pushed = push_image(build.image, dest, credentials=login, retries=retries)
        result.update(digest=pushed.digest, built=not build.skipped, pushed=True, attempts=pushed.attempts,
                      verification=build.verification.to_dict() if build.verification else None)
    console.result(result, text=lambda: f"{result['image']}\n  digest {result['digest']}"
                   + ("" if result["pushed"] else "\n  (already in the registry: no build, no push)"))


def _ecr(region: str | None, profile: str | None) -> Any:
    from deployer.registries.ecr import Ecr
    from deployer.targets.sagemaker.client import Aws

    aws = Aws(region, profile)
    return Ecr(aws.session, aws.region)
