"""What MLflow's loader itself imports, worked out from the MLmodel alone (pure, no MLflow).

A model's requirements list what its *training* code used; the image also needs what the
*loader* imports when the server starts. The gap is real: ``mlflow.sklearn.save_model(clf,
path, pip_requirements=["mlflow", "scikit-learn"])`` saves in MLflow 3's default skops format
(``serialization_format: skops``) but lists no ``skops``, and the image dies at start with
``ModuleNotFoundError: No module named 'skops'``.

:data:`FLAVORS` is the table, one row per flavor MLflow ships (3.17, plus older 2.x flavors a
saved model may still name), taken from each flavor's ``_load_pyfunc`` / ``load_model``:

* ``packages``: distributions the loader always imports (``mlflow.onnx`` -> onnx, onnxruntime);
* ``by_value``: packages a field's value adds (``serialization_format: skops`` -> skops; a
  value ending in ``*`` is a prefix: ``model_class: xgboost.sklearn.*`` -> scikit-learn);
* ``version_key``: the flavor field recording the library version at save time (for messages);
* ``system``: what pip cannot install (a JVM for Spark and H2O; the build plan adds a JRE).

Only the flavor named by ``python_function.loader_module`` runs in the server, so only its row
applies. :func:`loader_requirements` turns an :class:`~deployer.model.mlmodel.MLModel` into
:class:`LoaderRequirement` records (each naming the MLmodel field that needs it) and
:func:`missing` compares them with a set of distribution names (the image's requirements, a
conda package list, or a lock's packages). :func:`check_model_files` checks that the ``code``
paths and python_model ``artifacts`` the MLmodel names exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from deployer.errors import ModelFormatError
from deployer.model.mlmodel import PYFUNC, MLModel


@dataclass(frozen=True)
class FlavorRule:
    """One row of the table: what ``mlflow.<flavor>``'s pyfunc loader imports."""

    flavor: str
    packages: tuple[str, ...] = ()
    version_key: str | None = None
    by_value: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (field, value, packages)
    system: str | None = None


@dataclass(frozen=True)
class LoaderRequirement:
    """A distribution the loader imports, and the MLmodel field that says so."""

    package: str
    field: str  # e.g. "flavors.sklearn.serialization_format: skops"
    saved_version: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"package": self.package, "field": self.field, "saved_version": self.saved_version}


_PYTHON_MODEL = ("python_model", "", ("cloudpickle",))  # value "" = any value of the field

