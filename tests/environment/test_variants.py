"""Two builds of one package: one is kept (CPU unless --gpu, headless OpenCV, a --pip choice)."""

from __future__ import annotations

from deployer.building.dependencies import image_requirements
from deployer.environment.variants import conflicts, resolve

MLFLOW_XGB = ["mlflow==3.17.2", "numpy==2.4.6", "xgboost-cpu==3.2.0", "xgboost==3.2.0"]


def test_the_cpu_build_is_kept_and_the_other_reported() -> None:
    kept, dropped = resolve(MLFLOW_XGB)
    assert kept == ("mlflow==3.17.2", "numpy==2.4.6", "xgboost-cpu==3.2.0")
    assert [(d.line, d.kept, d.package) for d in dropped] == [("xgboost==3.2.0", "xgboost-cpu==3.2.0", "xgboost")]
    assert "--gpu keeps the GPU one" in dropped[0].describe()


def test_gpu_keeps_the_gpu_build() -> None:
    kept, dropped = resolve(["tensorflow-cpu==2.21.0", "tensorflow==2.21.0", "onnxruntime==1.20",
                             "onnxruntime-gpu==1.20"], gpu=True)
    assert kept == ("tensorflow==2.21.0", "onnxruntime-gpu==1.20")
    assert {d.line for d in dropped} == {"tensorflow-cpu==2.21.0", "onnxruntime==1.20"}


def test_opencv_keeps_the_headless_build_with_contrib_modules_if_any() -> None:
    kept, _ = resolve(["opencv-python==4.10.0.84", "opencv-python-headless==4.10.0.84"])
    assert kept == ("opencv-python-headless==4.10.0.84",)
    kept, _ = resolve(["opencv-python==4.10", "opencv-contrib-python==4.10", "opencv-python-headless==4.10"])
    assert kept == ("opencv-contrib-python==4.10",)


def test_a_single_build_and_unrelated_lines_pass_unchanged() -> None:
    lines = ["xgboost==3.2.0", "pandas>=2", "psycopg2-binary==2.9"]
    assert resolve(lines) == (tuple(lines), ())


def test_an_explicit_choice_wins() -> None:
    kept, _ = resolve(MLFLOW_XGB, prefer=["XGBoost"])
    assert "xgboost==3.2.0" in kept and "xgboost-cpu==3.2.0" not in kept


def test_conflicts_in_a_resolved_set() -> None:
    assert conflicts(["numpy", "xgboost", "xgboost-cpu", "tensorflow-cpu"]) == (("xgboost", ("xgboost", "xgboost-cpu")),)
    assert conflicts(["numpy", "tensorflow-cpu"]) == ()


def test_image_requirements_drop_the_duplicate_and_warn() -> None:
    reqs = image_requirements(tuple(MLFLOW_XGB), python_version="3.11", mlflow_version="3.17.2")
    assert "xgboost==3.2.0" not in reqs.requirements and "xgboost-cpu==3.2.0" in reqs.requirements
    assert len(reqs.warnings) == 1 and reqs.warnings[0] in reqs.notes
    gpu = image_requirements(tuple(MLFLOW_XGB), python_version="3.11", mlflow_version="3.17.2", gpu=True)
    assert "xgboost==3.2.0" in gpu.requirements and "xgboost-cpu==3.2.0" not in gpu.requirements
    pinned = image_requirements(tuple(MLFLOW_XGB), python_version="3.11", mlflow_version="3.17.2",
                                overrides=("xgboost==3.1.0",))
    assert "xgboost==3.1.0" in pinned.requirements and "xgboost-cpu==3.2.0" not in pinned.requirements
