"""``spark_udf``: a deployer model as a Spark pandas UDF, with MLflow's ``spark_udf`` semantics.

Same contract as ``mlflow.pyfunc.spark_udf`` (read side by side with it):

* columns passed positionally get the signature's input names (``"0"``, ``"1"``... without a
  signature); one struct argument passes its field names; no argument passes every
  signature column;
* ``result_type``: ``int``/``long``/``float``/``double``/``string``/``boolean``, an
  ``ArrayType`` of those, a ``StructType`` (multi-output models); without one, the model's
  output schema decides (as in MLflow), else ``double``; see
  :func:`deployer.spark._worker.to_result_type` for the "leftmost column of matching type" rule.

What differs is how it runs: the model URI is resolved once, here on the driver (any deployer
URI); the model is shipped once (the local path in ``local[*]`` mode, else one archive through
``SparkContext.addArchive``); each Python worker loads it once (the iterator-of-batches UDF
form plus a per-process cache) and scores through deployer's one :class:`ScoringCore`.
``env_manager="virtualenv"`` runs the UDF in the model's own packed environment
(:mod:`deployer.spark.environment`): executors need no internet, no conda and none of the
model's packages.

The transport: with pyspark >= 4.1 the UDF is an Arrow UDF (``arrow_udf``, eval type
``SQL_SCALAR_ARROW_ITER_UDF``) that turns double columns straight into the float matrix the
scoring core needs and returns an Arrow array, skipping PySpark's Arrow <-> pandas conversion
(most of a pandas UDF's cost); other batches go through PySpark's own pandas conversion, so
results are the same. Older pyspark, or ``DEPLOYER_SPARK_UDF_TRANSPORT=pandas``, gives the
pandas iterator UDF (``SQL_SCALAR_PANDAS_ITER_UDF``) of earlier releases.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from deployer.building import host_env
from deployer.building.host_env import ISOLATED_ENV_MANAGERS
from deployer.errors import MissingDependencyError, ModelFormatError, UsageError, mlflow_api

log = logging.getLogger("deployer")

#: how batches reach the UDF: "auto" (Arrow when this pyspark has Arrow UDFs), "arrow", "pandas"
TRANSPORT_ENV = "DEPLOYER_SPARK_UDF_TRANSPORT"
TRANSPORTS = ("auto", "arrow", "pandas")
_PRIMITIVES = ("int", "long", "float", "double", "string", "boolean")


def require_pyspark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise MissingDependencyError("pyspark", "spark", "Spark batch scoring") from None


@mlflow_api
def spark_udf(
    spark: Any,
    model_uri: str | os.PathLike[str],
    result_type: Any = None,
    env_manager: str | None = None,
    params: dict[str, Any] | None = None,
    extra_env: Mapping[str, str] | None = None,
    prebuilt_env_uri: str | os.PathLike[str] | None = None,
    model_config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> Callable[..., Any]:
    """A vectorized UDF scoring ``model_uri``: ``df.withColumn("p", udf(*cols))`` or ``udf()``.

    The arguments are ``mlflow.pyfunc.spark_udf``'s (MLflow 3.17; ``docs/spark_udf_parity.md``
    compares them one by one):

    * ``model_uri``: any deployer URI, as a string or a path object;
    * ``result_type``: a Spark DataType or its DDL string (``"double"``, ``"array<double>"``,
      ``"struct<a: double, b: string>"``);
    * ``env_manager``: ``"local"`` (default) runs in the session's Python; ``"virtualenv"``
      and ``"uv"`` in the model's own packed environment (one and the same: deployer's
      offline installer installs it with uv from the lock's wheelhouse);
    * ``params``: checked against the model's params schema here, on the driver;
    * ``extra_env``: variables set on the workers while the model loads and predicts;
    * ``prebuilt_env_uri``: a packed environment made earlier (the ``env.tar.gz`` that
      ``env_manager="virtualenv"`` / ``deployer prepare-env`` build), checked against this
      model and driver, then shipped instead of building one;
    * ``model_config``: a dict, or the path of a YAML/JSON file (read here, on the driver),
      passed to the model's load.

    Errors are deployer's (what / where / hint) and also ``mlflow.exceptions.MlflowException``
    (:func:`deployer.errors.as_mlflow_exception`), so code written for MLflow's catches them.
    The UDF is an Arrow UDF when pyspark has them (>= 4.1), else a pandas UDF;
    ``DEPLOYER_SPARK_UDF_TRANSPORT=pandas`` forces the latter (see :func:`udf_transport`).
    """
    require_pyspark()
    env_manager = check_env_manager(env_manager, prebuilt_env_uri)
    env = check_extra_env(extra_env)
    config = read_model_config(model_config)
    python_exec = None
    if prebuilt_env_uri is not None:
        from deployer.model.uri import resolve_model_uri
        from deployer.spark.environment import ship_prebuilt_environment

        python_exec = ship_prebuilt_environment(
            spark, prebuilt_env_path(prebuilt_env_uri), resolve_model_uri(model_uri)
        )
    elif env_manager in ISOLATED_ENV_MANAGERS:
        from deployer.model.uri import resolve_model_uri
        from deployer.spark.environment import ship_environment

        python_exec = ship_environment(spark, resolve_model_uri(model_uri))
    return make_udf(
        spark, model_uri, result_type, params, python_exec, model_config=config, extra_env=env
    )


def check_env_manager(env_manager: str | None, prebuilt_env_uri: Any) -> str:
    """MLflow's rules: None means ``local`` (``virtualenv`` with a prebuilt environment); a
    prebuilt environment takes None, ``virtualenv`` or ``uv`` only; ``conda`` is refused."""
    if prebuilt_env_uri is not None and env_manager not in (None, *ISOLATED_ENV_MANAGERS):
        raise UsageError(
            f"prebuilt_env_uri is set, so env_manager must be None, 'virtualenv' or 'uv', "
            f"not {env_manager!r}",
            where="env_manager",
            fix="leave env_manager unset (the prebuilt environment is the model's environment)",
        )
    if env_manager is None:
        return "virtualenv" if prebuilt_env_uri is not None else "local"
    if env_manager == "conda":
        raise UsageError(
            "env_manager='conda' is not supported: deployer builds the model's environment "
            "as a packed virtualenv from its lock (conda dependencies included as pip wheels)",
            where="env_manager",
            fix="use env_manager='virtualenv' (or 'uv', the same environment)",
        )
    return host_env.check_env_manager(env_manager, where="env_manager")


def check_extra_env(extra_env: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """``extra_env`` as (name, value) pairs: a mapping of non-empty names without ``=`` to
    strings (what ``os.environ`` accepts on the workers)."""
    if extra_env is None:
        return ()
    if not isinstance(extra_env, Mapping):
        raise UsageError(
            f"extra_env must be a dict of variable names to strings, not "
            f"{type(extra_env).__name__}",
            where="extra_env",
            fix='pass e.g. extra_env={"MY_SETTING": "1"}',
        )
    for name, value in extra_env.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise UsageError(
                f"extra_env has an invalid variable name {name!r}",
                where="extra_env",
                fix="use non-empty string names without '='",
            )
        if not isinstance(value, str) or "\0" in value:
            raise UsageError(
                f"extra_env[{name!r}] must be a string, not {type(value).__name__}",
                where=f"extra_env[{name!r}]",
                fix="pass every value as a string (values are never shown: they may be secrets)",
            )
    return tuple(sorted(extra_env.items()))


def read_model_config(
    model_config: str | os.PathLike[str] | Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """``model_config`` as the dict the workers load with: a mapping as given (pickled to the
    workers, as MLflow's is); a path (str or path object) read here by the reader of
    ``--model-config`` (:func:`deployer.serving.model_config.parse_model_config`: YAML, so JSON
    too), so workers need not see the driver's files. Empty means none, as in MLflow."""
    from deployer.serving.model_config import parse_model_config

    if model_config is None:
        return None
    if isinstance(model_config, Mapping):
        return dict(model_config) or None
    if not isinstance(model_config, (str, os.PathLike)):
        raise UsageError(
            f"model_config must be a dict or a file path, not {type(model_config).__name__}",
            where="model_config",
            fix="pass a dict, or the path of a YAML or JSON file holding a mapping",
        )
    return parse_model_config(model_config, where="model_config") or None


def prebuilt_env_path(prebuilt_env_uri: str | os.PathLike[str]) -> Path:
    """The local archive ``prebuilt_env_uri`` names: a path (str or path object) or a
    ``file://`` URI; remote locations are refused (copy the archive to the driver first)."""
    from urllib.parse import unquote, urlparse

    if isinstance(prebuilt_env_uri, os.PathLike):
        return Path(os.fspath(prebuilt_env_uri)).expanduser()
    if not isinstance(prebuilt_env_uri, str):
        raise UsageError(
            f"prebuilt_env_uri must be a path, not {type(prebuilt_env_uri).__name__}",
            where="prebuilt_env_uri",
            fix="pass the path of the env.tar.gz that deployer prepare-env printed",
        )
    if "://" not in prebuilt_env_uri and not prebuilt_env_uri.startswith("dbfs:"):
        return Path(prebuilt_env_uri).expanduser()
    parsed = urlparse(prebuilt_env_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    raise UsageError(
        f"prebuilt_env_uri must be a local path or file:// URI, not a {parsed.scheme}: location",
        where="prebuilt_env_uri",
        fix="copy the archive to the driver's disk and pass its path",
    )


def make_udf(
    spark: Any,
    model_uri: str | os.PathLike[str],
    result_type: Any,
    params: dict[str, Any] | None,
    python_exec: str | None,
    *,
    model_config: dict[str, Any] | None = None,
    extra_env: tuple[tuple[str, str], ...] = (),
) -> Callable[..., Any]:
    """The UDF for an already shipped environment (``python_exec``; None: the session's)."""
    import dataclasses

    from deployer.spark._worker import UdfSpec
    from deployer.spark.connect import is_connect_session
    from deployer.spark.shipping import ship_model

    transport = udf_transport()
    shipped = ship_model(spark, model_uri)
    meta = shipped.metadata
    rtype = resolve_result_type(result_type, meta)
    checked_params = validate_params(params, meta)
    schema = meta.get_input_schema()
    spec = UdfSpec(
        model_key=shipped.key,
        model_path=shipped.path,
        model_archive=shipped.archive,
        input_names=tuple(schema.input_names()) if schema is not None else None,
        required_count=len(schema.required_input_names()) if schema is not None else 0,
        result_type=rtype,
        params=checked_params,
        arrow=arrow_conf(spark) if transport == "arrow" else None,
        model_config=model_config,
        extra_env=extra_env,
    )
    if python_exec is not None and is_connect_session(spark):  # no per-UDF interpreter
        spec, python_exec = dataclasses.replace(spec, env_archive=python_exec), None
    return _make_udf(spec, rtype, meta, python_exec)


def _make_udf(spec: Any, rtype: Any, meta: Any, python_exec: str | None) -> Callable[..., Any]:
    import functools

    from deployer.spark._worker import arrow_body, udf_body

    if spec.arrow is not None:
        from pyspark.sql.functions import arrow_udf

        scoring = arrow_udf(arrow_body(spec), rtype)
    else:
        from pyspark.sql.functions import pandas_udf

        scoring = pandas_udf(udf_body(spec), rtype)  # type: ignore[call-overload]
    if python_exec is not None:
        _pin_python(scoring, python_exec)

    @functools.wraps(scoring)
    @mlflow_api
    def udf_with_default_cols(*args: Any) -> Any:
        if args:
            return scoring(*args)
        schema = meta.get_input_schema()
        if schema and schema.optional_input_names():
            raise UsageError(
                "the model's signature has optional columns, so they must be named",
                where="spark_udf()",
                fix="pass the columns: udf('a', 'b', ...)",
            )
        if schema and schema.inputs:
            if schema.has_input_names():
                return scoring(*schema.input_names())
            raise UsageError(
                f"the model's signature has {len(schema.inputs)} unnamed input(s) "
                f"({schema.inputs}), so the columns cannot be inferred",
                where="spark_udf()",
                fix="pass the columns: udf('a', 'b', ...)",
            )
        raise UsageError(
            "no columns given and the model has no signature to take them from",
            where="spark_udf()",
            fix="pass the columns: udf('a', 'b', ...)",
        )

    udf_with_default_cols.metadata = meta  # type: ignore[attr-defined]
    return udf_with_default_cols


def arrow_transport_available() -> bool:
    """Whether this pyspark has Arrow UDFs (4.1+) and the converters the Arrow transport uses
    for batches it does not take natively (PySpark's own pandas UDF conversion)."""
    try:
        from pyspark.sql.conversion import ArrowBatchTransformer, PandasToArrowConversion
        from pyspark.sql.functions import arrow_udf  # noqa: F401
    except ImportError:
        return False
    return hasattr(ArrowBatchTransformer, "to_pandas") and hasattr(
        PandasToArrowConversion, "convert"
    )


def udf_transport() -> str:
    """``"arrow"`` or ``"pandas"``: ``DEPLOYER_SPARK_UDF_TRANSPORT`` (``auto`` when unset:
    Arrow when :func:`arrow_transport_available`). Both give the same results; ``pandas``
    is the escape hatch should a pyspark release change its Arrow UDFs."""
    wanted = os.environ.get(TRANSPORT_ENV, "").strip().lower() or "auto"
    if wanted not in TRANSPORTS:
        raise UsageError(
            f"unknown {TRANSPORT_ENV}={wanted!r}",
            where=TRANSPORT_ENV,
            fix=f"use one of: {', '.join(TRANSPORTS)} (or unset it)",
        )
    available = arrow_transport_available()
    if wanted == "arrow" and not available:
        import pyspark

        raise UsageError(
            f"{TRANSPORT_ENV}=arrow needs Arrow UDFs, which pyspark "
            f"{pyspark.__version__} does not have",
            where=TRANSPORT_ENV,
            fix="install pyspark >= 4.1, or unset it (auto falls back to pandas)",
        )
    return "arrow" if wanted != "pandas" and available else "pandas"


def arrow_conf(spark: Any) -> Any:
    """The session's pandas-conversion settings (PySpark's worker ``RunnerConf``, same keys
    and defaults), for the batches the Arrow transport converts as a pandas UDF would."""
    from deployer.spark._worker import ArrowConf

    def flag(key: str, default: str) -> bool:
        return str(spark.conf.get(key, default)).lower() == "true"

    return ArrowConf(
        timezone=spark.conf.get("spark.sql.session.timeZone", None),
        safecheck=flag("spark.sql.execution.pandas.convertToArrowArraySafely", "false"),
        large_var_types=flag("spark.sql.execution.arrow.useLargeVarTypes", "false"),
        assign_cols_by_name=flag(
            "spark.sql.legacy.execution.pandas.groupedMap.assignColumnsByName", "true"
        ),
        int_to_decimal=flag(
            "spark.sql.execution.pythonUDF.pandas.intToDecimalCoercionEnabled", "false"
        ),
        prefer_int_ext_dtype=flag(
            "spark.sql.execution.pythonUDF.pandas.preferIntExtensionDtype", "false"
        ),
    )


def _pin_python(wrapped: Any, python_exec: str) -> None:
    """Make this one UDF run under ``python_exec`` (the packed environment's interpreter).

    PySpark takes a UDF's interpreter from ``SparkContext.pythonExec`` when it creates the
    UDF's JVM function, so that function is created now, with the environment's interpreter;
    other UDFs of the session keep theirs.
    """
    from pyspark import SparkContext

    udf_obj = getattr(wrapped, "_unwrapped", None)
    sc = SparkContext._active_spark_context
    if udf_obj is None or sc is None:
        raise UsageError(
            "env_manager='virtualenv' needs PySpark >= 3.5 and an active SparkContext",
            where="spark_udf()",
            fix="upgrade pyspark, or use env_manager='local'",
        )
    before = sc.pythonExec
    sc.pythonExec = python_exec
    try:
        udf_obj._judf_placeholder = udf_obj._create_judf(udf_obj.func)
    finally:
        sc.pythonExec = before


# ------------------------------------------------------------------------------ result types
def parse_result_type(value: str) -> Any:
    """A Spark DataType from its DDL string (``"bool"`` is accepted as ``boolean``)."""
    from pyspark.sql.types import _parse_datatype_string

    text = "boolean" if value == "bool" else value
    try:
        return _parse_datatype_string(text)
    except Exception as exc:  # noqa: BLE001 - pyspark raises several parse error types
        raise UsageError(
            f"cannot parse result type {value!r}: {exc}",
            where="result_type",
            fix=f"use one of {', '.join(_PRIMITIVES)}, array<...> or struct<...>",
        ) from None


def check_result_type(data_type: Any) -> bool:
    """MLflow's ``_check_udf_return_type``: primitives, arrays, structs and string-keyed maps."""
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

    if isinstance(
        data_type, (IntegerType, LongType, FloatType, DoubleType, StringType, BooleanType)
    ):
        return True
    if isinstance(data_type, ArrayType):
        return check_result_type(data_type.elementType)
    if isinstance(data_type, StructType):
        return all(check_result_type(f.dataType) for f in data_type.fields)
    if isinstance(data_type, MapType):
        return isinstance(data_type.keyType, StringType) and check_result_type(data_type.valueType)
    return False


def resolve_result_type(result_type: Any, meta: Any) -> Any:
    """The UDF's return type: given (checked), else from the output schema, else double."""
    from pyspark.sql.types import DataType, DoubleType

    if result_type is None:
        output = meta.get_output_schema()
        if output is not None:
            from mlflow.pyfunc import _infer_spark_udf_return_type

            return _infer_spark_udf_return_type(output)
        log.warning("no result_type given and the model has no output schema: using double")
        return DoubleType()
    rtype = parse_result_type(result_type) if isinstance(result_type, str) else result_type
    if not isinstance(rtype, DataType) or not check_result_type(rtype):
        shown = rtype.simpleString() if isinstance(rtype, DataType) else repr(rtype)
        raise UsageError(
            f"result type {shown} is not supported",
            where="result_type",
            fix=f"use one of {', '.join(_PRIMITIVES)}, an array<...> of them, or a "
            "struct<name: type, ...> of them (multi-output models)",
        )
    return rtype


def validate_params(params: dict[str, Any] | None, meta: Any) -> dict[str, Any] | None:
    """Params checked against the model's params schema on the driver (MLflow's rule)."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import _validate_params

    try:
        return _validate_params(params, meta)  # type: ignore[no-any-return]
    except MlflowException as exc:
        raise UsageError(
            f"params refused by the model: {exc.message}",
            where="params",
            fix="pass only params the model's signature declares, with their types",
        ) from None


def model_metadata(model_dir: Path) -> Any:
    from mlflow.models import Model

    try:
        return Model.load(str(model_dir / "MLmodel"))
    except Exception as exc:  # noqa: BLE001
        raise ModelFormatError(
            f"cannot read the MLmodel file: {exc}",
            where=str(model_dir / "MLmodel"),
            fix="check the model directory",
        ) from None
