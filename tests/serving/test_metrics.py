"""GET /metrics: Prometheus text, correct across worker processes."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from tests.serving.conftest import IRIS_COLUMNS, IRIS_ROWS, LiveServer


def _samples(server: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = server.get("/metrics")
    assert resp.status == 200
    assert resp.content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(resp.body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counts_requests_errors_and_latency_across_workers(sklearn_server: LiveServer) -> None:
    before = _samples(sklearn_server)
    body = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}
    for _ in range(30):  # a new connection each: both workers get some
        assert sklearn_server.post(body).status == 200
    for _ in range(5):
        assert sklearn_server.post(b"{bad").status == 400
    sklearn_server.get("/nope")
    after = _samples(sklearn_server)
    model = "sklearn_skops"  # the model label: the served model's name (its directory's)
    ok = dict(route="/invocations", method="POST", status="200", model=model)
    assert _value(after, "deployer_requests_total", **ok) - \
        _value(before, "deployer_requests_total", **ok) == 30
    bad = dict(route="/invocations", status="400", model=model)
    assert _value(after, "deployer_request_errors_total", **bad) - \
        _value(before, "deployer_request_errors_total", **bad) == 5
    assert _value(after, "deployer_request_errors_total", route="other", status="404",
                  model="") >= 1
    count = _value(after, "deployer_request_duration_seconds_count", route="/invocations",
                   model=model)
    assert count - _value(before, "deployer_request_duration_seconds_count",
                          route="/invocations", model=model) == 35
    assert _value(after, "deployer_request_duration_seconds_bucket", route="/invocations",
                  model=model, le="+Inf") == count
    assert ("deployer_requests_in_flight", ()) in after
    assert any(name == "deployer_model_info" for name, _ in after)


def test_single_worker_metrics(params_server: LiveServer) -> None:
    params_server.post({"dataframe_records": [{"text": "a"}]})
    text = params_server.get("/metrics").body.decode()
    assert re.search(r'deployer_requests_total\{method="POST",model="params",'
                     r'route="/invocations",status="200"\} [1-9]', text), text
    assert "deployer_requests_in_flight" in text