#: flavor name -> rule. The pyfunc loader module is ``mlflow.<flavor>`` (see LOADER_FLAVORS).
FLAVORS: Mapping[str, FlavorRule] = {
    rule.flavor: rule
    for rule in (
        FlavorRule(
            "sklearn",
            ("scikit-learn",),
            "sklearn_version",
            (
                ("serialization_format", "skops", ("skops",)),
                ("serialization_format", "cloudpickle", ("cloudpickle",)),
            ),
        ),
        # the scikit-learn API classes (XGBClassifier...) raise ImportError without scikit-learn
        FlavorRule(
            "xgboost",
            ("xgboost",),
            "xgb_version",
            (("model_class", "xgboost.sklearn.*", ("scikit-learn",)),),
        ),
        FlavorRule(
            "lightgbm",
            ("lightgbm",),
            "lgb_version",
            (
                ("serialization_format", "skops", ("skops",)),
                ("serialization_format", "cloudpickle", ("cloudpickle",)),
                ("model_class", "lightgbm.sklearn.*", ("scikit-learn",)),
            ),
        ),
        FlavorRule("catboost", ("catboost",), "catboost_version"),
        FlavorRule("onnx", ("onnx", "onnxruntime"), "onnx_version"),
        # mlflow.pytorch.pickle_module is cloudpickle
        FlavorRule("pytorch", ("torch", "cloudpickle"), "pytorch_version"),
        FlavorRule("tensorflow", ("tensorflow",)),
        FlavorRule(
            "keras",
            ("keras",),
            "keras_version",
            (
                ("keras_backend", "tensorflow", ("tensorflow",)),
                ("keras_backend", "torch", ("torch",)),
                ("keras_backend", "jax", ("jax",)),
            ),
        ),
        FlavorRule(
            "transformers",
            ("transformers",),
            "transformers_version",
            (
                ("framework", "pt", ("torch",)),
                ("framework", "tf", ("tensorflow",)),
                ("framework", "flax", ("flax",)),
            ),
        ),
        FlavorRule(
            "sentence_transformers", ("sentence-transformers",), "sentence_transformers_version"
        ),
        FlavorRule("diffusers", ("diffusers", "transformers", "torch")),
        FlavorRule("spacy", ("spacy",), "spacy_version"),
        FlavorRule("statsmodels", ("statsmodels",), "statsmodels_version"),
        FlavorRule("prophet", ("prophet",), "prophet_version"),
        FlavorRule("pmdarima", ("pmdarima",), "pmdarima_version"),
        FlavorRule("h2o", ("h2o",), "h2o_version", system="a Java runtime (H2O starts a JVM)"),
        FlavorRule("spark", ("pyspark",), "pyspark_version", system="a Java 17+ runtime (Spark)"),
        FlavorRule(
            "johnsnowlabs",
            ("johnsnowlabs", "pyspark"),
            "pyspark_version",
            system="a Java runtime (Spark NLP)",
        ),
        FlavorRule("paddle", ("paddlepaddle",), "paddle_version"),
        FlavorRule("shap", ("shap",), "shap_version"),
        FlavorRule("langchain", ("langchain", "cloudpickle", "pydantic"), "langchain_version"),
        FlavorRule("llama_index", ("llama-index",), "llama_index_version"),
        FlavorRule("dspy", ("dspy",)),
        FlavorRule("openai", ("openai",), "openai_version"),
        # python_function models: the PythonModel / chat model is a cloudpickle file
        FlavorRule(PYFUNC, (), None, (_PYTHON_MODEL,)),
        # MLflow 2.x flavors that saved models may still name (gone from MLflow 3)
        FlavorRule("fastai", ("fastai",), "fastai_version"),
        FlavorRule("diviner", ("diviner",), "diviner_version"),
        FlavorRule("gluon", ("mxnet",), "mxnet_version"),
        FlavorRule("mleap", ()),  # no pyfunc loader: deployment uses the spark flavor's
        FlavorRule("crate", (), system="R and the carrier package (an R model)"),
    )
}

#: pyfunc loader module -> the flavor row that applies
LOADER_FLAVORS: Mapping[str, str] = {
    **{f"mlflow.{name}": name for name in FLAVORS if name != PYFUNC},
    "mlflow.pyfunc.model": PYFUNC,
    "mlflow.pyfunc.loaders.chat_model": PYFUNC,
    "mlflow.pyfunc.loaders.chat_agent": PYFUNC,
    "mlflow.pyfunc.loaders.responses_agent": PYFUNC,
    "mlflow.pyfunc.loaders.code_model": PYFUNC,
    "mlflow.prompt.promptlab_model": PYFUNC,
    "mlflow.gluon": "gluon",
}

#: Distributions every deployer image has whatever the model lists: mlflow-skinny's own
#: dependencies (cloudpickle, pydantic, pyyaml) and the serving runtime's (pandas, numpy).
ALWAYS_PRESENT = frozenset({"cloudpickle", "pydantic", "pyyaml", "pandas", "numpy", "packaging"})

#: Other distributions that provide the same import (GPU builds, conda names, metapackages).
ALTERNATIVES: Mapping[str, frozenset[str]] = {
    "onnxruntime": frozenset({"onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"}),
    "tensorflow": frozenset(
        {"tensorflow-cpu", "tensorflow-gpu", "tensorflow-macos", "tf-nightly", "tensorflow-intel"}
    ),
    "torch": frozenset({"pytorch", "pytorch-cpu", "pytorch-gpu"}),
    "xgboost": frozenset({"py-xgboost", "xgboost-cpu", "py-xgboost-cpu"}),
    "paddlepaddle": frozenset({"paddlepaddle-gpu"}),
    "scikit-learn": frozenset({"sklearn"}),
    "lightgbm": frozenset({"py-lightgbm"}),
    "llama-index": frozenset({"llama-index-core"}),
    "pyspark": frozenset({"databricks-connect"}),
    "keras": frozenset({"tensorflow", "tensorflow-cpu", "tf-keras"}),
}

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def loader_flavor(mlmodel: MLModel) -> str | None:
    """The flavor whose loader the server runs (None: not a flavor deployer knows)."""
    if mlmodel.pyfunc is None:
        return None
    return LOADER_FLAVORS.get(mlmodel.pyfunc.loader_module)


