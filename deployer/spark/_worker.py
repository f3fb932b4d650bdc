"""The executor side of :func:`deployer.spark.spark_udf`: runs inside Spark's Python workers.

Imported on executors, so it imports only the standard library, pandas/numpy, pyspark's types
(Spark puts ``pyspark.zip`` on every worker's path), MLflow and
:mod:`deployer.serving.core`: the same closure the model images carry (shipped inside the
packed environment for ``env_manager="virtualenv"``).

* **One load per Python worker process.** Spark reuses its Python workers across tasks
  (``spark.python.worker.reuse``, on by default); the loaded :class:`ScoringCore` is kept in a
  module-level dict, so a worker loads the model once, not once per task or per Arrow batch.
* **MLflow's semantics for each batch**: column naming (``_predict_row_batch`` in
  ``mlflow.pyfunc.spark_udf``), ``PyFuncModel.predict`` through the scoring core (signature
  enforcement, params), and the conversion of predictions to ``result_type``, with MLflow's
  own helpers (``_convert_array_values``, ``_convert_struct_values``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: model key -> ScoringCore, for the life of this Python worker process.
_CORES: dict[str, Any] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class UdfSpec:
    """Everything a worker needs, pickled into the UDF (small: no model, no metadata)."""

    model_key: str  # digest of the model files: the cache key
    model_path: str | None  # a path every worker can read (local master), or None
    model_archive: str | None  # the name the model archive unpacks to (SparkFiles), or None
    input_names: tuple[str, ...] | None  # the signature's input names; None: no signature
    required_count: int
    result_type: Any  # a pyspark DataType
    params: dict[str, Any] | None


def load_core(spec: UdfSpec) -> Any:
    """The worker's ScoringCore for ``spec`` (loaded on first use, then reused)."""
    core = _CORES.get(spec.model_key)
    if core is not None:
        return core
    with _LOCK:
        core = _CORES.get(spec.model_key)
        if core is None:
            from deployer.serving.core import ScoringCore

            core = ScoringCore.load(_model_dir(spec))
            _CORES[spec.model_key] = core
    return core


def loads() -> int:
    """How many models this worker process has loaded (tests check: once per process)."""
    return len(_CORES)


def _model_dir(spec: UdfSpec) -> str:
    if spec.model_path is not None:
        return spec.model_path
    from pyspark import SparkFiles

    path = SparkFiles.get(spec.model_archive or "")
    if not os.path.isdir(path):  # executors unpack archives into their working directory
        path = os.path.abspath(spec.model_archive or "")
    return path


def score_batches(spec: UdfSpec, iterator: Iterator[Any]) -> Iterator[Any]:
    """The body of the pandas iterator UDF: one prediction Series/DataFrame per Arrow batch."""
    import pandas

    core = load_core(spec)
    for batch in iterator:
        args = (batch,) if isinstance(batch, (pandas.Series, pandas.DataFrame)) else batch
        if len(args[0]) > 0:
            yield predict_batch(core, spec, args)


def udf_body(spec: UdfSpec) -> Any:
    """The function PySpark pickles: ``Iterator[tuple of Series] -> Iterator[Series]``.

    Annotations are set as objects (this module's are strings): PySpark reads them to pick
    the iterator-of-batches UDF form.
    """
    import typing

    import pandas

    def body(iterator: Any) -> Any:
        return score_batches(spec, iterator)

    out = pandas.DataFrame if _is_struct(spec.result_type) else pandas.Series
    body.__annotations__ = {
        "iterator": typing.Iterator[typing.Tuple[typing.Union[pandas.Series, pandas.DataFrame], ...]],  # noqa: UP006, UP007
        "return": typing.Iterator[out],
    }
    return body


def _is_struct(data_type: Any) -> bool:
    from pyspark.sql.types import StructType

    return isinstance(data_type, StructType)


def input_frame(spec: UdfSpec, args: tuple[Any, ...]) -> Any:
    """The DataFrame the model sees, named as MLflow's spark_udf names it."""
    import pandas

    args = tuple(args)
    if len(args) == 1 and isinstance(args[0], pandas.DataFrame):
        return args[0]
    if spec.input_names is None:
        names = [str(i) for i in range(len(args))]
    else:
        names = list(spec.input_names)
        if len(args) > len(names):
            args = args[: len(names)]
        if len(args) < spec.required_count:
            from mlflow.exceptions import MlflowException

            raise MlflowException(
                f"Model input is missing required columns. Expected {len(names)} required"
                f" input columns {names}, but the model received only {len(args)} "
                "unnamed input columns (Since the columns were passed unnamed they are"
                " expected to be in the order specified by the schema)."
            )
    if len(args) == len(names) and all(isinstance(a, pandas.Series) and a.dtype == "float64" for a in args) \
            and all(a.index.equals(args[0].index) for a in args[1:]):
        # the same frame (columns, float64 dtypes, index), built as one block in one copy
        import numpy as np

        return pandas.DataFrame(np.column_stack([a.to_numpy() for a in args]), columns=names,
                                index=args[0].index)
    return pandas.DataFrame(
        data={
            names[i]: arg if isinstance(arg, pandas.Series)
            # a struct column arrives as a DataFrame: one dict per row, as MLflow passes it
            else arg.apply(lambda row: row.to_dict(), axis=1)
            for i, arg in enumerate(args)
        },
        columns=names,
    )


