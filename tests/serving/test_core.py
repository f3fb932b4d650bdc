"""The scoring core's public API, in process (the adapters' contract)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployer.serving.core import (
    ScoringCore,
    ScoringError,
    ScoringResult,
    check_content_type,
    decode_json,
)
from tests.serving.conftest import IRIS_COLUMNS, IRIS_LABELS, IRIS_ROWS


@pytest.fixture(scope="module")
def core(sklearn_model: Path) -> ScoringCore:
    return ScoringCore.load(sklearn_model)


@pytest.fixture(scope="module")
def params_core(params_model: Path) -> ScoringCore:
    return ScoringCore.load(params_model, name="p", version="7")


@pytest.mark.parametrize(("header", "mime"), [
    ("application/json", "application/json"),
    ("application/json; charset=utf-8", "application/json"),
    ("application/json;charset=UTF-8", "application/json"),
    ("text/csv", "text/csv"),
    ("application/vnd.apache.parquet", "application/vnd.apache.parquet"),
])
def test_accepted_content_types(header: str, mime: str) -> None:
    assert check_content_type(header) == (mime, None)


@pytest.mark.parametrize("header", [None, "", "text/plain", "application/json; charset=latin1",
                                    "application/json; format=pandas-split", "APPLICATION/JSON",
                                    "application/json; charset"])
def test_refused_content_types(header: str | None) -> None:
    mime, refusal = check_content_type(header)
    assert mime is None and refusal is not None
    assert refusal.status == 415 and refusal.content_type == "text/plain"


def test_decode_json_accepts_what_mlflow_accepts() -> None:
    assert math.isnan(decode_json(b'{"a": NaN}')["a"])
    assert decode_json(b'{"a": 123456789012345678901234567890}')["a"] == 123456789012345678901234567890
    assert decode_json('{"a": 1}'.encode("utf-16")) == {"a": 1}
    with pytest.raises(ScoringError) as info:
        decode_json(b"{" + b"x" * 5000)
    assert info.value.status == 400 and info.value.error_code == "BAD_REQUEST"
    assert len(info.value.message) < 2000  # the body is quoted, truncated


def test_properties(core: ScoringCore, params_core: ScoringCore) -> None:
    assert core.model_name == "sklearn_skops" and core.model_version is None
    assert params_core.model_name == "p" and params_core.model_version == "7"
    assert core.signature.inputs.input_names() == IRIS_COLUMNS
    assert isinstance(core.input_example, pd.DataFrame)
    assert core.serving_input_example["dataframe_split"]["columns"] == IRIS_COLUMNS
    assert params_core.params_schema is not None
    assert core.flavor == "mlflow.sklearn"
    assert core.has_fast_path


def test_invoke_returns_results_never_raises(core: ScoringCore) -> None:
    ok = core.invoke(json.dumps({"dataframe_split": {"columns": IRIS_COLUMNS,
                                                     "data": IRIS_ROWS}}).encode(),
                     "application/json")
    assert ok == ScoringResult(200, ok.body, "application/json")
    assert json.loads(ok.body) == {"predictions": IRIS_LABELS}
    for body, ctype in [(b"[", "application/json"), (b"", "text/csv"), (b"x", "text/plain")]:
        result = core.invoke(body, ctype)
        assert result.status in (400, 415)


def test_parse_json_payload_and_predict_records(params_core: ScoringCore) -> None:
    payload = {"dataframe_records": [{"text": "ab"}], "params": {"times": 2}}
    data, params = params_core.parse_json_payload(payload)
    assert "params" in payload  # not modified
    assert isinstance(data, pd.DataFrame) and params == {"times": 2}
    assert params_core.predict_records(data, params) == [{"output": "abab", "length": 4}]
    with pytest.raises(ScoringError) as info:
        params_core.parse_json_payload({"nothing": 1})
    assert info.value.error_code == "BAD_REQUEST"
    with pytest.raises(ScoringError) as info:
        params_core.predict_records(pd.DataFrame({"other": ["x"]}), None)
    assert info.value.status == 400 and info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "text" in info.value.message


def test_predict_raw_maps_model_failures(failing_model: Path) -> None:
    core = ScoringCore.load(failing_model)
    with pytest.raises(ScoringError) as info:
        core.predict_raw(pd.DataFrame({"a": [1]}))
    assert (info.value.status, info.value.error_code) == (400, "BAD_REQUEST")
    assert "stack_trace" not in info.value.to_dict()


def test_encode_predictions(core: ScoringCore) -> None:
    assert json.loads(core.encode_predictions(np.array([1, 2]))) == {"predictions": [1, 2]}


_json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(-(2**80), 2**80),
        st.floats(),
        st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.text(max_size=4), inner, max_size=4)),
    max_leaves=15)


def _typed_equal(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))  # type: ignore[arg-type]
    if isinstance(a, list):
        return len(a) == len(b) and all(  # type: ignore[arg-type]
            _typed_equal(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[call-overload]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_typed_equal(a[k], b[k]) for k in a)  # type: ignore[attr-defined,index]
    return a == b


@settings(max_examples=300, deadline=None)
@given(value=_json_values)
def test_decode_json_gives_exactly_what_the_stdlib_gives(value: object) -> None:
    text = json.dumps(value)
    for body in (text.encode(), text):
        assert _typed_equal(decode_json(body), json.loads(text))
