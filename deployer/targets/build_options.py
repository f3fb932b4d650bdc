"""The build-option group: every option that shapes a model's image, declared once.

Accepted identically by every command that builds an image from ``-m`` (the CLI's
``build``, ``generate``, ``run-local``, ``build-and-push``, ``deploy -m``, ``batch -m``: their
click decorators are made from :data:`GROUP` in :mod:`deployer.cli.build_options`) and by the
MLflow deployments plugin's ``-C`` keys (:func:`option_specs`, :func:`pop_config_build_options`).
One exception of spelling: the image's baked environment is ``--env`` or ``--image-env`` on the
build commands but only ``--image-env`` on deploy/batch, whose ``--env`` is the endpoint's
runtime environment.

The values become one :class:`~deployer.building.plan.BuildOptions` (:func:`build_options`);
deploy and batch hand it to the target in the request, and a target's plan carries it to its
build step (``BuildOptions.to_params``), so ``--dry-run`` shows it. This module is shared by
both front ends, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from deployer.errors import UsageError

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


@dataclass(frozen=True)
class GroupOption:
    """One option of the group: its parameter name, flags, click keyword arguments, and its
    type as an :class:`OptionSpec` type (for ``-C key=value`` in the MLflow plugin)."""

    name: str
    flags: tuple[str, ...]
    kwargs: tuple[tuple[str, Any], ...]
    kind: str = "str"
    deploy_flags: tuple[str, ...] | None = None  # other flags on deploy/batch (None: the same)

    def decorator(self, flags: tuple[str, ...]) -> Decorator:
        return click.option(*flags, self.name, **dict(self.kwargs))

    @property
    def flag(self) -> str:
        """The flag deploy/batch spell it with (``--image-env``, ``--verify``...)."""
        return self.spellings[0]

    @property
    def spellings(self) -> tuple[str, ...]:
        """The flag's spellings on deploy/batch: ``("--verify", "--no-verify")``, ``("--pip",)``."""
        return tuple((self.deploy_flags or self.flags)[0].split("/"))

    def given_flag(self, value: Any) -> str:
        """The flag as given: ``--no-verify`` for a false on/off switch."""
        spellings = self.spellings
        return spellings[-1] if len(spellings) > 1 and value is False else spellings[0]

    @property
    def key(self) -> str:
        """Its ``-C`` key in the MLflow plugin: the flag's name (``image_env``, ``pip``...)."""
        return self.flag[2:].replace("-", "_")

    def spec(self) -> Any:
        from deployer.targets.base import OptionSpec

        kwargs = dict(self.kwargs)
        choice = kwargs.get("type")
        return OptionSpec(
            self.key,
            str(kwargs.get("help", "")),
            type=self.kind,
            default=None if kwargs.get("multiple") else kwargs.get("default"),
            multiple=bool(kwargs.get("multiple")),
            metavar=kwargs.get("metavar"),
            choices=tuple(choice.choices) if self.kind == "choice" else (),
        )


def _opt(
    name: str,
    *flags: str,
    kind: str = "str",
    deploy_flags: tuple[str, ...] | None = None,
    **kwargs: Any,
) -> GroupOption:
    if kwargs.get("is_flag") or (flags and "/" in flags[0]):
        kind = "bool"
    return GroupOption(name, flags, tuple(kwargs.items()), kind, deploy_flags)


