"""Every fixture model builds into an image that answers /invocations correctly in a container.

The three pyfunc models share one dependency set, so after the first one their builds reuse the
dependency layer (and only add runtime + model layers): the suite stays within its time budget.
"""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from deployer.building.execute import build_model_image
from deployer.building.plan import BuildOptions
from deployer.targets.base import DeployRequest
from deployer.targets.local import LocalTarget

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IRIS = {"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
                            "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}
CASES: dict[str, tuple[dict[str, Any], Any]] = {
    "custom_pyfunc_model": ({"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2]]}, "params": {"scale": 2}},
                            [{"a": 22.0, "b": 24}]),
    "tensor_model": ({"inputs": [[1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5]]}, [10.0, 2.0]),
    "params_model": ({"dataframe_split": {"columns": ["text"], "data": [["ab"]]},
                      "params": {"times": 2, "suffix": "!"}}, [{"output": "abab!", "length": 5}]),
    "sklearn_pickle_model": (IRIS, [0, 2]),
    "no_signature_model": (IRIS, [0, 2]),
}
#: Built with --parquet (pyarrow added); the others are built with the default (no pyarrow).
PARQUET = "sklearn_pickle_model"
PARQUET_TYPE = "application/vnd.apache.parquet"


def _post(url: str, payload: dict[str, Any] | bytes, ctype: str = "application/json") -> tuple[int, Any]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": ctype}, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _get(url: str) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=60) as resp:
        return json.loads(resp.read())


def _iris_parquet() -> bytes:
    import pandas as pd

    out = io.BytesIO()
    pd.DataFrame(**IRIS["dataframe_split"]).to_parquet(out)
    return out.getvalue()


@pytest.mark.parametrize("fixture", list(CASES))
def test_fixture_model_image_answers(fixture: str, request: pytest.FixtureRequest, docker_client,  # type: ignore[no-untyped-def]
                                     base_image: str, build_cache: Path) -> None:
    model: Path = request.getfixturevalue(fixture)
    payload, expected = CASES[fixture]
    parquet = fixture == PARQUET
    plan, result = build_model_image(str(model), BuildOptions(base_image=base_image, parquet=parquet),
                                     client=docker_client)
    assert result.image == plan.tag
    assert any(r.startswith("pyarrow") for r in plan.requirements.requirements) is parquet
    target = LocalTarget(client=docker_client, ready_timeout=240)
    name = "t-" + fixture.replace("_", "-")
    deploy = target.plan(DeployRequest(name=name, image_uri=plan.tag, options={"port": 0}))
    try:
        url = target.apply(deploy).endpoint_url
        status, body = _post(f"{url}/invocations", payload)
        assert status == 200, body
        assert body["predictions"] == expected
        # Parquet: answered with --parquet; otherwise a 415 that says how to get it
        status, body = _post(f"{url}/invocations", _iris_parquet(), PARQUET_TYPE)
        advertised = _get(f"{url}/openapi.json")["paths"]["/invocations"]["post"]["requestBody"]["content"]
        if parquet:
            assert status == 200 and body["predictions"] == [0, 2], body
            assert PARQUET_TYPE in advertised
        else:
            assert status == 415 and "--parquet" in body, body
            assert PARQUET_TYPE not in advertised
        # the Target protocol's predict goes through the same route
        raw = target.predict(name, json.dumps(payload).encode(), "application/json")
        assert json.loads(raw)["predictions"] == expected
        assert target.status(name).status == "running"
        assert name in [s.name for s in target.list()]
    finally:
        assert target.delete(name).status == "deleted"
    assert target.status(name).status == "absent"


def test_azureml_image_runs_azmlinfsrv_with_score_py(sklearn_model: Path, docker_client, base_image: str,  # type: ignore[no-untyped-def]
                                                     build_cache: Path) -> None:
    """--target azureml: the image serves Azure's protocol (GET / health, POST /score)."""
    plan, _result = build_model_image(str(sklearn_model), BuildOptions(base_image=base_image, target="azureml"),
                                      client=docker_client)
    assert any(r.startswith("azureml-inference-server-http") for r in plan.requirements.requirements)
    target = LocalTarget(client=docker_client, ready_timeout=240)
    deploy = target.plan(DeployRequest(name="t-azure", image_uri=plan.tag, options={"port": 0,
                                                                                    "serve_as": "azureml"}))
    try:
        url = target.apply(deploy).endpoint_url
        body = {"input_data": {"columns": IRIS["dataframe_split"]["columns"],
                               "data": IRIS["dataframe_split"]["data"]}}
        status, answer = _post(f"{url}/score", body)
        assert status == 200, answer
        assert answer == [0, 2]
        status, answer = _post(f"{url}/score", {"input_data": {"columns": ["nope"], "data": [[1]]}})
        assert 400 <= status < 500, answer
    finally:
        target.delete("t-azure")
