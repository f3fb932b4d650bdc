"""``deployer predict``: score a file with a model on this host, streamed in chunks."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from deployer.atomic import atomic_output
from deployer.cli.common import command as deployer_command
from deployer.cli.common import get_console
from deployer.cli.model_env import env_manager_option
from deployer.cli.targets_common import require_target, split_target_values, target_options
from deployer.errors import MissingDependencyError, UsageError

log = logging.getLogger("deployer")


@deployer_command("predict")
@click.option(
    "-m",
    "--model",
    "model_uri",
    default=None,
    metavar="URI",
    help="Model to score with on this host (a path or any model URI).",
)
@click.option(
    "--target",
    "-t",
    "target",
    default=None,
    metavar="TARGET",
    help="Score through a deployed endpoint instead (e.g. sagemaker, azureml).",
)
@click.option(
    "--name", "-n", "name", default=None, metavar="NAME", help="Endpoint name (with --target)."
)
@target_options("predict")
@click.option(
    "-i",
    "--input",
    "input_path",
    required=True,
    metavar="FILE|-",
    help="Input file, or - for stdin.",
)
@click.option(
    "-o",
    "--output-file",
    "output_path",
    default="-",
    show_default=True,
    metavar="FILE|-",
    help="Where to write predictions (- for stdout). A file is "
    "written atomically: it appears only once every row is scored.",
)
@click.option(
    "--content-type",
    type=click.Choice(["json", "csv", "parquet"]),
    default=None,
    help="Input format (default: from the file extension, else sniffed).",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Rows read, scored and written at a time (bounds memory).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["jsonl", "csv"]),
    default=None,
    help="Output format (default: csv for a .csv output file, else jsonl).",
)
@env_manager_option
@click.option(
    "--stream",
    "stream",
    is_flag=True,
    default=False,
    help="With --target sagemaker: InvokeEndpointWithResponseStream; the model's "
    "server-sent events are written as they arrive.",
)
def command(
    model_uri: str | None,
    target: str | None,
    name: str | None,
    input_path: str,
    output_path: str,
    content_type: str | None,
    chunk_rows: int,
    output_format: str | None,
    env_manager: str = "local",
    stream: bool = False,
    **target_values: Any,
) -> None:
    """Batch-score a CSV, Parquet or JSON file with the model, in this Python environment.

    \b
    The input is streamed --chunk-rows rows at a time, so files larger than memory work.
    Inputs: CSV (header + rows); Parquet; JSON = one MLflow request (dataframe_split,
    dataframe_records, instances, inputs, with params), or JSON lines of records
    ({"col": value} per line) or of MLflow requests.
    Output: JSON lines (one prediction per row) or CSV (a "prediction" column, or the model's
    own output columns).

    \b
    With --target and --name, the file is sent as one request to a deployed endpoint
    (local: the container's scoring route; SageMaker: invoke_endpoint; Azure ML: the
    scoring URI with input_data; Kubernetes / KServe: /invocations through the API server's
    service proxy) and the endpoint's response is written out as it came.

    \b
    Examples:
      deployer predict -m ./model -i data.csv -o predictions.jsonl
      deployer predict -m models:/churn/3 -i data.parquet -o out.csv --env-manager virtualenv
      cat rows.jsonl | deployer predict -m ./model -i - --content-type json --format csv
      deployer predict --target sagemaker --name iris -i request.json
      deployer predict --target sagemaker --name shop --target-model churn-eu -i request.json
      deployer predict --target local --name iris -i serving_input_example.json
    """
    # --target local with --name: the running container of `run-local`/`deploy --target local`;
    # --target local without --name: this host, like no --target at all
    from deployer.building.host_env import check_env_manager

    check_env_manager(env_manager)
    if target and (target != "local" or name):
        if env_manager != "local":
            raise UsageError(
                "--env-manager chooses where a model runs on this host; an endpoint runs its own",
                where="--env-manager",
                fix="drop --env-manager, or score on this host with -m",
            )
        _predict_remote(
            target, name, model_uri, input_path, output_path, content_type, target_values, stream
        )
        return
    if stream:
        raise UsageError(
            "--stream needs a deployed endpoint",
            where="--stream",
            fix="pass --target sagemaker --name ENDPOINT, or drop --stream",
        )
    if not model_uri:
        raise UsageError(
            "`deployer predict` needs -m/--model (or --target and --name)",
            where="-m/--model",
            fix="pass -m ./model, or --target T --name ENDPOINT",
        )
    from deployer.serving.batch import STDIO, plan_batch, run_batch

    console = get_console()
    # the core logs each rejected request at INFO (right for a server, noise here: the
    # error is reported once, below); -v shows everything
    logging.getLogger("deployer.serving").setLevel(
        logging.WARNING if console.verbosity <= 0 else logging.NOTSET
    )
    spec = plan_batch(
        input_path,
        output_path,
        content_type=content_type,
        output_format=output_format,
        chunk_rows=chunk_rows,
    )
    core = _load_core(model_uri) if env_manager == "local" else None
    try:
        if core is None:
            result = _predict_in_env(model_uri, spec, env_manager)
        else:
            result = run_batch(core, spec)
    except BrokenPipeError:
        # the reader of stdout went away (e.g. `| head`): stop quietly, like other tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise click.exceptions.Exit(1) from None
    data = {
        "input": spec.input,
        "output": result.output,
        "content_type": result.content_type,
        "format": result.output_format,
        "rows": result.rows,
        "predictions": result.predictions,
        "chunks": result.chunks,
        "seconds": result.seconds,
    }
    summary = (
        f"scored {result.rows} rows in {result.chunks} chunk(s), {result.seconds:.1f}s: "
        f"{result.predictions} predictions ({result.output_format})"
    )
    if spec.output == STDIO:
        # stdout carries the predictions: the summary goes to stderr only
        log.info(summary)
    else:
        console.result(data, text=f"{summary} -> {result.output}")


def _predict_in_env(model_uri: str, spec: Any, env_manager: str) -> Any:
    """The same batch scoring (``python -m deployer.serving predict``), run by the model's own
    environment's interpreter; predictions go straight to the file or to this stdout."""
    import json
    import tempfile

    from deployer.cli.model_env import prepare_model_env, run_in_env
    from deployer.serving.batch import BatchResult

    model_dir = _pyfunc_model_dir(model_uri)
    menv = prepare_model_env(model_dir, env_manager)
    with tempfile.TemporaryDirectory(prefix="deployer-predict-") as tmp:
        summary = Path(tmp) / "result.json"
        args = ["predict", "--model-dir", str(model_dir), "--model-uri", model_uri]
        args += ["--input", spec.input, "--output", spec.output, "--format", spec.output_format]
        args += ["--chunk-rows", str(spec.chunk_rows), "--result", str(summary)]
        if spec.content_type:
            args += ["--content-type", spec.content_type]
        sys.stdout.flush()
        code = run_in_env(menv, args)
        if code != 0:  # the error was reported by the scoring process, on stderr
            raise click.exceptions.Exit(code if code > 0 else 1)
        return BatchResult(**json.loads(summary.read_text()))