#: The group, in --help order. Each name is a BuildOptions field (env_vars -> env,
#: labels -> labels, lock_file, ...: see build_options()).
GROUP: tuple[GroupOption, ...] = (
    _opt(
        "base_image",
        "--base-image",
        default=None,
        help="Base image (default: python:<model's X.Y>-slim; with --gpu "
        "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04). Must have python3 X.Y.",
    ),
    _opt(
        "gpu",
        "--gpu",
        is_flag=True,
        default=False,
        help="GPU image: CUDA base by default (needs python3 X.Y: pass --base-image), labelled "
        "io.deployer.gpu; run-local and deploy --target local then request the engine's GPUs.",
    ),
    _opt(
        "platform",
        "--platform",
        default="linux/amd64",
        show_default=True,
        help="Image platform (linux/amd64 or linux/arm64); another architecture than the "
        "engine's needs docker buildx + QEMU.",
    ),
    _opt(
        "python_version",
        "--python",
        default=None,
        help="Python X.Y to build for (default: the model's).",
    ),
    _opt(
        "lock_file",
        "--lock",
        kind="path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Install exactly this lock file (from `deployer lock`).",
    ),
    _opt(
        "wheelhouse",
        "--wheelhouse",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Offline: take every wheel from this directory, never from an index.",
    ),
    _opt(
        "conda_lock",
        "--conda-lock",
        kind="path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="conda-lock lockfile for conda models (default: conda-lock.yml in the model).",
    ),
    _opt(
        "env_kind",
        "--env-kind",
        kind="choice",
        type=click.Choice(["virtualenv", "conda", "local"]),
        default=None,
        help="Override the environment kind; 'local' trusts the base image's Python.",
    ),
    _opt(
        "keep_full_mlflow",
        "--keep-full-mlflow",
        is_flag=True,
        default=False,
        help="Keep mlflow as required instead of the smaller mlflow-skinny.",
    ),
    _opt(
        "parquet",
        "--parquet/--no-parquet",
        default=False,
        show_default=True,
        help="Add pyarrow (~160 MB) so the image also answers Parquet requests. Without it "
        "(the default), Parquet requests get a 415 unless the model itself needs pyarrow.",
    ),
    _opt(
        "run_as_root",
        "--run-as-root",
        is_flag=True,
        default=False,
        help="Run the server as root (for platforms that need it; default uid 1000).",
    ),
    _opt(
        "refresh_lock",
        "--refresh-lock",
        is_flag=True,
        default=False,
        help="Resolve dependencies again instead of reusing a cached resolution.",
    ),
    _opt(
        "env_vars",
        "--env",
        "--image-env",
        deploy_flags=("--image-env",),
        multiple=True,
        metavar="KEY=VALUE",
        help="Environment variable baked into the image (never secrets: refused).",
    ),
    _opt("labels", "--label", multiple=True, metavar="KEY=VALUE", help="Extra image label."),
    _opt(
        "verify",
        "--verify/--no-verify",
        default=True,
        show_default=True,
        help="Run the built image once offline and score its input example before tagging (or "
        "pushing) it; --no-verify skips that and records it in the "
        "io.deployer.verify.status label.",
    ),
    _opt(
        "auto_deps",
        "--auto-deps/--no-auto-deps",
        default=True,
        show_default=True,
        help="Add packages the model's loader imports but its requirements miss (e.g. skops for "
        "serialization_format: skops), with a warning; --no-auto-deps makes that an error.",
    ),
    _opt(
        "pip",
        "--pip",
        multiple=True,
        metavar="REQ",
        help="Extra pip requirement (repeatable); one naming a package the model lists replaces "
        "the model's version (as MLflow's --pip-requirements-override).",
    ),
    _opt(
        "pip_override_file",
        "--pip-requirements-override",
        kind="path",
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Requirements file: overrides the versions of the packages the model lists, adds the "
        "rest.",
    ),
    _opt(
        "system_packages",
        "--system-package",
        multiple=True,
        metavar="NAME",
        help="Debian package installed with apt in an OS layer below the Python environment "
        "(repeatable), e.g. libgomp1 for lightgbm/xgboost.",
    ),
    _opt(
        "model_config",
        "--model-config",
        kind="mapping",
        metavar="FILE|JSON",
        default=None,
        help="Load-time override of the model's config (as mlflow.pyfunc.load_model("
        "model_config=...)): a JSON object or a YAML/JSON file; baked into the image as "
        "SERVING_MODEL_CONFIG.",
    ),
    _opt(
        "java",
        "--java/--no-java",
        default=True,
        show_default=True,
        help="Install a headless JRE for flavors that need a JVM (spark, h2o, johnsnowlabs, "
        "mleap); "
        "--no-java when the base image has one.",
    ),
)

#: Parameter names of the group (deploy/batch: a target may not declare one of these).
NAMES = frozenset(o.name for o in GROUP)


def _pairs(values: tuple[str, ...], flag: str) -> tuple[tuple[str, str], ...]:
    out = []
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(
                f"{flag} {item!r} is not KEY=VALUE", where=flag, fix=f"write {flag} NAME=value"
            )
        out.append((key, value))
    return tuple(out)


def _path(value: Any) -> Path | None:
    return None if value is None else Path(value)


