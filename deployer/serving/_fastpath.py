"""The fast path: the common JSON requests, answered exactly as MLflow would, in far less time.

Where MLflow's ~1.7 ms per one-row request goes (profiled, iris model, pandas 3): building a
DataFrame from a list of rows, casting it to the schema (``cast_df_types_according_to_schema``),
enforcing the schema again in ``PyFuncModel.predict`` (a second round of per-column pandas
work), scikit-learn's own DataFrame validation (~0.5 ms: feature-name and dtype checks through
narwhals), and ``json.dump``. None of that is needed when the request is already clean.

So for column signatures of plain scalar types (double, float, long, integer, boolean, string)
this module builds, straight from the parsed JSON, *the very DataFrame MLflow's enforcement
would hand the model* (same columns in signature order, same dtypes, same index) and calls the
model's predict function the way ``PyFuncModel.predict`` does, minus the re-enforcement. For a
scikit-learn estimator fitted on exactly the signature's float columns, it goes one step
further and passes the float matrix (same values, same memory layout as ``np.asarray(frame)``)
to the estimator, skipping its DataFrame checks.

The contract that keeps this honest: the fast path either returns MLflow's answer or returns
``None``. Anything unusual (a value of another type, None, a missing column, a bad param, a
model error, an extra format key) returns ``None`` and the general path, which *is* MLflow's
code, answers - errors always come from MLflow. Identity is tested by replaying the same
requests through both paths (tests/serving/test_fastpath.py).
"""

from __future__ import annotations

import inspect
import logging
import warnings
from dataclasses import dataclass
from typing import Any

_logger = logging.getLogger("deployer.serving")

_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_LLM_KEYS = ("messages", "prompt", "input")
_NUMERIC = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32"}
_SUPPORTED = {*_NUMERIC, "boolean", "string"}
_INT32 = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class _Column:
    name: str
    type: str  # an MLflow DataType name from _SUPPORTED
    required: bool


#: What :meth:`FastPath.predict_input` returns when it declines (None is a possible answer).
NO_ANSWER = object()


class _Decline(Exception):
    """This request is not for the fast path; let MLflow's code answer it."""


def _decline() -> _Decline:
    return _Decline()


