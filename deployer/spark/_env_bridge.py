"""``env_manager="virtualenv"`` over Spark Connect: the model runs in its packed environment
in a child process of the Python worker.

A classic session makes one UDF's workers run the packed environment's interpreter
(``SparkContext.pythonExec``, see :func:`deployer.spark.udf._pin_python`). Spark Connect has
no such thing: its server starts every Python worker with its own ``PYSPARK_PYTHON``. So the
worker (the server's Python: pyspark, pandas, pyarrow) keeps everything Spark-facing (column
naming, result-type conversion, :mod:`deployer.spark._worker`) and hands each batch's input
frame to ``<packed env>/bin/python``, started once per worker process and model, which
loads the model with the same :class:`deployer.serving.core.ScoringCore` and returns its raw
predictions. Frames travel as Arrow IPC streams over the child's stdin/stdout (length-
prefixed), never as pickles, so the two interpreters need not share pandas or numpy versions.

Imported on executors (worker side) and by the child itself (:func:`main`): standard library
at import time; pandas/pyarrow inside functions; the scoring core in the child only.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import struct
import subprocess
import sys
import threading
from typing import Any, BinaryIO

_HEADER = struct.Struct(">II")  # (header length, body length)


class BridgeError(RuntimeError):
    """The model (or its environment) failed in the packed environment's process."""


def _write(out: BinaryIO, header: dict[str, Any], body: bytes) -> None:
    raw = json.dumps(header).encode()
    out.write(_HEADER.pack(len(raw), len(body)) + raw + body)
    out.flush()


def _read(src: BinaryIO) -> tuple[dict[str, Any], bytes] | None:
    head = src.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    hlen, blen = _HEADER.unpack(head)
    header = json.loads(src.read(hlen))
    return header, src.read(blen)


def _table_bytes(table: Any) -> bytes:
    import pyarrow

    sink = io.BytesIO()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _frame_of(body: bytes) -> Any:
    import pyarrow

    return pyarrow.ipc.open_stream(body).read_all().to_pandas()


def encode_predictions(raw: Any) -> tuple[dict[str, Any], bytes]:
    """Raw predictions -> (kind, Arrow table): ndarray (1-D/2-D), Series, else a DataFrame
    (``pandas.DataFrame(raw)``, which is what the result-type rule does with them anyway)."""
    import numpy as np
    import pandas
    import pyarrow

    if isinstance(raw, np.ndarray) and raw.ndim in (1, 2):
        frame = pandas.DataFrame(raw.reshape(len(raw), -1))
        kind = {"kind": "ndarray", "ndim": raw.ndim}
    elif isinstance(raw, pandas.Series):
        frame = raw.to_frame(name="0")
        kind = {"kind": "series"}
    else:
        frame = raw if isinstance(raw, pandas.DataFrame) else pandas.DataFrame(raw)
        kind = {"kind": "frame"}
    frame = frame.rename(columns=str)
    return kind, _table_bytes(pyarrow.Table.from_pandas(frame, preserve_index=False))


def decode_predictions(header: dict[str, Any], body: bytes) -> Any:
    frame = _frame_of(body)
    if header["kind"] == "ndarray":
        values = frame.to_numpy()
        return values[:, 0] if header["ndim"] == 1 else values
    if header["kind"] == "series":
        return frame.iloc[:, 0]
    return frame


# ------------------------------------------------------------------------ worker side
class BridgedCore:
    """A ScoringCore stand-in in the Python worker: ``predict_batch`` runs in the child."""

    def __init__(
        self,
        python: str,
        model_dir: str,
        *,
        model_config: dict[str, Any] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """``model_config``: passed to ``ScoringCore.load`` in the child; ``extra_env``: set in
        the child's environment (where the model is loaded and runs)."""
        import deployer

        # deployer's root on the worker: the runtime zip shipped with the environment
        root = os.path.dirname(os.path.dirname(os.path.abspath(deployer.__file__)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYSPARK"))}
        env.update(extra_env or {})
        env["PYTHONPATH"] = root
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [
                python,
                "-c",
                "from deployer.spark._env_bridge import main; main()",
                model_dir,
                json.dumps(model_config),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        atexit.register(self.close)

    def predict_batch(self, frame: Any, params: dict[str, Any] | None = None) -> Any:
        import pyarrow

        body = _table_bytes(pyarrow.Table.from_pandas(frame, preserve_index=False))
        with self._lock:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            try:
                _write(self._proc.stdin, {"params": params}, body)
                answer = _read(self._proc.stdout)
            except BrokenPipeError:
                answer = None
        if answer is None:
            raise BridgeError(
                f"the model's environment process exited (code {self._proc.poll()}); "
                "see the executor's stderr"
            )
        header, data = answer
        if "error" in header:
            raise BridgeError(f"{header['error']}: {header['message']}")
        return decode_predictions(header, data)

    def close(self) -> None:
        if self._proc.poll() is None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()


# ------------------------------------------------------------------------ child side
def main() -> None:
    """The child: load the model, then answer one request per input frame until EOF."""
    from deployer.serving.core import ScoringCore

    src, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # the model's prints must not corrupt the stream
    core = ScoringCore.load(sys.argv[1], model_config=json.loads(sys.argv[2]))
    while (request := _read(src)) is not None:
        header, body = request
        try:
            raw = core.predict_batch(_frame_of(body), header.get("params"))
            kind, data = encode_predictions(raw)
        except Exception as exc:  # noqa: BLE001 - the model's own error, sent to the worker
            _write(out, {"error": type(exc).__name__, "message": str(exc)}, b"")
            continue
        _write(out, kind, data)
