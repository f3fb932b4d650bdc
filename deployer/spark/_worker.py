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
* **Two transports, one scoring path.** With pyspark >= 4.1 the UDF is an Arrow iterator UDF
  (:func:`arrow_body`): it receives ``pyarrow`` arrays and returns one, so the common case
  (every column a double, a numeric prediction) goes Arrow -> float matrix -> estimator ->
  Arrow without building a pandas Series per column and converting it back, which is most of
  what a pandas UDF costs. Every other batch is converted to pandas with PySpark's own
  converter, configured as the pandas UDF's (:class:`ArrowConf`), and its result back with
  PySpark's own converter: the same values as the pandas UDF (:func:`udf_body`, still used
  on older pyspark or with ``DEPLOYER_SPARK_UDF_TRANSPORT=pandas``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: model key -> ScoringCore, for the life of this Python worker process.
_CORES: dict[str, Any] = {}
_LOCK = threading.Lock()
#: column names -> their pandas Index (see _column_index)
_INDEXES: dict[tuple[str, ...], Any] = {}


@dataclass(frozen=True)
class ArrowConf:
    """The session settings PySpark's pandas UDF converts with, read on the driver when the UDF
    is made (an Arrow UDF's worker does not receive them): the Arrow transport converts the
    batches it cannot take natively exactly as a pandas UDF would."""

    timezone: str | None  # spark.sql.session.timeZone
    safecheck: bool  # spark.sql.execution.pandas.convertToArrowArraySafely
    large_var_types: bool  # spark.sql.execution.arrow.useLargeVarTypes
    assign_cols_by_name: bool  # spark.sql.legacy.execution.pandas.groupedMap.assignColumnsByName
    int_to_decimal: bool  # spark.sql.execution.pythonUDF.pandas.intToDecimalCoercionEnabled
    prefer_int_ext_dtype: bool  # spark.sql.execution.pythonUDF.pandas.preferIntExtensionDtype


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
    arrow: ArrowConf | None = None  # set: the Arrow transport (arrow_body); None: pandas
    #: Spark Connect + env_manager="virtualenv": the name the packed environment unpacks to;
    #: the model then runs in that environment's Python (:mod:`deployer.spark._env_bridge`)
    env_archive: str | None = None
    #: ``model_config`` for ``ScoringCore.load`` (MLflow's load-time override), read on the driver
    model_config: dict[str, Any] | None = None
    #: variables set while the UDF runs on a worker (model load and predict), as MLflow's
    #: ``extra_env``: set before, restored after
    extra_env: tuple[tuple[str, str], ...] = ()

    @property
    def core_key(self) -> str:
        """The worker cache's key: the model, and what changes how it loads."""
        if self.model_config is None and not self.extra_env:
            return self.model_key
        import hashlib
        import json

        shape = json.dumps([self.model_config, self.extra_env], sort_keys=True, default=repr)
        return f"{self.model_key}/{hashlib.sha256(shape.encode()).hexdigest()[:16]}"


def load_core(spec: UdfSpec) -> Any:
    """The worker's ScoringCore for ``spec`` (loaded on first use, then reused)."""
    key = spec.core_key
    core = _CORES.get(key)
    if core is not None:
        return core
    with _LOCK:
        core = _CORES.get(key)
        if core is None:
            if spec.env_archive is not None:
                from deployer.spark._env_bridge import BridgedCore

                python = os.path.join(_shipped_dir(spec.env_archive), "bin", "python")
                core = BridgedCore(
                    python,
                    _model_dir(spec),
                    model_config=spec.model_config,
                    extra_env=dict(spec.extra_env) or None,
                )
            else:
                from deployer.serving.core import ScoringCore

                core = ScoringCore.load(_model_dir(spec), model_config=spec.model_config)
            _CORES[key] = core
    return core


@contextlib.contextmanager
def extra_env(spec: UdfSpec) -> Iterator[None]:
    """``spec.extra_env`` set in this worker's environment for the block, then restored (what
    MLflow's ``modified_environ`` does around its UDF body)."""
    if not spec.extra_env:
        yield
        return
    before = {name: os.environ.get(name) for name, _ in spec.extra_env}
    os.environ.update(dict(spec.extra_env))
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def loads() -> int:
    """How many models this worker process has loaded (tests check: once per process)."""
    return len(_CORES)


@contextlib.contextmanager
def c_extension_errors() -> Iterator[None]:
    """MLflow's translation of a broken C extension's ``SystemError`` ("error return without
    exception set") into an ``MlflowException`` pointing at the packed environment."""
    try:
        yield
    except SystemError as exc:
        if "error return without exception set" not in str(exc):
            raise
        from mlflow.exceptions import MlflowException

        raise MlflowException(
            "A system error related to the Python C extension has occurred. This is usually "
            "caused by an incompatible Python library that uses the C extension. To address "
            "this, we recommend you to log the model with fixed version python libraries that "
            "use the C extension (such as 'numpy' library), and set spark_udf `env_manager` "
            "argument to 'virtualenv' or 'uv' so that spark_udf can restore the original "
            "python library version before running model inference."
        ) from exc


