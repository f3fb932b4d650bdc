"""``deployer prune``: free the disk deployer's caches use, keeping whatever is still useful."""

from __future__ import annotations

from typing import Any

import click

from deployer.cli.common import command, get_console


@command("prune")
@click.option(
    "--older-than",
    "older_than",
    type=click.FloatRange(min=0),
    default=14.0,
    show_default=True,
    metavar="DAYS",
    help="Remove cached wheels, models and unused environment images not used for this long.",
)
@click.option(
    "--dry-run", is_flag=True, default=False, help="Print what would be removed; remove nothing."
)
@click.option(
    "--no-images", is_flag=True, default=False, help="Leave images alone (caches on disk only)."
)
def command(older_than: float, dry_run: bool, no_images: bool) -> None:
    """Remove deployer's caches that nothing uses: environment images, wheels, models.

    \b
    Removed: deployer-env:* images no other image is built on (older than DAYS), wheels and
    downloaded models no build used for DAYS, expired dependency resolutions, and work
    directories left by killed builds. Kept: every image you tagged, every environment image
    an image is built on (removing it would free nothing), anything used recently.
    """
    from deployer.building.prune import (
        Inventory,
        cached_paths,
        env_images,
        execute_prune,
        plan_prune,
    )
    from deployer.building.wheelhouse import default_cache_root
    from deployer.model.cache import default_cache_dir

    console = get_console()
    client: Any = None
    ours: list[Any] = []
    others: list[Any] = []
    if not no_images:
        from deployer.building.engine import docker_client

        client = docker_client()
        ours, others = env_images(client)
    inventory = Inventory(
        env_images=tuple(ours),
        other_layers=tuple(others),
        cached=tuple(cached_paths(default_cache_root(), default_cache_dir())),
    )
    plan = plan_prune(inventory, older_than_days=older_than)
    failed: list[str] = []
    if not dry_run:
        failed = execute_prune(plan, client)
    data = {**plan.to_dict(), "dry_run": dry_run, "failed": failed}

    def text() -> str:
        verb = "would remove" if dry_run else "removed"
        lines = [
            f"{verb} {item.kind:<9} {item.what}  ({item.size / 1e6:.1f} MB; {item.reason})"
            for item in plan.remove
        ]
        kept_images = [i for i in plan.keep if i.kind == "env-image"]
        lines += [f"kept      env-image {i.what}  ({i.reason})" for i in kept_images]
        lines += [f"could not remove {f}" for f in failed]
        lines.append(
            f"{verb} {len(plan.remove) - len(failed)} item(s), {plan.bytes / 1e6:.1f} MB; "
            f"kept {len(plan.keep)}"
        )
        return "\n".join(lines)

    console.result(data, text=text)
    if failed:
        raise SystemExit(1)
