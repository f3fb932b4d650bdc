"""``deployer delete``: remove an endpoint and what deployer created for it."""

from __future__ import annotations

from typing import Any

import click

from deployer.cli.common import command, get_console
from deployer.cli.targets_common import (
    render_mapping,
    render_plan,
    require_target,
    split_target_values,
    target_options,
)


@command("delete")
@click.option(
    "--target", "-t", "target", metavar="TARGET", help="Deployment target (e.g. sagemaker)."
)
@click.option("--name", "-n", "name", metavar="NAME", help="Endpoint name.")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted; change nothing.")
@target_options("delete")
def command(target: str | None, name: str | None, dry_run: bool, **target_values: Any) -> None:
    """Delete an endpoint, its configuration and models (unless the target keeps them)."""
    from deployer.errors import UsageError
    from deployer.targets.actions import delete_endpoint
    from deployer.targets.base import DeployPlan

    ctx = click.get_current_context()
    target = require_target(target, "delete")
    connection, options = split_target_values(ctx, target, "delete", target_values)
    if not name:
        raise UsageError(
            "`deployer delete` needs --name", where="--name", fix="pass --name ENDPOINT"
        )
    console = get_console()
    result = delete_endpoint(target, name, connection, options, dry_run=dry_run)
    if isinstance(result, DeployPlan):
        plan = result
        console.result({"dry_run": True, "plan": plan}, text=lambda: render_plan(plan))
        return
    console.result(
        result,
        text=lambda: render_mapping(
            f"deleted {result.target} endpoint {result.name}", dict(result.details)
        ),
    )
