"""Modules a model's own files reference, read without running or unpickling anything."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import cloudpickle

from deployer.model.references import (
    pickle_modules,
    referenced_modules,
    skops_modules,
    source_imports,
)


def test_sources_imports_including_dynamic_ones(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("import numpy as np, os.path\nfrom torch.nn import Linear\nfrom . import sibling\n"
                   "import importlib\nmod = importlib.import_module('tensorflow.keras')\n__import__('jax')\n")
    assert source_imports(src) == {"numpy", "os", "torch", "importlib", "tensorflow", "jax"}
    (tmp_path / "broken.py").write_text("def (:\n")
    assert source_imports(tmp_path / "broken.py") == set()


class _Local:
    pass


def test_pickles_are_read_not_run(tmp_path: Path) -> None:
    import collections

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"d": collections.OrderedDict(a=1)}))
    assert "collections" in pickle_modules(path)
    # cloudpickle by value: a function naming a module through a global
    import math

    def uses_math(x: float) -> float:
        return math.sqrt(x)

    by_value = tmp_path / "python_model.pkl"
    by_value.write_bytes(cloudpickle.dumps(uses_math))
    assert "math" in pickle_modules(by_value)
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    assert "os" in pickle_modules(evil) and not (tmp_path / "pwned").exists()
    (tmp_path / "junk.pkl").write_bytes(b"\x00\x01not a pickle")
    assert pickle_modules(tmp_path / "junk.pkl") == set()


def test_skops_schema_modules(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    schema = {"__class__": "LogisticRegression", "__module__": "sklearn.linear_model._logistic",
              "content": {"coef_": {"__module__": "numpy", "__class__": "ndarray"}}}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("schema.json", json.dumps(schema))
    assert skops_modules(path) == {"sklearn", "numpy"}


def test_a_model_directory_minus_its_own_modules(tmp_path: Path) -> None:
    (tmp_path / "code" / "mypkg").mkdir(parents=True)
    (tmp_path / "code" / "mypkg" / "__init__.py").write_text("import lightgbm\nfrom mypkg import helpers\n")
    (tmp_path / "code" / "helpers.py").write_text("import pandas\n")
    (tmp_path / "scaled_model.py").write_text("import numpy as np\nimport helpers\n")
    (tmp_path / "data.pkl").write_bytes(pickle.dumps(_Local))
    found = referenced_modules(tmp_path)
    assert {"lightgbm", "pandas", "numpy", "tests"} <= found
    assert not {"mypkg", "helpers", "scaled_model", "code"} & found


def test_saved_fixture_models(sklearn_model: Path, custom_pyfunc_model: Path) -> None:
    assert {"sklearn", "numpy"} <= referenced_modules(sklearn_model)
    assert "fixture_custom_models" not in referenced_modules(custom_pyfunc_model)
