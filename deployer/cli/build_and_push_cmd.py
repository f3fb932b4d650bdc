"""``deployer build-and-push``: build the model's image and push it to a registry.

Destinations: ``--registry HOST[/NAMESPACE]`` (any registry: credentials from
``--username`` + ``--password-stdin``, else ``docker login``'s config and credential helpers)
or ``--target sagemaker`` (Amazon ECR: the repository is created if missing, login through
``ecr:GetAuthorizationToken``); an Azure Container Registry (``*.azurecr.io``) without stored
credentials logs in through azure-identity (the BYOC images of ``--target azureml``).
``--registry-override`` sends the bytes of an ECR push to another host (a mirror, the tests'
registry) while the ECR API calls still go to AWS.

The command parses and reports; what it does is :func:`deployer.registries.publish.build_and_push`
(content-addressed: a tag the registry has is neither built nor pushed again; a built image is
verified before the push).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

import click

from deployer.cli.build_cmd import run_build
from deployer.cli.build_options import build_options, image_options
from deployer.cli.common import command, get_console, model_set_options


@command("build-and-push")
@model_set_options
@image_options
@click.option(
    "--registry",
    metavar="HOST[/NAMESPACE]",
    help="Registry to push to (not with --target sagemaker).",
)
@click.option(
    "--repository", metavar="NAME", help="Repository name (default: the model's image name)."
)
@click.option("--username", metavar="USER", help="Registry user (with --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the registry password from stdin.")
@click.option("--region", metavar="REGION", help="AWS region for ECR (--target sagemaker).")
@click.option("--profile", metavar="PROFILE", help="AWS profile for ECR (--target sagemaker).")
@click.option(
    "--registry-override",
    metavar="HOST",
    help="ECR only: push the bytes to HOST instead of the ECR registry "
    "(API calls still go to AWS).",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    default=4,
    show_default=True,
    help="Retries on transient push failures (connection reset, 5xx), with backoff.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    default=False,
    help="Print the build plan and where the image would go; build, log in and push nothing.",
)
def command(
    model_uris: tuple[str, ...],
    model_repository: Any,
    registry: str | None,
    repository: str | None,
    username: str | None,
    password_stdin: bool,
    region: str | None,
    profile: str | None,
    registry_override: str | None,
    retries: int,
    dry_run: bool,
    **build_params: Any,
) -> None:
    """Build the model's serving image and push it; print the pushed image reference.

    \b
      deployer build-and-push -m ./model --registry registry.example.com/ml
      echo "$PW" | deployer build-and-push -m ./model --registry HOST --username me --password-stdin
      deployer build-and-push -m ./model --target sagemaker --region eu-west-1
    """
    from deployer.building.sources import model_source
    from deployer.cli.build_cmd import print_build_plan
    from deployer.registries.publish import Destination, build_and_push

    model_uri = model_source(model_uris, model_repository)
    target = build_params.get("target") or "local"
    destination = Destination(
        registry=registry,
        ecr=target == "sagemaker",
        repository=repository,
        region=region,
        profile=profile,
        registry_override=registry_override,
        username=username,
    ).check()
    if dry_run:
        print_build_plan(
            model_uri,
            build_params,
            lambda plan: (
                {"push_to": destination.describe(plan.tag)},
                f"push to    {destination.describe(plan.tag)}",
            ),
        )
        return
    password = sys.stdin.readline() if password_stdin else None
    published = build_and_push(
        model_uri,
        build_options(build_params),
        replace(destination, password=password),
        retries=retries,
        build=lambda: run_build(model_uri, build_params, if_needed=True),
    )
    result = published.to_dict()
    get_console().result(
        result,
        text=lambda: (
            f"{result['image']}\n  digest {result['digest']}"
            + ("" if result["pushed"] else "\n  (already in the registry: no build, no push)")
        ),
    )
