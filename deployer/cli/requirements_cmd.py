"""``deployer requirements -m DIR add|remove REQ...``: MLflow's ``update-pip-requirements`` for a
local model directory, over requirements.txt, conda.yaml and python_env.yaml at once
(:mod:`deployer.environment.edit`)."""

from __future__ import annotations

import click

from deployer.cli.common import command as deployer_command
from deployer.cli.common import get_console


@deployer_command("requirements")
@click.option(
    "-m",
    "--model",
    "model_dir",
    required=True,
    metavar="DIR",
    help="Local model directory (the one holding MLmodel); remote URIs are refused.",
)
@click.argument("operation", type=click.Choice(["add", "remove"]))
@click.argument("requirements", nargs=-1, metavar="REQ...")
@click.option("--dry-run", is_flag=True, default=False, help="Print the diff and change nothing.")
def command(model_dir: str, operation: str, requirements: tuple[str, ...], dry_run: bool) -> None:
    """Add or remove pip requirements of a model, in every file that lists them.

    \b
    As `mlflow models update-pip-requirements`: add replaces the line of a package already
    listed (in place) and appends the others; remove drops every line naming the package
    (version specifiers are ignored). requirements.txt, the pip list of conda.yaml and the
    inline dependencies of python_env.yaml change together, all or none.

    \b
      deployer requirements -m ./model add 'scikit-learn==1.5.2' 'pandas>=2,<3'
      deployer requirements -m ./model remove torchvision --dry-run
    """
    from deployer.environment.edit import apply_requirements_edit, plan_requirements_edit

    console = get_console()
    edit = plan_requirements_edit(model_dir, operation, requirements)
    for warning in edit.warnings:
        console.warn(warning)
    data = {**edit.to_dict(), "dry_run": dry_run}
    if not dry_run:
        apply_requirements_edit(edit)
    changed = ", ".join(f.path.name for f in edit.changed) or "nothing"
    console.result(
        data,
        text=lambda: (
            (edit.diff() or "no change\n") + "dry run: nothing was written"
            if dry_run
            else f"updated {changed} in {edit.model_dir}"
        ),
    )
