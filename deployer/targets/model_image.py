"""The image a target builds from ``-m``: planned as data, built by a plan's ``build_image`` step.

Targets that deploy a model directory as a container image (local Docker; SageMaker; Azure ML
with ``--registry``) plan the image with :func:`plan_model_image` (pure: it fixes the
content-addressed tag and the build parameters) and run :func:`build_step` when their plan's
``deployer:build_image`` call comes up. The build verifies the image (unless ``--no-verify``)
before anything is pushed, and reuses an image of the same content that is already built.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("deployer")

#: The planned call that builds the image (service, operation).
BUILD_STEP = ("deployer", "build_image")


def plan_model_image(model_uri: str, build_options: Any, target: str) -> tuple[Any, dict[str, Any]]:
    """The build plan of ``model_uri``'s image for ``target`` and the ``build_image`` call's
    parameters (``ModelUri``, ``LocalImage``: the tag planned, ``Build``: the options)."""
    from deployer.building.plan import plan_build
    from deployer.intake import load_model
    from deployer.targets.base import image_build_options

    options = image_build_options(build_options, target)
    build = plan_build(load_model(model_uri), options)
    return build, {"ModelUri": model_uri, "LocalImage": build.tag, "Build": options.to_params()}


#: ``--registry``: HOST[:PORT][/NAMESPACE] (lower case, as image references are).
REGISTRY = re.compile(
    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
)


def plan_registry_image(
    model_uri: str, build_options: Any, target: str, registry: str
) -> tuple[str, dict[str, Any]]:
    """``--registry``: the reference the image of ``model_uri`` gets in ``registry``
    (``HOST[/NAMESPACE]/name:tag``, content-addressed) and the ``build_image`` call's
    parameters (see :func:`plan_model_image`). A malformed registry is a usage error."""
    from deployer.errors import UsageError

    host = registry.strip().rstrip("/")
    if not REGISTRY.match(host):
        raise UsageError(
            f"bad registry {registry!r}",
            where="--registry",
            fix="write HOST[:PORT][/NAMESPACE], e.g. registry.example.com/ml",
        )
    build, step = plan_model_image(model_uri, build_options, target)
    return f"{host}/{build.tag}", step


def build_call(step: Mapping[str, Any], what: str) -> Any:
    """The planned ``build_image`` call for ``step`` (:func:`plan_model_image`'s parameters),
    described for ``--dry-run``; whether it verifies comes from the step's build options."""
    from deployer.targets.base import PlannedCall

    verify = step["Build"].get("verify", True) is not False
    return PlannedCall(
        *BUILD_STEP,
        dict(step),
        description=f"build {what} on the local Docker engine"
        + (
            ", then run it offline and score its input example (before anything is pushed or "
            "created)"
            if verify
            else " (not verified: --no-verify)"
        ),
    )


def build_step(
    params: Mapping[str, Any],
    *,
    step: Callable[[str], None] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """Run a planned ``build_image`` call: build (and verify) the image; return its local tag.
    ``step`` / ``on_line``: progress (default: the log)."""
    from deployer.building.execute import build_model_image
    from deployer.building.plan import BuildOptions

    options = BuildOptions.from_params(params["Build"])
    plan, result = build_model_image(
        str(params["ModelUri"]), options, if_needed=True, step=step or log.info, on_line=on_line
    )
    if plan.tag != params.get("LocalImage"):
        log.warning(
            "the image tag changed since planning (%s, planned %s): the model or its "
            "environment changed meanwhile",
            plan.tag,
            params.get("LocalImage"),
        )
    return str(result.image)
