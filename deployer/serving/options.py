"""Server options: one typed record, declared once, read from flags, environment and config.

Every option is a field of :class:`ServeOptions` whose metadata (:func:`option`) says its help
text, choices and extra environment variables. From that one declaration come:

* the flags of ``deployer serve`` (click, :func:`click_options` in :mod:`deployer.cli.serve_cmd`)
  and of the image entrypoint ``python -m deployer.serving serve`` (argparse, which needs only
  the ``serve`` extra): ``--<option-name>``; booleans as ``--x/--no-x``;
* the environment variables ``DEPLOYER_SERVE_<OPTION>`` (honoured by both), then the platform
  ones users expect from MLflow/SageMaker images: ``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``,
  ``MLFLOW_MODELS_WORKERS``, ``SAGEMAKER_BIND_TO_PORT``;
* the keys of the ``[serve]`` section of ``deployer.toml`` (``deployer serve`` only: the image
  has no config file), named like the fields.

Precedence, as everywhere in the CLI: flag > environment variable > config file > default.

The API key itself is deliberately not an option (a flag shows in ``ps``, a config file gets
committed): it comes from ``--api-key-file`` or the ``DEPLOYER_API_KEY`` variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import Any

from deployer.errors import UsageError

DEFAULT_PORT = 8080
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_BODY = 100 * 1024 * 1024
DEFAULT_AUTH_EXEMPT = "/ping,/health,/v2/health/*"

ENV_PREFIX = "DEPLOYER_SERVE_"
API_KEY_ENV = "DEPLOYER_API_KEY"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def option(
    default: Any,
    help: str,
    *,
    env: tuple[str, ...] = (),  # noqa: A002 - click's name
    choices: tuple[str, ...] | None = None,
    cli_default: Any = MISSING,
    metavar: str | None = None,
    cli: bool = True,
) -> Any:
    """A :class:`ServeOptions` field with what the flag/env/config derivations need.

    ``cli_default``: the default of ``deployer serve`` when it differs from the image's (host:
    loopback on a workstation, every interface in a container). ``cli=False``: not a flag of
    ``deployer serve`` (which takes ``-m/--model`` instead of ``--model-dir``).
    """
    return field(
        default=default,
        metadata={
            "help": help,
            "env": env,
            "choices": choices,
            "cli_default": cli_default,
            "metavar": metavar,
            "cli": cli,
        },
    )


def cpu_count() -> int:
    """CPUs this process may use (affinity/cgroup-aware where the platform says so)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ServeOptions:
    """Everything the server needs to start. ``None`` means "pick the default at start"."""

    model_dir: str = option("/opt/ml/model", "model directory", cli=False, metavar="DIR")
    host: str = option(
        "0.0.0.0",
        "address to listen on (0.0.0.0: every interface)",
        cli_default="127.0.0.1",
        metavar="ADDR",
    )
    port: int = option(
        DEFAULT_PORT,
        "port (0 picks a free one; the log says which)",
        env=("SAGEMAKER_BIND_TO_PORT",),
    )
    grpc_port: int | None = option(
        None,
        "also serve the Open Inference Protocol (V2) over gRPC on this port (0 picks a free "
        "one; the log says which); off when unset",
        metavar="PORT",
    )
    workers: int | None = option(
        None, "worker processes (default: the CPU count)", env=("MLFLOW_MODELS_WORKERS",)
    )
    timeout: float = option(
        DEFAULT_TIMEOUT,
        "request timeout in seconds, 504 after it; for "
        "streams, the longest wait for the next chunk",
        env=("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT",),
        metavar="SECONDS",
    )
    max_body_bytes: int = option(
        DEFAULT_MAX_BODY, "largest request body, 413 above it", metavar="BYTES"
    )
    blas_threads: int | None = option(
        None, "BLAS/OpenMP threads per worker (default: CPUs // workers)"
    )
    threads: int = option(4, "prediction threads per worker")
    load_mode: str = option(
        "auto",
        "where the model is loaded: preload (once, before forking "
        "the workers: shared memory) or per-worker (each worker loads its own "
        "copy: for libraries that do not survive fork, e.g. TensorFlow); auto "
        "decides from the model's flavor, requirements and code",
        choices=("auto", "preload", "per-worker"),
    )
    graceful_timeout: float | None = option(
        None,
        "seconds SIGTERM waits for in-flight requests (default: min(timeout + 1, 25))",
        metavar="SECONDS",
    )
    model_name: str | None = option(
        None, "name in V2 routes and metrics (default: the model directory's name)", metavar="NAME"
    )
    model_version: str | None = option(None, "version reported by the V2 routes", metavar="VERSION")
    model_config: str | None = option(
        None,
        "load-time override of the model's config, as mlflow.pyfunc.load_model(model_config=...):"
        " a JSON object or a YAML/JSON file",
        env=("SERVING_MODEL_CONFIG",),
        metavar="FILE|JSON",
    )
    log_level: str = option("info", "log level", choices=("debug", "info", "warning", "error"))
    log_format: str = option("text", "log and access-log line format", choices=("text", "json"))
    access_log: bool = option(
        True, "one log line per request (method, path, status, bytes, ms, request id) on stderr"
    )
    batching: bool = option(True, "score concurrent small requests in one model call")
    http: str = option(
        "deployer",
        "HTTP server: deployer's built-in one or uvicorn",
        choices=("deployer", "uvicorn"),
    )
    api_key_file: str | None = option(
        None,
        "require this file's key on every request "
        f"(Authorization: Bearer or X-Api-Key); or set "
        f"{API_KEY_ENV}",
        metavar="FILE",
    )
    auth_exempt: str = option(
        DEFAULT_AUTH_EXEMPT,
        "comma-separated routes that need no key (a trailing * matches a prefix)",
        metavar="ROUTES",
    )
    models: tuple[str, ...] = option(
        (),
        "several models in one server: NAME=PATH pairs (comma-separated in the environment "
        "variable; deployer serve takes -m NAME=URI, repeated)",
        cli=False,
        metavar="NAME=PATH,...",
    )
    model_repository: str | None = option(
        None,
        "serve every direct subdirectory of DIR that holds an MLmodel, named after the "
        "subdirectory",
        metavar="DIR",
    )
    default_model: str | None = option(
        None,
        "the model /invocations serves without a target-model header (default: the first "
        "-m, or the alphabetically first in --model-repository)",
        metavar="NAME",
    )
    sagemaker_multi_model: bool = option(
        False,
        "SageMaker multi-model endpoint container contract (POST/GET/DELETE /models, "
        "/models/NAME/invoke); one worker process; also SAGEMAKER_MULTI_MODEL=true",
        env=("SAGEMAKER_MULTI_MODEL",),
    )
    model_memory_limit: str | None = option(
        None,
        "multi-model endpoint: memory the loaded models may take, in bytes or with a unit "
        "(512MiB, 2GiB, 1.5GB); least recently used models are unloaded to fit a new one "
        "(default: 70 percent of the container's memory)",
        metavar="BYTES",
    )
    model_root: str = option(
        "/opt/ml/models",
        "multi-model endpoint: the directory load requests may name models in (where "
        "SageMaker extracts them); a url resolving outside it is refused",
        metavar="DIR",
    )
    extra: Mapping[str, Any] = field(
        default_factory=dict, metadata={"cli": False, "internal": True}
    )

    @property
    def effective_workers(self) -> int:
        return self.workers if self.workers else cpu_count()

    @property
    def effective_blas_threads(self) -> int:
        """BLAS/OpenMP threads per worker: workers * threads <= cores, at least 1."""
        if self.blas_threads:
            return self.blas_threads
        return max(1, cpu_count() // self.effective_workers)

    @property
    def effective_graceful_timeout(self) -> float:
        """How long SIGTERM waits for in-flight requests (SageMaker kills after 30 s)."""
        if self.graceful_timeout is not None:
            return self.graceful_timeout
        return min(self.timeout + 1.0, 25.0)

    @property
    def auth_exempt_routes(self) -> tuple[str, ...]:
        return tuple(r.strip() for r in self.auth_exempt.split(",") if r.strip())

    def parsed_model_config(self) -> dict[str, Any] | None:
        """``model_config`` as the mapping ``load_model`` takes (None: the model's own)."""
        if self.model_config is None:
            return None
        from deployer.serving.model_config import parse_model_config

        return parse_model_config(
            self.model_config,
            where=f"--{flag_name('model_config')} / {' / '.join(env_names('model_config'))}",
        )

    @property
    def multi_model(self) -> bool:
        """Several models (or the SageMaker multi-model contract) rather than ``model_dir``."""
        return bool(self.models or self.model_repository or self.sagemaker_multi_model)

    def parsed_model_memory_limit(self) -> int | None:
        """``model_memory_limit`` in bytes (None: unset, the server picks a share of memory)."""
        if self.model_memory_limit is None:
            return None
        return parse_bytes(
            self.model_memory_limit,
            where=f"--{flag_name('model_memory_limit')} / {env_names('model_memory_limit')[0]}",
        )

    def validate(self) -> ServeOptions:
        def bad(name: str, value: Any, expected: str) -> UsageError:
            return UsageError(
                f"invalid {name}: {value!r} (expected {expected})",
                where=f"--{flag_name(name)} / {env_names(name)[0]}",
                fix=f"pass {expected}",
            )

        if not 0 <= self.port <= 65535:
            raise bad("port", self.port, "a port number 0-65535")
        if self.grpc_port is not None and not 0 <= self.grpc_port <= 65535:
            raise bad("grpc_port", self.grpc_port, "a port number 0-65535")
        if self.workers is not None and self.workers < 1:
            raise bad("workers", self.workers, "a positive number of worker processes")
        if self.timeout <= 0:
            raise bad("timeout", self.timeout, "a positive number of seconds")
        if self.max_body_bytes < 1:
            raise bad("max_body_bytes", self.max_body_bytes, "a positive number of bytes")
        if self.blas_threads is not None and self.blas_threads < 1:
            raise bad("blas_threads", self.blas_threads, "a positive number of threads")
        if self.threads < 1:
            raise bad("threads", self.threads, "a positive number of threads")
        if self.graceful_timeout is not None and self.graceful_timeout < 0:
            raise bad("graceful_timeout", self.graceful_timeout, "0 or more seconds")
        for spec in option_fields():
            choices = spec.metadata["choices"]
            value = getattr(self, spec.name)
            if choices and value not in choices:
                raise bad(spec.name, value, " or ".join(repr(c) for c in choices))
        if self.model_config is not None:
            self.parsed_model_config()
        self.parsed_model_memory_limit()
        if self.models or self.model_repository or self.default_model or self.model_config:
            from deployer.serving.model_set import check_model_specs

            check_model_specs(self)
        bad_routes = [r for r in self.auth_exempt_routes if not r.startswith("/")]
        if bad_routes:
            raise bad(
                "auth_exempt",
                self.auth_exempt,
                f"paths starting with '/', e.g. {DEFAULT_AUTH_EXEMPT!r}",
            )
        return self

    def with_env(
        self,
        env: Mapping[str, str] | None = None,
        explicit: set[str] | frozenset[str] = frozenset(),
    ) -> ServeOptions:
        """Fill options not in ``explicit`` from environment variables."""
        env = os.environ if env is None else env
        changes: dict[str, Any] = {}
        for spec in option_fields(include_model_dir=True):
            if spec.name in explicit:
                continue
            for var in env_names(spec.name):
                raw = env.get(var)
                if raw is None or raw == "":
                    continue
                changes[spec.name] = convert(spec.name, var, raw)
                break
        return replace(self, **changes) if changes else self


# ---------------------------------------------------------------------------- derivations
def option_fields(*, include_model_dir: bool = False) -> Iterator[Field[Any]]:
    """The fields that are user options, in declaration order."""
    for spec in fields(ServeOptions):
        if spec.metadata.get("internal"):
            continue
        if spec.metadata.get("cli", True) or include_model_dir:
            yield spec


def to_argv(options: ServeOptions) -> list[str]:
    """The ``python -m deployer.serving serve`` flags that give ``options`` back (None =
    unset: left to the server's environment and defaults)."""
    argv: list[str] = []
    for spec in option_fields(include_model_dir=True):
        value = getattr(options, spec.name)
        if value is None or value == ():
            continue
        flag = flag_name(spec.name)
        if value_type(spec.name) is bool:
            argv.append(f"--{flag}" if value else f"--no-{flag}")
        elif value_type(spec.name) is tuple:
            argv += [f"--{flag}", ",".join(value)]
        else:
            argv += [f"--{flag}", str(value)]
    return argv


def flag_name(name: str) -> str:
    return name.replace("_", "-")


def env_names(name: str) -> tuple[str, ...]:
    """``DEPLOYER_SERVE_<NAME>`` first, then the platform variables for that option."""
    spec = _FIELD_BY_NAME[name]
    return (ENV_PREFIX + name.upper(), *spec.metadata.get("env", ()))


def value_type(name: str) -> type:
    """The option's scalar type (``int | None`` -> int)."""
    annotation = str(_FIELD_BY_NAME[name].type)
    if annotation.startswith("tuple"):
        return tuple
    for kind in (bool, int, float):
        if annotation.startswith(kind.__name__):
            return kind
    return str


def default_of(name: str, *, cli: bool = False) -> Any:
    spec = _FIELD_BY_NAME[name]
    if cli and spec.metadata.get("cli_default", MISSING) is not MISSING:
        return spec.metadata["cli_default"]
    return spec.default


def convert(name: str, var: str, raw: str) -> Any:
    """An environment variable's text -> the option's type (UsageError naming the variable)."""
    kind = value_type(name)
    if kind is str:
        return raw
    if kind is tuple:
        return split_list(raw)
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise UsageError(
            f"invalid value {raw!r} for {name}",
            where=f"environment variable {var}",
            fix=f"set {var} to 1 or 0",
        )
    try:
        return kind(raw)
    except ValueError:
        raise UsageError(
            f"invalid value {raw!r} for {name}",
            where=f"environment variable {var}",
            fix=f"set {var} to a {'whole ' if kind is int else ''}number",
        ) from None


def split_list(raw: str) -> tuple[str, ...]:
    """``"a=x, b=y"`` -> ``("a=x", "b=y")`` (a list option's environment text)."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
_BYTES = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def parse_bytes(text: str, *, where: str) -> int:
    """``"2GiB"`` -> 2147483648; ``"1.5GB"``, ``"512Mi"``, ``"1000"`` (bytes) too."""
    match = _BYTES.fullmatch(str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise UsageError(
            f"invalid memory size {text!r}",
            where=where,
            fix="give a positive number of bytes, optionally with a unit: 512MiB, 2GiB, 1.5GB",
        )
    return int(float(match.group(1)) * _UNITS[unit])


def read_api_key(options: ServeOptions, env: Mapping[str, str] | None = None) -> bytes | None:
    """The API key clients must send, from ``--api-key-file`` or ``DEPLOYER_API_KEY``; None
    when auth is off. The file wins; surrounding whitespace (a trailing newline) is dropped.
    Errors never quote the key."""
    env = os.environ if env is None else env
    if options.api_key_file:
        try:
            with open(options.api_key_file, "rb") as fh:
                key = fh.read().strip()
        except OSError as exc:
            raise UsageError(
                f"cannot read the API key file: {exc.strerror}",
                where=f"--api-key-file {options.api_key_file}",
                fix="point --api-key-file at a readable file holding the key",
            ) from None
        where = f"--api-key-file {options.api_key_file}"
    else:
        raw = env.get(API_KEY_ENV, "")
        if not raw:
            return None
        key = raw.strip().encode()
        where = f"environment variable {API_KEY_ENV}"
    if len(key) < 16 or not all(0x21 <= b < 0x7F for b in key):
        raise UsageError(
            "the API key must be at least 16 printable ASCII characters with no spaces",
            where=where,
            fix="generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    return key


_FIELD_BY_NAME: dict[str, Field[Any]] = {f.name: f for f in fields(ServeOptions)}
