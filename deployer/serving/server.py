"""Run the scoring server: load once, bind once, fork workers, shut down gracefully.

Process model (the reasons):

* **Preload, then fork, where that is safe.** The supervisor loads the model with MLflow before
  any worker exists, freezes the garbage collector's view of the heap (``gc.freeze``) and forks
  the workers, so the model and the ~180 MB of imported Python modules are shared copy-on-write
  instead of loaded N times (uvicorn's own ``--workers`` spawns fresh interpreters that each
  load the model). A model that cannot load fails once, clearly, before the port is opened.
* **Fork, then load, where it is not.** TensorFlow, PyTorch, XGBoost/LightGBM's OpenMP and the
  Spark JVM gateway do not survive fork (:mod:`deployer.serving.loading` decides, from the
  model): the supervisor imports the serving stack only, forks, and each worker loads its own
  model, then starts accepting on the shared socket. A load failure in a worker stops the
  server with that error, as a preload failure does.
* **The loaded heap is frozen, with one worker too** (``core.freeze_loaded_heap``): no full
  collection walks what MLflow and the model leave behind (a ~120 ms stall otherwise).
* **One listening socket, inherited.** Workers accept on the same socket; the kernel spreads
  connections. ``--workers 1`` runs the server in this process, with no supervisor.
* **Threads are budgeted.** BLAS/OpenMP pools default to ``cores // workers`` threads per
  worker (set before numpy is imported, and again through threadpoolctl when it already is),
  so N workers never oversubscribe the machine.
* **SIGTERM is graceful.** Workers stop accepting, finish in-flight requests (up to the
  graceful timeout, < SageMaker's 30 s) and exit; the supervisor forwards the signal, waits,
  and exits 0. A worker that dies unexpectedly is replaced.
* **V2 over gRPC, per worker.** ``--grpc-port`` starts ``inference.GRPCInferenceService`` in
  each worker once it has its model; the workers share the port through SO_REUSEPORT (why:
  :mod:`deployer.serving.grpc.service`). SIGTERM stops it after HTTP, with the same grace.
* **Several models, one server** (:mod:`deployer.serving.model_set`): every model is loaded
  where the single model would be - preloaded in the supervisor when every one of them is
  fork-safe, else per worker for all of them (each worker loads every model). A model that
  fails to load is served as failed (503 with its error) while the others serve; only when
  every model fails does the server stop, with every error.
* **SageMaker multi-model endpoints** (``--sagemaker-multi-model``,
  :mod:`deployer.serving.sagemaker_mme`) run one worker process (models are loaded and unloaded
  at run time by requests; one process keeps one truth about what is loaded) with
  ``--threads`` prediction threads.
* **httptools + uvloop.** The built-in HTTP server (:mod:`deployer.serving.httpserver`) is
  the default; ``--http uvicorn`` runs the same ASGI app under uvicorn instead, with httptools
  and uvloop forced on (uvicorn without them falls back to pure-Python parsing: an order of
  magnitude slower here).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import replace
from typing import Any

from deployer.errors import DeployerError, MissingDependencyError, ServingError
from deployer.serving.options import ServeOptions

_logger = logging.getLogger("deployer.serving")

_BLAS_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def configure_threads(n: int) -> None:
    """Cap BLAS/OpenMP pools at ``n`` threads (the user's own settings win)."""
    for var in _BLAS_ENV:
        os.environ.setdefault(var, str(n))
    if "numpy" in sys.modules:  # too late for the variables: limit the loaded pools
        with contextlib.suppress(Exception):
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=n)


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (``--log-format json``), like the access log's."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, fmt: str = "text") -> None:
    logger = logging.getLogger("deployer")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        logger.addHandler(handler)
        logger.propagate = False
    for handler in logger.handlers:
        if fmt == "json":
            handler.setFormatter(JsonFormatter())
        elif isinstance(handler.formatter, JsonFormatter) or handler.formatter is None:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(message)s")
            )
    logger.setLevel(level.upper() if isinstance(level, str) else level)


def prepare_environment(options: ServeOptions) -> str | None:
    """Everything that must happen before numpy/mlflow/prometheus are imported.

    Returns the metrics directory this call created (to remove at exit), if any.
    """
    configure_threads(options.effective_blas_threads)
    # MLflow's usage telemetry would start a background thread (unsafe across fork) and
    # phone home from inside images; the user's explicit setting wins.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if options.effective_workers > 1:
        from deployer.serving.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

        existed = bool(os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()))
        path = prepare_multiprocess_dir()
        return None if existed else path
    return None


def load_models(options: ServeOptions) -> Any:
    """Every model ``options`` names, as a :class:`~deployer.serving.model_set.ModelSet`
    (raises when every model fails; in SageMaker multi-model mode, none may be given)."""
    from deployer.serving.model_set import ModelSet, default_model_name, model_specs

    specs = model_specs(options)
    models = ModelSet.load(
        specs,
        default=default_model_name(options, specs),
        model_config=options.parsed_model_config(),
        require_one=not options.sagemaker_multi_model,
    )
    if options.multi_model:
        models.multi = True  # /invocations reads the target-model header
    return models


def decide_load_mode(options: ServeOptions) -> Any:
    """One load mode for every model: preload when each is fork-safe, else per-worker."""
    from deployer.serving.loading import PRELOAD, LoadMode, decide_for_model_dir
    from deployer.serving.model_set import model_specs

    specs = model_specs(options)
    if not options.multi_model:
        return decide_for_model_dir(options.model_dir, options.load_mode)
    decisions = [(s, decide_for_model_dir(s.path, options.load_mode)) for s in specs]
    for spec, decision in decisions:
        if decision.mode != PRELOAD:
            return LoadMode(decision.mode, f"model {spec.name!r}: {decision.reason}")
    return LoadMode(
        PRELOAD,
        "every model's libraries survive fork" if specs else "no model at start",
        certain=all(d.certain for _, d in decisions),
    )


#: listen() backlog of the shared socket.
BACKLOG = 2048
#: Exit code of a per-worker child whose model failed to load.
LOAD_FAILED = 3


def bind_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """The one socket every worker accepts on. ``listen=False``: bound (the port is taken and
    known) but refusing connections until a worker with a loaded model calls ``listen``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServingError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            where="--host/--port",
            fix="pick a free port with --port (or stop whatever is using it)",
        ) from exc
    if listen:
        sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def build_app(models: Any, options: ServeOptions, *, metrics: bool = True) -> Any:
    """The HTTP app over ``models`` (a ModelSet, or one core)."""
    from deployer.serving.accesslog import AccessLog
    from deployer.serving.app import ScoringApp
    from deployer.serving.auth import ApiKeyAuth
    from deployer.serving.metrics import Metrics
    from deployer.serving.model_set import READY, ModelSet
    from deployer.serving.options import read_api_key

    if not isinstance(models, ModelSet):
        models = ModelSet.single(models)
    key = read_api_key(options)
    counters = Metrics() if metrics else None
    if counters is not None:
        for entry in models.entries():
            if entry.state == READY:
                core = entry.core
                counters.model_loaded(entry.name, core.model_version, core.flavor)
    endpoint = None
    if options.sagemaker_multi_model:
        from deployer.serving.sagemaker_mme import MultiModelEndpoint

        endpoint = MultiModelEndpoint(models, options, metrics=counters)
    return ScoringApp(
        models,
        max_body_bytes=options.max_body_bytes,
        timeout=options.timeout,
        threads=options.threads,
        metrics=counters,
        batching=options.batching,
        access_log=AccessLog(options.log_format) if options.access_log else None,
        auth=ApiKeyAuth(key, options.auth_exempt_routes) if key else None,
        multi_model=endpoint,
    )


def _uvicorn_config(app: Any, options: ServeOptions) -> Any:
    import uvicorn

    try:
        import httptools  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the serve extra installs it
        raise ServingError(
            "httptools is not installed", fix="pip install 'deployer[serve]'"
        ) from exc
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - Windows
        loop = "asyncio"
    return uvicorn.Config(
        app,
        http="httptools",
        loop=loop,
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level=logging.WARNING,
        server_header=False,
        proxy_headers=False,  # no client-address rewriting: one less ASGI layer per request
        timeout_keep_alive=75,  # longer than common load balancer idle timeouts (60 s)
        timeout_graceful_shutdown=max(1, int(options.effective_graceful_timeout)),
        backlog=2048,
    )


def run_worker(models: Any, sock: socket.socket, options: ServeOptions) -> None:
    """Serve on ``sock`` in this process until SIGTERM/SIGINT, then finish in-flight work."""
    # A signal that arrives before the event loop handles signals must still stop us (and
    # uvicorn re-raises the signal it caught after a graceful shutdown: that must not kill
    # the process, which exits 0 - SageMaker and Kubernetes read a signal death as a crash).
    stop_requested: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stop_requested.append(signum))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    app = build_app(models, options)
    grpc_server = start_grpc(app.models, options, app.metrics)
    try:
        if options.http == "uvicorn":
            import uvicorn

            server = uvicorn.Server(_uvicorn_config(app, options))
            if not stop_requested:
                server.run(sockets=[sock])
        else:
            from deployer.serving.httpserver import serve as serve_http

            _run_loop(
                serve_http(
                    app,
                    sock,
                    graceful_timeout=options.effective_graceful_timeout,
                    stop_requested=lambda: bool(stop_requested),
                )
            )
    finally:
        if grpc_server is not None:
            grpc_server.stop(options.effective_graceful_timeout)
        app.close()


def start_grpc(models: Any, options: ServeOptions, metrics: Any = None) -> Any:
    """``--grpc-port``: the V2 gRPC service in this worker (every worker binds the port with
    SO_REUSEPORT: see :mod:`deployer.serving.grpc.service`), or None when not asked for.
    ``metrics``: the HTTP app's, so gRPC calls show in the same /metrics."""
    if options.grpc_port is None:
        return None
    from deployer.serving.accesslog import AccessLog
    from deployer.serving.grpc.service import start

    return start(
        models,
        options.host,
        options.grpc_port,
        threads=options.threads,
        max_message_bytes=options.max_body_bytes,
        metrics=metrics,
        access_log=AccessLog(options.log_format) if options.access_log else None,
    )