def loader_requirements(mlmodel: MLModel) -> tuple[LoaderRequirement, ...]:
    """What the pyfunc loader imports, each with the MLmodel field that needs it."""
    flavor = loader_flavor(mlmodel)
    if flavor is None or mlmodel.pyfunc is None:
        return ()
    rule = FLAVORS[flavor]
    conf: Mapping[str, object]
    if flavor == PYFUNC:
        conf = mlmodel.pyfunc.extra
    else:
        conf = mlmodel.flavors.get(flavor) or {}
    prefix = f"flavors.{flavor}"
    out: dict[str, LoaderRequirement] = {}
    version = conf.get(rule.version_key) if rule.version_key else None
    for i, package in enumerate(rule.packages):
        saved = str(version) if i == 0 and version is not None else None
        field = f"flavors.python_function.loader_module: {mlmodel.pyfunc.loader_module}"
        out.setdefault(package, LoaderRequirement(package, field, saved))
    for key, value, packages in rule.by_value:
        have = conf.get(key)
        if have is None or (value and not _matches(str(have), value)):
            continue
        for package in packages:
            out.setdefault(package, LoaderRequirement(package, f"{prefix}.{key}: {have}"))
    return tuple(out.values())


def _matches(have: str, value: str) -> bool:
    """``value`` exactly, or a prefix when it ends with ``*``."""
    return have.startswith(value[:-1]) if value.endswith("*") else have == value


def system_requirement(mlmodel: MLModel) -> str | None:
    """What the loader needs besides Python packages (a JVM...), or None."""
    flavor = loader_flavor(mlmodel)
    return FLAVORS[flavor].system if flavor else None


def distribution_names(lines: Iterable[str]) -> frozenset[str]:
    """Canonical distribution names of requirement lines (``scikit-learn==1.5`` -> scikit-learn);
    also takes conda specs (``pytorch=2.1``) and bare names."""
    out = set()
    for line in lines:
        m = _NAME.match(line or "")
        if m:
            out.add(canonicalize_name(m.group(1)))
    return frozenset(out)


def missing(
    needed: Iterable[LoaderRequirement], have: Iterable[str]
) -> tuple[LoaderRequirement, ...]:
    """The requirements in ``needed`` that no name in ``have`` (canonical names) provides."""
    names = set(have) | ALWAYS_PRESENT
    out = []
    for req in needed:
        package = canonicalize_name(req.package)
        if package in names or names & ALTERNATIVES.get(package, frozenset()):
            continue
        out.append(req)
    return tuple(out)


def describe(req: LoaderRequirement) -> str:
    saved = (
        f"; the model was saved with {req.package} {req.saved_version}" if req.saved_version else ""
    )
    return f"'{req.package}' (needed by {req.field}{saved})"


def check_model_files(model_dir: Path, mlmodel: MLModel) -> None:
    """The ``code`` paths and python_model ``artifacts`` the MLmodel names must exist.

    MLflow's loader adds ``code`` to sys.path and hands every artifact path to
    ``load_context``: a missing one fails only when the server starts. Paths were already
    checked to stay inside the model directory when MLmodel was parsed.
    """
    where = str(model_dir / "MLmodel")
    fix = (
        "save the model again with mlflow (code_paths= / artifacts=), "
        "or copy the file into the model directory"
    )
    named: list[tuple[str, object]] = []
    for flavor, conf in mlmodel.flavors.items():
        if isinstance(conf.get("code"), str):
            named.append((f"flavors.{flavor}.code", conf["code"]))
    pyfunc = mlmodel.pyfunc
    if pyfunc is not None:
        if isinstance(pyfunc.extra.get("python_model"), str):
            named.append(("flavors.python_function.python_model", pyfunc.extra["python_model"]))
        artifacts = pyfunc.extra.get("artifacts")
        if isinstance(artifacts, dict):
            for name, art in artifacts.items():
                if isinstance(art, dict) and isinstance(art.get("path"), str):
                    named.append((f"flavors.python_function.artifacts.{name}.path", art["path"]))
    for field, rel in named:
        assert isinstance(rel, str)
        if not (model_dir / rel).exists():
            raise ModelFormatError(
                f"{field} names '{rel}', which is not in the model directory", where=where, fix=fix
            )
