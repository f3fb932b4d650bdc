"""``deployer batch``: score files with a target's batch service; ``--stop`` a running job,
``--status JOB``, ``--list`` deployer's jobs, ``--clean`` up after finished ``--no-wait`` jobs.

``--output`` here is where predictions go (``s3://...``), as in the cloud APIs; the result
format is chosen with ``--format`` (or the global ``deployer --output json batch ...``).
"""

from __future__ import annotations

from typing import Any

import click

from deployer.cli.build_options import build_option_group, pop_build_options
from deployer.cli.common import DeployerCommand, get_console
from deployer.cli.spark_batch import SPARK_TARGET, pop_spark_values, run_spark, spark_options
from deployer.cli.targets_common import (
    render_mapping,
    render_plan,
    require_target,
    split_target_values,
    target_options,
)
from deployer.targets.base import BatchRequest
from deployer.targets.build_options import refuse_unused, they_shape


@click.command("batch", cls=DeployerCommand)
@click.option(
    "--target", "-t", "target", metavar="TARGET", help="Deployment target (e.g. sagemaker)."
)
@click.option("-m", "--model", "model_uri", metavar="URI", help="Model to score with.")
@click.option("--image-uri", metavar="IMAGE", help="Use this prebuilt image (no build).")
@click.option("--input", "input_uri", metavar="URI", help="Input data (e.g. s3://bucket/prefix).")
@click.option(
    "--output", "output_uri", metavar="URI", help="Where predictions go (e.g. s3://bucket/prefix)."
)
@click.option("--name", "-n", "name", metavar="NAME", help="Job name (default: generated, unique).")
@click.option(
    "--stop", "stop", metavar="JOB", help="Stop the running job JOB instead of starting one."
)
@click.option("--status", "status_job", metavar="JOB", help="Show the state of job JOB.")
@click.option("--list", "list_jobs", is_flag=True, help="List the jobs deployer started.")
@click.option(
    "--clean",
    "clean",
    is_flag=True,
    help="Remove the models and model archives of finished jobs "
    "(all of deployer's, or --name JOB).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the ordered plan of cloud calls; change nothing."
)
@click.option("--wait/--no-wait", default=True, help="Wait for the job to finish (default: wait).")
@click.option("--timeout", type=float, metavar="SECONDS", help="Give up waiting after this long.")
@target_options("batch")
@build_option_group
@spark_options
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Result format (--output is the destination here).",
)
@click.option("-v", "--verbose", count=True, help="More logs (repeatable); tracebacks on error.")
@click.option("-q", "--quiet", is_flag=True, default=False, help="Only warnings and errors.")
def command(
    target: str | None,
    model_uri: str | None,
    image_uri: str | None,
    input_uri: str | None,
    output_uri: str | None,
    name: str | None,
    stop: str | None,
    status_job: str | None,
    list_jobs: bool,
    clean: bool,
    dry_run: bool,
    wait: bool,
    timeout: float | None,
    **target_values: Any,
) -> None:
    """Run a batch scoring job, or stop one.

    \b
      deployer batch --target sagemaker -m ./model --input s3://b/in/ --output s3://b/out/
      deployer batch --target sagemaker --stop my-job
      deployer batch --target sagemaker --status my-job
      deployer batch --target sagemaker --list
      deployer batch --target sagemaker --clean [--name my-job] [--dry-run]
    """
    from deployer.errors import UsageError
    from deployer.targets.base import BatchTarget
    from deployer.targets.registry import get_target

    ctx = click.get_current_context()
    spark_values = pop_spark_values(ctx, target, target_values)
    build, given = pop_build_options(ctx, target_values)
    if target == SPARK_TARGET:  # not a deployment target: its own options and runner
        others = dict(
            target_values,
            image_uri=image_uri,
            name=name,
            stop=stop,
            status_job=status_job,
            list_jobs=list_jobs,
            clean=clean,
            wait=wait,
            timeout=timeout,
        )
        run_spark(
            ctx,
            model_uri=model_uri,
            input_uri=input_uri,
            output_uri=output_uri,
            dry_run=dry_run,
            spark_values=spark_values,
            other_values=others,
            build=build,
            build_given=given,
        )
        return
    target = require_target(target, "batch")
    connection, options = split_target_values(ctx, target, "batch", target_values)
    managing = [
        flag
        for flag, on in (
            ("--stop", stop),
            ("--status", status_job),
            ("--list", list_jobs),
            ("--clean", clean),
        )
        if on
    ]
    if managing and given:
        raise UsageError(
            f"{they_shape(given)} an image, and {managing[0]} starts no job",
            where=given[0],
            fix="drop them",
        )
    if not managing:
        refuse_unused(
            given, target=target, model_uri=model_uri, image_uri=image_uri, options=options
        )
    plugin = get_target(target, **connection)
    if not isinstance(plugin, BatchTarget):
        raise UsageError(
            f"target {target!r} does not run batch jobs",
            where="--target",
            fix="use a target with batch support (e.g. sagemaker)",
        )
    console = get_console()
    if len(managing) > 1:
        raise UsageError(
            f"{' and '.join(managing)} exclude each other",
            where=managing[1],
            fix="pass one of them",
        )
    if managing and managing[0] != "--stop":
        _manage(
            plugin,
            target,
            managing[0],
            status_job,
            name,
            dry_run,
            bool(model_uri or image_uri or input_uri or output_uri),
        )
        return
    if stop:
        if model_uri or image_uri or input_uri or output_uri:
            raise UsageError(
                "--stop takes only the job name",
                where="--stop",
                fix="drop -m/--image-uri/--input/--output when stopping a job",
            )
        result = plugin.stop_batch(stop)
        console.result(
            result,
            text=lambda: render_mapping(
                f"job {result.name}: {result.status}", dict(result.details)
            ),
        )
        return
    if not input_uri or not output_uri:
        raise UsageError(
            "a batch job needs --input and --output",
            where="--input/--output",
            fix="pass --input s3://bucket/in/ --output s3://bucket/out/",
        )
    request = BatchRequest(
        model_uri=model_uri,
        input=input_uri,
        output=output_uri,
        image_uri=image_uri,
        name=name,
        options=options,
        wait=wait,
        timeout=timeout,
        build=build,
    )
    plan = plugin.plan_batch(request)
    if dry_run:
        console.result({"dry_run": True, "plan": plan}, text=lambda: render_plan(plan))
        return
    result = plugin.apply(plan)
    console.result(
        result,
        text=lambda: render_mapping(f"job {result.name}: {result.status}", dict(result.details)),
    )


