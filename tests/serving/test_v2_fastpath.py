"""The V2 route on the fast path: MLflow's answer or a decline, like ``/invocations``.

In-process replays through both paths of the V2 adapter: ``try_fast`` (the fast path, or
None) against ``infer_general`` (the tensors turned into the model input and run through
MLflow's own enforcement). The Echo model returns the values, dtypes, index and params it
received, so "identical output" means "identical input to the model"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from deployer.serving.core import Prepared, ScoringCore
from deployer.serving.v2 import V2Adapter
from tests.serving.conftest import ECHO_COLUMNS, IRIS_COLUMNS, IRIS_LABELS, IRIS_ROWS

V2_TYPES = {"double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32", "boolean": "BOOL",
            "string": "BYTES"}
SAMPLES = {"double": [1.5, -0.25], "float": [0.5, 2.0], "long": [3, -(2**40)], "integer": [4, -7],
           "boolean": [True, False], "string": ["x", "ünï"]}


@pytest.fixture(scope="module")
def echo(echo_model: Path) -> V2Adapter:
    return V2Adapter(ScoringCore.load(echo_model))


@pytest.fixture(scope="module")
def iris(sklearn_model: Path) -> V2Adapter:
    return V2Adapter(ScoringCore.load(sklearn_model))


def path_of(v2: V2Adapter) -> str:
    return f"/v2/models/{v2.core.model_name}/infer"


def body(inputs: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def column(name: str, kind: str, values: list[Any], shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": name, "datatype": V2_TYPES[kind], "shape": shape or [len(values)], "data": values}


def both(v2: V2Adapter, data: bytes) -> tuple[Any, Any]:
    return v2.try_fast(path_of(v2), data), v2.infer_general(path_of(v2), data)


def check(v2: V2Adapter, data: bytes, *, must_be_fast: bool = False) -> Any:
    fast, general = both(v2, data)
    if fast is None:
        assert not must_be_fast, f"the fast path declined {data[:300]!r}"
        return general
    assert (fast.status, json.loads(fast.body)) == (general.status, json.loads(general.body)), (
        data[:300], fast.body[:500], general.body[:500])
    return fast


ALL = [column(name, kind, SAMPLES[kind]) for name, kind in ECHO_COLUMNS]


@pytest.mark.parametrize("data", [
    body(ALL),
    body(ALL, id="r1"),
    body(ALL, parameters={"k": 5}),
    body([*ALL, column("opt", "double", [0.5, 1.0])]),
    body([column(n, k, SAMPLES[k], [2, 1]) for n, k in ECHO_COLUMNS]),  # [n, 1] columns
    body(ALL[::-1]),  # any order
], ids=["plain", "id", "params", "optional", "n-by-1", "reversed"])
def test_exact_tensors_take_the_fast_path_with_mlflows_answer(echo: V2Adapter, data: bytes) -> None:
    result = check(echo, data, must_be_fast=True)
    assert result.status == 200


@pytest.mark.parametrize("data", [
    body([column("d", "long", [1, 2]), *ALL[1:]]),  # a cast enforcement would make
    body([*ALL, column("zz", "double", [1.0, 2.0])]),  # a tensor the signature lacks
    body(ALL[1:]),  # a required column missing
    body([{"name": "d", "datatype": "FP64", "shape": [1, 2], "data": [1.0, 2.0]}, *ALL[1:]]),
    body([column("d", "double", [1.0]), *ALL[1:]]),  # lengths differ
    body(ALL, parameters={"k": "not a long"}),
    body(ALL, parameters={"k": 5, "zz": 1}),
], ids=["cast", "extra", "missing", "wide", "lengths", "bad-param", "extra-param"])
def test_anything_else_is_left_to_mlflow(echo: V2Adapter, data: bytes) -> None:
    fast, general = both(echo, data)
    assert fast is None or (fast.status, json.loads(fast.body)) == (general.status, json.loads(general.body))
    assert echo.infer(path_of(echo), data).body == general.body


@st.composite
def requests(draw: Any) -> bytes:
    names = draw(st.lists(st.sampled_from([n for n, _ in ECHO_COLUMNS] + ["opt", "zz"]), unique=True,
                          min_size=1, max_size=8))
    n = draw(st.integers(1, 3))
    inputs = []
    for name in names:
        kind = draw(st.sampled_from(list(V2_TYPES)))
        values = draw(st.lists({
            "double": st.floats(allow_nan=False, allow_infinity=False, width=64),
            "float": st.floats(allow_nan=False, allow_infinity=False, width=32),
            "long": st.integers(-(2**62), 2**62), "integer": st.integers(-(2**31), 2**31 - 1),
            "boolean": st.booleans(), "string": st.text(max_size=3)}[kind], min_size=n, max_size=n))
        shape = draw(st.sampled_from([[n], [n, 1]]))
        inputs.append(column(name, kind, values, shape))
    extra: dict[str, Any] = {}
    if draw(st.booleans()):
        extra["parameters"] = {"k": draw(st.integers(-5, 5))}
    return body(inputs, **extra)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=requests())
def test_the_fast_path_never_differs_from_mlflow(echo: V2Adapter, data: bytes) -> None:
    fast, general = both(echo, data)
    event("declined" if fast is None else "fast path")
    if fast is not None:
        assert (fast.status, json.loads(fast.body)) == (general.status, json.loads(general.body))


def _iris_body(rows: list[list[float]], **extra: Any) -> bytes:
    return body([column(c, "double", [r[i] for r in rows]) for i, c in enumerate(IRIS_COLUMNS)], **extra)


def test_an_sklearn_model_answers_v2_on_the_matrix_shortcut(iris: V2Adapter) -> None:
    assert iris.core._fast.uses_sklearn_matrix
    result = check(iris, _iris_body(IRIS_ROWS, id="x"), must_be_fast=True)
    assert json.loads(result.body)["outputs"] == [
        {"name": "predictions", "shape": [3], "datatype": "INT64", "data": IRIS_LABELS}]
    rows = np.random.RandomState(0).uniform(0, 8, (500, 4)).round(3).tolist()
    check(iris, _iris_body(rows), must_be_fast=True)


def test_v2_and_invocations_requests_batch_together(iris: V2Adapter) -> None:
    """One batch of both routes' requests: each gets its own route's answer, as alone."""
    core = iris.core
    assert core.batchable
    rng = np.random.RandomState(1)
    chunks = [rng.uniform(0, 8, (rng.randint(1, 4), 4)).round(2).tolist() for _ in range(8)]
    v2_bodies = [_iris_body(rows, id=f"r{i}") for i, rows in enumerate(chunks[:4])]
    mlflow_bodies = [json.dumps({"dataframe_split": {"columns": IRIS_COLUMNS, "data": rows}}).encode()
                     for rows in chunks[4:]]
    prepared = [iris.prepare(path_of(iris), b) for b in v2_bodies]
    prepared += [core.try_prepare(b, "application/json") for b in mlflow_bodies]
    assert all(isinstance(p, Prepared) for p in prepared)
    batched = core.run_batch(prepared)  # type: ignore[arg-type]
    alone = [iris.infer_general(path_of(iris), b) for b in v2_bodies]
    alone += [core.invoke_general(b, "application/json") for b in mlflow_bodies]
    assert [json.loads(r.body) for r in batched] == [json.loads(r.body) for r in alone]
    assert [json.loads(r.body)["id"] for r in batched[:4]] == ["r0", "r1", "r2", "r3"]
    # a request with NaN in a batch: it gets MLflow's own answer, the others theirs
    nan = body([column(c, "double", [float("nan") if i == 0 else 1.0]) for i, c in enumerate(IRIS_COLUMNS)])
    mixed = prepared[:2] + [iris.prepare(path_of(iris), nan)]
    results = core.run_batch(mixed)  # type: ignore[arg-type]
    assert [r.body for r in results[:2]] == [r.body for r in batched[:2]]
    assert results[2].body == iris.infer_general(path_of(iris), nan).body
    # parameters are not batched (answered alone)
    assert iris.prepare(path_of(iris), _iris_body(IRIS_ROWS, parameters={"x": 1})) is None
