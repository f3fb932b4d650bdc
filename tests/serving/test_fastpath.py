"""The fast path must give MLflow's answer or decline: replay requests through both paths.

In-process (no HTTP): ``core._fast.invoke_json`` (the fast path) against
``core.invoke_general`` (MLflow's own ``invocations``). Where the fast path answers, status and
JSON must be identical; where it declines, MLflow answers anyway. The Echo model returns the
values, dtypes, index and params it received, so "identical output" means "identical input
to the model".
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from deployer.serving._encode import encode_predictions
from deployer.serving.core import ScoringCore
from tests.serving.conftest import ECHO_COLUMNS, IRIS_COLUMNS, IRIS_ROWS


@pytest.fixture(scope="module")
def echo_core(echo_model: Path) -> ScoringCore:
    return ScoringCore.load(echo_model)


@pytest.fixture(scope="module")
def iris_core(sklearn_model: Path) -> ScoringCore:
    return ScoringCore.load(sklearn_model)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def both_paths(core: ScoringCore, payload: dict[str, Any]) -> tuple[Any, Any]:
    fast = core._fast.invoke_json(copy.deepcopy(payload))
    general = core.invoke_general(json.dumps(payload).encode(), "application/json")
    return fast, general


def assert_identical(core: ScoringCore, payload: dict[str, Any], *, must_be_fast: bool = False
                     ) -> Any:
    fast, general = both_paths(core, payload)
    return _check(payload, fast, general, must_be_fast)


def _check(payload: dict[str, Any], fast: Any, general: Any, must_be_fast: bool) -> Any:
    if fast is None:
        assert not must_be_fast, f"fast path declined {payload}"
        return general
    assert general.status == 200, (payload, general.body[:500])
    assert fast.status == 200
    assert _same(json.loads(fast.body), json.loads(general.body)), (
        payload, fast.body[:800], general.body[:800])
    return fast


ROWS = [[1.5, 2.5, 3, 4, True, "x"], [-0.25, 1e20, -(2**40), -7, False, "ünï"]]
NAMES = [n for n, _ in ECHO_COLUMNS]


@pytest.mark.parametrize("payload", [
    {"dataframe_split": {"columns": NAMES, "data": ROWS}},
    {"dataframe_split": {"columns": NAMES, "data": ROWS, "index": [7, 3]}},
    {"dataframe_split": {"columns": NAMES, "data": ROWS, "index": ["a", "b"]}},
    {"dataframe_split": {"columns": [*NAMES, "opt"], "data": [[*r, 0.5] for r in ROWS]}},
    {"dataframe_split": {"columns": ["extra", *NAMES], "data": [["e", *r] for r in ROWS]}},
    {"dataframe_split": {"columns": NAMES[::-1], "data": [r[::-1] for r in ROWS]}},
    {"dataframe_split": {"columns": NAMES, "data": [[1, 2, 3, 4, True, "i"]]}},
    {"dataframe_records": [dict(zip(NAMES, r, strict=True)) for r in ROWS]},
    {"dataframe_records": [dict(zip(NAMES, r, strict=True)) for r in ROWS], "params": {"k": 5}},
    {"dataframe_split": {"columns": NAMES, "data": ROWS}, "params": {"k": 2, "zz": 1}},
])
def test_clean_requests_take_the_fast_path_with_mlflows_result(echo_core: ScoringCore,
                                                               payload: dict[str, Any]) -> None:
    assert_identical(echo_core, payload, must_be_fast=True)


@pytest.mark.parametrize("payload", [
    {"inputs": {"d": [1.5, 2], "f": [0.5, 1], "l": [1, 2], "i": [3, 4], "b": [True, False],
                "s": ["a", "b"]}},
    {"instances": [{"d": 1.5, "f": 2.5, "l": 3, "i": 4, "b": True, "s": "x"}]},
])
def test_tf_serving_formats_match_mlflow(echo_core: ScoringCore, payload: dict[str, Any]) -> None:
    assert_identical(echo_core, payload)


@pytest.mark.parametrize("payload", [
    {"dataframe_split": {"columns": NAMES, "data": [[None, 1.0, 1, 1, True, "x"]]}},
    {"dataframe_split": {"columns": NAMES, "data": [["1.5", 1.0, 1, 1, True, "x"]]}},
    {"dataframe_split": {"columns": NAMES, "data": [[1.5, 1.0, 1.5, 1, True, "x"]]}},
    {"dataframe_split": {"columns": NAMES, "data": [[1.5, 1.0, 1, 2**40, True, "x"]]}},
    {"dataframe_split": {"columns": NAMES, "data": [[1.5, 1.0, 1, 1, 1, "x"]]}},
    {"dataframe_split": {"columns": NAMES, "data": [[1.5, 1.0, 1, 1, True, 5]]}},
    {"dataframe_split": {"columns": NAMES[:-1], "data": [[1.5, 1.0, 1, 1, True]]}},
    {"dataframe_split": {"columns": NAMES, "data": [[1.5, 1.0, 1, 1, True]]}},
    {"dataframe_split": {"columns": NAMES, "data": ROWS, "index": [1]}},
    {"dataframe_split": {"data": ROWS}},
    {"dataframe_split": {"columns": NAMES, "data": ROWS}, "params": {"k": "nope"}},
    {"dataframe_split": {"columns": NAMES, "data": ROWS}, "instances": []},
    {"dataframe_records": {"d": 1}},
    {"dataframe_split": [1, 2]},
    {"dataframe_split": {"columns": NAMES, "data": ROWS}, "prompt": "hi"},
])
def test_unusual_requests_are_left_to_mlflow(echo_core: ScoringCore,
                                             payload: dict[str, Any]) -> None:
    fast, general = both_paths(echo_core, payload)
    assert fast is None, (payload, fast)
    assert general.status in (200, 400)


_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**66), 2**66),
    st.integers(-5, 5), st.booleans(), st.text(max_size=4), st.none(),
    st.lists(st.integers(0, 3), max_size=2))
_clean_values = {
    "double": st.one_of(st.floats(allow_nan=False, width=64), st.integers(-(2**60), 2**60)),
    "float": st.one_of(st.floats(allow_nan=False, width=32), st.integers(-(2**30), 2**30)),
    "long": st.integers(-(2**63), 2**63 - 1),
    "integer": st.integers(-(2**31), 2**31 - 1),
    "boolean": st.booleans(),
    "string": st.text(max_size=6),
}


def _cell(draw: Any, kind: str) -> Any:
    """Mostly a value of the column's type; sometimes anything (3% of cells)."""
    if draw(st.integers(0, 32)) == 0:
        return draw(_value)
    return draw(_clean_values[kind])


@st.composite
def echo_payloads(draw: Any) -> dict[str, Any]:
    fmt = draw(st.sampled_from(["dataframe_split", "dataframe_records", "inputs", "instances"]))
    columns = [n for n, _ in ECHO_COLUMNS if draw(st.integers(0, 40)) > 0]
    if draw(st.booleans()):
        columns.append("opt")
    if draw(st.integers(0, 4)) == 0:
        columns.append("extra")
    columns = draw(st.permutations(columns))
    kinds = dict(ECHO_COLUMNS, opt="double", extra="string")
    n = draw(st.integers(1, 4))
    rows = [[_cell(draw, kinds[c]) for c in columns] for _ in range(n)]
    if fmt == "dataframe_split":
        split: dict[str, Any] = {"columns": columns, "data": rows}
        if draw(st.booleans()):
            item = draw(st.sampled_from([st.integers(-3, 3), st.text(max_size=2),
                                         st.one_of(st.integers(), st.text(), st.floats())]))
            split["index"] = draw(st.lists(item, min_size=n, max_size=n))
        payload: dict[str, Any] = {fmt: split}
    elif fmt in ("dataframe_records", "instances"):
        payload = {fmt: [dict(zip(columns, r, strict=True)) for r in rows]}
    else:
        payload = {fmt: {c: [r[i] for r in rows] for i, c in enumerate(columns)}}
    if draw(st.booleans()):
        payload["params"] = {"k": _cell(draw, "long")}
    return payload


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=echo_payloads())
def test_fast_path_never_differs_from_mlflow(echo_core: ScoringCore,
                                             payload: dict[str, Any]) -> None:
    fast, general = both_paths(echo_core, payload)
    event("declined" if fast is None else "fast path")
    _check(payload, fast, general, False)


def test_sklearn_matrix_shortcut_is_used_and_exact(iris_core: ScoringCore) -> None:
    assert iris_core._fast.uses_sklearn_matrix
    rng = np.random.RandomState(0)
    rows = rng.uniform(0, 8, (500, 4)).round(3).tolist()
    result = assert_identical(
        iris_core, {"dataframe_split": {"columns": IRIS_COLUMNS, "data": rows}},
        must_be_fast=True)
    assert len(json.loads(result.body)["predictions"]) == 500
    assert_identical(iris_core, {"dataframe_records": [dict(zip(IRIS_COLUMNS, r, strict=True))
                                                       for r in IRIS_ROWS]}, must_be_fast=True)
    assert_identical(iris_core, {"inputs": {c: [r[i] for r in IRIS_ROWS]
                                            for i, c in enumerate(IRIS_COLUMNS)}},
                     must_be_fast=True)


