"""``deployer sync``: bring the endpoints of a deployments file to what their aliases name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deployer.cli.common import command, get_console


def deployments_file_option(help_text: str) -> Any:
    """``-f FILE``: the deployments file of ``sync`` and ``watch``."""
    return click.option(
        "-f",
        "--file",
        "file",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        metavar="FILE",
        help=help_text,
    )


@command("sync")
@deployments_file_option("The deployments file (TOML, [[endpoints]] tables).")
@click.option("--dry-run", is_flag=True, help="Show what would be deployed; change nothing.")
@click.option("--only", metavar="NAME", help="Sync only the entry with this name.")
def command(file: Path, dry_run: bool, only: str | None) -> None:
    """Deploy the version each entry's registry alias names, where the endpoint serves another.

    \b
      deployer sync -f deployments.toml --dry-run
      deployer sync -f deployments.toml --only iris --output json

    Every entry's plan is shown first; then each entry is deployed on its own (a failure is
    rolled back and does not stop the others). Exit code 1 if any entry failed.
    """
    from deployer.targets.sync import (
        FAILED,
        apply_sync,
        load_deployments,
        plan_sync,
        render_plans,
    )

    console = get_console()
    plans = plan_sync(load_deployments(file, only=only))
    if dry_run:
        console.result({"dry_run": True, "entries": plans}, text=lambda: render_plans(plans))
        failed = any(p.decision == FAILED for p in plans)
    else:
        if not console.json:
            click.echo(render_plans(plans), err=True)
        results = apply_sync(plans)
        console.result(
            {"entries": results},
            text=lambda: "\n".join(
                f"{r.name} ({r.target}): {r.result}"
                + (f" v{r.version}" if r.version and r.result != FAILED else "")
                + (f": {(r.error or {}).get('message')}" if r.result == FAILED else "")
                for r in results
            ),
        )
        failed = any(r.result == FAILED for r in results)
    if failed:
        click.get_current_context().exit(1)