def _model_dir(spec: UdfSpec) -> str:
    if spec.model_path is not None:
        return spec.model_path
    return _shipped_dir(spec.model_archive or "")


def _shipped_dir(name: str) -> str:
    """Where an archive shipped as ``name`` is unpacked on this executor (``SparkFiles``; a
    Spark Connect session's own directory, which is also the worker's working directory)."""
    from pyspark import SparkFiles

    path = SparkFiles.get(name)
    if not os.path.isdir(path):  # executors unpack archives into their working directory
        path = os.path.abspath(name)
    return path


def score_batches(spec: UdfSpec, iterator: Iterator[Any]) -> Iterator[Any]:
    """The body of the pandas iterator UDF: one prediction Series/DataFrame per Arrow batch."""
    import pandas

    with extra_env(spec), c_extension_errors():
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
    # PySpark reads these hints at runtime and understands the typing forms only
    batch = typing.Tuple[typing.Union[pandas.Series, pandas.DataFrame], ...]  # noqa: UP006, UP007
    body.__annotations__ = {"iterator": typing.Iterator[batch], "return": typing.Iterator[out]}
    return body


def arrow_body(spec: UdfSpec) -> Any:
    """The Arrow transport's function: ``Iterator[tuple of pa.Array] -> Iterator[pa.Array]``
    (PySpark's ``SQL_SCALAR_ARROW_ITER_UDF``; one column arrives as a bare array)."""
    import typing

    import pyarrow

    def body(iterator: Any) -> Any:
        return score_arrow_batches(spec, iterator)

    body.__annotations__ = {
        "iterator": typing.Iterator[typing.Tuple[pyarrow.Array, ...]],  # noqa: UP006
        "return": typing.Iterator[pyarrow.Array],
    }
    return body


def score_arrow_batches(spec: UdfSpec, iterator: Iterator[Any]) -> Iterator[Any]:
    """The body of the Arrow iterator UDF: one prediction array per Arrow batch."""
    with extra_env(spec), c_extension_errors():
        core = load_core(spec)
        for batch in iterator:
            arrays = tuple(batch) if isinstance(batch, tuple) else (batch,)
            if len(arrays[0]) > 0:
                yield predict_arrow(core, spec, arrays)


def predict_arrow(core: Any, spec: UdfSpec, arrays: tuple[Any, ...]) -> Any:
    """One Arrow batch: the same frame, prediction and conversion as :func:`predict_batch` on
    the pandas form of the batch, without the pandas form when every column is a double."""
    frame = float_frame(spec, arrays)
    if frame is None:
        frame = input_frame(spec, arrow_to_pandas(spec, arrays))
    raw = core.predict_batch(frame, spec.params)
    values = _plain_values(raw, spec.result_type)
    if values is not None:
        import pyarrow

        # from_pandas: NaN becomes null, as PySpark's pandas -> Arrow conversion makes it
        return pyarrow.array(values, from_pandas=True)
    return pandas_to_arrow(spec, to_result_type(raw, spec.result_type))


def float_frame(spec: UdfSpec, arrays: tuple[Any, ...]) -> Any:
    """The frame :func:`input_frame` builds from the pandas form of a batch whose columns are
    all doubles (positional columns, or one struct of doubles), straight from the Arrow
    buffers into one float64 block; None for any other batch."""
    import numpy as np
    import pandas
    import pyarrow

    is_double = pyarrow.types.is_float64
    if len(arrays) == 1 and pyarrow.types.is_struct(arrays[0].type):
        struct = arrays[0]
        # a null struct row has no pandas twin this cheap to reproduce: the general path
        if (
            struct.null_count
            or not struct.type.num_fields
            or not all(is_double(f.type) for f in struct.type)
        ):
            return None
        names = [f.name for f in struct.type]
        columns = struct.flatten()  # the children, sliced like the parent
    else:
        if not all(is_double(a.type) for a in arrays):
            return None
        names = column_names(spec, len(arrays))
        if len(arrays) < len(names):  # optional columns left out: the general path
            return None
        columns = list(arrays[: len(names)])
    # nulls become NaN, as in the float64 Series PySpark makes of them; the matrix is this
    # batch's own, so the frame wraps it (no copy) with a column index built once
    matrix = np.column_stack([c.to_numpy(zero_copy_only=False) for c in columns])
    return pandas.DataFrame(matrix, columns=_column_index(tuple(names)), copy=False)


def _column_index(names: tuple[str, ...]) -> Any:
    """A pandas Index of ``names``, made once per worker (building one costs as much as
    wrapping the batch)."""
    index = _INDEXES.get(names)
    if index is None:
        import pandas

        index = _INDEXES[names] = pandas.Index(names)
    return index


