"""Azure ML adapter: the ``score.py`` entry script and the request translation behind it.

Azure ML's inference server (``azmlinfsrv``, azureml-inference-server-http) imports an entry
script, calls its ``init()`` once and its ``run(raw_data)`` per request with the body as a
``str``. Azure's own "no-code" MLflow deployments accept::

    {"input_data": {"columns": [...], "index": [...], "data": [[...]]} | [...] | {...},
     "params": {...}}

and answer a bare JSON list of predictions. Clients written against MLflow's own server send
``{"dataframe_split": ...}`` and friends instead. This module accepts both, and is a thin
translation over :class:`deployer.serving.core.ScoringCore`:

* Azure's ``input_data`` becomes the equivalent MLflow payload (split dict -> ``dataframe_split``;
  list -> ``inputs`` (Azure turns it into a numpy array, as MLflow's ``inputs`` does); any other
  dict -> ``inputs`` (named tensors / columns)), and everything is then parsed by the core, so
  casts, signature checks and error codes are MLflow's, not a second parser's.
* Bad input never becomes Azure's opaque 500 ("An unexpected error occurred in scoring
  script"): it comes back as a 4xx ``AMLResponse`` carrying ``{"error_code", "message"}``.

The script itself is rendered from ``templates/score.py.j2`` by :func:`render_score_py`, which
escapes every value in Python (``repr``), so the template stays logic-free.

Where the model lives: Azure mounts a registered model under ``$AZUREML_MODEL_DIR``, usually as
``$AZUREML_MODEL_DIR/<folder it was registered from>/MLmodel``. :func:`find_model_dir` uses the
folder named in the script (or ``DEPLOYER_MODEL_SUBDIR``), else the root itself if it holds an
``MLmodel``, else the single folder below it that does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from deployer.errors import RenderError, ServingError, UnsafePathError

#: The environment variable Azure sets to the mounted model folder.
MODEL_DIR_ENV = "AZUREML_MODEL_DIR"
#: Overrides the rendered model sub-folder at deploy time.
SUBDIR_ENV = "DEPLOYER_MODEL_SUBDIR"

_MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_AZURE_KEYS = frozenset({"input_data", "params"})
#: How deep below AZUREML_MODEL_DIR to look for an MLmodel file.
_SEARCH_DEPTH = 3


# ---------------------------------------------------------------------------- model location
def _check_subdir(subdir: str) -> PurePosixPath:
    """A relative path with no ``..`` parts: the only sub-folders the script may name."""
    path = PurePosixPath(subdir.replace("\\", "/"))
    if not subdir.strip() or path.is_absolute() or ".." in path.parts or "\x00" in subdir:
        raise UnsafePathError(
            f"model sub-folder {subdir!r} must be a relative path inside the model directory",
            where=SUBDIR_ENV,
            fix="name the folder below AZUREML_MODEL_DIR that holds MLmodel, e.g. 'model'",
        )
    return path


def find_model_dir(root: str | Path, subdir: str | None = None) -> Path:
    """The folder holding ``MLmodel`` under ``root`` (Azure's ``AZUREML_MODEL_DIR``).

    ``subdir`` names it explicitly; otherwise ``root`` itself, or the one folder within
    ``_SEARCH_DEPTH`` levels that holds an ``MLmodel``. Raises :class:`ServingError` when there
    is none or more than one, and :class:`UnsafePathError` when ``subdir`` escapes ``root``.
    """
    base = Path(root)
    if not base.is_dir():
        raise ServingError(
            "the Azure ML model directory does not exist",
            where=f"{MODEL_DIR_ENV}={root}",
            fix="register the model folder with the deployment, or pass azmlinfsrv --model_dir",
        )
    if subdir:
        rel = _check_subdir(subdir)
        candidate = (base / rel).resolve()
        if not candidate.is_relative_to(base.resolve()):
            raise UnsafePathError(
                f"model sub-folder {subdir!r} resolves outside the model directory",
                where=str(base),
                fix="use a folder inside AZUREML_MODEL_DIR (symbolic links may not leave it)",
            )
        if not (candidate / "MLmodel").is_file():
            raise ServingError(
                f"no MLmodel file in the model sub-folder {subdir!r}",
                where=str(base / rel),
                fix=f"check the folder name (found: {_describe(_mlmodel_dirs(base))})",
            )
        return candidate
    if (base / "MLmodel").is_file():
        return base.resolve()
    found = _mlmodel_dirs(base)
    if len(found) == 1:
        return found[0].resolve()
    if not found:
        raise ServingError(
            "no MLmodel file under the Azure ML model directory",
            where=str(base),
            fix="register the folder that MLflow saved (the one containing MLmodel) as the model",
        )
    raise ServingError(
        f"several MLflow models under the Azure ML model directory: {_describe(found, base)}",
        where=str(base),
        fix=f"name one with the {SUBDIR_ENV} environment variable, or render score.py "
        "with model_subdir=...",
    )


def _mlmodel_dirs(base: Path) -> list[Path]:
    found: list[Path] = []
    level = [base]
    for _ in range(_SEARCH_DEPTH):
        nxt: list[Path] = []
        for folder in level:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                continue
            for child in children:
                (found if (child / "MLmodel").is_file() else nxt).append(child)
        level = nxt
    return found


def _describe(paths: list[Path], base: Path | None = None) -> str:
    if not paths:
        return "none"
    shown = [str(p.relative_to(base)) if base else p.name for p in paths[:5]]
    return ", ".join(shown) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")


# ---------------------------------------------------------------------------- request translation
def to_mlflow_payload(body: Any) -> dict[str, Any]:
    """Azure's ``{"input_data", "params"}`` body -> the equivalent MLflow JSON payload.

    MLflow payloads (``dataframe_split``...) pass through unchanged: the core checks them.
    Raises :class:`~deployer.serving.core.ScoringError` (400 BAD_REQUEST) for bodies that are
    neither.
    """
    from deployer.serving.core import bad_request

    if not isinstance(body, dict) or "input_data" not in body:
        return body  # type: ignore[no-any-return]  # MLflow formats; the core validates them
    unknown = sorted(set(body) - _AZURE_KEYS)
    if unknown:
        both = [k for k in unknown if k in _MLFLOW_KEYS]
        detail = (
            f"it mixes 'input_data' with the MLflow field(s) {both}"
            if both
            else f"unexpected top-level field(s) {unknown}"
        )
        raise bad_request(
            f"Invalid input: {detail}. Send either {{'input_data': ..., 'params': {{...}}}} "
            f"(Azure ML) or exactly one of {list(_MLFLOW_KEYS)} (MLflow)."
        )
    data = body["input_data"]
    if isinstance(data, dict) and "columns" in data and "data" in data:
        payload: dict[str, Any] = {"dataframe_split": data}
    elif isinstance(data, (list, dict)):
        payload = {"inputs": data}
    else:
        raise bad_request(
            "Invalid input: 'input_data' must be a split-orient table "
            "{'columns': [...], 'index': [...], 'data': [[...]]}, a list, or a dict of "
            f"named inputs; got {type(data).__name__}."
        )
    if "params" in body and body["params"] is not None:
        payload["params"] = body["params"]
    return payload


@dataclass(frozen=True)
class ScoreOutcome:
    """What ``run()`` answers: ``payload`` is the predictions (status 200) or an error dict."""

    status: int
    payload: Any

    @property
    def ok(self) -> bool:
        return self.status == 200

    def to_azure(self, response_class: Any) -> Any:
        """The value ``run()`` returns: predictions, or ``response_class(error, status)``.

        ``response_class`` is ``AMLResponse`` under azmlinfsrv; ``json_str=True`` makes it
        ``json.dumps`` the error dict and set ``application/json``. Without it (a smoke test
        outside the server) the error dict is returned as is.
        """
        if self.ok or response_class is None:
            return self.payload
        return response_class(self.payload, self.status, json_str=True)


class AzureScorer:
    """One loaded model answering Azure's ``run(raw_data)`` calls."""

    def __init__(self, core: Any) -> None:
        self.core = core

    @classmethod
    def load(
        cls,
        model_root: str | Path,
        subdir: str | None = None,
        *,
        model_name: str | None = None,
        model_config: dict[str, Any] | None = None,
    ) -> AzureScorer:
        """``model_config``: the load-time config override; without it ``SERVING_MODEL_CONFIG``
        (set in the image or the deployment's environment) is honoured by the scoring core."""
        from deployer.serving.core import ScoringCore

        return cls(
            ScoringCore.load(
                find_model_dir(model_root, subdir), name=model_name, model_config=model_config
            )
        )

    @classmethod
    def from_environment(
        cls, default_subdir: str | None = None, *, model_name: str | None = None
    ) -> AzureScorer:
        """Load from ``$AZUREML_MODEL_DIR`` (and ``$DEPLOYER_MODEL_SUBDIR``, if set)."""
        root = os.environ.get(MODEL_DIR_ENV)
        if not root:
            raise ServingError(
                f"{MODEL_DIR_ENV} is not set",
                fix="run under Azure ML, or locally: azmlinfsrv --entry_script score.py "
                "--model_dir DIR",
            )
        scorer = cls.load(root, os.environ.get(SUBDIR_ENV) or default_subdir, model_name=model_name)
        from deployer.serving.core import freeze_loaded_heap

        freeze_loaded_heap()  # azmlinfsrv's worker serves from here on
        return scorer

    def score(self, raw_data: str | bytes) -> ScoreOutcome:
        """One request body -> predictions (a JSON-ready list) or an error; never raises
        for bad input."""
        from deployer.serving.core import ScoringError, bad_request, decode_json

        try:
            if not raw_data or not raw_data.strip():
                # azmlinfsrv hands run() an empty string when the body was sent as a form
                # (e.g. curl -d without a Content-Type): say so instead of "invalid JSON".
                raise bad_request(
                    "Invalid input: the request body is empty. Send a JSON body with "
                    "'Content-Type: application/json'."
                )
            payload = to_mlflow_payload(decode_json(raw_data))
            data, params = self.core.parse_json_payload(payload)
            return ScoreOutcome(200, self.core.predict_records(data, params))
        except ScoringError as exc:
            return ScoreOutcome(exc.status, exc.to_dict())


# ---------------------------------------------------------------------------- rendering
def render_score_py(*, model_subdir: str | None = None, model_name: str | None = None) -> str:
    """Render ``templates/score.py.j2``.

    ``model_subdir``: the folder below ``AZUREML_MODEL_DIR`` holding ``MLmodel`` (None: find
    it at start-up). ``model_name``: shown in a comment and used as the core's model name.
    Every value is turned into a Python literal here (``repr``), never spliced raw.
    """
    import jinja2

    from deployer import __version__
    from deployer.resources import templates_dir

    if model_subdir is not None:
        try:
            model_subdir = str(_check_subdir(model_subdir))
        except UnsafePathError as exc:
            raise RenderError(exc.what, where="model_subdir", fix=exc.fix) from None
    for label, value in (("model_subdir", model_subdir), ("model_name", model_name)):
        if value is not None and any(ord(c) < 32 or c == "\x7f" for c in value):
            raise RenderError(
                f"{label} contains control characters: {value!r}",
                where=label,
                fix="use a plain folder / model name",
            )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    return env.get_template("score.py.j2").render(
        deployer_version=repr(__version__),
        model_subdir=repr(model_subdir),
        model_name=repr(model_name),
    )