def build_options(params: dict[str, Any], *, plugin: bool = False) -> Any:
    """Command parameters -> :class:`~deployer.building.plan.BuildOptions` (``plugin``: errors
    name the ``-C`` key instead of the flag)."""
    from deployer.building.plan import BuildOptions

    return BuildOptions(
        tag=params.get("tag"),
        base_image=params.get("base_image") or None,
        target=params.get("target") or "local",
        platform=params.get("platform") or "linux/amd64",
        python_version=params.get("python_version"),
        env_kind=params.get("env_kind"),
        lock_file=_path(params.get("lock_file")),
        wheelhouse=_path(params.get("wheelhouse")),
        conda_lock=_path(params.get("conda_lock")),
        keep_full_mlflow=bool(params.get("keep_full_mlflow")),
        parquet=bool(params.get("parquet")),
        run_as_root=bool(params.get("run_as_root")),
        refresh_lock=bool(params.get("refresh_lock")),
        env=_pairs(tuple(params.get("env_vars") or ()), "--env"),
        labels=_pairs(tuple(params.get("labels") or ()), "--label"),
        port=int(params.get("port") or 8080),
        grpc_port=None if params.get("grpc_port") is None else int(params["grpc_port"]),
        gpu=bool(params.get("gpu")),
        verify=params.get("verify") is not False,
        auto_deps=params.get("auto_deps") is not False,
        pip=tuple(params.get("pip") or ()),
        pip_override_file=_path(params.get("pip_override_file")),
        system_packages=tuple(params.get("system_packages") or ()),
        java=params.get("java") is not False,
        model_config=_model_config(
            params.get("model_config"), "-C model_config" if plugin else "--model-config"
        ),
    )


def _model_config(value: Any, where: str) -> str | None:
    """``--model-config`` / ``-C model_config`` (text, a path or a mapping) -> canonical JSON."""
    if value is None:
        return None
    from deployer.serving.model_config import model_config_json, parse_model_config

    return model_config_json(parse_model_config(value, where=where))


def option_specs() -> dict[str, Any]:
    """The group as ``-C`` keys (key -> OptionSpec) for the MLflow deployments plugin."""
    return {o.key: o.spec() for o in GROUP}


def pop_config_build_options(values: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
    """The plugin's twin of :func:`pop_build_options`: ``-C`` values (parsed) -> BuildOptions,
    and the keys that were given."""
    by_key = {o.key: o for o in GROUP}
    keys = tuple(k for k in list(values) if k in by_key)
    params = {by_key[k].name: values.pop(k) for k in keys}
    return build_options(params, plugin=True), tuple(f"-C {k}" for k in keys)


def they_shape(given: tuple[str, ...] | list[str]) -> str:
    """``"--pip shapes"`` / ``"--pip, --lock shape"``: the start of the refusals below."""
    return f"{', '.join(given)} {'shapes' if len(given) == 1 else 'shape'}"


def refuse_unused(
    given: tuple[str, ...],
    *,
    target: str,
    model_uri: str | None,
    image_uri: str | None,
    options: Mapping[str, Any] | None = None,
) -> None:
    """deploy / batch: a build option given where nothing is built is an error, not ignored.

    ``options``: the target's own option values; a target whose ``builds_images`` names one
    of them builds from -m only when it is given (Azure ML: ``registry``)."""
    from deployer.targets.registry import load_factory

    if target == "local" and image_uri:
        given = tuple(
            g for g in given if g not in ("--gpu", "-C gpu")
        )  # also runs a prebuilt image with the GPUs
    if not given:
        return
    builds = getattr(load_factory(target), "builds_images", True)
    if image_uri:
        why, fix = (
            "--image-uri deploys a prebuilt image",
            "drop them, or pass -m MODEL instead of --image-uri",
        )
    elif not model_uri:
        why, fix = "no -m MODEL is given, so nothing is built", "drop them, or pass -m MODEL"
    elif builds is False:
        why = (
            f"target {target!r} builds no image from -m "
            "(the platform builds the model's environment itself)"
        )
        fix = (
            f"build the image with `deployer build-and-push --target {target} -m MODEL "
            f"{' '.join(given)} ...`, then deploy it with --image-uri IMAGE"
        )
    elif isinstance(builds, str) and not (options or {}).get(builds):
        flag = "-C " + builds if given[0].startswith("-C ") else "--" + builds.replace("_", "-")
        why = (
            f"target {target!r} builds an image from -m only with {flag} (without it the platform "
            "builds the model's environment itself)"
        )
        fix = (
            f"add {flag} HOST[/NAMESPACE] to build, verify and push deployer's image there, "
            "or drop them"
        )
    else:
        return
    raise UsageError(
        f"{they_shape(given)} the image deployer builds from -m, but {why}", where=given[0], fix=fix
    )
