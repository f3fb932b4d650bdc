"""Save the example model the README's quick start deploys: an sklearn iris classifier.

    python examples/make_example_model.py [OUT_DIR]     (default: examples/iris-model)

Saved with real MLflow (signature + input example), so every deployer command can use it.
Re-running replaces the folder.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def main(out: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris(as_frame=True)
    X = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    clf = LogisticRegression(max_iter=500).fit(X, data.target)
    if out.exists():
        shutil.rmtree(out)
    mlflow.sklearn.save_model(
        clf, str(out), signature=infer_signature(X, clf.predict(X)), input_example=X.head(3)
    )
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "iris-model"))
