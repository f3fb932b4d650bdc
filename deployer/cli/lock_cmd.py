"""``deployer lock``: pin the model image's full dependency set, with hashes, for one platform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deployer.cli.common import command, get_console, model_option


@command("lock")
@model_option
@click.option(
    "-o",
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the lock here (default: stdout; conda models: ./conda-lock.yml).",
)
@click.option(
    "--platform", default="linux/amd64", show_default=True, help="linux/amd64 or linux/arm64."
)
@click.option("--python", "python_version", default=None, help="Python X.Y (default: the model's).")
@click.option(
    "--target",
    type=click.Choice(["local", "sagemaker", "azureml"]),
    default="local",
    show_default=True,
    help="The target decides extra server packages (azureml adds azmlinfsrv).",
)
@click.option(
    "--wheelhouse",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Resolve offline from this directory of wheels only.",
)
@click.option(
    "--keep-full-mlflow", is_flag=True, default=False, help="Keep mlflow instead of mlflow-skinny."
)
def command(
    model_uri: str,
    out_file: Path | None,
    platform: str,
    python_version: str | None,
    target: str,
    wheelhouse: Path | None,
    keep_full_mlflow: bool,
) -> None:
    """Resolve the image's dependencies on this host and write a pinned, hashed lock.

    \b
    The lock is a pip requirements file (pip install --require-hashes -r FILE reads it) with a
    header naming the platform and Python. `deployer build --lock FILE` installs exactly it.
    Resolution uses this host's pip configuration (indexes, proxy, CA bundle); the lock itself
    names no index, so it holds no credential.
    """
    from deployer.building.context import lock_warnings
    from deployer.building.plan import BuildOptions, plan_build
    from deployer.building.wheelhouse import PipRunner, Resolver
    from deployer.environment.lock import write_lock
    from deployer.intake import load_model

    console = get_console()
    loaded = load_model(model_uri)
    for warning in loaded.warnings:
        console.warn(warning)
    plan = plan_build(
        loaded,
        BuildOptions(
            platform=platform,
            python_version=python_version,
            target=target,
            keep_full_mlflow=keep_full_mlflow,
            wheelhouse=wheelhouse,
        ),
    )
    if plan.env_kind == "conda":
        _lock_conda(loaded, plan, out_file)
        return
    if plan.env_kind != "virtualenv":
        from deployer.errors import UsageError

        raise UsageError(
            f"`deployer lock` pins pip and conda environments; this model is a {plan.env_kind} "
            "model",
            fix="drop --env-kind local: a 'local' environment has nothing to lock",
        )
    console.info(
        f"resolving {len(plan.requirements.requirements)} requirements for "
        f"{plan.platform.docker_platform}, Python {plan.platform.python}"
    )
    runner = PipRunner(on_line=(lambda line: console.info(line)) if console.verbosity > 0 else None)
    resolver = Resolver(pip=runner)
    lock = resolver.lock(
        plan.requirements,
        plan.platform,
        model_dir=loaded.path,
        offline_wheelhouse=wheelhouse,
        refresh=True,
    )
    warnings = lock_warnings(plan, lock, resolver)
    for warning in warnings:
        console.warn(warning)
    if out_file is not None:
        write_lock(lock, out_file)
        console.result(
            {"path": str(out_file), **lock.to_dict(), "warnings": list(warnings)},
            text=f"wrote {out_file}: {len(lock.packages)} packages, {lock.digest}",
        )
    else:
        console.result({**lock.to_dict(), "warnings": list(warnings)}, text=lock.to_text())


def _lock_conda(loaded: Any, plan: Any, out_file: Path | None) -> None:
    """conda models: conda-lock solves the channels (default output ./conda-lock.yml)."""
    from deployer.environment.conda_lock import CONDA_PLATFORMS, run_conda_lock

    console = get_console()
    out = out_file or Path("conda-lock.yml")
    spec = loaded.environment
    console.info(
        f"solving {len(spec.conda_packages)} conda packages with conda-lock for "
        f"{CONDA_PLATFORMS[plan.platform.arch]}, Python {plan.platform.python}"
    )
    run_conda_lock(spec, plan.platform, out)
    console.result(
        {
            "path": str(out),
            "kind": "conda",
            "platform": CONDA_PLATFORMS[plan.platform.arch],
            "python": plan.platform.python,
            "channels": list(spec.conda_channels),
        },
        text=f"wrote {out} (build with: deployer build -m MODEL --conda-lock {out})",
    )
