"""``deployer prepare-env``: build a model's locked environment on this host ahead of time.

The environment ``serve``/``predict --env-manager virtualenv`` run the model in (and Spark's
``env_manager="virtualenv"`` packs): built once here, e.g. in CI or before a host goes
offline, then found by every later run without resolving or downloading anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deployer.cli.common import command as deployer_command
from deployer.cli.common import get_console, model_option
from deployer.errors import UsageError


@deployer_command("prepare-env")
@model_option
@click.option(
    "--env-manager",
    "env_manager",
    default="virtualenv",
    show_default=True,
    metavar="virtualenv|uv",
    help="The environment to build (uv builds the same one as virtualenv).",
)
@click.option(
    "--pack",
    is_flag=True,
    default=False,
    help="Also pack it as the archive Spark ships to executors (spark_udf's prebuilt environment).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    default=False,
    help="Print the plan (lock digest if known, cache path, whether it would build); build "
    "nothing, download nothing.",
)
def command(model_uri: str, env_manager: str, pack: bool, dry_run: bool) -> None:
    """Build the model's locked environment on this host, ahead of time.

    \b
    The same lock and wheelhouse as the model's image, installed offline into a virtualenv
    cached by lock digest; `deployer serve/predict -m URI --env-manager virtualenv` and
    Spark's env_manager="virtualenv" then reuse it without resolving or downloading.

    \b
    Examples:
      deployer prepare-env -m models:/churn/3
      deployer --output json prepare-env -m ./model --pack
      deployer prepare-env -m ./model --dry-run
    """
    from deployer.building.host_env import check_env_manager, plan_host_env
    from deployer.model.uri import resolve_model_uri

    check_env_manager(env_manager)
    if env_manager == "local":
        raise UsageError(
            "--env-manager local runs the model in this Python: there is nothing to prepare",
            where="--env-manager",
            fix="use --env-manager virtualenv (or uv)",
        )
    model_dir = resolve_model_uri(model_uri)
    console = get_console()
    if dry_run:
        plan = plan_host_env(model_dir, what=f"--env-manager {env_manager}")
        data = _dry_run(plan)
        data.update(model=str(model_dir), env_manager=env_manager)
        console.result(data, text="\n".join(f"{k} = {v}" for k, v in data.items()))
        return
    from deployer.cli.model_env import prepare_model_env

    menv = prepare_model_env(model_dir, env_manager)
    data = {"model": str(model_dir), "env_manager": env_manager, **menv.to_dict()}
    if pack:
        from deployer.spark.environment import pack_environment

        data["archive"] = str(pack_environment(menv.env))
    verb = "found" if menv.env.reused else "built"
    console.result(
        data,
        text=f"environment {verb} in {menv.env.seconds:.1f}s: {menv.env.prefix}"
        + (f"\npacked: {data['archive']}" if pack else ""),
    )


def _dry_run(plan: Any) -> dict[str, Any]:
    """What a build would do, from what is on disk (nothing resolved or downloaded)."""
    from deployer.building.host_env import (
        find_host_env,
        host_env_key,
        is_built,
        known_lock_digest,
    )

    found = find_host_env(plan)
    digest = found.lock_digest if found is not None else known_lock_digest(plan)
    folder: Path | None = None
    if digest is not None:
        folder = plan.cache_dir / host_env_key(digest, plan.base_python)
    exists = folder is not None and is_built(folder / "env")
    return {
        "dry_run": True,
        "lock_digest": digest,
        "cache_dir": str(plan.cache_dir),
        "prefix": str(folder / "env") if folder is not None else None,
        "would_build": not exists,
        "would_resolve": digest is None,
        "python": plan.python,
        "base_python": plan.base_python,
        "requirements": list(plan.build.requirements.requirements),
        "warnings": list(plan.warnings),
    }
