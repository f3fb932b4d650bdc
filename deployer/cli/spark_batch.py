"""``deployer batch --target spark``: Spark's own options and the dispatch from ``batch``.

Spark is not a deployment target (nothing to deploy, status or delete), so it is not an entry
point of ``deployer.targets``; ``batch`` hands ``--target spark`` to :func:`run_spark` before
looking targets up. Its options are listed in ``batch --help`` with a ``[spark]`` prefix, like
the targets' options, and are refused with any other target.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from deployer.building.host_env import ENV_MANAGERS, ISOLATED_ENV_MANAGERS
from deployer.errors import UsageError

SPARK_TARGET = "spark"

_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("--master", "spark_master"),
        {"metavar": "URL", "help": "[spark] local[*] (default), spark://HOST:PORT or yarn."},
    ),
    (
        ("--remote", "spark_remote"),
        {
            "metavar": "sc://HOST:PORT",
            "envvar": "SPARK_REMOTE",
            "show_envvar": True,
            "help": "[spark] Run on a Spark Connect server instead of a master (not with "
            "--master); the output must be on a path this host shares with it.",
        },
    ),
    (
        ("--input-format", "spark_input_format"),
        {
            "type": click.Choice(["parquet", "csv"]),
            "help": "[spark] Input format (default: from the path; parquet). The output has the "
            "same.",
        },
    ),
    (
        ("--columns", "spark_columns"),
        {
            "metavar": "A,B,...",
            "help": "[spark] Input columns passed in signature order (default: the signature's "
            "names).",
        },
    ),
    (
        ("--result-type", "spark_result_type"),
        {
            "metavar": "TYPE",
            "help": "[spark] Spark type of the prediction: double, long, string, array<double>, "
            "struct<...> (default: from the model).",
        },
    ),
    (
        ("--env-manager", "spark_env_manager"),
        {
            "type": click.Choice(list(ENV_MANAGERS)),
            "help": "[spark] local: executors' Python has the packages; virtualenv (or uv, the "
            "same environment): ship the model's packed, locked environment.",
        },
    ),
    (
        ("--partitions", "spark_partitions"),
        {"type": int, "metavar": "N", "help": "[spark] Repartition the input into N partitions."},
    ),
    (
        ("--conf", "spark_conf"),
        {
            "multiple": True,
            "metavar": "KEY=VALUE",
            "help": "[spark] Spark configuration (repeatable).",
        },
    ),
)
_NAMES = tuple(decls[1] for decls, _ in _OPTIONS)
#: batch options that mean nothing for a Spark job.
_NOT_FOR_SPARK = {
    "image_uri": "--image-uri",
    "name": "--name",
    "stop": "--stop",
    "status_job": "--status",
    "list_jobs": "--list",
    "clean": "--clean",
    "wait": "--wait/--no-wait",
    "timeout": "--timeout",
}


def spark_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for decls, kwargs in reversed(_OPTIONS):
        f = click.option(*decls, default=None, **kwargs)(f)
    return f


def pop_spark_values(
    ctx: click.Context, target: str | None, values: dict[str, Any]
) -> dict[str, Any]:
    """Take Spark's option values out of ``values``; refuse them for another target."""
    mine = {name: values.pop(name, None) for name in _NAMES}
    if target != SPARK_TARGET:
        for decls, _ in _OPTIONS:
            value = mine[decls[1]]
            if (
                value not in (None, ())
                and ctx.get_parameter_source(decls[1]) == ParameterSource.COMMANDLINE
            ):
                raise UsageError(
                    f"{decls[0]} is an option of target spark, not of {target!r}",
                    where=decls[0],
                    fix=f"drop {decls[0]}, or use --target spark",
                )
    return mine


