"""The MLmodel file, parsed once at the edge into frozen dataclasses.

Covers every field MLflow writes (1.x "legacy" files to 3.x): ``artifact_path``, ``flavors``
(any name; unknown ones are kept in ``flavors`` and otherwise ignored), ``model_uuid``,
``run_id``, ``model_id``, ``utc_time_created`` (or the 2018 ``time_created``),
``mlflow_version``, ``databricks_runtime``, ``metadata``, ``model_size_bytes``,
``saved_input_example_info`` and ``signature``. Any other top-level key (``prompts``,
``resources``, ``env_vars``...) is kept in ``extra``.

The ``python_function`` flavor is what deployment needs; it is parsed into
:class:`PyFuncFlavor`. Its ``env`` comes in two forms: the MLflow < 2.0 string (a conda file
path) and the ``{conda: ..., virtualenv: ...}`` mapping.

Why no ``import mlflow``: deployer runs on machines (CI runners, laptops) that do not have
MLflow's ~350 MB of dependencies, and MLflow's ``Model.load`` would happily accept paths that
escape the model directory. Every path the pyfunc flavor names is checked here
(:mod:`deployer.model.paths`); identifiers that later get rendered (loader module, predict_fn,
flavor names, ids) are checked against strict patterns.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deployer.errors import DeployerError, ModelFormatError, ModelNotFoundError
from deployer.model.paths import check_relative_path, safe_model_path
from deployer.model.signature import Signature, parse_signature

MLMODEL_FILENAME = "MLmodel"
PYFUNC = "python_function"

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FLAVOR_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_PYTHON_VERSION = re.compile(r"^\d+(\.\d+){0,2}([a-z]+\d*)?\+?$")
# ids and versions: printable, no quotes/backslash/shell characters
_PLAIN = re.compile(r"^[A-Za-z0-9_.:+\-/ ]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_KNOWN_TOP = {
    "artifact_path", "flavors", "model_uuid", "run_id", "model_id", "time_created",
    "utc_time_created", "mlflow_version", "databricks_runtime", "metadata", "model_size_bytes",
    "saved_input_example_info", "signature",
}  # fmt: skip
_KNOWN_PYFUNC = {
    "loader_module",
    "code",
    "data",
    "model_path",
    "env",
    "python_version",
    "predict_fn",
}


@dataclass(frozen=True)
class EnvFiles:
    """Environment files named by the pyfunc flavor (model-relative), None when not declared."""

    conda: str | None
    virtualenv: str | None


@dataclass(frozen=True)
class InputExampleInfo:
    artifact_path: str | None
    type: str | None
    pandas_orient: str | None
    serving_input_path: str | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PyFuncFlavor:
    loader_module: str
    code: str | None
    data: str | None
    model_path: str | None
    env: EnvFiles
    python_version: str | None
    predict_fn: str | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MLModel:
    artifact_path: str | None
    flavors: Mapping[str, Mapping[str, Any]]
    model_uuid: str | None
    run_id: str | None
    model_id: str | None
    utc_time_created: str | None
    mlflow_version: str | None
    databricks_runtime: str | None
    metadata: dict[str, Any] | None
    model_size_bytes: int | None
    saved_input_example_info: InputExampleInfo | None
    signature: Signature | None
    pyfunc: PyFuncFlavor | None
    extra: dict[str, Any] = field(default_factory=dict)


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver: dates stay the strings the file holds."""


_SafeLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(path: Path, *, error: type[DeployerError] = ModelFormatError) -> Any:
    """Read a YAML file safely (no Python tags, no timestamp objects); errors say where."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"not UTF-8 text ({exc.reason})", where=str(path), fix="save the file as UTF-8"
        ) from exc
    except OSError as exc:
        raise error(
            f"cannot read file: {exc.strerror}", where=str(path), fix="check the file's permissions"
        ) from exc
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(
            f"YAML does not parse{pos}: {problem}",
            where=str(path),
            fix="fix the YAML syntax (indentation, quoting), or save the model again with mlflow",
        ) from exc


def parse_mlmodel(model_dir: Path) -> MLModel:
    """Read ``model_dir/MLmodel``. Raises ModelNotFoundError, ModelFormatError, UnsafePathError."""
    model_dir = Path(model_dir)
    file = model_dir / MLMODEL_FILENAME
    if not file.is_file():
        present = sorted(p.name for p in model_dir.iterdir())[:8] if model_dir.is_dir() else []
        listing = f" (it holds: {', '.join(present)})" if present else ""
        raise ModelNotFoundError(
            f"no MLmodel file in the model directory{listing}",
            where=str(model_dir),
            fix="point -m at the directory mlflow.<flavor>.save_model wrote (the one containing "
            "MLmodel)",
        )
    data = load_yaml(file)
    where = str(file)
    if not isinstance(data, dict):
        raise ModelFormatError(
            f"MLmodel must be a YAML mapping, got {type(data).__name__}",
            where=where,
            fix="save the model again with mlflow",
        )
    flavors = _flavors(data.get("flavors"), where)
    pyfunc = _pyfunc(flavors[PYFUNC], model_dir, where) if PYFUNC in flavors else None
    return MLModel(
        artifact_path=_text(data.get("artifact_path"), "artifact_path", where),
        flavors=flavors,
        model_uuid=_plain(data.get("model_uuid"), "model_uuid", where),
        run_id=_plain(data.get("run_id"), "run_id", where),
        model_id=_plain(data.get("model_id"), "model_id", where),
        utc_time_created=_time(data.get("utc_time_created", data.get("time_created")), where),
        mlflow_version=_plain(data.get("mlflow_version"), "mlflow_version", where),
        databricks_runtime=_plain(data.get("databricks_runtime"), "databricks_runtime", where),
        metadata=_metadata(data.get("metadata"), where),
        model_size_bytes=_size(data.get("model_size_bytes"), where),
        saved_input_example_info=_input_example(
            data.get("saved_input_example_info"), model_dir, where
        ),
        signature=parse_signature(data.get("signature"), where=where),
        pyfunc=pyfunc,
        extra={k: v for k, v in data.items() if k not in _KNOWN_TOP},
    )


def _fmt_error(
    what: str, where: str, fix: str = "save the model again with mlflow, or fix MLmodel by hand"
) -> ModelFormatError:
    return ModelFormatError(what, where=where, fix=fix)


def _flavors(raw: object, where: str) -> dict[str, dict[str, Any]]:
    if raw is None:
        raise _fmt_error("MLmodel has no 'flavors' section", where)
    if not isinstance(raw, dict) or not raw:
        raise _fmt_error(
            f"'flavors' must be a non-empty mapping of flavor name -> settings, got {raw!r}", where
        )
    out: dict[str, dict[str, Any]] = {}
    for name, conf in raw.items():
        if not isinstance(name, str) or not _FLAVOR_NAME.match(name):
            raise _fmt_error(
                f"flavor name {name!r} is not a plain name (letters, digits, _ . -)", where
            )
        if conf is None:
            conf = {}
        if not isinstance(conf, dict):
            raise _fmt_error(
                f"flavor '{name}' must be a mapping of settings, "
                f"got {type(conf).__name__} {conf!r}",
                where,
            )
        out[name] = conf
    return out


def _text(value: object, name: str, where: str) -> str | None:
    """Free text (e.g. the run-relative ``artifact_path``, which MLflow 3 may write as a URI).

    It is metadata, never used as a filesystem path by deployer; only control characters
    (newlines) are refused, since they would corrupt logs, labels and tables.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _fmt_error(f"'{name}' must be a string, got {type(value).__name__} {value!r}", where)
    text = str(value)
    if _CONTROL.search(text):
        raise _fmt_error(
            f"'{name}' value {text!r} contains control characters (e.g. a newline)", where
        )
    return text


def _plain(value: object, name: str, where: str) -> str | None:
    """Ids and versions: scalars turned into text, refusing characters that break rendering
    (quotes, backslashes, ``$``, backticks, control characters)."""
    text = _text(value, name, where)
    if text is not None and not _PLAIN.match(text):
        raise _fmt_error(
            f"'{name}' value {text!r} contains characters that are not allowed there", where
        )
    return text


