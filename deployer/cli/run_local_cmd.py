"""``deployer run-local``: build the image if needed, run it like its platform would, stream logs."""

from __future__ import annotations

import json
import shlex
import signal
from pathlib import Path
from typing import Any

import click

from deployer.cli.build_cmd import build_options, image_options
from deployer.cli.common import command, get_console, model_option


def sample_curl(url: str, route: str, model_path: Path | None) -> str:
    body = None
    if model_path is not None:
        example = model_path / "serving_input_example.json"
        if example.is_file():
            body = f"@{example}"
    if body is None:
        body = json.dumps({"dataframe_split": {"columns": ["x"], "data": [[1.0]]}})
    return (f"curl -X POST {shlex.quote(url + route)} -H 'Content-Type: application/json' "
            f"--data {shlex.quote(body)}")


@command("run-local")
@model_option
@click.option("-p", "--port", "host_port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Host port on 127.0.0.1 (0: any free port).")
@click.option("--name", default=None, help="Container/endpoint name (default: the model's name).")
@click.option("-d", "--detach", is_flag=True, default=False,
              help="Leave the container running and return (remove it with `deployer delete`).")
@click.option("--ready-timeout", type=click.FloatRange(1, 3600), default=300.0, show_default=True,
              help="Seconds to wait for the server to answer its readiness route.")
@image_options
def command(model_uri: str, host_port: int, name: str | None, detach: bool, ready_timeout: float,
            **params: Any) -> None:
    """Run the model's image locally, started the way the target platform starts it.

    \b
    Builds the image first unless an identical one exists (same model, dependencies and
    options). --target sagemaker runs `docker run IMAGE serve` (SageMaker's contract);
    --target azureml runs Azure's inference server with the generated score.py. Waits for
    readiness, prints the URL and a sample request, then streams the container's logs
    until Ctrl-C, which stops and removes the container.
    """
    from deployer.building.progress import Progress
    from deployer.targets.base import DeployRequest
    from deployer.targets.local import ROUTES, LocalTarget

    console = get_console()
    options = build_options({**params, "port": 8080})
    target = LocalTarget(ready_timeout=ready_timeout)
    with Progress(verbosity=console.verbosity) as progress:
        from deployer.building.plan import plan_build
        from deployer.model import load_model

        loaded = load_model(model_uri)
        endpoint = name or plan_build(loaded, options).model_name
        request = DeployRequest(name=endpoint, model_uri=model_uri, timeout=ready_timeout,
                                options={"port": host_port, "serve_as": options.target, "build_options": options})
        plan = target.plan(request)
        result = target.apply(plan, step=progress.step, on_line=progress.line)
    serve_as = str(result.details.get("serve_as", options.target))
    url = str(result.endpoint_url)
    data = {"name": endpoint, "url": url, "container": result.details.get("container"),
            "image": result.details.get("image"), "serve_as": serve_as,
            "predict_route": ROUTES[serve_as][1], "detached": detach}
    curl = sample_curl(url, ROUTES[serve_as][1], loaded.path)
    console.result(data, text=lambda: f"serving {loaded.uri} at {url}  (container {data['container']})\n"
                   f"try:  {curl}\n" + ("" if detach else "streaming logs; Ctrl-C stops and removes the container"))
    if detach:
        return
    container = target.client.containers.get(data["container"])
    try:
        for chunk in container.logs(stream=True, follow=True):
            click.echo(chunk.decode(errors="replace"), nl=False, err=True)
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not leave a stopped-but-not-removed container behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            console.info(f"stopping and removing {data['container']}")
            target.delete(endpoint)
        finally:
            signal.signal(signal.SIGINT, previous)