class FastPath:
    """Built once per model; :meth:`invoke_json` returns a ScoringResult or None."""

    def __init__(
        self, model: Any = None, columns: tuple[_Column, ...] = (), params_schema: Any = None
    ) -> None:
        self._model = model
        self._columns = columns
        self._names = tuple(c.name for c in columns)
        self._params_schema = params_schema
        self._enabled = model is not None and bool(columns)
        self._predict_fn: Any = None
        self._takes_params = False
        self._sklearn_fn: Any = None
        self._skip_finite_scan = False
        self._batchable = False
        if self._enabled:
            self._setup_predict()

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls, model: Any, input_schema: Any, params_schema: Any, model_dir: Any = None
    ) -> FastPath:
        columns = _plan_columns(model, input_schema)
        if columns is None:
            return cls()
        fast = cls(model, columns, params_schema)
        fast._self_check(model_dir)
        return fast

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def uses_sklearn_matrix(self) -> bool:
        return self._sklearn_fn is not None

    @property
    def batchable(self) -> bool:
        """Requests may be scored together (see :mod:`deployer.serving._batching`)."""
        return self._batchable and self._sklearn_fn is not None

    def disable_batching(self) -> None:
        self._batchable = False

    def prepare(self, payload: dict[str, Any]) -> Any:
        """The float matrix of a request the matrix shortcut would answer, or None."""
        if not self.batchable:
            return None
        try:
            frame = self._frame(payload)
            if frame is None:
                return None
            self._params(payload.get("params"))
            return frame.matrix()
        except Exception:  # noqa: BLE001 - _Decline or anything odd: the normal path decides
            return None

    def from_columns(self, arrays: dict[str, Any], params: Any) -> Any:
        """The model input of an Open Inference Protocol request whose tensors are the
        signature's columns, already cast by the V2 adapter (one 1-D array per tensor): the
        frame MLflow's enforcement would hand the model, when every tensor has exactly the
        column's dtype (no cast for enforcement to make), none is unknown and no required one
        is missing; else None. ``params`` must pass the params schema (else None)."""
        if not self._enabled or any(name not in self._names for name in arrays):
            return None
        checked: dict[str, Any] = {}
        for col in self._columns:
            arr = arrays.get(col.name)
            if arr is None:
                if col.required:
                    return None
                continue
            if col.type == "string":
                values = arr.tolist()
                if arr.dtype.kind != "O" or set(map(type, values)) != {str}:
                    return None
                checked[col.name] = values
                continue
            want = "bool" if col.type == "boolean" else _NUMERIC[col.type]
            if arr.ndim != 1 or str(arr.dtype) != want:
                return None
            checked[col.name] = arr
        if len({len(v) for v in checked.values()}) != 1:
            return None
        try:
            self._params(params)
        except _Decline:
            return None
        return _Matrixable(checked, None, self._names)

    def predict_input(self, frame: Any, params: Any) -> Any:
        """The model's raw answer for a frame :meth:`from_columns` built, or ``_NO_ANSWER``
        when the fast path declines (the caller then takes MLflow's path)."""
        try:
            return self._predict(frame, self._params(params))
        except _Decline:
            return NO_ANSWER
        except Exception as exc:  # noqa: BLE001 - MLflow's path re-runs and reports it
            _logger.debug("fast path declined after %s: %s", type(exc).__name__, exc)
            if self._sklearn_fn is not None and not isinstance(exc, (ValueError, TypeError)):
                self._sklearn_fn = None
            return NO_ANSWER

    def frame_matrix(self, frame: Any) -> Any:
        """The float matrix of a DataFrame that is already what enforcement would produce
        (exactly the signature's columns, in order, all float64), when the sklearn matrix
        shortcut is on; else None."""
        if self._sklearn_fn is None or tuple(frame.columns) != self._names:
            return None
        if any(str(dtype) != "float64" for dtype in frame.dtypes):
            return None
        import numpy as np

        return np.asarray(frame, dtype="float64")

    def predict_matrix(self, matrix: Any) -> Any:
        """The estimator on a float matrix. Non-finite input raises ValueError (callers fall
        back to MLflow's path, whose error it is); finite input skips scikit-learn's own
        finiteness scan (~30% of a small predict), which can only pass it."""
        import numpy as np

        if not np.isfinite(matrix).all():
            raise ValueError("non-finite input: left to MLflow's path")
        config = self._sklearn_config
        if config is None:
            return self._sklearn_fn(matrix)
        before = config.get("assume_finite", False)
        config["assume_finite"] = True
        try:
            return self._sklearn_fn(matrix)
        finally:
            config["assume_finite"] = before

    @property
    def _sklearn_config(self) -> Any:
        """This thread's mutable scikit-learn config (``config_context`` costs more than the
        scan it would skip), only for a lone estimator: in a Pipeline a later step's check
        can see values the first step produced, so nothing is skipped there."""
        if not self._skip_finite_scan:
            return None
        try:
            from sklearn._config import _get_threadlocal_config

            config = _get_threadlocal_config()
        except Exception:  # noqa: BLE001 - private API moved: just don't skip the scan
            return None
        return config if isinstance(config, dict) and "assume_finite" in config else None

    def _setup_predict(self) -> None:
        model = self._model
        fn = model._predict_fn
        self._predict_fn = fn
        params_arg = inspect.signature(fn).parameters.get("params")
        self._takes_params = bool(params_arg and params_arg.kind != inspect.Parameter.VAR_KEYWORD)
        self._sklearn_fn = _sklearn_matrix_fn(model, fn, self._columns)
        self._skip_finite_scan = (
            self._sklearn_fn is not None
            and type(model._model_impl.sklearn_model).__name__ != "Pipeline"
        )

    def _self_check(self, model_dir: Any) -> None:
        """Score an example through MLflow's code and through the matrix shortcut; any
        difference (or error) turns the shortcut off for this model."""
        if self._sklearn_fn is None:
            return
        try:
            import numpy as np
            from mlflow.pyfunc.scoring_server import infer_and_parse_data

            payload = {
                "dataframe_split": {
                    "columns": list(self._names),
                    "data": [[0.5] * len(self._names), [1.5] * len(self._names)],
                }
            }
            if model_dir is not None:
                from deployer.serving.core import decode_json

                example = self._model.metadata.get_serving_input(str(model_dir))
                saved = decode_json(example) if example else None
                if isinstance(saved, dict) and self._frame(saved) is not None:
                    payload = saved
            frame = self._frame(payload)
            by_matrix = self.predict_matrix(frame.matrix())
            general_input = infer_and_parse_data(
                {k: v for k, v in payload.items() if k in _FORMATS},
                self._model.metadata.get_input_schema(),
            )
            by_mlflow = self._model.predict(general_input)
            same = type(by_mlflow) is type(by_matrix) and np.array_equal(
                np.asarray(by_mlflow), np.asarray(by_matrix)
            )
        except Exception as exc:  # noqa: BLE001
            _logger.debug("sklearn matrix self-check failed: %s", exc)
            same = False
        if not same:
            _logger.info(
                "fast path: the estimator answers differently on a matrix; using the DataFrame path"
            )
            self._sklearn_fn = None
            return
        from deployer.serving._batching import rows_independent

        self._batchable = rows_independent(self.predict_matrix, frame.matrix())
        _logger.debug(
            "fast path: sklearn matrix shortcut on; batching %s",
            "on" if self._batchable else "off (rows are not independent)",
        )

    # ------------------------------------------------------------------ the request
    def invoke_json(self, payload: dict[str, Any]) -> Any:
        if not self._enabled:
            return None
        try:
            frame = self._frame(payload)
            if frame is None:
                return None
            params = self._params(payload.get("params"))
            raw = self._predict(frame, params)
        except _Decline:
            return None
        except Exception as exc:  # noqa: BLE001 - MLflow's path re-runs and reports it
            _logger.debug("fast path declined after %s: %s", type(exc).__name__, exc)
            if self._sklearn_fn is not None and not isinstance(exc, (ValueError, TypeError)):
                self._sklearn_fn = None
            return None
        from deployer.serving._encode import encode_predictions
        from deployer.serving.core import ScoringResult

        return ScoringResult(200, encode_predictions(raw), "application/json")

    def _frame(self, payload: dict[str, Any]) -> Any:
        """The input MLflow's parsing + enforcement would produce, or None."""
        fmt = None
        for key in payload:
            if key in _FORMATS:
                if fmt is not None:
                    return None
                fmt = key
            elif key in _LLM_KEYS:
                return None
        if fmt is None:
            return None
        data = payload[fmt]
        if fmt == "dataframe_split":
            return self._from_split(data)
        if fmt == "dataframe_records":
            return self._from_records(data)
        if fmt == "inputs":
            return self._from_inputs(data)
        return self._from_instances(data)

    def _params(self, params: Any) -> Any:
        from mlflow.exceptions import MlflowException
        from mlflow.models.utils import _enforce_params_schema

        if params is None and self._params_schema is None:
            return None
        try:
            return _enforce_params_schema(params, self._params_schema)
        except MlflowException:
            raise _decline() from None

    def _predict(self, frame: Any, params: Any) -> Any:
        if self._sklearn_fn is not None:
            return self.predict_matrix(frame.matrix())
        frame = frame.frame()
        # PyFuncModel.predict, minus the schema enforcement the frame already satisfies.
        from mlflow.pyfunc import (
            Context,
            _get_dependencies_schema_from_model,
            _try_get_prediction_context,
            set_prediction_context,
        )

        model = self._model
        context = _try_get_prediction_context() or Context()
        with set_prediction_context(context):
            if schema := _get_dependencies_schema_from_model(model._model_meta):
                context.update(**schema)
            if model.model_id:
                context.update(model_id=model.model_id)
            if self._takes_params:
                return self._predict_fn(frame, params=params)
            return self._predict_fn(frame)

    # ------------------------------------------------------------------ formats
    def _from_split(self, split: Any) -> Any:
        if type(split) is not dict or "data" not in split:
            return None
        if any(k not in ("columns", "data", "index") for k in split):
            return None
        columns, rows, index = split.get("columns"), split["data"], split.get("index")
        if type(columns) is not list or type(rows) is not list or not rows:
            return None
        width = len(columns)
        if set(map(type, columns)) != {str} or len(set(columns)) != width:
            return None
        if set(map(type, rows)) != {list} or set(map(len, rows)) != {width}:
            return None
        index = _check_index(index, len(rows))
        position = {name: i for i, name in enumerate(columns)}
        transposed = list(zip(*rows, strict=True))
        values = {}
        for col in self._columns:
            at = position.get(col.name)
            if at is None:
                if col.required:
                    return None
                continue
            values[col.name] = transposed[at]
        return self._build(values, index)

    def _from_records(self, records: Any) -> Any:
        if type(records) is not list or not records or set(map(type, records)) != {dict}:
            return None
        values = {}
        first = records[0]
        for col in self._columns:
            if col.name not in first:
                if col.required or any(col.name in r for r in records):
                    return None
                continue
            try:
                values[col.name] = [r[col.name] for r in records]
            except KeyError:
                return None
        return self._build(values, None)

    def _from_inputs(self, inputs: Any) -> Any:
        # TF-serving "columnar" form {"col": [...]}: MLflow casts each with np.array(v, dtype)
        if type(inputs) is not dict or not inputs:
            return None
        if set(map(type, inputs.values())) != {list}:
            return None
        lengths = set(map(len, inputs.values()))
        if len(lengths) != 1 or 0 in lengths:
            return None
        # extra keys get np.array(v) in MLflow; they must make 1-D columns too
        for key, value in inputs.items():
            if key not in self._names and not _flat_scalars(value):
                return None
        return self._cast_columns({c.name: inputs.get(c.name) for c in self._columns})

    def _from_instances(self, instances: Any) -> Any:
        if type(instances) is not list or not instances or set(map(type, instances)) != {dict}:
            return None
        keys = instances[0].keys()
        if any(r.keys() != keys for r in instances):
            return None
        columns = {}
        for name in keys:
            col = [r[name] for r in instances]
            if not _flat_scalars(col):
                return None
            columns[name] = col
        return self._cast_columns({c.name: columns.get(c.name) for c in self._columns})

    # ------------------------------------------------------------------ building
    def _cast_columns(self, values: dict[str, Any]) -> Any:
        """``inputs``/``instances``: MLflow's ``np.array(values, spec dtype)`` per column."""
        import numpy as np

        arrays = {}
        for col in self._columns:
            raw = values.get(col.name)
            if raw is None:
                if col.required:
                    return None
                continue
            if col.type == "string" or not _flat_scalars(raw):
                return None
            dtype = "bool" if col.type == "boolean" else _NUMERIC[col.type]
            if col.type != "boolean" and any(type(v) is str for v in raw):
                return None  # numpy would parse numeric strings; leave that to MLflow
            arr = np.array(raw, dtype=dtype)
            if arr.ndim != 1:
                return None
            arrays[col.name] = arr
        return _Matrixable(arrays, None, self._names)

    def _build(self, values: dict[str, Any], index: Any) -> Any:
        """dataframe_split/records: pandas' inference then MLflow's cast, done per column."""
        import numpy as np

        arrays: dict[str, Any] = {}
        for col in self._columns:
            if col.name not in values:
                continue
            raw = values[col.name]
            if col.type == "string":
                if set(map(type, raw)) != {str}:
                    return None
                arrays[col.name] = list(raw)
                continue
            arr = np.array(raw)
            if arr.ndim != 1:
                return None
            kind = arr.dtype.kind
            if col.type == "boolean":
                if kind != "b":
                    return None
            elif col.type in ("double", "float"):
                if kind not in "fi":
                    return None
                arr = arr.astype(_NUMERIC[col.type], copy=False)
            elif kind != "i":  # long / integer
                return None
            elif col.type == "integer":
                if arr.size and (arr.min() < _INT32[0] or arr.max() > _INT32[1]):
                    return None
                arr = arr.astype("int32")
            else:
                arr = arr.astype("int64", copy=False)
            arrays[col.name] = arr
        return _Matrixable(arrays, index, self._names)


