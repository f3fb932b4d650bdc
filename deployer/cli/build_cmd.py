"""``deployer build``: the model's serving image, built into the local Docker engine.

Its options are the build-option group every image-building command shares
(:mod:`deployer.cli.build_options`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import click

from deployer.cli.build_options import build_options, image_options
from deployer.cli.common import command, get_console, model_set_options

log = logging.getLogger("deployer")


def plan_text(plan: Any) -> str:
    lines = [
        f"image      {plan.tag}",
        f"target     {plan.target}",
        *(
            [f"model      {plan.model_uri}"]
            if not plan.models
            else [
                f"models     {m.name}: {m.uri} -> {m.image_path}  ({', '.join(m.flavors)})"
                for m in plan.models
            ]
        ),
        f"base       {plan.base_image}" + ("  (gpu)" if plan.gpu else ""),
        f"python     {plan.platform.python} ({plan.platform.docker_platform}, {plan.env_kind})",
    ]
    if plan.requirements.lock_source:
        lines.append(
            f"lock       the model's {plan.requirements.lock_source}: its packages at the locked "
            "versions, checked against the locked sha256 hashes"
        )
    lines.append("layers:")
    lines += [
        f"  {i}. {layer.name:<12} {layer.description}" for i, layer in enumerate(plan.layers, 1)
    ]
    lines.append("requirements:")
    lines += [f"  {_short(r)}" for r in plan.to_dict()["requirements"]["requirements"]]
    for note in plan.requirements.notes:
        lines.append(f"note: {note}")
    if plan.loader_requirements:
        lines.append(
            "loader needs: "
            + ", ".join(
                r.package + (" (added)" if r.package in plan.auto_added else "")
                for r in plan.loader_requirements
            )
        )
    lines.append(f"runs as    {plan.user}, port {plan.port}, command {' '.join(plan.cmd)}")
    if plan.grpc_port is not None:
        lines.append(
            f"grpc       V2 over gRPC on port {plan.grpc_port} (deployer's grpc extra; "
            f"DEPLOYER_SERVE_GRPC_PORT={plan.grpc_port}, EXPOSE {plan.grpc_port})"
        )
    if plan.load_mode is not None:
        lines.append(
            f"load mode  {plan.load_mode.describe()}"
            + ("" if plan.load_mode.certain else " (the server checks again after loading)")
        )
    lines.append(
        "verify     "
        + (
            plan.verify.describe() + ", then tag"
            if plan.verify
            else "skipped (--no-verify; label io.deployer.verify.status=skipped)"
        )
    )
    return "\n".join(lines)


def _short(requirement: str) -> str:
    """``pkg==1.0 --hash=sha256:... --hash=...`` -> ``pkg==1.0  (2 hashes)`` for the text plan."""
    pin, _, rest = requirement.partition(" --hash=")
    if not rest:
        return requirement
    count = requirement.count(" --hash=")
    return f"{pin}  ({count} hash{'es' if count > 1 else ''})"


def print_build_plan(
    model_uri: Any,
    params: dict[str, Any],
    then: Callable[[Any], tuple[dict[str, Any], str]] | None = None,
) -> None:
    """``--dry-run`` of the image commands: the build plan, and what the command would do with
    the image (``then(plan)``: JSON fields and a text line), printed; nothing resolved, built,
    pushed or run."""
    from deployer.building.sources import plan_source

    console = get_console()
    plan = plan_source(model_uri, build_options(params), warn=console.warn)
    extra, extra_text = then(plan) if then is not None else ({}, "")
    console.result(
        {"dry_run": True, "plan": plan.to_dict(), **extra},
        text=lambda: plan_text(plan) + (f"\n{extra_text}" if extra_text else ""),
    )


def run_build(
    model_uri: Any,
    params: dict[str, Any],
    *,
    engine_pref: str | None = None,
    if_needed: bool = False,
    nocache: bool = False,
) -> tuple[Any, Any]:
    """Load, plan, resolve, build with progress; returns (plan, BuildResult)."""
    from deployer.building.engine import detect_engine
    from deployer.building.execute import build_model_image
    from deployer.building.progress import Progress

    console = get_console()
    options = build_options(params)
    engine = detect_engine(engine_pref)
    with Progress(verbosity=console.verbosity) as progress:
        return build_model_image(
            model_uri,
            options,
            engine=engine,
            if_needed=if_needed,
            step=progress.step,
            on_line=progress.line,
            nocache=nocache,
        )


def result_text(result: Any) -> str:
    mb = 1024 * 1024
    text = (
        f"{result.image}\n  digest  {result.digest}\n"
        f"  size    {result.size / mb:.0f} MiB ({result.size_over_base / mb:.0f} MiB over the "
        "base), "
        f"{result.layers} layers\n  built in {result.seconds:.1f}s with {result.engine}"
    )
    check = getattr(result, "verification", None)
    if check is not None and check.status == "passed":
        timing = (
            f" (ready after {check.cold_start:.1f}s, check {check.seconds:.1f}s)"
            if check.cold_start
            else ""
        )
        text += f"\n  verified {check.route} -> {check.http_status}{timing}"
    elif check is not None:
        text += "\n  not verified (--no-verify)"
    return text


@command("build")
@model_set_options
@image_options
@click.option("--dry-run", is_flag=True, default=False, help="Print the build plan; build nothing.")
@click.option(
    "--builder",
    type=click.Choice(["auto", "buildkit", "legacy"]),
    default="auto",
    show_default=True,
    help="BuildKit (via a capable docker CLI) or the classic builder (docker SDK).",
)
@click.option(
    "--no-cache", is_flag=True, default=False, help="Build every layer again (no layer cache)."
)
def command(
    model_uris: tuple[str, ...],
    model_repository: Any,
    dry_run: bool,
    builder: str,
    no_cache: bool,
    **params: Any,
) -> None:
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
      deployer build -m iris=./iris -m churn=./churn           (one image, two models)
      deployer build --model-repository ./models --grpc-port 8081

    \b
    Several models (-m NAME=URI repeated, --model-repository DIR): one image, one locked
    environment (models whose requirements conflict are refused, with the list, before
    anything is built), each model in its own layer at /opt/ml/model-repository/NAME.
    """
    from deployer.building.sources import model_source

    model_uri = model_source(model_uris, model_repository)
    console = get_console()
    if dry_run:
        print_build_plan(model_uri, params)
        return
    _plan, result = run_build(
        model_uri, params, engine_pref=None if builder == "auto" else builder, nocache=no_cache
    )
    console.result(result.to_dict(), text=lambda: result_text(result))
