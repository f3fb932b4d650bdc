"""``deployer deploy``: plan a deployment to a target, print it (--dry-run) or apply it."""

from __future__ import annotations

from typing import Any

import click

from deployer.cli.build_options import build_option_group, pop_build_options
from deployer.cli.common import command, get_console
from deployer.cli.targets_common import (
    render_mapping,
    render_plan,
    require_target,
    split_target_values,
    target_options,
)
from deployer.targets.base import DeployRequest
from deployer.targets.build_options import refuse_unused


@command("deploy")
@click.option(
    "--target", "-t", "target", metavar="TARGET", help="Where to deploy (e.g. sagemaker)."
)
@click.option("--name", "-n", "name", metavar="NAME", help="Endpoint name.")
@click.option(
    "-m",
    "--model",
    "model_uri",
    metavar="URI",
    help="Model to deploy (local path, runs:/, models:/...).",
)
@click.option(
    "--image-uri",
    "--image",
    "image_uri",
    metavar="IMAGE",
    help="Deploy this prebuilt, pushed image (no build; Azure ML: bring-your-own-container).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the ordered plan of cloud calls; change nothing."
)
@click.option(
    "--wait/--no-wait", default=True, help="Wait until the endpoint serves (default: wait)."
)
@click.option("--timeout", type=float, metavar="SECONDS", help="Give up waiting after this long.")
@target_options("deploy")
@build_option_group
def command(
    target: str | None,
    name: str | None,
    model_uri: str | None,
    image_uri: str | None,
    dry_run: bool,
    wait: bool,
    timeout: float | None,
    **target_values: Any,
) -> None:
    """Deploy a model (or a prebuilt image) to an endpoint.

    \b
      deployer deploy --target sagemaker --name iris -m ./model --dry-run
      deployer deploy --target sagemaker --name iris -m ./model --mode replace

    Options in [brackets] belong to the named target; a target's options are refused
    for another target. The image options (--base-image, --pip, --system-package, --gpu,
    --lock, --wheelhouse, --image-env...) are `deployer build`'s, for the image built from -m.
    """
    from deployer.errors import UsageError
    from deployer.targets.actions import plan_deploy

    ctx = click.get_current_context()
    target = require_target(target, "deploy")
    build, given = pop_build_options(ctx, target_values)
    connection, options = split_target_values(ctx, target, "deploy", target_values)
    refuse_unused(given, target=target, model_uri=model_uri, image_uri=image_uri, options=options)
    if not name:
        raise UsageError(
            "`deployer deploy` needs --name", where="--name", fix="pass --name ENDPOINT"
        )
    request = DeployRequest(
        name=name,
        model_uri=model_uri,
        image_uri=image_uri,
        options=options,
        wait=wait,
        timeout=timeout,
        build=build,
    )
    plugin, plan = plan_deploy(target, request, connection)
    console = get_console()
    if dry_run:
        console.result({"dry_run": True, "plan": plan}, text=lambda: render_plan(plan))
        return
    result = plugin.apply(plan)
    console.result(
        result,
        text=lambda: render_mapping(
            f"{result.action}: {result.target} endpoint {result.name} is {result.status}",
            {"url": result.endpoint_url, **dict(result.details)},
        ),
    )
