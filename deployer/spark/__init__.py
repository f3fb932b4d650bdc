"""Batch scoring on Apache Spark: ``spark_udf`` and ``deployer batch --target spark``.

    from deployer.spark import spark_udf
    udf = spark_udf(spark, "models:/churn/3", result_type="double", env_manager="virtualenv")
    df.withColumn("prediction", udf("a", "b"))

Modules: ``udf`` (spark_udf + result-type rules, driver side), ``_worker`` (what runs in
Spark's Python workers: per-process model cache, MLflow's batch semantics through the scoring
core), ``shipping`` (model to executors), ``environment`` (the packed model environment for
``env_manager="virtualenv"``), ``plan`` (the batch job as data) and ``run`` (its execution).

This package imports nothing at import time: executors import ``deployer.spark._worker`` with
only the serving runtime present, and pyspark is an optional extra (``deployer[spark]``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["spark_udf"]


def __getattr__(name: str) -> Any:
    if name == "spark_udf":
        from deployer.spark.udf import spark_udf

        return spark_udf
    raise AttributeError(f"module 'deployer.spark' has no attribute {name!r}")
