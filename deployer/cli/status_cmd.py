"""``deployer status``: the state of one deployed endpoint."""

from __future__ import annotations

from typing import Any

import click

from deployer.cli.common import command, get_console
from deployer.cli.targets_common import (
    render_mapping,
    require_target,
    split_target_values,
    target_options,
)


@command("status")
@click.option(
    "--target", "-t", "target", metavar="TARGET", help="Deployment target (e.g. sagemaker)."
)
@click.option("--name", "-n", "name", metavar="NAME", help="Endpoint name.")
@target_options("status")
def command(target: str | None, name: str | None, **target_values: Any) -> None:
    """Show an endpoint's status, what it serves, and how it is configured."""
    from deployer.errors import UsageError
    from deployer.targets.actions import endpoint_status

    ctx = click.get_current_context()
    target = require_target(target, "status")
    connection, options = split_target_values(ctx, target, "status", target_values)
    if not name:
        raise UsageError(
            "`deployer status` needs --name", where="--name", fix="pass --name ENDPOINT"
        )
    status = endpoint_status(target, name, connection, options)
    get_console().result(status, text=lambda: _text(status))


def _text(status: Any) -> str:
    """The status as text; the provenance (what was deployed) as one readable line."""
    from deployer.model.provenance import Provenance

    details = dict(status.details)
    record = details.pop("provenance", None)
    if record:
        details = {"deployed from": Provenance(**record).describe(), **details}
    return render_mapping(f"{status.target} endpoint {status.name}: {status.status}", details)
