"""``deployer predict --target sagemaker --stream`` end to end, through botocore.

moto 5.2.5 has no InvokeEndpointWithResponseStream (no route for
``/endpoints/{name}/invocations-response-stream``), so this test puts a small HTTP stand-in for
that one sagemaker-runtime operation in front of a real deployer server: it does what
SageMaker does per botocore's service model (sagemaker-runtime 2017-05-13) and AWS's
container contract - forwards the body to the container's ``POST /invocations`` with the
client's ``X-Amzn-SageMaker-Accept`` as ``Accept``, and wraps every piece of the container's
chunked response in an ``application/vnd.amazon.eventstream`` ``PayloadPart`` message. The
client side is unmodified deployer code and botocore's real event-stream parser
(CRC-checked), reached through ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``.
"""

from __future__ import annotations

import binascii
import http.client
import json
import re
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.serving.conftest import HOST, LiveServer, ServerPool

_ROUTE = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations-response-stream$")


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (struct.pack("!B", len(raw_name)) + raw_name + b"\x07"
            + struct.pack("!H", len(raw_value)) + raw_value)


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message (prelude, prelude CRC, headers, payload, message CRC)."""
    head = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack("!II", total, len(head))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack("!I", binascii.crc32(message))


def payload_part(data: bytes) -> bytes:
    return event_message({":event-type": "PayloadPart", ":content-type":
                          "application/octet-stream", ":message-type": "event"}, data)


class _Runtime(BaseHTTPRequestHandler):
    container: LiveServer
    seen: list[dict[str, str]]

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        match = _ROUTE.match(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if match is None:
            self.send_error(404)
            return
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        conn = http.client.HTTPConnection(HOST, self.container.port, timeout=30)
        conn.request("POST", "/invocations", body=body, headers={
            "Content-Type": self.headers.get("Content-Type", "application/json"),
            "Accept": self.headers.get("X-Amzn-SageMaker-Accept", "*/*")})
        upstream = conn.getresponse()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("X-Amzn-SageMaker-Content-Type", upstream.getheader("Content-Type", ""))
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while True:
            piece = upstream.read1(65536)
            if not piece:
                break
            frame = payload_part(piece)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        conn.close()


@pytest.fixture()
def runtime(server_pool: ServerPool, counter_stream_model: Path, moto_server: str,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, str]]]:
    container = server_pool.deployer(counter_stream_model, "--workers", "1")
    seen: list[dict[str, str]] = []
    handler = type("Runtime", (_Runtime,), {"container": container, "seen": seen})
    server = ThreadingHTTPServer((HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
                       f"http://{HOST}:{server.server_address[1]}")
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def test_event_stream_frames_parse_with_botocore() -> None:
    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(payload_part(b"data: 1\n\n") + payload_part(b"data: [DONE]\n\n"))
    messages = list(buffer)
    assert [m.payload for m in messages] == [b"data: 1\n\n", b"data: [DONE]\n\n"]
    assert messages[0].headers[":event-type"] == "PayloadPart"


def test_predict_stream_cli_through_invoke_endpoint_with_response_stream(
        runtime: list[dict[str, str]], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from deployer.cli import cli

    request = tmp_path / "request.json"
    request.write_text(json.dumps({"inputs": {"prompt": ["hi"]}, "params": {"n": 3}}))
    res = CliRunner().invoke(cli, ["predict", "--target", "sagemaker", "--name", "counter",
                                   "--region", "us-east-1", "-i", str(request), "--stream"])
    assert res.exit_code == 0, res.output
    events = [line[len("data: "):] for line in res.stdout.splitlines() if line]
    assert events[-1] == "[DONE]"
    assert [json.loads(e)["i"] for e in events[:-1]] == [0, 1, 2]
    (seen,) = runtime
    assert seen["x-amzn-sagemaker-accept"] == "text/event-stream"  # what the CLI asked for
    # into a file: written once complete, the summary on stdout
    out = tmp_path / "stream.txt"
    res = CliRunner().invoke(cli, ["predict", "--target", "sagemaker", "--name", "counter",
                                   "--region", "us-east-1", "-i", str(request), "--stream",
                                   "-o", str(out), "--output", "json"])
    assert res.exit_code == 0, res.output
    assert out.read_text().endswith("data: [DONE]\n\n")
    assert json.loads(res.stdout)["bytes"] == len(out.read_bytes())


def test_stream_flag_needs_a_streaming_target(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from deployer.cli import cli

    request = tmp_path / "r.json"
    request.write_text("{}")
    res = CliRunner().invoke(cli, ["predict", "-m", str(tmp_path), "-i", str(request),
                                   "--stream"])
    assert res.exit_code == 2 and "--stream" in res.output and "Traceback" not in res.output
