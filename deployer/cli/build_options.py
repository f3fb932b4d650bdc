"""The build-option group on the command line: click decorators made from the one declaration
in :mod:`deployer.targets.build_options`.

``image_options`` (build, generate, run-local, build-and-push) adds the options only those
commands have: ``-t/--tag``, ``--target``, ``--container-port``, ``--grpc-port``;
``build_option_group`` (deploy, batch) spells the baked environment ``--image-env`` only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from deployer.building.contracts import CONTRACTS
from deployer.targets.build_options import GROUP, NAMES, Decorator, build_options

__all__ = ["build_option_group", "build_options", "image_options", "pop_build_options"]

#: Options only the image commands have.
_IMAGE_ONLY: tuple[Decorator, ...] = (
    click.option(
        "-t", "--tag", default=None, help="Image name[:tag] (default: <model>:<content hash>)."
    ),
    click.option(
        "--target",
        type=click.Choice(list(CONTRACTS)),
        default="local",
        show_default=True,
        help="Where the image will run (sets its command and server).",
    ),
    click.option(
        "--container-port",
        "port",
        type=click.IntRange(1, 65535),
        default=8080,
        show_default=True,
        help="Port the server listens on inside the container.",
    ),
    click.option(
        "--grpc-port",
        "grpc_port",
        type=click.IntRange(1, 65535),
        default=None,
        help="Also serve the Open Inference Protocol (V2) over gRPC on this container port "
        "(KServe's convention: 8081): installs deployer's grpc extra, exposes the port, and "
        "verification calls ModelInfer over it. Default: no gRPC in the image.",
    ),
)


def _apply(f: Callable[..., Any], decorators: list[Decorator]) -> Callable[..., Any]:
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def image_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """build / generate / run-local / build-and-push: the group plus tag, target and port."""
    return _apply(f, [*_IMAGE_ONLY, *(o.decorator(o.flags) for o in GROUP)])


def build_option_group(f: Callable[..., Any]) -> Callable[..., Any]:
    """deploy / batch: the group, for images the target builds from ``-m``."""
    return _apply(f, [o.decorator(o.deploy_flags or o.flags) for o in GROUP])


def pop_build_options(ctx: click.Context, values: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
    """deploy / batch: take the group's values out of ``values``; return the BuildOptions and
    the flags given on the command line (for commands that build nothing to refuse)."""
    params = {name: values.pop(name) for name in list(values) if name in NAMES}
    given = tuple(
        o.given_flag(params.get(o.name))
        for o in GROUP
        if ctx.get_parameter_source(o.name) == ParameterSource.COMMANDLINE
    )
    return build_options(params), given
