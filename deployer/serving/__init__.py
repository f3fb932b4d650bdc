"""The scoring runtime: what runs inside every image deployer builds (and ``deployer serve``).

Imports with only the ``serve`` extra (mlflow-skinny, pandas, uvicorn, httptools, uvloop,
orjson, prometheus-client, pyarrow): nothing here may import click, jinja2, docker, rich or
``deployer.cli`` (tests/serving/test_runtime_deps.py checks).

=====================  ==========================================================
Module                 Concept
=====================  ==========================================================
``core``               one loaded model + MLflow's request semantics (every adapter)
``_fastpath``          the common JSON requests, answered exactly as MLflow would
``_batching``          concurrent one-row requests scored in one call (when exact)
``_encode``            predictions -> MLflow's ``{"predictions": ...}`` JSON
``app``                the ASGI application: routes, body limit, timeout, inlining
``httpserver``         the HTTP/1.1 server the app runs on (uvicorn is the fallback)
``v2``                 Open Inference Protocol (KServe / MLServer) adapter
``openapi``            ``/openapi.json`` from the signature
``metrics``            Prometheus metrics, correct across worker processes
``streaming``          ``predict_stream`` as server-sent events
``accesslog``          one access-log line per request; ``X-Request-Id``
``auth``               optional API key (Bearer / X-Api-Key)
``options``            ``ServeOptions``: each option declared once; flags, env vars,
                       ``[serve]`` config keys derived from it
``server``             load once, bind, fork workers, graceful SIGTERM
``__main__``           ``python -m deployer.serving serve`` (the image entrypoint)
``azure``, ``batch``   Azure ML ``score.py`` adapter; ``deployer predict``
=====================  ==========================================================

Public API: :class:`ScoringCore`, :class:`ScoringResult`, :class:`ScoringError`,
:class:`ServeOptions`, :func:`serve`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ScoringCore", "ScoringError", "ScoringResult", "ServeOptions", "serve"]


def __getattr__(name: str) -> Any:  # lazy: `import deployer.serving` stays cheap
    if name in ("ScoringCore", "ScoringError", "ScoringResult"):
        from deployer.serving import core

        return getattr(core, name)
    if name == "ServeOptions":
        from deployer.serving.options import ServeOptions

        return ServeOptions
    if name == "serve":
        from deployer.serving.server import serve

        return serve
    raise AttributeError(f"module 'deployer.serving' has no attribute {name!r}")
