"""``deployer serve``: the scoring server on this host, in this Python environment.

The same server the images run (``python -m deployer.serving serve``), after resolving the
model URI (local path, s3://, runs:/, models:/) to a local directory.
"""

from __future__ import annotations

import click

from deployer.cli.common import command as deployer_command
from deployer.cli.common import get_console, model_option


@deployer_command("serve")
@model_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port (0 picks a free one; the log says which).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: the CPU count).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="Request timeout in seconds (504 after it).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=100 * 1024 * 1024,
              show_default=True, help="Largest request body (413 above it).")
@click.option("--blas-threads", type=click.IntRange(min=1), default=None,
              help="BLAS/OpenMP threads per worker (default: CPUs // workers).")
@click.option("--model-name", default=None,
              help="Name in V2 routes and metrics (default: the model directory's name).")
@click.option("--model-version", default=None, help="Version reported by the V2 routes.")
def command(model_uri: str, host: str, port: int, workers: int | None, timeout: float,
            max_body_bytes: int, blas_threads: int | None, model_name: str | None,
            model_version: str | None) -> None:
    """Serve a model over HTTP on this host (no container), like `mlflow models serve`.

    \b
    Routes: POST /invocations (MLflow protocol), GET /ping /health /version,
    GET /openapi.json, GET /metrics, and the Open Inference Protocol under /v2.

    \b
    Example:
      deployer serve -m ./model --port 8080
      curl -H 'Content-Type: application/json' localhost:8080/invocations \\
           -d '{"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}'
    """
    import logging

    from deployer.model.uri import resolve_model_uri
    from deployer.serving.options import ServeOptions
    from deployer.serving.server import serve

    console = get_console()
    model_dir = resolve_model_uri(model_uri)
    options = ServeOptions(
        model_dir=str(model_dir), host=host, port=port, workers=workers, timeout=timeout,
        max_body_bytes=max_body_bytes, blas_threads=blas_threads, model_name=model_name,
        model_version=model_version,
        log_level="debug" if console.verbosity > 0 else "warning" if console.verbosity < 0
        else "info",
    ).validate()
    # the CLI already configured the "deployer" logger: the server logs through it
    logging.getLogger("deployer.serving").setLevel(options.log_level.upper())
    serve(options)
    console.result({"model": str(model_dir), "stopped": True}, text="server stopped")
