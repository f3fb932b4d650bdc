"""Where the server loads the model: once before forking its workers, or in each worker.

``preload`` loads the model in the supervisor, freezes the heap and forks the workers: the
model and the imported modules are shared copy-on-write, and a model that cannot load fails
once, before the port opens. It is only correct for libraries whose state survives ``fork``.
Many do not: a forked child inherits their memory but none of their threads, so the first
request waits forever on a thread pool that no longer exists. Measured on real models saved
by MLflow 3.17 (model loaded, process forked, the child predicting the input example):

* **TensorFlow / Keras** start their runtime's threads (``tf_Compute``...) while loading: every
  forked worker hangs, at any thread count.
* **XGBoost and LightGBM** start GNU OpenMP's pool while loading as soon as a worker has more
  than one thread (``--workers`` below the CPU count): the forked workers hang.
* **PyTorch** hangs in a forked worker once the parent ran one parallel operation (torch's
  OpenMP pool); loading alone did not, but model code often warms up at load.
* **Spark / Spark NLP** talk to their JVM through one py4j gateway connection per process.
* ONNX Runtime, CatBoost, scikit-learn and statsmodels scored correctly in forked workers,
  before and after a warm-up (so they keep ``preload``).

``per-worker`` forks the workers *before* anything loads the model's libraries (the server's
own modules, numpy, pandas and mlflow are imported first and stay shared) and each worker
loads its own copy: more memory, no hang. A worker opens the shared listening socket only once
its model is loaded, so a ready answer always comes from a loaded model.

:func:`decide` picks the mode from what the MLmodel and the model's files say; it is pure and
used by the build plan (baked into the image as ``DEPLOYER_SERVE_LOAD_MODE``), by ``deployer
inspect`` and by the server itself when no mode is given. When nothing says either way (a
custom pyfunc whose requirements and code name no such library) the server preloads and then
checks what the load did (:func:`fork_hazards`): a model that pulled in one of these libraries,
or started a thread of its own, is served by one worker in the server's own process rather
than forked into a hang.

This module must import with only the ``serve`` extra (it runs inside images).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

AUTO = "auto"
PRELOAD = "preload"
PER_WORKER = "per-worker"
MODES = (AUTO, PRELOAD, PER_WORKER)
ENV = "DEPLOYER_SERVE_LOAD_MODE"

_TF = (
    "TensorFlow's runtime threads do not survive fork (forked workers hang on their first request)"
)
_TORCH = "torch's OpenMP pool does not survive fork once used (forked workers hang)"
_OPENMP = (
    "the OpenMP thread pool it starts while loading does not survive fork (forked workers "
    "hang when they have more than one thread)"
)
_JVM = "the JVM is reached through one py4j gateway connection per process"

#: Loader flavors whose libraries do not survive fork, and why (see the module docstring).
PER_WORKER_FLAVORS: dict[str, str] = {
    "tensorflow": _TF,
    "keras": "Keras runs on TensorFlow, JAX or torch, whose thread pools do not survive fork",
    "pytorch": _TORCH,
    "transformers": "transformers runs on torch or TensorFlow, whose thread pools do not survive "
    "fork",
    "sentence_transformers": _TORCH,
    "diffusers": _TORCH,
    "fastai": _TORCH,
    "xgboost": _OPENMP,
    "lightgbm": _OPENMP,
    "paddle": "PaddlePaddle's thread pools do not survive fork",
    "gluon": "MXNet's engine threads do not survive fork",
    "spark": _JVM,
    "johnsnowlabs": _JVM,
}

#: Loader flavors seen to score correctly in forked workers (preload is certain for them).
PRELOAD_FLAVORS = frozenset(
    {
        "sklearn",
        "statsmodels",
        "catboost",
        "onnx",
        "prophet",
        "pmdarima",
        "spacy",
        "shap",
        "langchain",
        "llama_index",
        "dspy",
        "openai",
        "diviner",
        "mleap",
        "crate",
        "h2o",
    }
)

#: Distributions (canonical names) that make a custom model per-worker when it requires them.
PER_WORKER_DISTRIBUTIONS: dict[str, str] = {
    **{
        name: _TF
        for name in (
            "tensorflow",
            "tensorflow-cpu",
            "tensorflow-gpu",
            "tensorflow-intel",
            "tensorflow-macos",
            "tf-nightly",
            "tf-keras",
            "keras",
        )
    },
    **{
        name: _TORCH
        for name in ("torch", "pytorch-lightning", "lightning", "sentence-transformers")
    },
    "jax": "JAX's runtime threads do not survive fork",
    "jaxlib": "JAX's runtime threads do not survive fork",
    **{name: _OPENMP for name in ("xgboost", "xgboost-cpu", "lightgbm")},
    "paddlepaddle": "PaddlePaddle's thread pools do not survive fork",
    "mxnet": "MXNet's engine threads do not survive fork",
    "pyspark": _JVM,
}

#: Top-level modules with the same problem: what model code may import, and what the server
#: looks for in ``sys.modules`` after an undecided preload.
PER_WORKER_MODULES: dict[str, str] = {
    "tensorflow": _TF,
    "keras": _TF,
    "tf_keras": _TF,
    "torch": _TORCH,
    "lightning": _TORCH,
    "pytorch_lightning": _TORCH,
    "jax": "JAX's runtime threads do not survive fork",
    "xgboost": _OPENMP,
    "lightgbm": _OPENMP,
    "paddle": PER_WORKER_DISTRIBUTIONS["paddlepaddle"],
    "mxnet": PER_WORKER_DISTRIBUTIONS["mxnet"],
    "pyspark": _JVM,
}

_PYFUNC_LOADERS = frozenset(
    {
        "mlflow.pyfunc.model",
        "mlflow.pyfunc.loaders.chat_model",
        "mlflow.pyfunc.loaders.chat_agent",
        "mlflow.pyfunc.loaders.responses_agent",
        "mlflow.pyfunc.loaders.code_model",
        "mlflow.prompt.promptlab_model",
    }
)
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class LoadMode:
    """The decision: ``mode`` (preload / per-worker), why, and whether it rests on evidence.

    ``certain=False``: nothing said either way; the server preloads and then checks what the
    load did (:func:`fork_hazards`).
    """

    mode: str
    reason: str
    certain: bool = True

    def describe(self) -> str:
        how = (
            "load once, then fork the workers (shared memory)"
            if self.mode == PRELOAD
            else "fork the workers first, each loads its own copy"
        )
        return f"{self.mode}: {how}; {self.reason}"

    def to_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "reason": self.reason, "certain": self.certain}


def canonical(name: str) -> str:
    """PEP 503 name (``XGBoost_CPU`` -> ``xgboost-cpu``), without importing packaging."""
    return re.sub(r"[-_.]+", "-", name).lower()


def loader_flavor(loader_module: str | None) -> str | None:
    """``mlflow.xgboost`` -> ``xgboost``; custom pyfunc loaders -> ``python_function``."""
    if not loader_module:
        return None
    if loader_module in _PYFUNC_LOADERS:
        return "python_function"
    if loader_module.startswith("mlflow.") and loader_module.count(".") == 1:
        return loader_module.split(".", 1)[1]
    return None


def decide(
    loader_module: str | None,
    requirement_names: Iterable[str] = (),
    referenced_modules: Iterable[str] = (),
    requested: str = AUTO,
) -> LoadMode:
    """The load mode for a model (pure). ``requirement_names``: its requirements' distribution
    names; ``referenced_modules``: top-level modules its own code and pickles reference."""
    if requested not in MODES:
        raise ValueError(f"unknown load mode {requested!r}")
    if requested != AUTO:
        return LoadMode(
            requested,
            "given by --load-mode / DEPLOYER_SERVE_LOAD_MODE (which deployer build "
            "and deployer serve set from the model's flavor, requirements and code)",
        )
    flavor = loader_flavor(loader_module)
    if flavor in PER_WORKER_FLAVORS:
        return LoadMode(PER_WORKER, f"{flavor} flavor: {PER_WORKER_FLAVORS[flavor]}")
    if flavor in PRELOAD_FLAVORS:
        return LoadMode(PRELOAD, f"{flavor} flavor: its libraries survive fork")
    for name in sorted({canonical(n) for n in requirement_names}):
        if name in PER_WORKER_DISTRIBUTIONS:
            return LoadMode(
                PER_WORKER, f"the model requires {name}: {PER_WORKER_DISTRIBUTIONS[name]}"
            )
    for module in sorted({m.split(".")[0] for m in referenced_modules}):
        if module in PER_WORKER_MODULES:
            return LoadMode(
                PER_WORKER, f"the model's code imports {module}: {PER_WORKER_MODULES[module]}"
            )
    what = f"{flavor} flavor" if flavor else f"loader {loader_module or '(none)'}"
    return LoadMode(
        PRELOAD,
        f"{what}: no library known to break under fork in its requirements or code",
        certain=False,
    )


def fork_hazards(modules: Iterable[str] | None = None, threads_started: int = 0) -> str:
    """What makes this process unsafe to fork after an undecided preload, in words ("" if
    nothing): :data:`PER_WORKER_MODULES` it imported, and Python threads the load started (a
    forked child has none of them: a model waiting on its own thread would wait forever)."""
    loaded = sys.modules if modules is None else {m: None for m in modules}
    found = sorted(m for m in PER_WORKER_MODULES if m in loaded)
    parts = [f"imported {', '.join(found)}"] if found else []
    if threads_started > 0:
        parts.append(f"started {threads_started} thread{'s' if threads_started > 1 else ''}")
    return " and ".join(parts)


def requirement_names(lines: Iterable[str]) -> tuple[str, ...]:
    """Distribution names of requirement lines (options, comments and URLs-only lines skipped)."""
    out = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = _NAME.match(line)
        if m:
            out.append(canonical(m.group(1)))
    return tuple(out)


def decide_for_model_dir(
    model_dir: str | Path, requested: str = AUTO, referenced_modules: Iterable[str] = ()
) -> LoadMode:
    """:func:`decide` from the files in an MLflow model directory (what the server has), plus
    the modules its files reference when the caller scanned them (the host side does:
    :mod:`deployer.model.references`)."""
    if requested != AUTO:
        return decide(None, requested=requested)
    import yaml  # mlflow-skinny's dependency: present wherever the server runs

    root = Path(model_dir)
    loader = None
    try:
        data = yaml.safe_load((root / "MLmodel").read_text()) or {}
        pyfunc = (data.get("flavors") or {}).get("python_function") or {}
        loader = pyfunc.get("loader_module") if isinstance(pyfunc, dict) else None
    except (OSError, ValueError, yaml.YAMLError, AttributeError):
        pass  # the load itself reports a broken model; undecided here
    try:
        names = requirement_names((root / "requirements.txt").read_text().splitlines())
    except (OSError, UnicodeDecodeError):
        names = ()
    return decide(loader if isinstance(loader, str) else None, names, referenced_modules)
