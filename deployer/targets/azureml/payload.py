"""Request bodies for Azure ML endpoints: MLflow's JSON formats -> Azure's ``input_data``.

Azure ML's MLflow scoring (no-code deployments, and deployer's own ``score.py``) takes
``{"input_data": {"columns", "index", "data"} | [...] | {...}, "params": {...}}``. deployer's
users and MLflow's examples speak ``dataframe_split`` / ``dataframe_records`` / ``instances``
/ ``inputs``. The smoke test (built from the model's saved serving example) and
``deployer predict --target azureml`` convert here, so both send what Azure expects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deployer.errors import UsageError

_MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def to_input_data(payload: Any, *, where: str = "request body") -> dict[str, Any]:
    """An Azure ``input_data`` body for an MLflow-style (or already Azure-style) JSON payload."""
    if not isinstance(payload, dict):
        raise UsageError(
            f"the request body must be a JSON object, got {type(payload).__name__}",
            where=where,
            fix='send {"input_data": ...} or an MLflow body such as {"dataframe_split": ...}',
        )
    if "input_data" in payload:
        return payload
    keys = [k for k in _MLFLOW_KEYS if k in payload]
    if len(keys) != 1:
        raise UsageError(
            "cannot tell the input format: expected input_data or exactly one of "
            f"{', '.join(_MLFLOW_KEYS)}, got keys {sorted(payload)}",
            where=where,
            fix='send {"input_data": {"columns": [...], "index": [...], "data": [[...]]}} or '
            '{"dataframe_split": ...}',
        )
    key = keys[0]
    value = payload[key]
    if key == "dataframe_split":
        data = _split(value, where)
    elif key == "dataframe_records" or (key == "instances" and _records(value)):
        data = _records_to_split(value, where)
    else:
        data = value
    body: dict[str, Any] = {"input_data": data}
    if payload.get("params") is not None:
        body["params"] = payload["params"]
    return body


def _split(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or "data" not in value:
        raise UsageError(
            "dataframe_split must be an object with 'data'",
            where=where,
            fix='{"dataframe_split": {"columns": [...], "data": [[...]]}}',
        )
    rows = value["data"]
    out: dict[str, Any] = {}
    if "columns" in value:
        out["columns"] = value["columns"]
    out["index"] = value.get("index", list(range(len(rows) if isinstance(rows, list) else 0)))
    out["data"] = rows
    return out


def _records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def _records_to_split(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise UsageError(
            "dataframe_records must be a list of objects",
            where=where,
            fix='{"dataframe_records": [{"col": 1}, ...]}',
        )
    columns: list[str] = []
    for row in value:
        for name in row:
            if name not in columns:
                columns.append(name)
    return {
        "columns": columns,
        "index": list(range(len(value))),
        "data": [[row.get(c) for c in columns] for row in value],
    }


def serving_example(model_dir: Path, serving_input_path: str | None) -> dict[str, Any] | None:
    """The model's saved serving example (``serving_input_example.json``) as input_data."""
    name = serving_input_path or "serving_input_example.json"
    path = (model_dir / name).resolve()
    try:
        path.relative_to(model_dir.resolve())
    except ValueError:
        return None
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
        return to_input_data(payload, where=str(path))
    except (ValueError, UsageError, OSError):
        return None


def predict_body(body: bytes, content_type: str) -> bytes:
    """``deployer predict --target azureml`` body -> the JSON an Azure endpoint takes."""
    main = (content_type or "application/json").split(";")[0].strip().lower()
    if main != "application/json":
        raise UsageError(
            f"Azure ML endpoints take JSON, not {main}",
            where="--content-type",
            fix='send JSON: {"input_data": ...} or an MLflow body such as {"dataframe_split": ...}',
        )
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise UsageError(
            f"the request body is not valid JSON: {exc}",
            where="request body",
            fix="check the --data / --input file",
        ) from exc
    return json.dumps(to_input_data(payload)).encode()
