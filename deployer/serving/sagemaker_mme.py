"""SageMaker multi-model endpoints: the container contract, over the server's model set.

``--sagemaker-multi-model`` (``DEPLOYER_SERVE_SAGEMAKER_MULTI_MODEL``, or SageMaker's
``SAGEMAKER_MULTI_MODEL=true``) adds the routes SageMaker calls on a bring-your-own container
("Custom containers contract for multi-model endpoints" in the SageMaker docs):

    POST   /models                 {"model_name": N, "url": DIR} -> 200 loaded; 409 already
                                   loaded; 507 cannot fit in memory; 404 no model at url;
                                   400 a bad body; 500 the model failed to load
    GET    /models                 {"models": [{"modelName", "modelUrl"}], "nextPageToken"}
                                   (query ``page_size``, ``next_page_token``)
    GET    /models/{name}          {"modelName", "modelUrl"}, 404 when not loaded
    DELETE /models/{name}          200 unloaded, 404 when not loaded
    POST   /models/{name}/invoke   what /invocations answers for that model (same body and
                                   ``X-Amzn-SageMaker-*`` header handling); 404 when not loaded

and the rest of the server (``/ping``, ``/invocations`` with ``X-Amzn-SageMaker-Target-Model``,
``/v2/models/{name}/...``, ``/metrics``) sees the loaded models as it sees ``-m`` models.

``url`` is a local directory holding an MLmodel (SageMaker has already downloaded and extracted
the model's ``model.tar.gz`` there); it must be absolute, may not contain ``..`` and must
resolve (symlinks followed) inside ``--model-root`` (default ``/opt/ml/models``, where SageMaker
extracts them): a load request never makes the server read a model from elsewhere.

Memory: the models may take ``--model-memory-limit`` bytes together (default: 70 percent of
the container's memory, from the cgroup limit or MemTotal). A model's cost is its size on
disk - a documented estimate: a pickled model loads into roughly its own size, while the
libraries it imports are a one-time cost shared by every model (the process's resident-memory
growth mixes the two, and the first model of a flavor would be charged for all of them). To fit
a new model the least recently used ones (by load, invoke or infer) are unloaded; a model that
cannot fit even alone answers 507, as does one whose load leaves too little memory. Loads run
one at a time, off the event loop (``/ping`` keeps answering while a model loads).

Workers: in this mode the server runs **one worker process** with ``--threads`` prediction
threads. A load request lands on one process; with several workers each would hold its own
loaded set (and its own memory accounting), and SageMaker's view of what is loaded would
depend on which worker answered. One process keeps one truth, and SageMaker scales
multi-model endpoints by instances.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs

import orjson

from deployer.serving.model_set import (
    NAME_PATTERN,
    READY,
    ModelEntry,
    ModelSet,
    ModelSpec,
    load_core,
)

_logger = logging.getLogger("deployer.serving")

JSON = b"application/json"
#: Share of the container's memory the models may take when no limit is given.
DEFAULT_MEMORY_SHARE = 0.7
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def container_memory() -> int | None:
    """The memory this container may use: the cgroup limit (v2, then v1), else MemTotal."""
    limits = []
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" / a huge number: no limit
            limits.append(int(text))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                limits.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    return min(limits) if limits else None


def default_memory_limit() -> int:
    memory = container_memory()
    return int(memory * DEFAULT_MEMORY_SHARE) if memory else 4 * 1024**3


def directory_size(path: str | Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(root, name)):
                total += st.st_size
    return total


class LoadOutcome:
    """What a load request gets: a status and a JSON body."""

    __slots__ = ("status", "body")

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body


def _error(status: int, code: str, message: str) -> tuple[Any, ...]:
    return status, orjson.dumps({"error_code": code, "message": message}), JSON, ()


class MultiModelEndpoint:
    """The ``/models`` routes and the memory-aware LRU over a :class:`ModelSet`."""

    def __init__(self, models: ModelSet, options: Any, *, metrics: Any = None) -> None:
        self.models = models
        models.multi = True
        self.limit = options.parsed_model_memory_limit() or default_memory_limit()
        #: load requests name models under this directory only (symlinks resolved)
        self.root = Path(options.model_root).resolve()
        self.metrics = metrics
        self._load_lock = threading.Lock()
        for entry in models.entries():  # the -m models loaded at start count too
            entry.cost = directory_size(entry.spec.path) if entry.state == READY else 0
        _logger.info(
            "SageMaker multi-model endpoint: models may take %.1f MiB (--model-memory-limit)",
            self.limit / 1024**2,
        )

    # ------------------------------------------------------------------ routing
    def methods(self, app: Any) -> dict[str, Any]:
        """``/models``: GET lists, POST loads."""

        async def list_models(scope: dict[str, Any], receive: Any) -> tuple[Any, ...]:
            return self.list_models(scope.get("query_string", b""))

        async def load(scope: dict[str, Any], receive: Any) -> tuple[Any, ...]:
            body = await app.read_request_body(scope, receive)
            if body is None:
                return _error(413, "RESOURCE_EXHAUSTED", "the request body is too large")
            request = self.parse_load(body)
            if not isinstance(request, tuple) or len(request) != 2:
                return request  # type: ignore[no-any-return]
            name, url = request
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(None, self.load, name, url)
            if outcome.status == 200:
                scope["deployer.model"] = name
            return outcome.status, orjson.dumps(outcome.body), JSON, ()

        return {"GET": list_models, "POST": load}

    def model_routes(self, app: Any) -> dict[str, dict[str, Any]]:
        """``/models/{name}`` (GET, DELETE) and ``/models/{name}/invoke`` (POST)."""

        async def get(scope: dict[str, Any], receive: Any) -> tuple[Any, ...]:
            entry = self._loaded(scope)
            if entry is None:
                return self._not_loaded(scope)
            return 200, orjson.dumps(_describe(entry)), JSON, ()

        async def delete(scope: dict[str, Any], receive: Any) -> tuple[Any, ...]:
            name = _name_of(scope["path"])
            if not self.unload(name):
                return self._not_loaded(scope)
            scope["deployer.model"] = name
            return 200, orjson.dumps({"message": f"model {name!r} unloaded"}), JSON, ()

        async def invoke(scope: dict[str, Any], receive: Any) -> tuple[Any, ...]:
            entry = self.models.get(_name_of(scope["path"]))
            if entry is None:
                return self._not_loaded(scope)
            entry.last_used = time.monotonic()
            return await app.invoke_model(entry, scope, receive)  # type: ignore[no-any-return]

        return {"model": {"GET": get, "DELETE": delete}, "invoke": {"POST": invoke}}

    @staticmethod
    def route(path: str, routes: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], str] | None:
        """(methods, metrics route) for a ``/models/...`` path, or None."""
        name, _, tail = path[len("/models/") :].partition("/")
        if not name:
            return None
        if tail == "":
            return routes["model"], "/models/{name}"
        if tail == "invoke":
            return routes["invoke"], "/models/{name}/invoke"
        return None

    def _loaded(self, scope: dict[str, Any]) -> ModelEntry | None:
        entry = self.models.get(_name_of(scope["path"]))
        if entry is None or entry.state != READY:
            return None
        scope["deployer.model"] = entry.name
        return entry

    def _not_loaded(self, scope: dict[str, Any]) -> tuple[Any, ...]:
        name = _name_of(scope["path"])
        return _error(404, "RESOURCE_DOES_NOT_EXIST", f"model {name!r} is not loaded")

    # ------------------------------------------------------------------ list / get
    def list_models(self, query: bytes) -> tuple[Any, ...]:
        params = parse_qs(query.decode("latin-1"))
        size_text = (params.get("page_size") or [str(DEFAULT_PAGE_SIZE)])[0]
        if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE_SIZE:
            return _error(400, "INVALID_PARAMETER_VALUE", f"page_size must be 1-{MAX_PAGE_SIZE}")
        size = int(size_text)
        after = (params.get("next_page_token") or [""])[0]
        names = sorted(e.name for e in self.models.entries() if e.state == READY)
        if after:
            names = [n for n in names if n > after]
        page = names[:size]
        body: dict[str, Any] = {
            "models": [_describe(self.models.get(n)) for n in page if self.models.get(n)]
        }
        if len(names) > size:
            body["nextPageToken"] = page[-1]
        return 200, orjson.dumps(body), JSON, ()

    # ------------------------------------------------------------------ load / unload
    def parse_load(self, body: bytes) -> tuple[str, str] | tuple[Any, ...]:
        """(name, url) from a load request's body, or the refusal (400 / 404)."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(400, "BAD_REQUEST", 'the body must be JSON: {"model_name", "url"}')
        if not isinstance(payload, dict):
            return _error(
                400, "BAD_REQUEST", 'the body must be a JSON object: {"model_name", "url"}'
            )
        name, url = payload.get("model_name"), payload.get("url")
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            return _error(
                400,
                "BAD_REQUEST",
                "model_name must be 1-63 letters, digits, '_', '.' or '-', starting with a "
                "letter or digit",
            )
        if not isinstance(url, str) or not url:
            return _error(400, "BAD_REQUEST", "url must be the model's local directory")
        pure = PurePosixPath(url)
        if not pure.is_absolute() or ".." in pure.parts or "\x00" in url:
            return _error(400, "BAD_REQUEST", "url must be an absolute path without '..'")
        real = Path(url).resolve()
        if real != self.root and self.root not in real.parents:
            return _error(
                400,
                "BAD_REQUEST",
                f"url must be inside {self.root} (--model-root), where the models are extracted",
            )
        if not (Path(url) / "MLmodel").is_file():
            return _error(
                404, "RESOURCE_DOES_NOT_EXIST", f"no MLflow model (MLmodel file) at url {url}"
            )
        return name, url

    def load(self, name: str, url: str) -> LoadOutcome:
        """Load ``url`` as ``name`` (in a thread; one load at a time), evicting least recently
        used models to fit it."""
        with self._load_lock:
            existing = self.models.get(name)
            if existing is not None and existing.state == READY:
                return LoadOutcome(
                    409, _message("MODEL_ALREADY_LOADED", f"model {name!r} is already loaded")
                )
            cost = directory_size(url)
            if cost > self.limit:
                return self._too_big(name, cost)
            self._evict_for(cost)
            entry = ModelEntry(ModelSpec(name, url), url=url)
            try:
                entry.set_ready(load_core(entry.spec))
            except MemoryError:
                gc.collect()
                return self._too_big(name, cost)
            except Exception as exc:  # noqa: BLE001 - any load failure is this model's
                message = getattr(exc, "what", None) or f"{type(exc).__name__}: {exc}"
                _logger.error("model %r failed to load from %s: %s", name, url, message)
                return LoadOutcome(500, _message("MODEL_LOAD_FAILED", f"model {name!r}: {message}"))
            entry.cost = cost
            entry.last_used = time.monotonic()
            self.models.put(entry)
            if self.metrics is not None:
                self.metrics.model_loaded(name, None, entry.core.flavor)
            _logger.info(
                "model %r loaded from %s (%.1f MiB of %.1f MiB in use)",
                name,
                url,
                self.used() / 1024**2,
                self.limit / 1024**2,
            )
            return LoadOutcome(
                200, {"modelName": name, "modelUrl": url, "message": f"model {name!r} loaded"}
            )

    def unload(self, name: str) -> bool:
        entry = self.models.remove(name)
        if entry is None:
            return False
        _logger.info("model %r unloaded", name)
        if self.metrics is not None and entry.core is not None:
            self.metrics.model_unloaded(name, None, entry.core.flavor)
        gc.collect()  # the model's objects may be in reference cycles
        return True

    def used(self) -> int:
        return sum(e.cost for e in self.models.entries() if e.state == READY)

    def _evict_for(self, cost: int) -> None:
        """Unload least recently used models until ``cost`` more bytes fit."""
        while self.used() + cost > self.limit:
            loaded = [e for e in self.models.entries() if e.state == READY and e.cost > 0]
            if not loaded:
                return
            victim = min(loaded, key=lambda e: e.last_used)
            _logger.info(
                "unloading model %r (least recently used) to make room for %.1f MiB",
                victim.name,
                cost / 1024**2,
            )
            self.unload(victim.name)

    def _too_big(self, name: str, cost: int) -> LoadOutcome:
        return LoadOutcome(
            507,
            _message(
                "INSUFFICIENT_STORAGE",
                f"model {name!r} needs {cost} bytes, more than the {self.limit} bytes the "
                "models may take (--model-memory-limit / DEPLOYER_SERVE_MODEL_MEMORY_LIMIT)",
            ),
        )


def _message(code: str, message: str) -> dict[str, Any]:
    return {"error_code": code, "message": message}


def _describe(entry: Any) -> dict[str, Any]:
    return {"modelName": entry.name, "modelUrl": entry.url}


def _name_of(path: str) -> str:
    return path[len("/models/") :].split("/", 1)[0]
