"""``deployer generate``: write the complete build context, build nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deployer.cli.build_options import build_options, image_options
from deployer.cli.common import command, get_console, model_option


@command("generate")
@model_option
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the build context into (new or empty).",
)
@click.option("--force", is_flag=True, default=False, help="Replace a non-empty output directory.")
@click.option(
    "--buildkit",
    is_flag=True,
    default=False,
    help="Use BuildKit's RUN --mount (smaller, faster); default: any builder works.",
)
@click.option("--dry-run", is_flag=True, default=False, help="Print the build plan; write nothing.")
@image_options
def command(
    model_uri: str, out_dir: Path, force: bool, buildkit: bool, dry_run: bool, **params: Any
) -> None:
    """Write the model's build context (Dockerfile, wheels, lock, runtime, model) to a directory.

    \b
    The directory builds with plain Docker, no deployer needed:
      deployer generate -m ./model -o ./ctx
      docker build -t my-model ./ctx
    Dependencies are resolved and downloaded now, on this host, into ./ctx/wheels.
    """
    from deployer.building.context import write_context
    from deployer.building.plan import plan_build
    from deployer.building.progress import Progress
    from deployer.intake import load_model

    console = get_console()
    if dry_run:
        from deployer.cli.build_cmd import print_build_plan

        print_build_plan(
            model_uri, params, lambda _plan: ({"out_dir": str(out_dir)}, f"writes     {out_dir}")
        )
        return
    loaded = load_model(model_uri)
    for warning in loaded.warnings:
        console.warn(warning)
    plan = plan_build(loaded, build_options(params))
    with Progress(verbosity=console.verbosity) as progress:
        ctx = write_context(
            plan, out_dir, buildkit=buildkit, overwrite=force, on_line=progress.step
        )
    files = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.iterdir())
    data = {
        "path": str(out_dir),
        "tag": ctx.plan.tag,
        "buildkit": buildkit,
        "files": files,
        "wheels": ctx.wheel_count,
        "wheel_bytes": ctx.wheel_bytes,
        "lock_digest": ctx.plan.lock.digest if ctx.plan.lock else None,
    }
    prefix = "DOCKER_BUILDKIT=1 " if buildkit else ""
    console.result(
        data,
        text=lambda: (
            f"wrote {out_dir} ({ctx.wheel_count} wheels, {ctx.wheel_bytes / 1e6:.0f} MB)\n"
            f"build it with:  {prefix}docker build -t {ctx.plan.tag} {out_dir}"
        ),
    )
