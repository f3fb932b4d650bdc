"""Streaming predictions over HTTP: real MLflow-saved streaming models, real server processes.

The wire format checked here is what MLflow's own streaming client reads (``data: <json>``
events, ending at ``data: [DONE]``; mlflow/deployments/databricks ``predict_stream``) and
OpenAI's chat streaming format (``chat.completion.chunk`` objects) for a ChatModel.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path

import pytest

from tests.serving.conftest import HOST, IRIS_COLUMNS, IRIS_ROWS, LiveServer, ServerPool
from tests.serving.sse import open_stream, read_events, stream

CHAT = {"messages": [{"role": "user", "content": "one two three"}], "stream": True}


@pytest.fixture(scope="module")
def chat_server(server_pool: ServerPool, chat_stream_model: Path) -> LiveServer:
    return server_pool.deployer(chat_stream_model, "--workers", "1")


@pytest.fixture(scope="module")
def counter_server(server_pool: ServerPool, counter_stream_model: Path) -> LiveServer:
    # 3 s between chunks: room for a loaded CI machine, yet short enough to test a stall
    return server_pool.deployer(counter_stream_model, "--workers", "1", "--timeout", "3")


def _counter(**params: object) -> dict[str, object]:
    return {"inputs": {"prompt": ["hi"]}, "params": params, "stream": True}


def test_chat_model_streams_openai_chat_chunks(chat_server: LiveServer) -> None:
    out = stream(HOST, chat_server.port, CHAT)
    assert out.status == 200
    assert out.headers["content-type"].startswith("text/event-stream")
    assert out.headers["transfer-encoding"] == "chunked"
    assert out.headers["cache-control"] == "no-cache"
    assert out.done, out.events
    chunks = out.chunks()
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 3
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "one two three"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_chat_model_without_stream_answers_one_json_body(chat_server: LiveServer) -> None:
    resp = chat_server.post({"messages": CHAT["messages"]})
    assert resp.status == 200 and resp.content_type == "application/json"
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "one two three"


def test_keep_alive_connection_is_reusable_after_a_stream(chat_server: LiveServer) -> None:
    conn, resp = open_stream(HOST, chat_server.port, CHAT)
    try:
        events, _ = read_events(resp)
        assert events[-1] == "[DONE]"
        assert resp.read() == b""  # the terminating zero-length chunk was consumed
        conn.request("GET", "/ping")
        again = conn.getresponse()
        assert again.status == 200
        again.read()
    finally:
        conn.close()


def test_custom_python_model_streams_its_chunks(counter_server: LiveServer) -> None:
    out = stream(HOST, counter_server.port, _counter(n=4))
    assert out.status == 200 and out.done
    assert [c["i"] for c in out.chunks()] == [0, 1, 2, 3]
    # the unified LLM shape works too (params picked from the params schema)
    out = stream(HOST, counter_server.port, {"prompt": "yo", "n": 2, "stream": True})
    assert [c["i"] for c in out.chunks()] == [0, 1] and out.done


def test_sagemaker_response_stream_contract_accept_header(counter_server: LiveServer) -> None:
    """InvokeEndpointWithResponseStream: the client's X-Amzn-SageMaker-Accept reaches the
    container; the body need not say "stream" (botocore's sagemaker-runtime model)."""
    body = {"inputs": {"prompt": ["hi"]}, "params": {"n": 2}}
    for header in ("Accept", "X-Amzn-SageMaker-Accept"):
        out = stream(HOST, counter_server.port, body, {header: "text/event-stream"})
        assert out.status == 200 and out.headers["transfer-encoding"] == "chunked", header
        assert [c["i"] for c in out.chunks()] == [0, 1] and out.done
    # an explicit "stream": false wins over the header
    out = stream(HOST, counter_server.port, {**body, "stream": False},
                 {"Accept": "text/event-stream"})
    assert out.headers["content-type"] == "application/json"
    assert json.loads(out.body)["predictions"] == [{"i": 0}, {"i": 1}]


def test_timeout_applies_between_chunks_not_to_the_whole_stream(counter_server: LiveServer
                                                                ) -> None:
    """--timeout 3: four chunks 1.6 s apart (4.8 s in all) stream to the end."""
    out = stream(HOST, counter_server.port, _counter(n=4, delay=1.6))
    assert out.done and [c["i"] for c in out.chunks()] == [0, 1, 2, 3]
    assert out.arrival[-1] > 3
    assert out.arrival[1] - out.arrival[0] > 1.0  # chunks are sent as produced, not buffered


def test_a_stalled_chunk_ends_the_stream_with_a_deadline_event(counter_server: LiveServer
                                                               ) -> None:
    started = time.monotonic()
    out = stream(HOST, counter_server.port, _counter(n=3, stall_at=1, stall=8.0))
    assert time.monotonic() - started < 7.0
    assert out.status == 200 and not out.done
    assert json.loads(out.events[0]) == {"i": 0, "prompt": "hi"}
    error = json.loads(out.events[-1])["error"]
    assert error["code"] == "DEADLINE_EXCEEDED" and "--timeout" in error["message"]
    assert counter_server.alive()


def test_an_error_mid_stream_ends_it_with_an_error_event(counter_server: LiveServer) -> None:
    out = stream(HOST, counter_server.port, _counter(n=5, fail_at=2))
    assert out.status == 200 and not out.done
    assert [json.loads(e).get("i") for e in out.events[:2]] == [0, 1]
    error = json.loads(out.events[2])["error"]
    assert error["code"] == "BAD_REQUEST" and "ValueError" in error["message"]
    assert len(out.events) == 3
    assert "counter failed at 2" in counter_server.log()  # the traceback is logged, not sent
    assert counter_server.alive()


def test_an_error_before_the_first_chunk_is_an_http_error(counter_server: LiveServer) -> None:
    out = stream(HOST, counter_server.port, _counter(n=5, fail_at=0))
    assert out.status == 400
    assert json.loads(out.body)["error_code"] == "BAD_REQUEST"
    # and a request the schema rejects, too
    out = stream(HOST, counter_server.port, {"inputs": {"other": ["x"]}, "stream": True})
    assert out.status == 400


def test_client_disconnect_closes_the_models_generator(counter_server: LiveServer,
                                                       tmp_path: Path) -> None:
    progress = tmp_path / "progress.txt"
    conn, resp = open_stream(HOST, counter_server.port,
                             _counter(n=200, delay=0.05, progress=str(progress)))
    events, _ = read_events(resp, limit=2)
    assert len(events) == 2
    conn.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    conn.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "closed" not in progress.read_text():
        time.sleep(0.05)
    lines = progress.read_text().split()
    assert lines[-1] == "closed", lines
    assert len(lines) < 100, "the generator ran on after the client left"
    assert counter_server.alive()


def test_stream_flag_on_a_model_that_cannot_stream_answers_json(sklearn_server: LiveServer
                                                                ) -> None:
    body = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}, "stream": True}
    resp = sklearn_server.post(body)
    assert resp.status == 200 and resp.content_type == "application/json"
    assert len(resp.json()["predictions"]) == 3


