"""``deployer list``: the endpoints of a target."""

from __future__ import annotations

from typing import Any

import click

from deployer.cli.common import command, get_console
from deployer.cli.targets_common import require_target, split_target_values, target_options


@command("list")
@click.option(
    "--target", "-t", "target", metavar="TARGET", help="Deployment target (e.g. sagemaker)."
)
@target_options("list")
def command(target: str | None, **target_values: Any) -> None:
    """List endpoints (marking those deployer manages)."""
    from deployer.targets.actions import list_endpoints

    ctx = click.get_current_context()
    target = require_target(target, "list")
    connection, options = split_target_values(ctx, target, "list", target_values)
    endpoints = list_endpoints(target, connection, options)

    def text() -> str:
        if not endpoints:
            return f"no {target} endpoints"
        width = max(len(e.name) for e in endpoints)
        return "\n".join(
            f"{e.name:<{width}}  {e.status:<14} "
            f"{'deployer' if e.details.get('managed_by_deployer') else ''}".rstrip()
            for e in endpoints
        )

    get_console().result({"target": target, "endpoints": endpoints}, text=text)