def predict_batch(core: Any, spec: UdfSpec, args: tuple[Any, ...]) -> Any:
    """One batch: name the columns, predict through the core, convert to ``result_type``."""
    frame = input_frame(spec, args)
    result = core.predict_batch(frame, spec.params)
    return to_result_type(result, spec.result_type)


def to_result_type(result: Any, result_type: Any) -> Any:
    """Predictions -> the Series (or DataFrame, for a struct) Spark expects: MLflow's rules.

    The "leftmost column of matching type" rule: a DataFrame result keeps its columns of the
    requested type (ints for ``int``/``long``, numbers for ``float``/``double``, booleans for
    ``boolean``) and the first one is returned; ``string`` converts every value with ``str``.
    """
    import numpy as np
    import pandas
    from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException
    from mlflow.pyfunc import _convert_array_values, _convert_struct_values
    from pyspark.sql.types import (
        ArrayType,
        BooleanType,
        DoubleType,
        FloatType,
        IntegerType,
        LongType,
        MapType,
        StringType,
        StructType,
    )

    fast = _plain_column(result, result_type)
    if fast is not None:
        return fast
    if isinstance(result, dict):
        result = {k: list(v) for k, v in result.items()}

    if isinstance(result_type, ArrayType) and isinstance(result_type.elementType, ArrayType):
        return pandas.Series(_convert_array_values(result, result_type))

    if isinstance(result_type, StructType):
        if isinstance(result, list) and result and hasattr(result[0], "model_dump"):
            result = pandas.DataFrame([r.model_dump() for r in result])
        else:
            result = pandas.DataFrame(result)
        return _convert_struct_values(result, result_type)

    if not isinstance(result, pandas.DataFrame):
        if isinstance(result_type, MapType):
            result = pandas.DataFrame([result])
        else:
            result = pandas.DataFrame([result]) if np.isscalar(result) else pandas.DataFrame(result)

    elem_type = result_type.elementType if isinstance(result_type, ArrayType) else result_type
    if type(elem_type) is IntegerType:
        result = result.select_dtypes([np.byte, np.ubyte, np.short, np.ushort, np.int32]).astype(np.int32)
    elif type(elem_type) is LongType:
        result = result.select_dtypes([np.byte, np.ubyte, np.short, np.ushort, int]).astype(np.int64)
    elif type(elem_type) is FloatType:
        result = result.select_dtypes(include=(np.number,)).astype(np.float32)
    elif type(elem_type) is DoubleType:
        result = result.select_dtypes(include=(np.number,)).astype(np.float64)
    elif type(elem_type) is BooleanType:
        result = result.select_dtypes([bool, np.bool_]).astype(bool)

    if len(result.columns) == 0:
        raise MlflowException(
            message="The model did not produce any values compatible with the requested "
            f"type '{elem_type}'. Consider requesting udf with StringType or "
            "Arraytype(StringType).",
            error_code=INVALID_PARAMETER_VALUE,
        )
    if type(elem_type) is StringType:
        result = result.map(str) if hasattr(result, "map") else result.applymap(str)
    if type(result_type) is ArrayType:
        return pandas.Series(result.to_numpy().tolist())
    return result[result.columns[0]]


def _plain_column(result: Any, result_type: Any) -> Any:
    """The common case without the DataFrame round trip: a 1-D numeric array for a numeric
    result type. Same values and dtype as the general rule gives (``DataFrame(result)``,
    ``select_dtypes``, ``astype``, first column); None when the rule has to run."""
    import numpy as np
    import pandas
    from pyspark.sql.types import DoubleType, FloatType, IntegerType, LongType

    if not isinstance(result, np.ndarray) or result.ndim != 1:
        return None
    kind, rtype = result.dtype, type(result_type)
    if rtype in (DoubleType, FloatType):
        if not (np.issubdtype(kind, np.integer) or np.issubdtype(kind, np.floating)):
            return None
        return pandas.Series(result.astype(np.float64 if rtype is DoubleType else np.float32))
    ints = {LongType: ("int8", "uint8", "int16", "uint16", "int64"),
            IntegerType: ("int8", "uint8", "int16", "uint16", "int32")}.get(rtype)
    if ints is None or kind.name not in ints:
        return None
    return pandas.Series(result.astype(np.int64 if rtype is LongType else np.int32))