def _manage(
    plugin: Any,
    target: str,
    flag: str,
    job: str | None,
    name: str | None,
    dry_run: bool,
    has_job_args: bool,
) -> None:
    """--status / --list / --clean: optional target methods, refused clearly when missing."""
    from deployer.errors import UsageError

    if has_job_args:
        raise UsageError(
            f"{flag} starts no job", where=flag, fix="drop -m/--image-uri/--input/--output"
        )
    method = {"--status": "batch_status", "--list": "list_batch", "--clean": "plan_clean_batch"}[
        flag
    ]
    if getattr(plugin, method, None) is None:
        raise UsageError(
            f"target {target!r} does not support batch {flag}",
            where=flag,
            fix="use a target that does",
        )
    console = get_console()
    if flag == "--status":
        status = plugin.batch_status(job)
        console.result(
            status,
            text=lambda: render_mapping(
                f"job {status.name}: {status.status}", dict(status.details)
            ),
        )
    elif flag == "--list":
        jobs = list(plugin.list_batch())
        console.result(
            {"jobs": jobs},
            text=lambda: (
                "\n".join(f"{j.name}  {j.status}  {j.details.get('created', '')}" for j in jobs)
                or "no jobs"
            ),
        )
    else:
        plan = plugin.plan_clean_batch(name)
        if dry_run or plan.action == "noop":
            console.result({"dry_run": dry_run, "plan": plan}, text=lambda: render_plan(plan))
            return
        result = plugin.apply(plan)
        console.result(
            result,
            text=lambda: render_mapping(f"{result.name}: {result.status}", dict(result.details)),
        )
