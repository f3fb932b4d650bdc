"""``--model-config FILE|JSON``: the load-time override of a model's config.

MLflow's ``mlflow.pyfunc.load_model(uri, model_config=...)`` replaces the values of the keys the
model saved in its ``python_function`` flavor's ``config`` (keys it did not save are ignored with
a warning, by MLflow). MLflow's own scoring server reads it from ``SERVING_MODEL_CONFIG`` (JSON).
deployer takes it everywhere a model is loaded for serving: ``deployer serve``, images (baked as
``SERVING_MODEL_CONFIG``, compact JSON, through the Dockerfile's escaping filter), Azure ML's
score.py, the exported bundles and the MLflow plugin's ``-C model_config=...``.

One value, two spellings: a JSON object (text starting with ``{``), or the path of a YAML or JSON
file holding a mapping (MLflow reads such files with ``yaml.safe_load``). Anything else is a
:class:`UsageError` saying what was wrong, where, and how to fix it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deployer.errors import UsageError

#: The variable MLflow's scoring server reads (JSON); images carry the config in it.
ENV = "SERVING_MODEL_CONFIG"

_EXAMPLE = "--model-config '{\"temperature\": 0.2}' or --model-config config.yaml"


def parse_model_config(value: str | os.PathLike[str] | Mapping[str, Any], *, where: str) -> dict:
    """``value`` (a JSON object, a YAML/JSON file path, or an already parsed mapping) -> dict.

    ``where`` names the source in errors (``--model-config``, ``-C model_config``, a variable).
    """
    if isinstance(value, Mapping):
        return _checked(dict(value), where)
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str) or not text.strip():
        raise UsageError(
            "the model config is empty",
            where=where,
            fix=f"pass a JSON object or a YAML/JSON file: {_EXAMPLE}",
        )
    if text.lstrip().startswith(("{", "[", '"')) or text.strip() in ("null", "true", "false"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"the model config is not valid JSON: {exc.msg} at line {exc.lineno} "
                f"column {exc.colno}",
                where=where,
                fix="quote it for your shell as one argument, e.g. " + _EXAMPLE,
            ) from None
        if not isinstance(parsed, dict):
            raise UsageError(
                f"the model config must be a JSON object, got a JSON {_kind(parsed)}",
                where=where,
                fix='wrap the values in an object of config keys, e.g. {"temperature": 0.2}',
            )
        return _checked(parsed, where)
    return _checked(_read_file(Path(text), where), f"{where} {text}")


def model_config_json(config: Mapping[str, Any]) -> str:
    """The canonical text of a config: compact, sorted keys, ASCII only (``\\n`` and friends
    escaped), so the same config always gives the same image digest and no raw control
    character or line separator reaches a rendered file."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def ignored_keys(config: Mapping[str, Any], saved: Mapping[str, Any] | None) -> list[str]:
    """The keys MLflow will ignore: those the model did not save in its pyfunc config."""
    return sorted(set(config) - set(saved or {}))


def _read_file(path: Path, where: str) -> Any:
    import yaml

    if not path.is_file():
        raise UsageError(
            f"model config file {str(path)!r} does not exist"
            if not path.exists()
            else f"model config {str(path)!r} is not a file",
            where=where,
            fix=f"pass an existing YAML/JSON file or a JSON object: {_EXAMPLE}",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"cannot read the model config file {str(path)!r}: {exc}",
            where=where,
            fix="pass a readable UTF-8 YAML/JSON file",
        ) from None
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise UsageError(
            f"the model config file {str(path)!r} is not valid YAML/JSON{at}",
            where=where,
            fix="fix the file's syntax (a YAML or JSON mapping of config keys)",
        ) from None
    if not isinstance(parsed, dict):
        raise UsageError(
            f"the model config file {str(path)!r} holds a {_kind(parsed)}, not a mapping",
            where=where,
            fix="write the config as a mapping of keys, e.g. 'temperature: 0.2'",
        )
    return parsed


def _checked(config: dict[str, Any], where: str) -> dict[str, Any]:
    """Keys are text and values JSON-serializable (MLflow's rule for a pyfunc config; it is also
    how the config travels into an image)."""
    bad = [k for k in config if not isinstance(k, str)]
    if bad:
        raise UsageError(
            f"model config keys must be text, got {bad[0]!r}",
            where=where,
            fix="quote the key",
        )
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"the model config is not JSON-serializable: {exc}",
            where=where,
            fix="use only strings, numbers, booleans, null, lists and mappings (quote dates)",
        ) from None
    return config


def _kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )
