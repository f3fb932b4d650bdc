"""Batch scoring of a file through the scoring core, streamed in chunks (``deployer predict``).

Why streamed: ``mlflow models predict`` reads the whole input into one DataFrame, so a CSV
larger than memory cannot be scored. Here the input is read ``chunk_rows`` rows at a time
(pandas' chunked CSV reader, Parquet row batches via pyarrow, JSON lines), each chunk is
predicted and written out before the next is read, so peak memory is one chunk plus the
model, whatever the file size.

Semantics are MLflow's, through :class:`~deployer.serving.core.ScoringCore`: CSV columns get
the signature's pandas dtypes as in MLflow's ``parse_csv_input``; JSON requests and records go
through the core's JSON parser; predictions are made JSON-ready the way MLflow's server does.

Inputs (``content_type``): ``csv``; ``parquet``; ``json`` = one MLflow JSON request
(``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, with ``params``; read
whole, then predicted in chunks), JSON lines of records (one ``{"column": value}`` object per
line, streamed), or JSON lines of MLflow requests. ``None`` infers it from the file extension,
else from the first bytes.

Outputs: JSON lines (one prediction per line) or CSV (a ``prediction`` column, or the model's
own columns), to stdout or to a file written atomically: a temporary file in the same folder
renamed over the target only after the last chunk, so an error never leaves a half-written
result behind.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from deployer.errors import DeployerError, UsageError

_logger = logging.getLogger("deployer.serving.batch")

CONTENT_TYPES = ("json", "csv", "parquet")
OUTPUT_FORMATS = ("jsonl", "csv")
DEFAULT_CHUNK_ROWS = 10_000
STDIO = "-"

_EXTENSIONS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}
_REQUEST_KEYS = frozenset({"dataframe_split", "dataframe_records", "instances", "inputs"})


# ---------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class BatchSpec:
    """What to score and where to write it; ``content_type`` None = sniff the first bytes."""

    input: str
    output: str
    content_type: str | None
    output_format: str
    chunk_rows: int


@dataclass(frozen=True)
class BatchResult:
    rows: int
    predictions: int
    chunks: int
    output: str
    output_format: str
    content_type: str
    seconds: float


def plan_batch(
    input: str,
    output: str = STDIO,
    *,
    content_type: str | None = None,
    output_format: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> BatchSpec:
    """Resolve formats from flags and file names (pure: touches no file)."""
    if content_type is not None and content_type not in CONTENT_TYPES:
        raise UsageError(
            f"unknown content type {content_type!r}", fix=f"use one of {', '.join(CONTENT_TYPES)}"
        )
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise UsageError(
            f"unknown output format {output_format!r}",
            fix=f"use one of {', '.join(OUTPUT_FORMATS)}",
        )
    if chunk_rows < 1:
        raise UsageError(
            f"chunk size must be at least 1 row, got {chunk_rows}",
            fix="pass --chunk-rows N with N >= 1",
        )
    if content_type is None and input != STDIO:
        content_type = _EXTENSIONS.get(_suffix(input))
    if output_format is None:
        output_format = "csv" if output != STDIO and _suffix(output) == ".csv" else "jsonl"
    if input != STDIO and output != STDIO and _same_file(input, output):
        raise UsageError(
            "the output file is the input file",
            where=output,
            fix="write the predictions to another file",
        )
    return BatchSpec(input, output, content_type, output_format, chunk_rows)


def _suffix(path: str) -> str:
    name = Path(path).name.lower()
    for compressed in (".gz", ".bz2", ".xz"):
        if name.endswith(compressed):
            name = name[: -len(compressed)]
    return Path(name).suffix


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


# ---------------------------------------------------------------------------- the model
def load_core(model_dir: str | Path, *, model_uri: str | None = None) -> Any:
    """``ScoringCore.load``, with any loader failure as one :class:`ServingError` that says
    which package is missing (``model_uri``: how the user named the model, for the fix)."""
    from deployer.errors import ServingError
    from deployer.serving.core import ScoringCore

    shown = model_uri or str(model_dir)
    try:
        return ScoringCore.load(model_dir)
    except ImportError as exc:
        raise ServingError(
            f"the model needs the Python package '{exc.name}', which is not installed here",
            where=str(model_dir),
            fix="install the model's requirements in this environment, or run it in its own "
            f"environment with --env-manager virtualenv (see: deployer inspect -m {shown})",
        ) from None
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one actionable error
        raise ServingError(
            f"MLflow could not load the model: {type(exc).__name__}: {exc}",
            where=str(model_dir),
            fix="check that this environment has the model's requirements "
            f"(deployer inspect -m {shown})",
        ) from None


# ---------------------------------------------------------------------------- running it
def run_batch(
    core: Any, spec: BatchSpec, *, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None
) -> BatchResult:
    """Score ``spec.input`` with ``core`` (a ``ScoringCore``); raises :class:`DeployerError`."""
    t0 = time.perf_counter()
    rows = predictions = chunks = 0
    with _open_input(spec, stdin) as (source, content_type):
        with _open_output(spec, stdout) as sink:
            writer = (_CsvWriter if spec.output_format == "csv" else _JsonLinesWriter)(sink)
            for chunk in _chunks(core, source, content_type, spec):
                raw = _predict(core, chunk, spec)
                predictions += writer.write(raw, chunk)
                rows += chunk.rows
                chunks += 1
                _logger.debug("scored rows %d-%d", chunk.first + 1, chunk.first + chunk.rows)
            if chunks == 0:
                raise DeployerError(
                    "the input holds no rows to score",
                    where=_where(spec),
                    fix="check the file (a CSV needs a header line and rows)",
                )
    return BatchResult(
        rows,
        predictions,
        chunks,
        spec.output,
        spec.output_format,
        content_type,
        round(time.perf_counter() - t0, 3),
    )


def _where(spec: BatchSpec, chunk: _Chunk | None = None) -> str:
    name = "stdin" if spec.input == STDIO else spec.input
    if chunk is None:
        return name
    return f"{name}, rows {chunk.first + 1}-{chunk.first + chunk.rows}"


def _predict(core: Any, chunk: _Chunk, spec: BatchSpec) -> Any:
    from deployer.serving.core import ScoringError

    try:
        return core.predict_raw(chunk.data, chunk.params)
    except ScoringError as exc:
        raise DeployerError(
            f"the model rejected the input ({exc.error_code}): {_short(exc.message)}",
            where=_where(spec, chunk),
            fix="make the input match the model's signature (deployer inspect -m MODEL)",
        ) from None


def _short(message: str) -> str:
    """MLflow's schema errors echo the whole chunk; keep the reason only."""
    if "Error: " in message and message.startswith("Failed to"):
        message = message.rsplit("Error: ", 1)[1]
    return message if len(message) <= 2000 else message[:2000] + "..."