_CONTENT_TYPES = {
    "json": "application/json",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}


def _predict_remote(
    target: str,
    name: str | None,
    model_uri: str | None,
    input_path: str,
    output_path: str,
    content_type: str | None,
    target_values: dict[str, Any],
    stream: bool = False,
) -> None:
    """One request to a deployed endpoint; the response body is written as received."""
    from deployer.serving.batch import STDIO, plan_batch, sniff
    from deployer.targets.actions import predict_endpoint

    ctx = click.get_current_context()
    target = require_target(target, "predict")
    connection, options = split_target_values(ctx, target, "predict", target_values)
    if not name:
        raise UsageError(
            "`deployer predict --target` needs --name", where="--name", fix="pass --name ENDPOINT"
        )
    if model_uri:
        raise UsageError(
            "-m/--model and --target are exclusive",
            where="-m/--model",
            fix="score locally with -m, or remotely with --target and --name",
        )
    try:
        body = sys.stdin.buffer.read() if input_path == STDIO else Path(input_path).read_bytes()
    except OSError as exc:
        raise UsageError(
            f"cannot read the input: {exc.strerror}",
            where=input_path,
            fix="check the -i/--input path",
        ) from None
    # the same detection as local scoring: --content-type, else the file name, else the bytes
    kind = plan_batch(input_path, output_path, content_type=content_type).content_type or sniff(
        body[:64]
    )
    if stream:
        if options.get("target_model"):
            raise UsageError(
                "--stream (InvokeEndpointWithResponseStream) takes no target model",
                where="--target-model",
                fix="drop --stream to invoke one model of a multi-model endpoint",
            )
        _write_stream(target, name, body, _CONTENT_TYPES[kind], connection, output_path)
        return
    response = predict_endpoint(target, name, body, _CONTENT_TYPES[kind], connection, options)
    if output_path == STDIO:
        sys.stdout.buffer.write(response if response.endswith(b"\n") else response + b"\n")
        sys.stdout.flush()
        return
    out = Path(output_path)
    with atomic_output(out, prefix=f".{out.name}.") as tmp:
        tmp.write_bytes(response)
    get_console().result(
        {"target": target, "name": name, "output": str(out), "bytes": len(response)},
        text=f"{len(response)} bytes from {target} endpoint {name} -> {out}",
    )


def _write_stream(
    target: str,
    name: str,
    body: bytes,
    content_type: str,
    connection: dict[str, Any],
    output_path: str,
) -> None:
    """The endpoint's stream, written part by part (stdout) or atomically (a file)."""
    from deployer.serving.batch import STDIO
    from deployer.targets.actions import predict_endpoint_stream

    parts = predict_endpoint_stream(target, name, body, content_type, connection)
    if output_path == STDIO:
        for part in parts:
            sys.stdout.buffer.write(part)
            sys.stdout.flush()
        return
    out = Path(output_path)
    size = 0
    with atomic_output(out, prefix=f".{out.name}.") as tmp, open(tmp, "wb") as fh:
        for part in parts:
            fh.write(part)
            size += len(part)
    get_console().result(
        {"target": target, "name": name, "output": str(out), "bytes": size, "stream": True},
        text=f"{size} bytes streamed from {target} endpoint {name} -> {out}",
    )


def _pyfunc_model_dir(model_uri: str) -> Path:
    from deployer.intake import require_pyfunc
    from deployer.model.mlmodel import parse_mlmodel
    from deployer.model.uri import resolve_model_uri

    path = Path(resolve_model_uri(model_uri))
    require_pyfunc(parse_mlmodel(path), str(path / "MLmodel"))
    return path


def _load_core(model_uri: str) -> Any:
    path = _pyfunc_model_dir(model_uri)
    try:
        import deployer.serving.core  # noqa: F401 - needs mlflow (the serve extra)
    except ImportError as exc:
        raise MissingDependencyError(
            exc.name or "mlflow-skinny", "serve", "deployer predict"
        ) from None
    from deployer.serving.batch import load_core

    log.debug("loading %s", path)
    return load_core(path, model_uri=model_uri)
