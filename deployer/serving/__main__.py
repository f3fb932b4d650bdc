"""``python -m deployer.serving serve ...``: the entrypoint inside every image deployer builds.

Deliberately argparse, not click: the image installs only the ``serve`` extra. SageMaker runs
``docker run IMAGE serve``, so ``serve`` is the (only) subcommand, and every option can come
from the environment instead (see :mod:`deployer.serving.options`).
"""

from __future__ import annotations

import argparse
import sys

from deployer.errors import DeployerError
from deployer.serving.options import DEFAULT_MAX_BODY, DEFAULT_PORT, DEFAULT_TIMEOUT, ServeOptions

_FLAGS = {
    "model_dir": "--model-dir",
    "host": "--host",
    "port": "--port",
    "workers": "--workers",
    "timeout": "--timeout",
    "max_body_bytes": "--max-body-bytes",
    "blas_threads": "--blas-threads",
    "threads": "--threads",
    "graceful_timeout": "--graceful-timeout",
    "model_name": "--model-name",
    "model_version": "--model-version",
    "log_level": "--log-level",
    "batching": "--no-batching",
    "http": "--http",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deployer.serving",
        description="deployer's scoring server (MLflow protocol, V2, OpenAPI, metrics).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve a local MLflow model directory over HTTP",
        description="Every option may also be set as DEPLOYER_SERVE_<OPTION> (e.g. "
        "DEPLOYER_SERVE_MODEL_DIR); SAGEMAKER_BIND_TO_PORT sets the port.",
    )
    serve.add_argument("--model-dir", default=None,
                       help="model directory (default: /opt/ml/model)")
    serve.add_argument("--host", default=None, help="address to bind (default: 0.0.0.0)")
    serve.add_argument("--port", type=int, default=None,
                       help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)")
    serve.add_argument("--workers", type=int, default=None,
                       help="worker processes (default: CPU count)")
    serve.add_argument("--timeout", type=float, default=None,
                       help=f"request timeout in seconds, 504 after it (default: {DEFAULT_TIMEOUT:g})")
    serve.add_argument("--max-body-bytes", type=int, default=None,
                       help=f"largest request body, 413 above it (default: {DEFAULT_MAX_BODY})")
    serve.add_argument("--blas-threads", type=int, default=None,
                       help="BLAS/OpenMP threads per worker (default: CPUs // workers)")
    serve.add_argument("--threads", type=int, default=None,
                       help="prediction threads per worker (default: 4)")
    serve.add_argument("--graceful-timeout", type=float, default=None,
                       help="seconds SIGTERM waits for in-flight requests")
    serve.add_argument("--model-name", default=None,
                       help="name in V2 routes and metrics (default: the directory name)")
    serve.add_argument("--model-version", default=None, help="version reported by V2 routes")
    serve.add_argument("--no-batching", dest="batching", action="store_const", const=False,
                       default=None, help="never score concurrent requests in one call")
    serve.add_argument("--http", default=None, choices=["deployer", "uvicorn"],
                       help="HTTP server: deployer's built-in one (default) or uvicorn")
    serve.add_argument("--log-level", default=None,
                       choices=["debug", "info", "warning", "error"], help="log level")
    return parser


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    given = {name: getattr(args, name) for name in _FLAGS if getattr(args, name) is not None}
    base = ServeOptions(model_dir=given.pop("model_dir", "/opt/ml/model"))
    explicit = set(given) | ({"model_dir"} if args.model_dir is not None else set())
    options = base.with_env(explicit=explicit)
    from dataclasses import replace

    return replace(options, **given)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from_args(args).validate()
        from deployer.serving.server import serve

        serve(options)
    except DeployerError as exc:
        sys.stderr.write(f"error: {exc.format_message()}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
