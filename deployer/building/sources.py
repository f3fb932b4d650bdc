"""What an image is built from: one model (``-m DIR``) or a named set of models.

``deployer build|run-local|build-and-push`` take ``-m`` repeatedly: a single ``-m URI``
builds a single-model image exactly as before; ``-m NAME=URI`` (repeated) and/or
``--model-repository DIR`` (every direct subdirectory holding an MLmodel, named after it)
build one multi-model image (:func:`deployer.building.plan.plan_model_set`). Names and the
repository scan are the server's own (:mod:`deployer.serving.model_set`), so an image accepts
exactly the names ``deployer serve`` accepts.

:func:`plan_source` is the one way the image commands and the build executor turn a source
into a :class:`~deployer.building.plan.BuildPlan`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.errors import UsageError

log = logging.getLogger("deployer")

WHERE = "-m NAME=URI / --model-repository"


@dataclass(frozen=True)
class ModelSource:
    """One model (``uri``), or several (``named``: (name, uri) pairs, in layer order)."""

    uri: str | None = None
    named: tuple[tuple[str, str], ...] = ()

    @property
    def multi(self) -> bool:
        return bool(self.named)

    def describe(self) -> str:
        if not self.named:
            return str(self.uri)
        return ", ".join(f"{name}={uri}" for name, uri in self.named)

    def to_dict(self) -> dict[str, Any]:
        if not self.named:
            return {"model": self.uri}
        return {"models": {name: uri for name, uri in self.named}}


def model_source(
    model_args: Sequence[str], model_repository: str | Path | None = None
) -> ModelSource:
    """``-m`` values and ``--model-repository`` -> what to build (see the module docstring)."""
    from deployer.serving.model_set import parse_pairs, scan_repository, split_model_arg

    args = tuple(model_args)
    if not args and model_repository is None:
        raise UsageError(
            "no model given",
            where="-m/--model",
            fix="pass -m URI (or -m NAME=URI repeated, or --model-repository DIR)",
        )
    if len(args) == 1 and model_repository is None and split_model_arg(args[0])[0] is None:
        return ModelSource(uri=args[0])
    named = [(spec.name, spec.path) for spec in parse_pairs(args, "-m NAME=URI")]
    if model_repository is not None:
        found = scan_repository(model_repository)
        if not found:
            raise UsageError(
                "the model repository holds no model (no subdirectory with an MLmodel)",
                where=f"--model-repository {model_repository}",
                fix="put one directory per model in it, each with its MLmodel",
            )
        named += [(spec.name, spec.path) for spec in found]
    names = [name for name, _ in named]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise UsageError(
            f"model name {duplicate!r} is given twice",
            where=WHERE,
            fix="give every model its own name",
        )
    if len(named) < 2:
        raise UsageError(
            f"one named model ({names[0]}) is not a multi-model image",
            where=WHERE,
            fix="build one model with -m URI, or name two or more models",
        )
    return ModelSource(named=tuple(named))


def as_source(source: ModelSource | str) -> ModelSource:
    return source if isinstance(source, ModelSource) else ModelSource(uri=source)


def plan_source(
    source: ModelSource | str,
    options: Any = None,
    *,
    warn: Callable[[str], None] | None = None,
) -> Any:
    """Load the model(s) and plan the image (:func:`~deployer.building.plan.plan_build` or,
    for a set, :func:`~deployer.building.plan.plan_model_set`: a set whose models need
    different environments is refused here, before anything is resolved or built). Every
    warning goes to ``warn`` once (default: the log)."""
    from deployer.building.plan import BuildOptions, plan_build, plan_model_set
    from deployer.intake import load_model

    say = warn or log.warning
    source = as_source(source)
    options = options or BuildOptions()
    if source.multi:
        loaded = [(name, load_model(uri)) for name, uri in source.named]
        shown = [w for _, m in loaded for w in m.warnings]
        plan = plan_model_set(loaded, options)
    else:
        assert source.uri is not None
        one = load_model(source.uri)
        shown = list(one.warnings)
        plan = plan_build(one, options)
    for warning in dict.fromkeys((*shown, *plan.warnings)):
        say(warning)
    return plan
