"""``deployer run-local``: build the image if needed, run it like its platform would, stream
logs."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import click

from deployer.cli.build_options import build_options, image_options
from deployer.cli.common import command, get_console, model_set_options


def sample_curl(url: str, route: str, model_path: Path | None) -> str:
    body = None
    if model_path is not None:
        example = model_path / "serving_input_example.json"
        if example.is_file():
            body = f"@{example}"
    if body is None:
        body = json.dumps({"dataframe_split": {"columns": ["x"], "data": [[1.0]]}})
    return (
        f"curl -X POST {shlex.quote(url + route)} -H 'Content-Type: application/json' "
        f"--data {shlex.quote(body)}"
    )


@command("run-local")
@model_set_options
@click.option(
    "-p",
    "--port",
    "host_port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Host port on 127.0.0.1 (0: any free port).",
)
@click.option("--name", default=None, help="Container/endpoint name (default: the model's name).")
@click.option(
    "-d",
    "--detach",
    is_flag=True,
    default=False,
    help="Leave the container running and return (remove it with `deployer delete`).",
)
@click.option(
    "--ready-timeout",
    type=click.FloatRange(1, 3600),
    default=300.0,
    show_default=True,
    help="Seconds to wait for the server to answer its readiness route.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    default=False,
    help="Print the build plan and how it would run; build and run nothing.",
)
@image_options
def command(
    model_uris: tuple[str, ...],
    model_repository: Any,
    host_port: int,
    name: str | None,
    detach: bool,
    ready_timeout: float,
    dry_run: bool,
    **params: Any,
) -> None:
    """Run the model's image locally, started the way the target platform starts it.

    \b
    Builds the image first unless an identical one exists (same model, dependencies and
    options). --target sagemaker runs `docker run IMAGE serve` (SageMaker's contract);
    --target azureml runs Azure's inference server with the generated score.py. Waits for
    readiness, prints the URL and a sample request, then streams the container's logs
    until Ctrl-C, which stops and removes the container.
    Several models (-m NAME=URI repeated, --model-repository DIR): one multi-model image.
    """
    from deployer.building.progress import Progress
    from deployer.building.sources import model_source
    from deployer.targets.actions import follow_local, start_local

    model_uri = model_source(model_uris, model_repository)
    console = get_console()
    if dry_run:
        from deployer.cli.build_cmd import print_build_plan

        serve_as, gpu = params.get("target") or "local", bool(params.get("gpu"))
        run = {"serve_as": serve_as, "host_port": host_port, "name": name, "gpu": gpu}
        print_build_plan(
            model_uri,
            {**params, "port": 8080},
            lambda _plan: (
                {"run": run},
                f"run        as {serve_as} on 127.0.0.1:{host_port or '<any>'}"
                + (" with all GPUs" if gpu else ""),
            ),
        )
        return
    options = build_options({**params, "port": 8080})
    with Progress(verbosity=console.verbosity) as progress:
        run = start_local(
            model_uri,
            options,
            name=name,
            port=host_port,
            ready_timeout=ready_timeout,
            step=progress.step,
            on_line=progress.line,
        )
    data = {**run.to_dict(), "detached": detach}
    curl = sample_curl(run.url, run.predict_route, run.model_path)
    console.result(
        data,
        text=lambda: (
            f"serving {run.model_uri} at {run.url}  (container {data['container']})\n"
            f"try:  {curl}\n"
            + (f"gRPC (V2): {data['grpc']}\n" if data.get("grpc") else "")
            + ("" if detach else "streaming logs; Ctrl-C stops and removes the container")
        ),
    )
    if detach:
        return
    follow_local(
        run,
        lambda chunk: click.echo(chunk.decode(errors="replace"), nl=False, err=True),
        console.info,
    )
