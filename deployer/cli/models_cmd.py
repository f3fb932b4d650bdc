"""``deployer models add | remove | list``: the models of a multi-model endpoint."""

from __future__ import annotations

from typing import Any

import click

from deployer.cli.common import command as deployer_command
from deployer.cli.common import get_console
from deployer.cli.targets_common import (
    render_mapping,
    render_plan,
    require_target,
    split_target_values,
    target_options,
)
from deployer.errors import UsageError


def _endpoint_options(f: Any) -> Any:
    f = target_options("models")(f)
    f = click.option("--name", "-n", "name", metavar="NAME", help="The multi-model endpoint.")(f)
    return click.option(
        "--target", "-t", "target", metavar="TARGET", help="Deployment target (sagemaker)."
    )(f)


def _connect(target: str | None, name: str | None, values: dict[str, Any]) -> tuple[Any, str]:
    from deployer.targets.actions import models_target

    ctx = click.get_current_context()
    target = require_target(target, "models")
    connection, _ = split_target_values(ctx, target, "models", values)
    if not name:
        raise UsageError(
            "`deployer models` needs --name", where="--name", fix="pass --name ENDPOINT"
        )
    return models_target(target, connection), name


def _run(plugin: Any, plan: Any, dry_run: bool) -> None:
    console = get_console()
    if dry_run:
        console.result({"dry_run": True, "plan": plan}, text=lambda: render_plan(plan))
        return
    result = plugin.apply_models(plan)
    console.result(
        result,
        text=lambda: render_mapping(
            f"{result.action}: {plan.summary}",
            {k: v for k, v in dict(result.details).items() if k in ("archive", "target_model")},
        ),
    )


@click.group("models", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """The models of a multi-model endpoint (deploy --multi-model): add, remove, list.

    \b
      deployer models add --target sagemaker --name shop -m ./churn-eu --as churn-eu
      deployer models list --target sagemaker --name shop
      deployer models remove --target sagemaker --name shop churn-eu
      deployer predict --target sagemaker --name shop --target-model churn-eu -i rows.json
    """


@deployer_command("models")
@_endpoint_options
@click.option("-m", "--model", "model_uri", required=True, metavar="URI", help="Model to add.")
@click.option(
    "--as",
    "as_name",
    metavar="NAME",
    help="Name to serve it under (requests give it as --target-model; default: the model "
    "directory's name).",
)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
def add(
    target: str | None,
    name: str | None,
    model_uri: str,
    as_name: str | None,
    dry_run: bool,
    **target_values: Any,
) -> None:
    """Upload a model's model.tar.gz under the endpoint's prefix.

    The model's environment is resolved first and must be the endpoint's (the same lock
    digest); a model needing other packages is refused, naming them. Adding the same content
    under the same name again changes nothing.
    """
    plugin, endpoint = _connect(target, name, target_values)
    _run(plugin, plugin.plan_models_add(endpoint, model_uri, as_name), dry_run)


@deployer_command("models")
@_endpoint_options
@click.argument("model")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
def remove(
    target: str | None, name: str | None, model: str, dry_run: bool, **target_values: Any
) -> None:
    """Delete the model's archive from the endpoint's prefix (a model not there: nothing to do).

    Instances that loaded it may keep serving it until they unload it.
    """
    plugin, endpoint = _connect(target, name, target_values)
    _run(plugin, plugin.plan_models_remove(endpoint, model), dry_run)


@deployer_command("models")
@_endpoint_options
def list_(target: str | None, name: str | None, **target_values: Any) -> None:
    """List the model archives under the endpoint's prefix, with their digests."""
    plugin, endpoint = _connect(target, name, target_values)
    status = plugin.list_models(endpoint)

    def text() -> str:
        lines = [f"{status.name}: {status.status} under {status.details['model_prefix']}"]
        for m in status.details["models"]:
            env = {True: "same environment", False: "OTHER ENVIRONMENT", None: "not checked"}
            lines.append(
                f"  {m['name']:<32} {m['size']:>10} B  {m['modified']}  "
                f"{env[m['same_environment']]}"
            )
        return "\n".join(lines)

    get_console().result(status, text=text)


command.add_command(add, "add")
command.add_command(remove, "remove")
command.add_command(list_, "list")
