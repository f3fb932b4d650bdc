"""The models one server serves: named scoring cores, each loading, ready or failed.

Every adapter that routes by model (the HTTP app's ``/invocations`` and V2 routes, the gRPC
service, the SageMaker multi-model routes) looks models up here, so "which models exist and
can they answer" has one answer per process.

* **Where the models come from** (:func:`model_specs`): ``-m NAME=URI`` pairs
  (``ServeOptions.models``), every direct subdirectory of ``--model-repository`` that holds an
  MLmodel (named after the subdirectory, symlinks resolved and kept inside the directory),
  or, as before, the one ``model_dir``. Names match :data:`NAME_PATTERN`: they appear in URL
  paths, metric labels and log lines.
* **One failing model never takes the others down.** :meth:`ModelSet.load` loads each model;
  one that fails is kept as *failed* with its error (its routes answer 503 with it, V2 ready is
  false); only when every model fails does loading raise, with every error.
* **Lookup is one dict read, without a lock.** Writers (the multi-model endpoint's load and
  unload, :mod:`deployer.serving.sagemaker_mme`) replace the dict under a lock; readers read
  whichever dict is current. A single-model server pays one ``dict.get`` per request.

This module must import with only the ``serve`` extra (it runs inside images).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.errors import DeployerError, ServingError, UsageError

_logger = logging.getLogger("deployer.serving")

#: A model name: what may appear in a URL path segment, a metric label and a log line.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

LOADING = "loading"
READY = "ready"
FAILED = "failed"


@dataclass(frozen=True)
class ModelSpec:
    """A model to serve: its name, its local directory, and the version V2 reports."""

    name: str
    path: str
    version: str | None = None


def check_name(name: str, where: str) -> str:
    if not NAME_PATTERN.fullmatch(name or ""):
        raise UsageError(
            f"invalid model name {name!r}",
            where=where,
            fix="use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return name


def split_model_arg(text: str) -> tuple[str | None, str]:
    """``"churn=models:/churn/3"`` -> ``("churn", "models:/churn/3")``; a plain URI -> (None,
    URI). A prefix before ``=`` counts as a name only when it looks like one."""
    name, sep, uri = text.partition("=")
    if sep and NAME_PATTERN.fullmatch(name) and uri:
        return name, uri
    return None, text


def parse_pairs(items: Iterable[str], where: str) -> list[ModelSpec]:
    """``NAME=PATH`` items -> specs (names checked, no duplicates)."""
    specs: list[ModelSpec] = []
    for item in items:
        name, path = split_model_arg(item)
        if name is None:
            raise UsageError(
                f"{item!r} is not NAME=PATH",
                where=where,
                fix="name every model when serving several: -m churn=./churn -m fraud=./fraud",
            )
        specs.append(ModelSpec(name, path))
    return specs


def scan_repository(root: str | Path) -> list[ModelSpec]:
    """Every direct subdirectory of ``root`` holding an MLmodel, sorted by name. A
    subdirectory (or symlink) that resolves outside ``root`` is refused."""
    where = f"--model-repository {root}"
    base = Path(root)
    if not base.is_dir():
        raise UsageError(
            "the model repository is not a directory",
            where=where,
            fix="point --model-repository at a directory with one subdirectory per model",
        )
    real_base = base.resolve()
    specs = []
    for child in sorted(base.iterdir(), key=lambda p: p.name):
        if not (child / "MLmodel").is_file():
            continue
        real = child.resolve()
        if real != real_base and real_base not in real.parents:
            raise UsageError(
                f"model {child.name!r} resolves to {real}, outside the repository",
                where=where,
                fix="keep every model's files inside the repository directory",
            )
        check_name(child.name, f"{where} (subdirectory {child.name!r})")
        specs.append(ModelSpec(child.name, str(real)))
    return specs


def model_specs(options: Any) -> list[ModelSpec]:
    """The models ``options`` (a :class:`~deployer.serving.options.ServeOptions`) asks for, in
    order, default first-eligible: ``models`` then the repository's, or the single
    ``model_dir`` when neither is given (and not in SageMaker multi-model mode)."""
    if not options.multi_model:
        return [ModelSpec(options.model_name or "", options.model_dir, options.model_version)]
    specs = parse_pairs(options.models, "--models / DEPLOYER_SERVE_MODELS")
    if options.model_repository:
        specs += scan_repository(options.model_repository)
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise UsageError(
                f"model name {spec.name!r} is given twice",
                where="-m NAME=URI / --model-repository",
                fix="give every model its own name",
            )
        seen.add(spec.name)
    if not specs and not options.sagemaker_multi_model:
        raise UsageError(
            "no model to serve",
            where=f"--model-repository {options.model_repository}",
            fix="put model directories (each with an MLmodel) in the repository, or pass -m",
        )
    if options.default_model is not None and options.default_model not in seen:
        if specs:
            raise UsageError(
                f"--default-model {options.default_model!r} is not one of the models served",
                where="--default-model / DEPLOYER_SERVE_DEFAULT_MODEL",
                fix=f"pick one of: {', '.join(sorted(seen))}",
            )
    _check_model_config(options, len(specs))
    return specs


def default_model_name(options: Any, specs: list[ModelSpec]) -> str | None:
    """``--default-model``, else the first -m model, else the repository's first (sorted)."""
    if options.default_model:
        return str(options.default_model)
    return specs[0].name if specs else None


def check_model_specs(options: Any) -> None:
    """Option-level checks of the multi-model options (typed errors, nothing read from disk:
    the repository is scanned when the server starts)."""
    pairs = parse_pairs(options.models, "--models / DEPLOYER_SERVE_MODELS")
    names = [p.name for p in pairs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(
            f"model name {duplicates[0]!r} is given twice",
            where="-m NAME=URI / DEPLOYER_SERVE_MODELS",
            fix="give every model its own name",
        )
    if options.default_model is not None:
        check_name(options.default_model, "--default-model / DEPLOYER_SERVE_DEFAULT_MODEL")
        if names and not options.model_repository and options.default_model not in names:
            raise UsageError(
                f"--default-model {options.default_model!r} is not one of the models served",
                where="--default-model / DEPLOYER_SERVE_DEFAULT_MODEL",
                fix=f"pick one of: {', '.join(names)}",
            )
    _check_model_config(options, len(pairs))


def _check_model_config(options: Any, count: int) -> None:
    if options.model_config is not None and count > 1:
        raise UsageError(
            "--model-config overrides one model's config; this server has several models",
            where="--model-config / DEPLOYER_SERVE_MODEL_CONFIG",
            fix="serve a model that needs its own config in its own server",
        )


class ModelEntry:
    """One model of the set: its state, and when ready its core and V2 adapter.

    ``serving`` is per-model state the HTTP app keeps (its inline policy and batch queue);
    ``cost`` and ``last_used`` are the multi-model endpoint's memory accounting.
    """

    __slots__ = ("spec", "state", "core", "v2", "error", "serving", "cost", "last_used", "url")

    def __init__(self, spec: ModelSpec, *, url: str | None = None) -> None:
        self.spec = spec
        self.state = LOADING
        self.core: Any = None
        self.v2: Any = None
        self.error: dict[str, Any] | None = None
        self.serving: Any = None
        self.cost = 0
        self.last_used = time.monotonic()
        self.url = url if url is not None else spec.path

    @property
    def name(self) -> str:
        return self.spec.name

    def set_ready(self, core: Any) -> None:
        from deployer.serving.v2 import V2Adapter

        self.core = core
        self.v2 = V2Adapter(core)
        self.state = READY

    def set_failed(self, error: DeployerError) -> None:
        self.error = error.to_dict()
        self.state = FAILED

    def error_message(self) -> str:
        if self.state == LOADING:
            return f"model {self.name!r} is still loading"
        message = (self.error or {}).get("message") or "unknown error"
        return f"model {self.name!r} failed to load: {message}"


def load_core(spec: ModelSpec, model_config: dict[str, Any] | None = None) -> Any:
    """Load one model as a :class:`~deployer.serving.core.ScoringCore` (typed error if not)."""
    from deployer.serving.core import ScoringCore

    started = time.monotonic()
    try:
        core = ScoringCore.load(
            spec.path, name=spec.name or None, version=spec.version, model_config=model_config
        )
    except DeployerError:
        raise
    except Exception as exc:
        raise ServingError(
            f"could not load the model: {type(exc).__name__}: {exc}",
            where=str(spec.path),
            fix="check that the directory holds an MLflow model (an MLmodel file) and that "
            "this Python environment has the model's requirements installed",
        ) from exc
    _logger.info(
        "model %r loaded in %.1f s (flavor %s)",
        core.model_name,
        time.monotonic() - started,
        core.flavor,
    )
    return core


class ModelSet:
    """Named models; lookups are lock-free dict reads, changes replace the dict under a lock."""

    def __init__(self, entries: Iterable[ModelEntry] = (), default: str | None = None) -> None:
        self._entries: dict[str, ModelEntry] = {e.name: e for e in entries}
        self._lock = threading.Lock()
        self.default_name = default
        #: more than one model (or models come and go): /invocations reads the target header
        self.multi = len(self._entries) > 1

    @classmethod
    def single(cls, core: Any) -> ModelSet:
        entry = ModelEntry(ModelSpec(core.model_name, str(core.model_dir), core.model_version))
        entry.set_ready(core)
        return cls([entry], core.model_name)

    @classmethod
    def load(
        cls,
        specs: list[ModelSpec],
        *,
        default: str | None = None,
        model_config: dict[str, Any] | None = None,
        require_one: bool = True,
    ) -> ModelSet:
        """Load every model; a failure marks that model failed. Raises when every model fails
        (a single model: its own error, unchanged), unless ``require_one`` is False."""
        entries = []
        for spec in specs:
            entry = ModelEntry(spec)
            try:
                entry.set_ready(load_core(spec, model_config))
                if not spec.name:  # the one model_dir: named by --model-name or its directory
                    entry.spec = ModelSpec(entry.core.model_name, spec.path, spec.version)
            except DeployerError as exc:
                if len(specs) == 1 and require_one:
                    raise
                _logger.error("model %r failed to load: %s", spec.name, exc.format_message())
                entry.set_failed(exc)
            entries.append(entry)
        if require_one and entries and all(e.state == FAILED for e in entries):
            details = "; ".join(f"{e.name}: {e.error_message()}" for e in entries)
            raise ServingError(
                f"every model failed to load ({details})",
                where=", ".join(f"{e.name}={e.spec.path}" for e in entries),
                fix="check that each directory holds an MLflow model and that this Python "
                "environment has the models' requirements installed",
            )
        if not default and entries:
            default = entries[0].name
        models = cls(entries, default)
        return models

    # ---------------------------------------------------------------- reads (lock-free)
    def get(self, name: str) -> ModelEntry | None:
        return self._entries.get(name)

    @property
    def default(self) -> ModelEntry | None:
        name = self.default_name
        return self._entries.get(name) if name is not None else None

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def ready(self) -> bool:
        """Every model settled (loaded or failed)."""
        return all(e.state != LOADING for e in self._entries.values())

    def failures(self) -> list[ModelEntry]:
        return [e for e in self._entries.values() if e.state == FAILED]

    def unknown_message(self, name: str) -> str:
        served = ", ".join(repr(n) for n in self._entries) or "none"
        return f"model {name!r} is not loaded; loaded models: {served}"

    # ---------------------------------------------------------------- writes
    def put(self, entry: ModelEntry) -> None:
        with self._lock:
            entries = dict(self._entries)
            entries[entry.name] = entry
            self._entries = entries
            self.multi = True

    def remove(self, name: str) -> ModelEntry | None:
        with self._lock:
            entries = dict(self._entries)
            entry = entries.pop(name, None)
            self._entries = entries
            return entry


def pid_rss() -> int:
    """This process's resident memory in bytes (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