# ---------------------------------------------------------------------------- input
@dataclass(frozen=True)
class _Chunk:
    first: int  # 0-based index of the chunk's first row in the input
    rows: int
    data: Any
    params: dict[str, Any] | None = None


@contextmanager
def _open_input(spec: BatchSpec, stdin: IO[bytes] | None) -> Iterator[tuple[Any, str]]:
    """Yield (source, content type): a path for files (pandas/pyarrow open it themselves,
    compression included), a buffered binary stream for stdin."""
    if spec.input == STDIO:
        stream = stdin if stdin is not None else sys.stdin.buffer
        buffered: Any = stream if hasattr(stream, "peek") else io.BufferedReader(stream)  # type: ignore[arg-type,type-var]
        content_type: str = spec.content_type or sniff(buffered.peek(64)[:64])
        if content_type == "parquet":
            # Parquet needs random access (its footer is at the end): spool stdin to disk,
            # never to memory.
            with tempfile.TemporaryFile(prefix="deployer-predict-", suffix=".parquet") as tmp:
                shutil.copyfileobj(buffered, tmp, 1 << 20)
                tmp.seek(0)
                yield tmp, content_type
            return
        yield buffered, content_type
        return
    path = Path(spec.input)
    if not path.is_file():
        raise DeployerError(
            "input file does not exist" if not path.exists() else "input is not a file",
            where=spec.input,
            fix="pass an existing file to -i/--input, or - for stdin",
        )
    sniffed = spec.content_type
    if sniffed is None:
        try:
            with path.open("rb") as fh:
                sniffed = sniff(fh.read(64))
        except OSError as exc:
            raise DeployerError(
                f"cannot read the input: {exc.strerror}",
                where=spec.input,
                fix="check the file's permissions",
            ) from None
    yield str(path), sniffed


def sniff(head: bytes) -> str:
    """Input kind from the first bytes: parquet magic, a JSON document, else CSV."""
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        return "json"
    return "csv"


def _chunks(core: Any, source: Any, content_type: str, spec: BatchSpec) -> Iterator[_Chunk]:
    readers = {"csv": _csv_chunks, "parquet": _parquet_chunks, "json": _json_chunks}
    return readers[content_type](core, source, spec)


def _csv_dtypes(core: Any) -> Any:
    """The dtypes a CSV is read with: for a column signature, those MLflow's
    ``parse_csv_input`` gives pandas; for a tensor signature (which MLflow's CSV parser refuses)
    the tensors' numpy dtypes, so that MLflow's schema enforcement turns the frame into the
    tensor (one unnamed tensor: the whole table as one array; named ones: a column each)."""
    schema = core.input_schema
    if schema is None:
        return None
    if schema.is_tensor_spec():
        types = schema.numpy_types()
        if schema.has_input_names():
            return dict(zip(schema.input_names(), types, strict=False))
        return types[0] if len(types) == 1 and types[0].kind in "biuf" else None
    return dict(zip(schema.input_names(), schema.pandas_types(), strict=False))


def _csv_chunks(core: Any, source: Any, spec: BatchSpec) -> Iterator[_Chunk]:
    import pandas as pd

    first = 0
    try:
        reader = pd.read_csv(source, chunksize=spec.chunk_rows, dtype=_csv_dtypes(core))
        with reader:
            for frame in reader:
                if not len(frame):
                    continue
                yield _Chunk(first, len(frame), frame)
                first += len(frame)
    except pd.errors.EmptyDataError:
        raise DeployerError(
            "the CSV input is empty",
            where=_where(spec),
            fix="a CSV needs a header line and at least one row",
        ) from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        culprit = _find_bad_cell(source, first, spec.chunk_rows, _csv_dtypes(core))
        raise DeployerError(
            f"cannot parse the input as CSV: {exc}" + (f" ({culprit})" if culprit else ""),
            where=f"{_where(spec)}, rows {first + 1}-{first + spec.chunk_rows}",
            fix="make the values match the model's signature (deployer inspect -m MODEL), "
            "or pass --content-type json|parquet if the file is not CSV",
        ) from None


def _find_bad_cell(source: Any, first: int, rows: int, dtypes: Any) -> str:
    """Re-read the failing chunk as text to name the column and row a dtype rejects.

    pandas' message ("could not convert string to float: 'x'") names neither; only files can
    be re-read (stdin is gone), and only for dtype failures.
    """
    import numpy as np
    import pandas as pd

    if not isinstance(source, str) or not dtypes:
        return ""
    try:
        frame = pd.read_csv(
            source, skiprows=range(1, first + 1), nrows=rows, dtype=str, keep_default_na=False
        )
    except Exception:  # noqa: BLE001 - diagnosis only; the original error is reported anyway
        return ""
    if not isinstance(dtypes, dict):  # one dtype for every column (a tensor signature)
        dtypes = {column: dtypes for column in frame.columns}
    for column, dtype in dtypes.items():
        if column not in frame.columns:
            continue
        for offset, value in enumerate(frame[column].tolist()):
            try:
                np.array([value]).astype(dtype)
            except (ValueError, TypeError, OverflowError):
                return f"column {column!r}, row {first + offset + 1}: {value!r}"
    return ""


def _parquet_chunks(core: Any, source: Any, spec: BatchSpec) -> Iterator[_Chunk]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    first = 0
    try:
        parquet = pq.ParquetFile(source)
        for batch in parquet.iter_batches(batch_size=spec.chunk_rows):
            if not batch.num_rows:
                continue
            frame = batch.to_pandas()
            yield _Chunk(first, len(frame), frame)
            first += len(frame)
    except (pa.ArrowException, OSError) as exc:
        raise DeployerError(
            f"cannot read the input as Parquet: {exc}",
            where=f"{_where(spec)}, rows {first + 1}-{first + spec.chunk_rows}",
            fix="check the file, or pass --content-type csv|json if it is not Parquet",
        ) from None


def _json_chunks(core: Any, source: Any, spec: BatchSpec) -> Iterator[_Chunk]:
    """One JSON request, or JSON lines (of records, or of requests)."""
    import orjson

    from deployer.serving.core import ScoringError

    opened = _open_binary(source) if isinstance(source, str) else None
    stream = opened or source
    try:
        line_no, first_line = _next_line(stream, 0)
        if first_line is None:
            raise DeployerError(
                "the JSON input is empty",
                where=_where(spec),
                fix="pass an MLflow JSON request or JSON lines",
            )
        try:
            value = orjson.loads(first_line)
        except orjson.JSONDecodeError:
            value = None
        try:
            if isinstance(value, dict) and not (_REQUEST_KEYS & value.keys()):
                yield from _json_record_lines(core, stream, value, line_no, spec)
            elif isinstance(value, dict):
                yield from _json_request_lines(core, stream, value, line_no, spec)
            else:
                yield from _split_request(core, first_line + stream.read(), 0, spec)
        except ScoringError as exc:
            raise DeployerError(
                f"invalid JSON input ({exc.error_code}): {_short(exc.message)}",
                where=_where(spec),
                fix="use MLflow's JSON formats (dataframe_split, "
                "dataframe_records, instances, inputs) or JSON lines of records",
            ) from None
    except OSError as exc:
        raise DeployerError(
            f"cannot read the input: {exc}", where=_where(spec), fix="check the file"
        ) from None
    finally:
        if opened is not None:
            opened.close()


def _open_binary(path: str) -> Any:
    """Open a JSON input file, decompressing .gz/.bz2/.xz like pandas does for CSV."""
    import bz2
    import gzip
    import lzma

    suffix = Path(path).suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".bz2":
        return bz2.open(path, "rb")
    if suffix == ".xz":
        return lzma.open(path, "rb")
    return open(path, "rb")  # noqa: SIM115 - closed by the caller


def _next_line(stream: Any, line_no: int) -> tuple[int, bytes | None]:
    for raw in stream:
        line_no += 1
        if raw.strip():
            return line_no, raw
    return line_no, None


def _json_record_lines(
    core: Any, stream: Any, first: dict[str, Any], line_no: int, spec: BatchSpec
) -> Iterator[_Chunk]:
    import orjson

    records = [first]
    done = 0
    while True:
        line_no, raw = _next_line(stream, line_no)
        if raw is not None:
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise DeployerError(
                    f"line {line_no} is not valid JSON: {exc}",
                    where=_where(spec),
                    fix="JSON lines input needs one JSON object per line",
                ) from None
            if not isinstance(record, dict):
                raise DeployerError(
                    f"line {line_no} is a JSON {type(record).__name__}, not an object",
                    where=_where(spec),
                    fix="JSON lines input needs one {column: value} per line",
                )
            records.append(record)
        if records and (raw is None or len(records) >= spec.chunk_rows):
            data, params = core.parse_json_payload({"dataframe_records": records})
            yield _Chunk(done, len(records), data, params)
            done += len(records)
            records = []
        if raw is None:
            return


def _json_request_lines(
    core: Any, stream: Any, first: dict[str, Any], line_no: int, spec: BatchSpec
) -> Iterator[_Chunk]:
    import orjson

    request: dict[str, Any] | None = first
    done = 0
    while request is not None:
        data, params = core.parse_json_payload(request)
        for chunk in _slices(data, params, done, spec.chunk_rows):
            yield chunk
            done += chunk.rows
        line_no, raw = _next_line(stream, line_no)
        if raw is None:
            return
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise DeployerError(
                f"line {line_no} is not valid JSON: {exc}",
                where=_where(spec),
                fix="JSON lines input needs one MLflow request per line",
            ) from None


def _split_request(core: Any, body: bytes, done: int, spec: BatchSpec) -> Iterator[_Chunk]:
    from deployer.serving.core import decode_json

    payload = decode_json(body)
    if not isinstance(payload, dict):
        raise DeployerError(
            f"the JSON input is a {type(payload).__name__}, not an MLflow request object",
            where=_where(spec),
            fix='wrap rows as {"dataframe_records": [...]} or {"inputs": [...]}',
        )
    data, params = core.parse_json_payload(payload)
    yield from _slices(data, params, done, spec.chunk_rows)


def _slices(data: Any, params: dict[str, Any] | None, done: int, size: int) -> Iterator[_Chunk]:
    """Row chunks of a parsed request (DataFrames and arrays); anything else in one piece."""
    import numpy as np
    import pandas as pd

    if isinstance(data, (pd.DataFrame, np.ndarray)) and getattr(data, "ndim", 0) >= 1:
        total = len(data)
        for start in range(0, total, size):
            part = (
                data.iloc[start : start + size]
                if isinstance(data, pd.DataFrame)
                else data[start : start + size]
            )
            yield _Chunk(done + start, len(part), part, params)
        return
    rows = len(data) if isinstance(data, list) else 1
    if isinstance(data, dict):  # named tensors / columns: their common length
        lengths = {len(v) for v in data.values() if hasattr(v, "__len__")}
        rows = lengths.pop() if len(lengths) == 1 else 1
    yield _Chunk(done, rows, data, params)


# ---------------------------------------------------------------------------- output
@contextmanager
def _open_output(spec: BatchSpec, stdout: IO[bytes] | None) -> Iterator[IO[bytes]]:
    if spec.output == STDIO:
        sink = stdout if stdout is not None else sys.stdout.buffer
        yield sink
        sink.flush()
        return
    target = Path(spec.output)
    folder = target.parent
    if not folder.is_dir():
        raise DeployerError(
            "the output folder does not exist",
            where=str(folder),
            fix="create it first, or write to another path",
        )
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=folder)
    except OSError as exc:
        raise DeployerError(
            f"cannot write to the output folder: {exc.strerror}",
            where=str(folder),
            fix="check its permissions",
        ) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as sink:
            yield sink
            sink.flush()
            os.fsync(sink.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600: give the usual mode
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _JsonLinesWriter:
    """One JSON value per input row, as MLflow's server would put it in ``predictions``."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink

    def write(self, raw: Any, chunk: _Chunk) -> int:
        import numpy as np
        import orjson

        if (
            isinstance(raw, np.ndarray)
            and raw.ndim == 1
            and (raw.dtype.kind in "biu" or raw.dtype == np.float64)
        ):
            # Fast path for the common case (class labels, scores): one C-level dump, then
            # the list's commas become newlines (numbers contain no commas). Limited to the
            # dtypes whose text equals MLflow's tolist() + json output (not float32/16).
            if len(raw):
                body = orjson.dumps(raw, option=orjson.OPT_SERIALIZE_NUMPY)
                self.sink.write(body[1:-1].replace(b",", b"\n") + b"\n")
            return len(raw)
        from mlflow.utils.proto_json_utils import _get_jsonable_obj

        value = _get_jsonable_obj(raw, pandas_orient="records")
        items = value if isinstance(value, list) else [value]
        option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        self.sink.write(
            b"".join(orjson.dumps(item, default=str, option=option) + b"\n" for item in items)
        )
        return len(items)


class _CsvWriter:
    """A ``prediction`` column (``prediction_<i>`` for several outputs per row), or the
    model's own columns for DataFrame outputs; the header is written once."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.columns: list[str] | None = None
        self.header_done = False

    def write(self, raw: Any, chunk: _Chunk) -> int:
        frame = _as_frame(raw)
        columns = [str(c) for c in frame.columns]
        if self.columns is None:
            self.columns = columns
        elif columns != self.columns:
            raise DeployerError(
                f"the model returned columns {columns} for this chunk, but {self.columns} "
                "before: the CSV would be inconsistent",
                where=f"rows {chunk.first + 1}-{chunk.first + chunk.rows}",
                fix="write JSON lines instead (--format jsonl)",
            )
        text = frame.to_csv(index=False, header=not self.header_done)
        self.header_done = True
        self.sink.write(text.encode())
        return len(frame)


def _as_frame(raw: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(raw, pd.DataFrame):
        return raw
    if isinstance(raw, pd.Series):
        return raw.to_frame(name=raw.name if raw.name is not None else "prediction")
    arr = raw if isinstance(raw, np.ndarray) else None
    if arr is None and isinstance(raw, dict):
        return pd.DataFrame(
            {
                k: list(v) if hasattr(v, "__len__") and not isinstance(v, str) else [v]
                for k, v in raw.items()
            }
        )
    if arr is None:
        if isinstance(raw, list) and raw and all(isinstance(r, dict) for r in raw):
            return pd.DataFrame(raw)
        arr = np.asarray(
            raw,
            dtype=object
            if isinstance(raw, list) and raw and isinstance(raw[0], (list, dict))
            else None,
        )
    if arr.ndim <= 1:
        return pd.DataFrame({"prediction": np.atleast_1d(arr)})
    flat = arr.reshape(len(arr), -1)
    return pd.DataFrame(flat, columns=[f"prediction_{i}" for i in range(flat.shape[1])])