def arrow_to_pandas(spec: UdfSpec, arrays: tuple[Any, ...]) -> tuple[Any, ...]:
    """The Series (DataFrames for structs) a pandas iterator UDF receives for these arrays:
    PySpark's own converter, with the pandas UDF's arguments and the session's settings."""
    import pyarrow
    from pyspark.sql.conversion import ArrowBatchTransformer

    conf = spec.arrow
    assert conf is not None
    batch = pyarrow.RecordBatch.from_arrays(
        list(arrays), names=[f"_{i}" for i in range(len(arrays))]
    )
    return tuple(
        ArrowBatchTransformer.to_pandas(
            batch,
            timezone=conf.timezone,
            struct_in_pandas="dict",
            ndarray_as_list=False,
            prefer_int_ext_dtype=conf.prefer_int_ext_dtype,
            df_for_struct=True,
        )
    )


def pandas_to_arrow(spec: UdfSpec, result: Any) -> Any:
    """The Arrow array a pandas iterator UDF's result becomes: PySpark's own check and
    converter, with the pandas UDF's arguments and the session's settings."""
    from pyspark.sql.conversion import PandasToArrowConversion
    from pyspark.sql.types import StructField, StructType

    conf = spec.arrow
    assert conf is not None
    try:
        from pyspark.worker import verify_pandas_result
    except ImportError:  # the check only words the error; the conversion still refuses
        pass
    else:
        verify_pandas_result(
            result, spec.result_type, assign_cols_by_name=True, truncate_return_schema=True
        )
    batch = PandasToArrowConversion.convert(
        [result],
        StructType([StructField("_0", spec.result_type)]),
        timezone=conf.timezone,
        safecheck=conf.safecheck,
        arrow_cast=True,
        prefers_large_types=conf.large_var_types,
        assign_cols_by_name=conf.assign_cols_by_name,
        int_to_decimal_coercion_enabled=conf.int_to_decimal,
    )
    return batch.column(0)


def _is_struct(data_type: Any) -> bool:
    from pyspark.sql.types import StructType

    return isinstance(data_type, StructType)


def input_frame(spec: UdfSpec, args: tuple[Any, ...]) -> Any:
    """The DataFrame the model sees, named as MLflow's spark_udf names it."""
    import pandas

    args = tuple(args)
    if len(args) == 1 and isinstance(args[0], pandas.DataFrame):
        return args[0]
    names = column_names(spec, len(args))
    args = args[: len(names)]
    if (
        len(args) == len(names)
        and all(isinstance(a, pandas.Series) and a.dtype == "float64" for a in args)
        and all(a.index.equals(args[0].index) for a in args[1:])
    ):
        # the same frame (columns, float64 dtypes, index), built as one block in one copy
        import numpy as np

        return pandas.DataFrame(
            np.column_stack([a.to_numpy() for a in args]), columns=names, index=args[0].index
        )
    return pandas.DataFrame(
        data={
            names[i]: arg
            if isinstance(arg, pandas.Series)
            # a struct column arrives as a DataFrame: one dict per row, as MLflow passes it
            else arg.apply(lambda row: row.to_dict(), axis=1)
            for i, arg in enumerate(args)
        },
        columns=names,
    )


def column_names(spec: UdfSpec, count: int) -> list[str]:
    """The names of ``count`` positional columns (MLflow's rule): the signature's first
    ``count`` input names (extra columns are dropped), ``"0"``, ``"1"``... without one."""
    if spec.input_names is None:
        return [str(i) for i in range(count)]
    names = list(spec.input_names)
    if count < spec.required_count:
        from mlflow.exceptions import MlflowException

        raise MlflowException(
            f"Model input is missing required columns. Expected {len(names)} required"
            f" input columns {names}, but the model received only {count} "
            "unnamed input columns (Since the columns were passed unnamed they are"
            " expected to be in the order specified by the schema)."
        )
    return names


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
        result = result.select_dtypes([np.byte, np.ubyte, np.short, np.ushort, np.int32]).astype(
            np.int32
        )
    elif type(elem_type) is LongType:
        result = result.select_dtypes([np.byte, np.ubyte, np.short, np.ushort, int]).astype(
            np.int64
        )
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
    """The common case without the DataFrame round trip (see :func:`_plain_values`), as the
    Series a pandas UDF returns; None when the general rule has to run."""
    import pandas

    values = _plain_values(result, result_type)
    return None if values is None else pandas.Series(values)


def _plain_values(result: Any, result_type: Any) -> Any:
    """A 1-D numeric array for a numeric result type, converted as the general rule converts
    it (``DataFrame(result)``, ``select_dtypes``, ``astype``, first column): the same values
    and dtype, as a numpy array; None when the rule has to run."""
    import numpy as np
    from pyspark.sql.types import DoubleType, FloatType, IntegerType, LongType

    if not isinstance(result, np.ndarray) or result.ndim != 1:
        return None
    kind, rtype = result.dtype, type(result_type)
    if rtype in (DoubleType, FloatType):
        if not (np.issubdtype(kind, np.integer) or np.issubdtype(kind, np.floating)):
            return None
        return result.astype(np.float64 if rtype is DoubleType else np.float32)
    ints = {
        LongType: ("int8", "uint8", "int16", "uint16", "int64"),
        IntegerType: ("int8", "uint8", "int16", "uint16", "int32"),
    }.get(rtype)
    if ints is None or kind.name not in ints:
        return None
    return result.astype(np.int64 if rtype is LongType else np.int32)
