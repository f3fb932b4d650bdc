"""``deployer export``: write a self-contained deployment bundle for a cloud's own CLI."""

from __future__ import annotations

from typing import Any

import click

from deployer.cli.common import command as deployer_command
from deployer.cli.common import get_console, model_option


@deployer_command("export")
@model_option
@click.option(
    "--target",
    "-t",
    "target",
    type=click.Choice(["azureml"]),
    required=True,
    help="Bundle format: azureml (az ml CLI v2 folder).",
)
@click.option(
    "-o",
    "--output-dir",
    "output_dir",
    required=True,
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Folder to write (replaced only with --force).",
)
@click.option("--force", is_flag=True, help="Replace a non-empty output folder.")
@click.option(
    "--name",
    "-n",
    "name",
    metavar="NAME",
    help="Endpoint name (default: from the model folder name).",
)
@click.option(
    "--deployment", default="blue", show_default=True, metavar="NAME", help="Deployment name."
)
@click.option(
    "--instance-type", default="Standard_DS3_v2", show_default=True, metavar="SKU", help="VM size."
)
@click.option(
    "--instance-count",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="Number of instances.",
)
@click.option(
    "--image-uri",
    metavar="IMAGE",
    help="Use this pushed image (bring your own container) instead of a conda environment Azure "
    "builds.",
)
@click.option(
    "--image-port",
    default=8080,
    show_default=True,
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Port the --image-uri container listens on.",
)
@click.option(
    "--scoring-route",
    default="/score",
    show_default=True,
    metavar="PATH",
    help="Scoring path inside the --image-uri container.",
)
@click.option(
    "--health-route",
    default="/",
    show_default=True,
    metavar="PATH",
    help="Liveness/readiness path inside the --image-uri container.",
)
@click.option(
    "--base-image", metavar="IMAGE", help="Azure ML inference base image for the conda environment."
)
@click.option(
    "--env", "env", multiple=True, metavar="KEY=VALUE", help="Environment variable (repeatable)."
)
@click.option(
    "--auth-mode",
    type=click.Choice(["key", "aml_token", "aad_token"]),
    default="key",
    show_default=True,
    help="Endpoint authentication.",
)
@click.option(
    "--traffic",
    default="all",
    show_default=True,
    metavar="all|none|NAME=PCT,...",
    help="What create_service.sh does with traffic by default.",
)
def command(
    model_uri: str,
    target: str,
    output_dir: str,
    force: bool,
    name: str | None,
    deployment: str,
    instance_type: str,
    instance_count: int,
    image_uri: str | None,
    image_port: int,
    scoring_route: str,
    health_route: str,
    base_image: str | None,
    env: tuple[str, ...],
    auth_mode: str,
    traffic: str,
) -> None:
    """Write a folder that deploys MODEL with the cloud's own tools.

    \b
      deployer export --target azureml -m ./model -o ./azureml-bundle
      cd azureml-bundle && ./create_service.sh -g MY_GROUP -w MY_WORKSPACE

    The folder holds model/, score.py, environment.yml, endpoint.yml, deployment.yml,
    create_service.sh and README.md. It is written to a temporary folder and renamed into
    place, so DIR is never left half-written.
    """
    from deployer.targets.azureml.export import DEFAULT_BASE_IMAGE, ExportOptions, export_bundle
    from deployer.targets.azureml.plan import ImageRoutes
    from deployer.targets.azureml.target import parse_env

    options = ExportOptions(
        endpoint=name,
        deployment=deployment,
        instance_type=instance_type,
        instance_count=instance_count,
        image=image_uri,
        routes=ImageRoutes(
            port=image_port, liveness=health_route, readiness=health_route, scoring=scoring_route
        ),
        env=parse_env(env),
        auth_mode=auth_mode,
        traffic=traffic,
        base_image=base_image or DEFAULT_BASE_IMAGE,
    )
    result = export_bundle(model_uri, output_dir, options, force=force)
    console = get_console()
    for warning in result.warnings:
        console.warn(warning)
    data: dict[str, Any] = {
        "target": target,
        "output": str(result.output),
        "mode": result.mode,
        "endpoint": result.endpoint,
        "deployment": result.deployment,
        "files": list(result.files),
        "warnings": list(result.warnings),
    }
    console.result(
        data,
        text=lambda: (
            f"wrote {result.output} ({result.mode} environment; endpoint {result.endpoint}, "
            f"deployment {result.deployment})\n"
            f"next: cd {result.output} && ./create_service.sh --resource-group GROUP --workspace "
            "WORKSPACE"
        ),
    )