class _Matrixable:
    """Columns ready for the model: as a DataFrame, or as the float matrix pandas would give."""

    __slots__ = ("arrays", "index", "names")

    def __init__(self, arrays: dict[str, Any], index: Any, names: tuple[str, ...]) -> None:
        self.arrays = arrays
        self.index = index
        self.names = names

    def frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.arrays, index=self.index)

    def matrix(self) -> Any:
        return _matrix(self)


def _matrix(frame: _Matrixable) -> Any:
    """The (rows, cols) float64 array, Fortran-ordered like ``np.asarray(DataFrame)``."""
    import numpy as np

    return np.array([frame.arrays[n] for n in frame.names], dtype="float64").T


def _check_index(index: Any, n: int) -> Any:
    if index is None:
        return None
    if type(index) is not list or len(index) != n:
        raise _decline()
    kinds = set(map(type, index))
    if not kinds <= {int, str} or len(kinds) != 1:
        raise _decline()
    return index


def _flat_scalars(values: list[Any]) -> bool:
    return set(map(type, values)) <= {int, float, bool, str} and bool(values)


def _plan_columns(model: Any, schema: Any) -> tuple[_Column, ...] | None:
    """The signature's columns, if every one is a plain scalar type the fast path knows."""
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    meta = model.metadata
    if meta._is_signature_from_type_hint() or meta._is_type_hint_from_example():
        return None
    from mlflow.types.schema import DataType

    columns = []
    for spec in schema.inputs:
        if not isinstance(spec.type, DataType) or spec.type.name not in _SUPPORTED:
            return None
        columns.append(_Column(spec.name, spec.type.name, bool(spec.required)))
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        return None
    return tuple(columns)


