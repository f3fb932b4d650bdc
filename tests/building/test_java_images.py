"""A Spark-flavored model saved by real MLflow serves from its image (issue 14).

``mlflow.spark`` models load through a JVM: deployer installs the distribution's headless JRE
in the image's OS layer on its own (as MLflow's --install-java), and the pyspark model must
then score in the container exactly as MLflow scores it on the host.

The model is saved in a subprocess (its own local Spark session and JVM, so this module shares
nothing with other tests that use Spark), which also records MLflow's own predictions for the
input example.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from tests.building.conftest import BuiltImage, build_with_cli

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SAVE_SPARK_MODEL = textwrap.dedent(
    """
    import json, os, sys
    import mlflow.pyfunc, mlflow.spark
    from mlflow.models import infer_signature
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import SparkSession
    from sklearn.datasets import load_iris

    out = sys.argv[1]
    spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "1").getOrCreate())
    data = load_iris(as_frame=True)
    pdf = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    pdf["label"] = data.target.astype(float)
    cols = [c for c in pdf.columns if c != "label"]
    model = Pipeline(stages=[VectorAssembler(inputCols=cols, outputCol="features"),
                             LogisticRegression(maxIter=50)]).fit(spark.createDataFrame(pdf))
    X = pdf[cols]
    mlflow.spark.save_model(model, out, signature=infer_signature(X, [0.0] * len(X)), input_example=X.head(3))
    expected = mlflow.pyfunc.load_model(out).predict(X.head(3))
    json.dump([float(v) for v in list(expected)], open(os.path.join(out, "..", "expected.json"), "w"))
    spark.stop()
    """
)


@pytest.fixture(scope="module")
def spark_flavor_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    pytest.importorskip("pyspark", reason="pyspark is in the test extra")
    root = tmp_path_factory.mktemp("spark-model")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    # a script file, not `python -c`: pyspark takes a __main__ without __file__ for its own
    # doctest runner and exits 0 quietly (pyspark.sql.connect.utils.check_dependencies)
    script = root / "save_spark_model.py"
    script.write_text(SAVE_SPARK_MODEL)
    proc = subprocess.run([sys.executable, str(script), str(root / "spark_iris")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root / "spark_iris", json.loads((root / "expected.json").read_text())


@pytest.fixture(scope="module")
def spark_image(docker_client, base_image: str, spark_flavor_model, build_cache: Path) -> BuiltImage:  # type: ignore[no-untyped-def]
    model, _ = spark_flavor_model
    env = {**os.environ, "DEPLOYER_BUILD_CACHE": str(build_cache)}
    image = build_with_cli(model, "deployer-test/spark-iris:1", base_image, env)
    yield image
    docker_client.images.remove(image.tag, force=True)


def test_spark_flavor_plans_java(spark_flavor_model) -> None:  # type: ignore[no-untyped-def]
    from deployer.building.plan import JRE_PACKAGE, plan_build
    from deployer.intake import load_model

    model, _ = spark_flavor_model
    plan = plan_build(load_model(str(model)))
    assert "spark" in load_model(str(model)).mlmodel.flavors
    assert plan.os_packages.packages == (JRE_PACKAGE,)
    assert [layer.name for layer in plan.layers][:3] == ["base", "os", "user"]
    assert any(r.startswith("pyspark") for r in plan.requirements.requirements)
    # the local Spark session must not need the hostname to resolve (no network when verified)
    assert ("SPARK_LOCAL_IP", "127.0.0.1") in plan.env


def test_spark_model_scores_in_its_image_as_mlflow_does(docker_client, spark_image: BuiltImage,  # type: ignore[no-untyped-def]
                                                        spark_flavor_model, local_target) -> None:
    model, expected = spark_flavor_model
    labels = docker_client.images.get(spark_image.tag).attrs["Config"]["Labels"]
    assert labels["io.deployer.os-packages"] == "default-jre-headless"
    assert labels["io.deployer.verify.status"] == "passed"  # it scored offline (--network none) already
    java = docker_client.containers.run(spark_image.tag, ["java", "-version"], entrypoint=[], remove=True,
                                        stdout=False, stderr=True).decode()
    assert "openjdk" in java.lower()
    url = local_target(spark_image.tag, "t-spark-iris")
    payload = (model / "serving_input_example.json").read_bytes()
    req = urllib.request.Request(f"{url}/invocations", data=payload, headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=300) as resp:
        body = json.loads(resp.read())
    assert body["predictions"] == expected
