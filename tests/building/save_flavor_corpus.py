"""Save the flavor corpus with real MLflow, and record MLflow's own answer for each model.

Run by the *flavors* venv's Python (``.venv-flavors``, made by scripts/test.sh from
tests/fixtures/flavor-requirements.txt: TensorFlow, PyTorch, XGBoost... which the main test venv
must not hold, or every scikit-learn fixture would capture torch through skops):

    python save_flavor_corpus.py OUT_DIR [FLAVOR...]

For each flavor, ``OUT_DIR/<flavor>/`` is an MLflow model saved the way users save them (default
options: requirements inferred by MLflow, an input example), and ``OUT_DIR/<flavor>.expected.json``
holds what MLflow's own scoring server function (``mlflow.pyfunc.scoring_server.invocations``)
answers for the model's ``serving_input_example.json``: status and body. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402

FROM_CODE = '''
"""A models-from-code pyfunc: MLflow stores this file and runs it to load the model."""
import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class Scaled(PythonModel):
    def predict(self, context, model_input, params=None):
        frame = model_input.select_dtypes("number")
        return frame.assign(total=np.round(frame.sum(axis=1) * 1.5, 6))


set_model(Scaled())
'''


def iris() -> tuple[pd.DataFrame, pd.Series]:
    data = load_iris(as_frame=True)
    x = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    return x, data.target


def save(flavor: str, path: Path, work: Path) -> None:
    x, y = iris()
    example = x.head(3)
    if flavor == "xgboost":  # the scikit-learn API, as most users train it
        import xgboost as xgb

        model = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(x, y)
        mlflow.xgboost.save_model(model, path, input_example=example)
    elif flavor == "lightgbm":  # the native API: the Booster, saved as LightGBM's own text format
        import lightgbm as lgb

        booster = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1},
                            lgb.Dataset(x, y), num_boost_round=8)
        mlflow.lightgbm.save_model(booster, path, input_example=example)
    elif flavor == "lightgbm_sklearn":  # the scikit-learn API: skops format (captures torch)
        import lightgbm as lgb

        model = lgb.LGBMClassifier(n_estimators=8, verbose=-1).fit(x, y)
        mlflow.lightgbm.save_model(model, path, input_example=example)
    elif flavor == "catboost":
        import catboost

        model = catboost.CatBoostClassifier(iterations=8, verbose=False, allow_writing_files=False).fit(x, y)
        mlflow.catboost.save_model(model, path, input_example=example)
    elif flavor == "statsmodels":
        import statsmodels.api as sm

        features = sm.add_constant(x)
        model = sm.OLS(y.astype(float), features).fit()
        mlflow.statsmodels.save_model(model, path, input_example=features.head(3))
    elif flavor == "onnx":
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(max_iter=500).fit(x.to_numpy(np.float32), y)
        onx = convert_sklearn(clf, initial_types=[("input", FloatTensorType([None, 4]))],
                              options={id(clf): {"zipmap": False}})
        mlflow.onnx.save_model(onx, path, input_example=x.to_numpy(np.float32)[:3])
    elif flavor == "keras":  # Keras 3 on TensorFlow (tensorflow-cpu installed)
        import keras

        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x.to_numpy(np.float32), y.to_numpy(), epochs=2, verbose=0)
        mlflow.tensorflow.save_model(model, path, input_example=x.to_numpy(np.float32)[:3])
    elif flavor == "pytorch":
        import torch

        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        mlflow.pytorch.save_model(net, path, input_example=x.to_numpy(np.float32)[:3])
    elif flavor == "from_code":
        script = work / "scaled_model.py"
        script.write_text(FROM_CODE)
        mlflow.pyfunc.save_model(path, python_model=str(script), input_example=example)
    else:
        raise SystemExit(f"unknown flavor {flavor!r}")


def mlflow_answer(path: Path) -> dict[str, object]:
    """What MLflow's scoring server answers for the model's own serving input example."""
    from mlflow.pyfunc.scoring_server import invocations

    model = mlflow.pyfunc.load_model(str(path))
    body = (path / "serving_input_example.json").read_text()
    response = invocations(body, "application/json", model, model.metadata.get_input_schema())
    return {"status": response.status, "body": json.loads(response.response)}


def main() -> None:
    out = Path(sys.argv[1])
    flavors = sys.argv[2:]
    work = out / "_work"
    work.mkdir(parents=True, exist_ok=True)
    for flavor in flavors:
        path = out / flavor
        if not (path / "MLmodel").is_file():
            save(flavor, path, work)
        expected = out / f"{flavor}.expected.json"
        if not expected.is_file():
            expected.write_text(json.dumps(mlflow_answer(path)))
        print(f"saved {flavor}", flush=True)


if __name__ == "__main__":
    main()