def _sklearn_matrix_fn(model: Any, fn: Any, columns: tuple[_Column, ...]) -> Any:
    """The estimator method to call with a float matrix, when that is provably equivalent."""
    impl = model._model_impl
    if type(impl).__name__ != "_SklearnModelWrapper" or type(impl).__module__ != "mlflow.sklearn":
        return None
    est = impl.sklearn_model
    if getattr(fn, "__func__", None) is type(impl).predict:
        target = est.predict
    elif getattr(fn, "__self__", None) is est:
        target = fn
    else:
        return None
    if not all(c.type == "double" and c.required for c in columns):
        return None
    names = getattr(est, "feature_names_in_", None)
    if names is None or list(names) != [c.name for c in columns]:
        return None
    if not _plain_sklearn(est):
        return None
    # The matrix carries no names; the estimator warns about that on every call.
    warnings.filterwarnings(
        "ignore", message="X does not have valid feature names", category=UserWarning
    )
    return target


def _plain_sklearn(est: Any, depth: int = 0) -> bool:
    """A scikit-learn estimator (or Pipeline of them) that never looks at column names."""
    if depth > 4 or not type(est).__module__.startswith("sklearn."):
        return False
    if getattr(est, "_sklearn_output_config", None):
        return False  # set_output(transform="pandas") changes what the next step sees
    name = type(est).__name__
    if name in ("ColumnTransformer", "FunctionTransformer", "FeatureUnion"):
        return False
    if name == "Pipeline":
        return all(
            _plain_sklearn(step, depth + 1)
            for _, step in est.steps
            if step not in (None, "passthrough")
        )
    return not any(
        hasattr(est, a)
        for a in ("estimator", "estimators", "base_estimator", "steps", "transformers")
    )