def _time(value: object, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or "\n" in value:
        raise _fmt_error(f"'utc_time_created' must be a timestamp string, got {value!r}", where)
    return value


def _metadata(value: object, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fmt_error(f"'metadata' must be a mapping, got {type(value).__name__}", where)
    return value


def _size(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fmt_error(f"'model_size_bytes' must be a non-negative integer, got {value!r}", where)
    return value


def _opt_str(conf: Mapping[str, Any], key: str, where: str) -> str | None:
    value = conf.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _fmt_error(f"'{key}' must be a string, got {type(value).__name__} {value!r}", where)


def _input_example(raw: object, model_dir: Path, where: str) -> InputExampleInfo | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _fmt_error(f"'saved_input_example_info' must be a mapping, got {raw!r}", where)
    sub = f"{where} (saved_input_example_info)"
    for key in ("artifact_path", "serving_input_path"):
        if raw.get(key) is not None:
            safe_model_path(
                model_dir, raw[key], field=f"saved_input_example_info.{key}", where=where
            )
    return InputExampleInfo(
        artifact_path=_opt_str(raw, "artifact_path", sub),
        type=_plain(raw.get("type"), "saved_input_example_info.type", where),
        pandas_orient=_plain(
            raw.get("pandas_orient"), "saved_input_example_info.pandas_orient", where
        ),
        serving_input_path=_opt_str(raw, "serving_input_path", sub),
        extra={
            k: v
            for k, v in raw.items()
            if k not in ("artifact_path", "type", "pandas_orient", "serving_input_path")
        },
    )


def _python_version(value: object, field_name: str, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        raise _fmt_error(
            f"'{field_name}' is the number {value!r}; YAML reads 3.10 as 3.1",
            where,
            fix=f"quote the version: {field_name}: '3.10'",
        )
    text = str(value)
    if not _PYTHON_VERSION.match(text):
        raise _fmt_error(f"'{field_name}' {text!r} is not a Python version like 3.11.7", where)
    return text


def _env(raw: object, model_dir: Path, where: str) -> EnvFiles:
    field_name = "flavors.python_function.env"
    if raw is None:
        return EnvFiles(conda=None, virtualenv=None)
    if isinstance(raw, str):  # MLflow < 2.0: a conda environment file
        safe_model_path(model_dir, raw, field=field_name, where=where)
        return EnvFiles(conda=raw, virtualenv=None)
    if not isinstance(raw, dict):
        raise _fmt_error(
            f"'{field_name}' must be a file path or a mapping {{conda: ..., virtualenv: ...}}, got "
            f"{raw!r}",
            where,
        )
    unknown = sorted(set(raw) - {"conda", "virtualenv"})
    if unknown:
        raise _fmt_error(
            f"'{field_name}' has unknown keys {unknown} (expected conda, virtualenv)", where
        )
    for key in ("conda", "virtualenv"):
        if raw.get(key) is not None:
            safe_model_path(model_dir, raw[key], field=f"{field_name}.{key}", where=where)
    return EnvFiles(conda=raw.get("conda"), virtualenv=raw.get("virtualenv"))


def _pyfunc(conf: Mapping[str, Any], model_dir: Path, where: str) -> PyFuncFlavor:
    prefix = "flavors.python_function"
    loader = conf.get("loader_module")
    if loader is None:
        raise _fmt_error(
            f"'{prefix}.loader_module' is missing; MLflow needs it to load the model", where
        )
    if not isinstance(loader, str) or not _MODULE.match(loader):
        raise _fmt_error(
            f"'{prefix}.loader_module' {loader!r} is not a dotted Python module name", where
        )
    predict_fn = conf.get("predict_fn")
    if predict_fn is not None and (
        not isinstance(predict_fn, str) or not _IDENTIFIER.match(predict_fn)
    ):
        raise _fmt_error(f"'{prefix}.predict_fn' {predict_fn!r} is not a Python identifier", where)
    for key in ("code", "data", "model_path"):
        if conf.get(key) is not None:
            safe_model_path(model_dir, conf[key], field=f"{prefix}.{key}", where=where)
    _check_extra_paths(conf, model_dir, where)
    return PyFuncFlavor(
        loader_module=loader,
        code=conf.get("code"),
        data=conf.get("data"),
        model_path=conf.get("model_path"),
        env=_env(conf.get("env"), model_dir, where),
        python_version=_python_version(
            conf.get("python_version"), f"{prefix}.python_version", where
        ),
        predict_fn=predict_fn,
        extra={k: v for k, v in conf.items() if k not in _KNOWN_PYFUNC},
    )


def _check_extra_paths(conf: Mapping[str, Any], model_dir: Path, where: str) -> None:
    """Paths MLflow's own loaders open from extra pyfunc keys (python_model, artifacts.*.path)."""
    prefix = "flavors.python_function"
    if isinstance(conf.get("python_model"), str):
        safe_model_path(
            model_dir, conf["python_model"], field=f"{prefix}.python_model", where=where
        )
    artifacts = conf.get("artifacts")
    if isinstance(artifacts, dict):
        for name, art in artifacts.items():
            if isinstance(art, dict) and art.get("path") is not None:
                safe_model_path(
                    model_dir, art["path"], field=f"{prefix}.artifacts.{name}.path", where=where
                )


def describe_flavors(flavors: Mapping[str, Any]) -> str:
    return ", ".join(sorted(flavors)) or "(none)"


__all__ = [
    "MLMODEL_FILENAME",
    "PYFUNC",
    "EnvFiles",
    "InputExampleInfo",
    "MLModel",
    "PyFuncFlavor",
    "check_relative_path",
    "load_yaml",
    "parse_mlmodel",
]