def require_grpc(options: ServeOptions) -> None:
    """Fail before the model loads when ``--grpc-port`` is asked for without grpcio."""
    if options.grpc_port is None:
        return
    # Found, not imported: grpc is imported in the workers only, after the fork.
    import importlib.util

    for module, package in (("grpc", "grpcio"), ("google.protobuf", "protobuf")):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise MissingDependencyError(package, "grpc", "--grpc-port (V2 over gRPC)")


def reserve_grpc_port(options: ServeOptions) -> tuple[ServeOptions, socket.socket | None]:
    """``--grpc-port 0`` with several workers: pick the port once, here, so that every worker
    binds the same one. The returned socket holds it (bound with SO_REUSEPORT, never listening,
    so it takes no connections) until the server stops."""
    if options.grpc_port != 0 or options.effective_workers == 1:
        return options, None
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((options.host, 0))
    return replace(options, grpc_port=holder.getsockname()[1]), holder


def _run_loop(main: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        import asyncio

        asyncio.run(main)
        return
    uvloop.run(main)


def serve(options: ServeOptions) -> None:
    """Start the server described by ``options``; returns after a graceful shutdown."""
    from deployer.serving.options import read_api_key

    options = options.validate()
    configure_logging(options.log_level, options.log_format)
    if options.sagemaker_multi_model and options.effective_workers > 1:
        _logger.info(
            "SageMaker multi-model mode: 1 worker process with %d prediction threads (models "
            "load and unload at run time; one process keeps one loaded set)",
            options.threads,
        )
        options = replace(options, workers=1)
    key = read_api_key(options)  # a bad key file fails now, before the model loads
    if key:
        _logger.info("API key required (except on %s)", ", ".join(options.auth_exempt_routes))
    require_grpc(options)
    metrics_dir = prepare_environment(options)
    options, grpc_port_holder = reserve_grpc_port(options)
    try:
        _serve(options)
    finally:
        if grpc_port_holder is not None:
            grpc_port_holder.close()
        if metrics_dir:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve(options: ServeOptions) -> None:
    from deployer.serving.core import freeze_loaded_heap
    from deployer.serving.loading import PRELOAD, fork_hazards

    workers = options.effective_workers
    decision = decide_load_mode(options)
    if workers > 1 and decision.mode != PRELOAD:
        _logger.info("load mode %s", decision.describe())
        _preimport_serving_stack()
        sock = bind_socket(options.host, options.port, listen=False)
        Supervisor(None, sock, options, workers).run()
        return
    threads_before = threading.active_count()
    models = load_models(options)
    if workers > 1 and not decision.certain:
        found = fork_hazards(threads_started=threading.active_count() - threads_before)
        if found:
            _logger.warning(
                "the model %s while loading, which does not survive fork: serving with 1 worker in "
                "this process instead of %d (set --load-mode per-worker / "
                "DEPLOYER_SERVE_LOAD_MODE=per-worker to run %d workers that each load the model)",
                found,
                workers,
                workers,
            )
            workers = 1
    sock = bind_socket(options.host, options.port)
    _log_listening(sock, workers, options)
    freeze_loaded_heap()  # before forking: shared pages stay shared, no 120 ms GC stalls
    if workers == 1:
        run_worker(models, sock, options)
        _logger.info("server stopped")
        return
    Supervisor(models, sock, options, workers).run()


def _log_listening(sock: socket.socket, workers: int, options: ServeOptions) -> None:
    host, port = sock.getsockname()[:2]
    _logger.info(
        "listening on http://%s:%d (%d worker%s, %d BLAS thread%s each)",
        host if ":" not in host else f"[{host}]",
        port,
        workers,
        "s" if workers > 1 else "",
        options.effective_blas_threads,
        "s" if options.effective_blas_threads > 1 else "",
    )


def _preimport_serving_stack() -> None:
    """Import what every worker needs but no model library (numpy, pandas, mlflow's pyfunc and
    scoring server, the HTTP stack) before forking: shared pages, faster worker start. None of
    these leaves a thread behind that a fork would lose (OpenBLAS re-creates its pool)."""
    import mlflow.pyfunc  # noqa: F401
    import mlflow.pyfunc.scoring_server  # noqa: F401
    import pandas  # noqa: F401

    import deployer.serving.app  # noqa: F401
    import deployer.serving.core  # noqa: F401
    import deployer.serving.httpserver  # noqa: F401


class Supervisor:
    """Forks and watches the workers; forwards SIGTERM/SIGINT; replaces crashed workers.

    ``core`` is the preloaded model set, shared by every worker; ``None`` means per-worker
    loading: each child loads its own (every model; a load error means every model failed),
    then calls ``listen`` on the (bound) socket and reports on a pipe (``ready`` or
    ``error <message>``). The first ``ready`` is when the server is listening; a
    load error before any worker was ready stops the server with that error.
    """

    #: A worker that dies sooner than this after starting counts as a crash loop.
    MIN_UPTIME = 2.0
    MAX_QUICK_DEATHS = 5

    def __init__(self, core: Any, sock: socket.socket, options: ServeOptions, workers: int):
        self.core = core
        self.sock = sock
        self.options = options
        self.workers = workers
        self.children: dict[int, float] = {}
        self.stopping = False
        self.quick_deaths = 0
        self.ready: set[int] = set()
        self.ever_ready = core is not None
        self.load_error: dict[str, Any] | None = None  # DeployerError.to_dict() of a failed load
        self._reports_r, self._reports_w = os.pipe() if core is None else (-1, -1)
        self._pending = b""

    def _spawn(self) -> None:
        # Signals stay blocked across fork until the child has its own handlers, so a
        # SIGTERM can never run the supervisor's handler inside a worker.
        signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
            raise
        if pid == 0:  # the worker
            code = 0
            try:
                _die_with_parent()
                signal.signal(signal.SIGHUP, signal.SIG_DFL)
                core = self.core if self.core is not None else self._load_in_worker()
                run_worker(core, self.sock, self.options)  # unblocks once it handles them
            except _LoadFailed:
                code = LOAD_FAILED
            except BaseException:  # noqa: BLE001 - never return into the supervisor's code
                _logger.exception("worker failed")
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
        self.children[pid] = time.monotonic()

    def _load_in_worker(self) -> Any:
        """Per-worker loading, in the child: load, freeze, listen, report."""
        from deployer.serving.core import freeze_loaded_heap

        os.close(self._reports_r)
        # A SIGTERM while loading (which can take minutes) ends this worker at once.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            core = load_models(self.options)
        except DeployerError as exc:
            import json

            self._report("error " + json.dumps(exc.to_dict()))
            raise _LoadFailed() from exc
        freeze_loaded_heap()
        self.sock.listen(BACKLOG)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        self._report("ready")
        return core

    def _report(self, message: str) -> None:
        line = f"{os.getpid()} {message}".replace("\n", " ") + "\n"
        with contextlib.suppress(OSError):
            os.write(self._reports_w, line.encode("utf-8", "replace"))

    def _read_reports(self) -> None:
        if self._reports_r < 0:
            return
        import select

        while select.select([self._reports_r], [], [], 0)[0]:
            chunk = os.read(self._reports_r, 65536)
            if not chunk:
                break
            self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for raw in lines:
            pid_text, _, rest = raw.decode("utf-8", "replace").partition(" ")
            status, _, message = rest.partition(" ")
            if status == "ready":
                if not self.ever_ready:
                    _log_listening(self.sock, self.workers, self.options)
                self.ever_ready = True
                self.ready.add(int(pid_text))
            elif status == "error":
                import json

                with contextlib.suppress(ValueError):
                    self.load_error = json.loads(message)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stopping:
            return
        self.stopping = True
        _logger.info("signal %d: stopping workers gracefully", signum)
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def run(self) -> None:
        from deployer.serving.metrics import mark_process_dead

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for _ in range(self.workers):
            self._spawn()
        deadline: float | None = None
        while self.children:
            if self.stopping and deadline is None:
                deadline = time.monotonic() + self.options.effective_graceful_timeout + 5
            self._read_reports()
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if deadline is not None and time.monotonic() > deadline:
                    for child in list(self.children):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(child, signal.SIGKILL)
                time.sleep(0.05)
                continue
            started = self.children.pop(pid, time.monotonic())
            self.ready.discard(pid)
            mark_process_dead(pid)
            if self.stopping:
                continue
            self._read_reports()
            if self._load_failed(status):
                continue
            _logger.error(
                "worker %d exited unexpectedly (%s); starting a new one", pid, _describe(status)
            )
            if time.monotonic() - started < self.MIN_UPTIME:
                self.quick_deaths += 1
                if self.quick_deaths >= self.MAX_QUICK_DEATHS:
                    self._on_signal(signal.SIGTERM, None)
                    raise ServingError(
                        "workers keep crashing at start; giving up",
                        fix="run with --workers 1 to see the error",
                    )
            self._spawn()
        self.sock.close()
        for fd in (self._reports_r, self._reports_w):
            if fd >= 0:
                os.close(fd)
        if self.load_error is not None and not self.ever_ready:
            error = self.load_error
            raise ServingError(
                f"{error.get('message')} (in a worker: load mode per-worker)",
                where=error.get("where") or str(self.options.model_dir),
                fix=error.get("fix"),
            )
        _logger.info("server stopped")

    def _load_failed(self, status: int) -> bool:
        """A per-worker load failure before the server was ever ready stops the server (the
        model cannot load: restarting would fail the same way). Returns True when stopping."""
        if (
            self.core is not None
            or not os.WIFEXITED(status)
            or os.WEXITSTATUS(status) != LOAD_FAILED
        ):
            return False
        if self.ever_ready:
            return False  # a later failure (e.g. memory): replaced like any crash
        _logger.error(
            "the model failed to load in a worker: %s",
            (self.load_error or {}).get("message", "(no message)"),
        )
        self._on_signal(signal.SIGTERM, None)
        return True


class _LoadFailed(Exception):
    """A per-worker load failed (already reported on the pipe)."""


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.WEXITSTATUS(status)}"


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker if the supervisor dies (no orphaned servers)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