def test_streams_under_uvicorn_too(server_pool: ServerPool, chat_stream_model: Path) -> None:
    server = server_pool.deployer(chat_stream_model, "--workers", "1", "--http", "uvicorn")
    out = stream(HOST, server.port, CHAT)
    assert out.status == 200 and out.done
    assert "".join(c["choices"][0]["delta"]["content"] for c in out.chunks()) == "one two three"


def test_http_10_client_gets_a_close_delimited_stream(chat_server: LiveServer) -> None:
    body = json.dumps(CHAT).encode()
    with socket.create_connection((HOST, chat_server.port), timeout=30) as sock:
        sock.sendall(b"POST /invocations HTTP/1.0\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert payload.endswith(b"data: [DONE]\n\n")
    assert payload.count(b"data: ") == 4


def test_mlflow_client_parsing_reads_the_stream(chat_server: LiveServer) -> None:
    """The exact loop of MLflow's ``predict_stream`` client over our bytes."""
    conn = http.client.HTTPConnection(HOST, chat_server.port, timeout=30)
    conn.request("POST", "/invocations", body=json.dumps(CHAT),
                 headers={"Content-Type": "application/json"})
    lines = [line for line in conn.getresponse().read().decode().splitlines() if line]
    conn.close()
    chunks = []
    for line in lines:  # mlflow/deployments/databricks/__init__.py predict_stream
        key, value = line.split(":", 1)
        assert key == "data"
        value = value.strip()
        if value == "[DONE]":
            break
        chunks.append(json.loads(value))
    assert len(chunks) == 3


def test_responses_agent_streams_without_done(server_pool: ServerPool,
                                              responses_stream_model: Path) -> None:
    """ResponsesAgent: ResponsesAgentStreamEvent dicts, and no [DONE] (OpenAI's Responses
    streaming format ends with the stream)."""
    server = server_pool.deployer(responses_stream_model, "--workers", "1")
    body = {"input": [{"role": "user", "content": "hello there"}], "stream": True}
    out = stream(HOST, server.port, body)
    assert out.status == 200 and not out.done
    events = [json.loads(e) for e in out.events]
    assert [e["type"] for e in events] == ["response.output_text.delta"] * 2 + [
        "response.output_item.done"]
    assert [e["delta"] for e in events[:2]] == ["hello", "there"]
    resp = server.post({"input": body["input"]})
    assert resp.status == 200 and resp.json()["output"][0]["type"] == "message"


def test_each_chunk_may_come_from_another_pool_thread(chat_stream_model: Path) -> None:
    """The server's pool runs each ``next()`` on whichever thread is free. MLflow's
    ``predict_stream`` sets a context variable at the first chunk and resets it after the
    last; every chunk taken here on a new thread (a new, empty context) must still end the
    stream cleanly, not with the ValueError of a reset from a foreign context."""
    import threading

    from deployer.serving.core import ScoringCore
    from deployer.serving.streaming import END, next_chunk, start_stream

    core = ScoringCore.load(chat_stream_model)
    body = json.dumps({"messages": [{"role": "user", "content": "one two three"}],
                       "stream": True}).encode()
    outcome: list[object] = []

    def on_new_thread(fn: object) -> object:
        thread = threading.Thread(target=lambda: outcome.append(fn()))  # type: ignore[operator]
        thread.start()
        thread.join()
        return outcome.pop()

    started = on_new_thread(lambda: start_stream(core, body, "application/json", None))
    chunks, chunk, words = started.chunks, started.first, []  # type: ignore[attr-defined]
    while chunk is not END:
        words.append(chunk.choices[0].delta.content if hasattr(chunk, "choices")
                     else chunk["choices"][0]["delta"]["content"])
        chunk = on_new_thread(lambda: next_chunk(chunks))
    assert "".join(words) == "one two three"