def test_sklearn_matrix_equals_what_sklearn_sees_from_the_frame(iris_core: ScoringCore) -> None:
    """Same values and memory order as np.asarray(DataFrame): BLAS sums in the same order."""
    frame = iris_core._fast._frame({"dataframe_split": {"columns": IRIS_COLUMNS,
                                                        "data": IRIS_ROWS}})
    matrix = frame.matrix()
    expected = np.asarray(frame.frame())
    assert matrix.dtype == expected.dtype
    assert matrix.flags["F_CONTIGUOUS"] == expected.flags["F_CONTIGUOUS"]
    assert np.array_equal(matrix, expected)
    est = iris_core.pyfunc_model._model_impl.sklearn_model
    assert np.array_equal(est.predict_proba(matrix), est.predict_proba(frame.frame()))


def _mlflow_encoding(raw: Any) -> Any:
    from io import StringIO

    from mlflow.pyfunc.scoring_server import predictions_to_json

    out = StringIO()
    predictions_to_json(raw, out)
    return json.loads(out.getvalue())


@pytest.mark.parametrize("raw", [
    np.array([0, 1, 2]),
    np.array([[0.1, 0.2], [0.3, np.float32(0.4)]], dtype=np.float32),
    np.array([1.0, np.nan, np.inf]),
    np.array(["a", "b"]),
    np.array([b"x", b"y"]),
    np.array([{"a": 1}, None], dtype=object),
    np.array([True, False]),
    np.array([2**63 + 5], dtype=np.uint64),
    pd.DataFrame({"a": [1, 2], "b": [0.5, np.nan], "c": ["x", "y"]}),
    pd.DataFrame({"a": [1, 2], "c": ["x", None]}),
    pd.DataFrame({"t": pd.to_datetime(["2020-01-01", "2021-02-03"])}),
    pd.DataFrame({"a": [1.5, 2.5], "b": [True, False]}),
    pd.Series([1, 2, 3]),
    pd.Series([1.5, 2.5], name="score"),
    pd.Series([1.5, 2.5], name=1.5),
    [1, 2, "x"],
    {"a": np.array([1, 2])},
    "text",
])
def test_encoding_matches_mlflow(raw: Any) -> None:
    assert _same(json.loads(encode_predictions(raw)), _mlflow_encoding(raw))


def test_non_finite_input_is_left_to_mlflow(iris_core: ScoringCore) -> None:
    import sklearn

    for bad in (float("nan"), float("inf")):
        payload = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": [[bad, 1.0, 1.0, 1.0]]}}
        fast, general = both_paths(iris_core, payload)
        assert fast is None
        assert general.status == 400
    # skipping scikit-learn's own scan on finite input leaves its config as it was
    assert_identical(iris_core, {"dataframe_split": {"columns": IRIS_COLUMNS,
                                                     "data": IRIS_ROWS}}, must_be_fast=True)
    assert sklearn.get_config()["assume_finite"] is False


def test_batched_scoring_equals_one_by_one(iris_core: ScoringCore) -> None:
    from deployer.serving.core import Prepared

    assert iris_core.batchable
    rng = np.random.RandomState(1)
    bodies = [json.dumps({"dataframe_split": {"columns": IRIS_COLUMNS, "data": rng.uniform(
        0, 8, (rng.randint(1, 4), 4)).round(2).tolist()}}).encode() for _ in range(12)]
    prepared = [iris_core.try_prepare(b, "application/json") for b in bodies]
    assert all(isinstance(p, Prepared) for p in prepared)
    batched = iris_core.run_batch(prepared)  # type: ignore[arg-type]
    alone = [iris_core.invoke_general(b, "application/json") for b in bodies]
    assert [json.loads(r.body) for r in batched] == [json.loads(r.body) for r in alone]
    # one bad request in a batch: it gets MLflow's error, the others their predictions
    nan_body = json.dumps({"dataframe_split": {"columns": IRIS_COLUMNS,
                                               "data": [[float("nan"), 1, 1, 1]]}}).encode()
    mixed = prepared[:3] + [iris_core.try_prepare(nan_body, "application/json")]
    results = iris_core.run_batch(mixed)  # type: ignore[arg-type]
    assert [r.status for r in results] == [200, 200, 200, 400]
    assert [json.loads(r.body) for r in results[:3]] == [json.loads(r.body) for r in alone[:3]]
