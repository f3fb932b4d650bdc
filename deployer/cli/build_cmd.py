"""``deployer build``: the model's serving image, built into the local Docker engine.

Also home of the options ``build``, ``generate`` and ``run-local`` share (:func:`image_options`)
and their translation into :class:`~deployer.building.plan.BuildOptions`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from deployer.cli.common import command, get_console, model_option
from deployer.errors import UsageError

log = logging.getLogger("deployer")


def _pairs(values: tuple[str, ...], flag: str) -> tuple[tuple[str, str], ...]:
    out = []
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {item!r} is not KEY=VALUE", where=flag, fix=f"write {flag} NAME=value")
        out.append((key, value))
    return tuple(out)


def image_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by build / generate / run-local (each reads a config default too)."""
    opts = [
        click.option("-t", "--tag", default=None, help="Image name[:tag] (default: <model>:<content hash>)."),
        click.option("--base-image", default=None,
                     help="Base image (default: python:<model's X.Y>-slim; with --gpu "
                     "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04). Must have python3 X.Y."),
        click.option("--gpu", is_flag=True, default=False,
                     help="GPU image: CUDA base by default (needs python3 X.Y: pass --base-image), "
                     "labelled io.deployer.gpu; run-local then requests the engine's GPUs."),
        click.option("--target", type=click.Choice(["local", "sagemaker", "azureml"]), default="local",
                     show_default=True, help="Where the image will run (sets its command and server)."),
        click.option("--platform", default="linux/amd64", show_default=True,
                     help="Image platform (linux/amd64 or linux/arm64); another architecture than the "
                     "engine's needs docker buildx + QEMU."),
        click.option("--python", "python_version", default=None,
                     help="Python X.Y to build for (default: the model's)."),
        click.option("--lock", "lock_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Install exactly this lock file (from `deployer lock`)."),
        click.option("--wheelhouse", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Offline: take every wheel from this directory, never from an index."),
        click.option("--conda-lock", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="conda-lock lockfile for conda models (default: conda-lock.yml in the model)."),
        click.option("--env-kind", type=click.Choice(["virtualenv", "conda", "local"]), default=None,
                     help="Override the environment kind; 'local' trusts the base image's Python."),
        click.option("--keep-full-mlflow", is_flag=True, default=False,
                     help="Keep mlflow as required instead of the smaller mlflow-skinny."),
        click.option("--parquet/--no-parquet", "parquet", default=False, show_default=True,
                     help="Add pyarrow (~160 MB) so the image also answers Parquet requests. Without it "
                          "(the default), Parquet requests get a 415 unless the model itself needs pyarrow."),
        click.option("--run-as-root", is_flag=True, default=False,
                     help="Run the server as root (for platforms that need it; default uid 1000)."),
        click.option("--refresh-lock", is_flag=True, default=False,
                     help="Resolve dependencies again instead of reusing a cached resolution."),
        click.option("--env", "env_vars", multiple=True, metavar="KEY=VALUE",
                     help="Environment variable baked into the image (never secrets: refused)."),
        click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Extra image label."),
        click.option("--container-port", "port", type=click.IntRange(1, 65535), default=8080, show_default=True,
                     help="Port the server listens on inside the container."),
        click.option("--verify/--no-verify", "verify", default=True, show_default=True,
                     help="Run the built image once offline and score its input example before tagging "
                     "(or pushing) it; --no-verify skips that and records it in the io.deployer.verify.status label."),
        click.option("--auto-deps/--no-auto-deps", "auto_deps", default=True, show_default=True,
                     help="Add packages the model's loader imports but its requirements miss (e.g. skops for "
                     "serialization_format: skops), with a warning; --no-auto-deps makes that an error."),
        click.option("--pip", "pip", multiple=True, metavar="REQ",
                     help="Extra pip requirement (repeatable); one naming a package the model lists "
                     "replaces the model's version (as MLflow's --pip-requirements-override)."),
        click.option("--pip-requirements-override", "pip_override_file", metavar="FILE",
                     type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Requirements file: overrides the versions of the packages the model lists, "
                     "adds the rest."),
        click.option("--system-package", "system_packages", multiple=True, metavar="NAME",
                     help="Debian package installed with apt in an OS layer below the Python environment "
                     "(repeatable), e.g. libgomp1 for lightgbm/xgboost."),
        click.option("--java/--no-java", "java", default=True, show_default=True,
                     help="Install a headless JRE for flavors that need a JVM (spark, h2o, johnsnowlabs, "
                     "mleap); --no-java when the base image has one."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def build_options(params: dict[str, Any]) -> Any:
    from deployer.building.plan import BuildOptions

    return BuildOptions(
        tag=params.get("tag"), base_image=params.get("base_image"), target=params.get("target") or "local",
        platform=params.get("platform") or "linux/amd64", python_version=params.get("python_version"),
        env_kind=params.get("env_kind"), lock_file=params.get("lock_file"), wheelhouse=params.get("wheelhouse"),
        conda_lock=params.get("conda_lock"), keep_full_mlflow=bool(params.get("keep_full_mlflow")),
        parquet=bool(params.get("parquet")),
        run_as_root=bool(params.get("run_as_root")), refresh_lock=bool(params.get("refresh_lock")),
        env=_pairs(tuple(params.get("env_vars") or ()), "--env"),
        labels=_pairs(tuple(params.get("labels") or ()), "--label"),
        port=int(params.get("port") or 8080), gpu=bool(params.get("gpu")),
        verify=params.get("verify") is not False, auto_deps=params.get("auto_deps") is not False,
        pip=tuple(params.get("pip") or ()), pip_override_file=params.get("pip_override_file"),
        system_packages=tuple(params.get("system_packages") or ()), java=params.get("java") is not False,
    )


def plan_text(plan: Any) -> str:
    lines = [f"image      {plan.tag}", f"target     {plan.target}", f"model      {plan.model_uri}",
             f"base       {plan.base_image}" + ("  (gpu)" if plan.gpu else ""),
             f"python     {plan.platform.python} ({plan.platform.docker_platform}, {plan.env_kind})",
             "layers:"]
    lines += [f"  {i}. {layer.name:<12} {layer.description}" for i, layer in enumerate(plan.layers, 1)]
    lines.append("requirements:")
    lines += [f"  {r}" for r in plan.to_dict()["requirements"]["requirements"]]
    for note in plan.requirements.notes:
        lines.append(f"note: {note}")
    if plan.loader_requirements:
        lines.append("loader needs: " + ", ".join(
            r.package + (" (added)" if r.package in plan.auto_added else "") for r in plan.loader_requirements))
    lines.append(f"runs as    {plan.user}, port {plan.port}, command {' '.join(plan.cmd)}")
    lines.append("verify     " + (plan.verify.describe() + ", then tag" if plan.verify
                                  else "skipped (--no-verify; label io.deployer.verify.status=skipped)"))
    return "\n".join(lines)


def run_build(model_uri: str, params: dict[str, Any], *, engine_pref: str | None = None,
              if_needed: bool = False, nocache: bool = False) -> tuple[Any, Any]:
    """Load, plan, resolve, build with progress; returns (plan, BuildResult)."""
    from deployer.building.engine import detect_engine
    from deployer.building.execute import build_model_image
    from deployer.building.progress import Progress

    console = get_console()
    options = build_options(params)
    engine = detect_engine(engine_pref)
    with Progress(verbosity=console.verbosity) as progress:
        return build_model_image(model_uri, options, engine=engine, if_needed=if_needed,
                                 step=progress.step, on_line=progress.line, nocache=nocache)


def result_text(result: Any) -> str:
    mb = 1024 * 1024
    text = (f"{result.image}\n  digest  {result.digest}\n"
            f"  size    {result.size / mb:.0f} MiB ({result.size_over_base / mb:.0f} MiB over the base), "
            f"{result.layers} layers\n  built in {result.seconds:.1f}s with {result.engine}")
    check = getattr(result, "verification", None)
    if check is not None and check.status == "passed":
        timing = f" (ready after {check.cold_start:.1f}s, check {check.seconds:.1f}s)" if check.cold_start else ""
        text += f"\n  verified {check.route} -> {check.http_status}{timing}"
    elif check is not None:
        text += "\n  not verified (--no-verify)"
    return text


@command("build")
@model_option
@image_options
@click.option("--dry-run", is_flag=True, default=False, help="Print the build plan; build nothing.")
@click.option("--builder", type=click.Choice(["auto", "buildkit", "legacy"]), default="auto", show_default=True,
              help="BuildKit (via a capable docker CLI) or the classic builder (docker SDK).")
@click.option("--no-cache", is_flag=True, default=False, help="Build every layer again (no layer cache).")
def command(model_uri: str, dry_run: bool, builder: str, no_cache: bool, **params: Any) -> None:
    """Build the model's serving image in the local Docker engine; print its tag and digest.

    \b
    Dependencies are resolved and downloaded on this host (your pip configuration, proxy and
    CA bundle apply), then installed offline in the image: no credential, index URL, proxy
    setting or CA bundle ever enters it. The image serves on port 8080; `serve` (SageMaker's
    start command) works too. Before it gets its tag, the image is run once offline and its
    input example scored (--no-verify skips that); packages the model's loader imports but its
    requirements miss are added with a warning (--no-auto-deps: an error).

    \b
    Examples:
      deployer build -m ./model -t iris:1
      deployer build -m ./model --target sagemaker --output json
      deployer build -m ./model --wheelhouse ./wheels          (air-gapped)
    """
    console = get_console()
    if dry_run:
        from deployer.building.plan import plan_build
        from deployer.model import load_model

        loaded = load_model(model_uri)
        for warning in loaded.warnings:
            console.warn(warning)
        plan = plan_build(loaded, build_options(params))
        for warning in plan.warnings:
            if warning not in loaded.warnings:
                console.warn(warning)
        console.result({"dry_run": True, "plan": plan.to_dict()}, text=lambda: plan_text(plan))
        return
    _plan, result = run_build(model_uri, params, engine_pref=None if builder == "auto" else builder,
                              nocache=no_cache)
    console.result(result.to_dict(), text=lambda: result_text(result))
