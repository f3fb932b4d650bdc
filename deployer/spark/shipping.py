"""Get a model (and its files) to Spark's executors, once.

The URI is resolved on the driver only (:func:`deployer.model.uri.resolve_model_uri`: local
paths, ``s3://``, ``runs:/``, ``models:/``), so executors need no credentials for the model
store. In ``local[*]`` mode executors share the driver's disk and read the directory in place;
on a cluster the model goes out as one archive through ``SparkContext.addArchive``, built
once per model digest in deployer's cache (credentials in URLs scrubbed, as in images).
A Spark Connect session has no SparkContext: the same archive goes out with
``spark.addArtifacts`` (:mod:`deployer.spark.connect`) and is found on the workers the same
way; its server may be on another host, so the model is always shipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.atomic import atomic_output

ARCHIVE_PREFIX = "deployer-model-"
#: (SparkContext id, archive path) already added: addArchive once per context.
_ADDED: set[tuple[int, str]] = set()


@dataclass(frozen=True)
class ShippedModel:
    model_dir: Path  # on the driver
    key: str  # the model digest
    path: str | None  # the directory executors read (local mode)
    archive: str | None  # the name the archive unpacks to on executors (cluster mode)
    metadata: Any  # mlflow.models.Model


def spark_cache_dir() -> Path:
    from deployer.building.wheelhouse import default_cache_root

    return default_cache_root() / "spark"


def is_local_master(spark: Any) -> bool:
    """Whether executors share this process's disk (``local[*]``). Never for a Spark Connect
    session: its server may run anywhere."""
    from deployer.spark.connect import is_connect_session

    if is_connect_session(spark):
        return False
    return str(spark.sparkContext.master).startswith("local")


def ship_model(spark: Any, model_uri: str) -> ShippedModel:
    from deployer.model.files import model_digest
    from deployer.model.uri import resolve_model_uri
    from deployer.spark.udf import model_metadata

    model_dir = resolve_model_uri(model_uri)
    meta = model_metadata(model_dir)
    digest = model_digest(model_dir)
    if is_local_master(spark):
        return ShippedModel(model_dir, digest, str(model_dir), None, meta)
    name = ARCHIVE_PREFIX + digest.split(":")[-1][:16]
    archive = model_archive(model_dir, digest)
    add_archive(spark, archive, name)
    return ShippedModel(model_dir, digest, None, name, meta)


def add_archive(spark: Any, archive: Path, name: str) -> None:
    from deployer.spark.connect import add_artifact, is_connect_session

    if is_connect_session(spark):
        add_artifact(spark, archive, name=name, kind="archive")
        return
    sc = spark.sparkContext
    key = (id(sc), str(archive))
    if key not in _ADDED:
        sc.addArchive(f"{archive}#{name}")
        _ADDED.add(key)


def add_py_file(spark: Any, path: Path) -> None:
    from deployer.spark.connect import add_artifact, is_connect_session

    if is_connect_session(spark):
        add_artifact(spark, path, kind="pyfile")
        return
    sc = spark.sparkContext
    key = (id(sc), str(path))
    if key not in _ADDED:
        sc.addPyFile(str(path))
        _ADDED.add(key)


def model_archive(model_dir: Path, digest: str) -> Path:
    """``<cache>/spark/models/<digest>.tar.gz`` (built once, atomically; the model as it ships:
    :func:`deployer.model.files.write_model_archive`)."""
    from deployer.model.files import write_model_archive

    out = spark_cache_dir() / "models" / f"{digest.split(':')[-1]}.tar.gz"
    if out.is_file():
        return out
    with atomic_output(out, prefix=".model-", suffix=".tar.gz") as tmp:
        write_model_archive(model_dir, Path(tmp))
    return out
