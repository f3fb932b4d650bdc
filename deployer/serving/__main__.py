"""``python -m deployer.serving serve ...``: the entrypoint inside every image deployer builds.

Deliberately argparse, not click: the image installs only the ``serve`` extra. SageMaker runs
``docker run IMAGE serve``, so ``serve`` is the image's subcommand, and every option can come
from the environment instead (see :mod:`deployer.serving.options`).

``predict`` scores a file (:mod:`deployer.serving.batch`): ``deployer predict -m URI
--env-manager virtualenv`` runs it with the interpreter of the model's own environment, where
deployer's CLI is not installed (only the serving runtime, on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from deployer.errors import DeployerError
from deployer.serving import options as _opts
from deployer.serving.options import ServeOptions


def build_parser() -> argparse.ArgumentParser:
    """Flags derived from :class:`ServeOptions` (the same ones as ``deployer serve``)."""
    parser = argparse.ArgumentParser(
        prog="python -m deployer.serving",
        description="deployer's scoring server (MLflow protocol, V2, OpenAPI, metrics).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve a local MLflow model directory over HTTP",
        description="Every option may also be set as DEPLOYER_SERVE_<OPTION> (e.g. "
        "DEPLOYER_SERVE_MODEL_DIR); SAGEMAKER_BIND_TO_PORT sets the port, "
        "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT the timeout, MLFLOW_MODELS_WORKERS the workers.",
    )
    for spec in _opts.option_fields(include_model_dir=True):
        name = spec.name
        kind = _opts.value_type(name)
        default = spec.default
        env = " / ".join(_opts.env_names(name))
        shown = f" (default: {default})" if default not in (None, ()) else ""
        help_text = f"{spec.metadata['help']}{shown}; env {env}"
        if kind is bool:
            serve.add_argument(
                f"--{_opts.flag_name(name)}",
                dest=name,
                default=None,
                action=argparse.BooleanOptionalAction,
                help=help_text,
            )
        else:
            serve.add_argument(
                f"--{_opts.flag_name(name)}",
                dest=name,
                default=None,
                type=_opts.split_list if kind is tuple else kind,
                choices=spec.metadata["choices"],
                metavar=spec.metadata["metavar"],
                help=help_text,
            )
    predict = sub.add_parser(
        "predict",
        help="score a file with a local MLflow model directory (deployer predict's core)",
    )
    predict.add_argument("--model-dir", required=True, metavar="DIR")
    predict.add_argument("--input", required=True, metavar="FILE|-")
    predict.add_argument("--output", default="-", metavar="FILE|-")
    predict.add_argument("--content-type", default=None, choices=("json", "csv", "parquet"))
    predict.add_argument("--format", default=None, choices=("jsonl", "csv"))
    predict.add_argument("--chunk-rows", type=int, default=10_000)
    predict.add_argument("--model-uri", default=None, help="how the user named the model")
    predict.add_argument(
        "--result", default=None, metavar="FILE", help="write the run's summary here (JSON)"
    )
    return parser


def run_predict(args: argparse.Namespace) -> None:
    import json
    import logging
    from dataclasses import asdict

    from deployer.serving.batch import load_core, plan_batch, run_batch

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    spec = plan_batch(
        args.input,
        args.output,
        content_type=args.content_type,
        output_format=args.format,
        chunk_rows=args.chunk_rows,
    )
    result = run_batch(load_core(args.model_dir, model_uri=args.model_uri), spec)
    if args.result:
        with open(args.result, "w", encoding="utf-8") as fh:
            json.dump(asdict(result), fh)


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    """Flags > DEPLOYER_SERVE_* > platform variables > defaults."""
    given = {
        spec.name: getattr(args, spec.name)
        for spec in _opts.option_fields(include_model_dir=True)
        if getattr(args, spec.name, None) is not None
    }
    return replace(ServeOptions().with_env(explicit=set(given)), **given)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "predict":
            run_predict(args)
            return 0
        options = options_from_args(args).validate()
        from deployer.serving.server import serve

        serve(options)
    except BrokenPipeError:
        return 1
    except DeployerError as exc:
        sys.stderr.write(f"error: {exc.format_message()}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