def check_build_options(given: tuple[str, ...], env_manager: str) -> None:
    """The build options a Spark job can use: those that shape the packed environment
    (``deployer.spark.environment.ENVIRONMENT_OPTIONS``), with ``--env-manager virtualenv``;
    the others shape an image, which a Spark job does not have: refused, not ignored."""
    from deployer.spark.environment import ENVIRONMENT_OPTIONS
    from deployer.targets.build_options import GROUP, they_shape

    environment_flags = [s for o in GROUP if o.name in ENVIRONMENT_OPTIONS for s in o.spellings]
    image_only = [flag for flag in given if flag not in environment_flags]
    if image_only:
        raise UsageError(
            f"{they_shape(image_only)} an image, and `batch --target spark` builds none",
            where=image_only[0],
            fix="drop them: a Spark job runs in the executors' Python or, with --env-manager "
            "virtualenv, in the model's packed environment (which takes "
            f"{', '.join(environment_flags)})",
        )
    if given and env_manager not in ISOLATED_ENV_MANAGERS:
        raise UsageError(
            f"{they_shape(given)} the packed environment of --env-manager virtualenv, and this "
            "job runs in the executors' own Python",
            where=given[0],
            fix="add --env-manager virtualenv, or drop them",
        )


def run_spark(
    ctx: click.Context,
    *,
    model_uri: str | None,
    input_uri: str | None,
    output_uri: str | None,
    dry_run: bool,
    spark_values: dict[str, Any],
    other_values: dict[str, Any],
    build: Any = None,
    build_given: tuple[str, ...] = (),
) -> None:
    from deployer.cli.common import get_console
    from deployer.cli.targets_common import render_mapping

    for name, value in other_values.items():
        if (
            value not in (None, (), False)
            and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
        ):
            flag = _NOT_FOR_SPARK.get(name, "--" + name.replace("_", "-"))
            raise UsageError(
                f"{flag} is not an option of target spark",
                where=flag,
                fix=f"drop {flag} (see deployer batch --help: [spark] options)",
            )
    if not model_uri:
        raise UsageError("a Spark batch job needs -m/--model", where="-m", fix="pass -m MODEL_URI")
    if not input_uri or not output_uri:
        raise UsageError(
            "a batch job needs --input and --output",
            where="--input/--output",
            fix="pass --input data.parquet --output predictions.parquet",
        )
    from deployer.spark.plan import plan_batch

    env_manager = spark_values["spark_env_manager"] or "local"
    remote = spark_values["spark_remote"] or None
    if remote and spark_values["spark_master"]:
        source = (
            "SPARK_REMOTE"
            if ctx.get_parameter_source("spark_remote") == ParameterSource.ENVIRONMENT
            else "--remote"
        )
        raise UsageError(
            f"--master and {source} both choose where the job runs",
            where="--master",
            fix="pass one of them: --master for a classic session, --remote sc://HOST:PORT "
            "for a Spark Connect server"
            + (" (or unset SPARK_REMOTE)" if source != "--remote" else ""),
        )
    check_build_options(build_given, env_manager)
    columns = spark_values["spark_columns"]
    plan = plan_batch(
        model_uri,
        input=input_uri,
        output=output_uri,
        master=spark_values["spark_master"] or "local[*]",
        input_format=spark_values["spark_input_format"],
        columns=tuple(c.strip() for c in columns.split(",")) if columns else None,
        result_type=spark_values["spark_result_type"],
        env_manager=env_manager,
        partitions=spark_values["spark_partitions"],
        conf=tuple(spark_values["spark_conf"] or ()),
        build_options=build,
        remote=remote,
    )
    console = get_console()
    if dry_run:
        console.result(
            {"dry_run": True, "plan": plan.to_dict()},
            text=lambda: render_mapping(
                "plan (spark batch); dry run: nothing was run", plan.to_dict()
            ),
        )
        return
    from deployer.spark.run import execute

    result = execute(plan)
    console.result(
        result,
        text=lambda: render_mapping(
            f"spark batch: {result.rows} rows in {result.seconds:.1f} s "
            f"({result.rows_per_second:,.0f} rows/s)",
            result.to_dict(),
        ),
    )
