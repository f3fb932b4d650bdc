"""``deployer predict``: batch scoring of files through the scoring core, streamed in chunks.

CLI tests run in-process (click's CliRunner) against models saved by real MLflow; every
answer is compared with what deployer's /invocations core returns for the same data, so
chunking cannot change a prediction. The memory test scores a ~420 MB CSV in a subprocess
and measures its peak RSS.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from deployer.cli import cli
from deployer.errors import UsageError
from deployer.serving.batch import plan_batch, sniff
from deployer.serving.core import ScoringCore

IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def predict(*args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, ["predict", *args], input=input, catch_exceptions=False)


def jsonl(data: bytes | str) -> list[Any]:
    text = data.decode() if isinstance(data, bytes) else data
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def iris_frame(iris_data: Any) -> Any:
    X, _ = iris_data
    return X.sample(frac=1.0, random_state=3).reset_index(drop=True)  # 150 rows, mixed classes


@pytest.fixture(scope="module")
def iris_core(sklearn_model: Path) -> ScoringCore:
    return ScoringCore.load(sklearn_model)


@pytest.fixture(scope="module")
def expected(iris_core: ScoringCore, iris_frame: Any) -> list[Any]:
    """What /invocations answers for the whole table in one CSV request."""
    result = iris_core.invoke(iris_frame.to_csv(index=False).encode(), "text/csv")
    assert result.status == 200
    predictions = json.loads(result.body)["predictions"]
    assert len(predictions) == 150 and len(set(predictions)) == 3
    return predictions  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- formats
def test_csv_to_jsonl_file_in_chunks(sklearn_model: Path, iris_frame: Any, expected: list[Any],
                                     tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    iris_frame.to_csv(src, index=False)
    out = tmp_path / "out.jsonl"
    result = predict("-m", str(sklearn_model), "-i", str(src), "-o", str(out),
                     "--chunk-rows", "40", "--output", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary | {"seconds": 0} == {
        "input": str(src), "output": str(out), "content_type": "csv", "format": "jsonl",
        "rows": 150, "predictions": 150, "chunks": 4, "seconds": 0}
    assert jsonl(out.read_text()) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.jsonl"]  # no temp left
    assert (out.stat().st_mode & 0o777) != 0o600  # a normal file mode, not mkstemp's


def test_parquet_row_batches_to_csv(sklearn_model: Path, iris_frame: Any, expected: list[Any],
                                    tmp_path: Path) -> None:
    import pandas as pd

    src = tmp_path / "in.parquet"
    iris_frame.to_parquet(src, row_group_size=32)
    out = tmp_path / "predictions.csv"
    result = predict("-m", str(sklearn_model), "-i", str(src), "-o", str(out), "--chunk-rows", "50")
    assert result.exit_code == 0, result.output
    assert "150 rows in 3 chunk(s)" in result.stdout
    lines = out.read_text().splitlines()
    assert lines[0] == "prediction" and lines.count("prediction") == 1  # one header
    assert pd.read_csv(out)["prediction"].tolist() == expected


def test_single_json_request_is_split_into_chunks(sklearn_model: Path, iris_frame: Any,
                                                  expected: list[Any], tmp_path: Path) -> None:
    src = tmp_path / "request.json"
    body = {"dataframe_split": json.loads(iris_frame.to_json(orient="split", index=False))}
    src.write_text(json.dumps(body, indent=2))  # pretty-printed: not JSON lines
    result = predict("-m", str(sklearn_model), "-i", str(src), "--chunk-rows", "64", "-v")
    assert result.exit_code == 0, result.output
    assert jsonl(result.stdout_bytes) == expected
    assert "scored rows 129-150" in result.stderr and "in 3 chunk(s)" in result.stderr


def test_json_lines_of_records(sklearn_model: Path, iris_frame: Any, expected: list[Any],
                               tmp_path: Path) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text(iris_frame.to_json(orient="records", lines=True) + "\n\n")
    result = predict("-m", str(sklearn_model), "-i", str(src), "--chunk-rows", "100")
    assert result.exit_code == 0, result.output
    assert jsonl(result.stdout_bytes) == expected


def test_compressed_inputs(sklearn_model: Path, iris_frame: Any, expected: list[Any],
                           tmp_path: Path) -> None:
    import gzip

    csv_gz = tmp_path / "in.csv.gz"
    iris_frame.to_csv(csv_gz, index=False)
    jsonl_gz = tmp_path / "in.jsonl.gz"
    jsonl_gz.write_bytes(gzip.compress(iris_frame.to_json(orient="records", lines=True).encode()))
    for src in (csv_gz, jsonl_gz):
        result = predict("-m", str(sklearn_model), "-i", str(src), "--chunk-rows", "70")
        assert result.exit_code == 0, result.output
        assert jsonl(result.stdout_bytes) == expected


@pytest.mark.parametrize("kind", ["csv", "json", "jsonl", "parquet"])
def test_stdin_is_sniffed(kind: str, sklearn_model: Path, iris_frame: Any,
                          expected: list[Any]) -> None:
    if kind == "csv":
        data = iris_frame.to_csv(index=False).encode()
    elif kind == "json":
        data = json.dumps({"dataframe_records": iris_frame.to_dict(orient="records")}).encode()
    elif kind == "jsonl":
        data = iris_frame.to_json(orient="records", lines=True).encode()
    else:
        buf = io.BytesIO()
        iris_frame.to_parquet(buf, row_group_size=50)
        data = buf.getvalue()
    result = predict("-m", str(sklearn_model), "-i", "-", "--chunk-rows", "60", input=data)
    assert result.exit_code == 0, result.output
    assert jsonl(result.stdout_bytes) == expected


def test_params_model_request_lines_and_dataframe_output(params_model: Path,
                                                         tmp_path: Path) -> None:
    src = tmp_path / "requests.jsonl"
    src.write_text(
        json.dumps({"dataframe_records": [{"text": "ab"}, {"text": "c"}],
                    "params": {"times": 2, "suffix": "!"}}) + "\n"
        + json.dumps({"dataframe_split": {"columns": ["text"], "data": [["x"]]}}) + "\n"
    )
    result = predict("-m", str(params_model), "-i", str(src), "--chunk-rows", "1")
    assert result.exit_code == 0, result.output
    assert jsonl(result.stdout_bytes) == [
        {"output": "abab!", "length": 5}, {"output": "cc!", "length": 3},
        {"output": "x", "length": 1}]
    out = tmp_path / "out.csv"
    result = predict("-m", str(params_model), "-i", str(src), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines() == ["output,length", "abab!,5", "cc!,3", "x,1"]


def test_tensor_model_inputs(tensor_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "tensor.json"
    rows = [[float(i), 1.0, 2.0, 3.0] for i in range(7)]
    src.write_text(json.dumps({"inputs": rows}))
    core = ScoringCore.load(tensor_model)
    want = json.loads(core.invoke(src.read_bytes(), "application/json").body)["predictions"]
    result = predict("-m", str(tensor_model), "-i", str(src), "--chunk-rows", "3", "--format", "csv")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "prediction" and [float(v) for v in lines[1:]] == want == [
        6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]


# ----------------------------------------------------------------------------- errors
def test_schema_failure_names_the_rows_and_keeps_the_old_output(
        sklearn_model: Path, iris_frame: Any, tmp_path: Path) -> None:
    frame = iris_frame.astype(object)
    frame.loc[57, "petal_width"] = "not a number"  # row 58 of the file, in the 2nd chunk of 50
    src = tmp_path / "in.csv"
    frame.to_csv(src, index=False)
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    result = predict("-m", str(sklearn_model), "-i", str(src), "-o", str(out), "--chunk-rows", "50")
    assert result.exit_code == 1
    assert "rows 51-100" in result.stderr
    assert "column 'petal_width', row 58: 'not a number'" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.output
    assert out.read_text() == "previous results\n"  # never a half-written result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.jsonl"]


def test_missing_column_in_a_later_chunk(sklearn_model: Path, iris_frame: Any,
                                         tmp_path: Path) -> None:
    src = tmp_path / "rows.jsonl"
    records = iris_frame.to_dict(orient="records")
    for record in records[100:]:  # the third chunk lacks a required column
        del record["sepal_length"]
    src.write_text("\n".join(json.dumps(r) for r in records))
    out = tmp_path / "out.jsonl"
    result = predict("-m", str(sklearn_model), "-i", str(src), "-o", str(out), "--chunk-rows", "100")
    assert result.exit_code == 1
    assert "rows 101-150" in result.stderr
    assert "INVALID_PARAMETER_VALUE" in result.stderr and "sepal_length" in result.stderr
    assert not out.exists()


def test_model_failure_is_reported(failing_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("a\n1\n")
    result = predict("-m", str(failing_model), "-i", str(src))
    assert result.exit_code == 1
    assert "BAD_REQUEST" in result.stderr and "rows 1-1" in result.stderr


@pytest.mark.parametrize(
    ("content", "args", "needle"),
    [
        (None, [], "input file does not exist"),
        ("a,b,c,d\n", [], "no rows to score"),
        ("", ["--content-type", "csv"], "CSV input is empty"),
        ("{not json", ["--content-type", "json"], "invalid JSON input"),
        ("[1, 2, 3]", [], "not an MLflow request object"),
        ('{"a": 1}\n[1]\n', [], "line 2 is a JSON list"),
        ('{"a": 1}\n{oops\n', [], "line 2 is not valid JSON"),
        ("PAR1 but not really", ["--content-type", "parquet"], "cannot read the input as Parquet"),
        ('{"dataframe_split": [[1]]}', [], "invalid JSON input (BAD_REQUEST)"),
    ],
    ids=["missing", "header-only", "empty", "bad-json", "json-list", "jsonl-list", "jsonl-broken",
         "bad-parquet", "bad-split"],
)
def test_bad_input_files(content: str | None, args: list[str], needle: str,
                         sklearn_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "input.data"
    if content is not None:
        src.write_text(content)
    out = tmp_path / "out.jsonl"
    result = predict("-m", str(sklearn_model), "-i", str(src), "-o", str(out), *args)
    assert result.exit_code == 1, result.output
    assert needle in result.stderr
    assert "internal error" not in result.stderr
    assert not out.exists()


def test_usage_errors(sklearn_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("a\n1\n")
    result = predict("-m", str(sklearn_model), "-i", str(src), "-o", str(src))
    assert result.exit_code == 2 and "the output file is the input file" in result.stderr
    result = predict("-m", str(sklearn_model), "-i", str(src), "--chunk-rows", "0")
    assert result.exit_code == 2
    result = predict("-m", str(sklearn_model), "-i", str(src), "-o", str(tmp_path / "no" / "x.csv"))
    assert result.exit_code == 1 and "output folder does not exist" in result.stderr
    result = predict("-m", str(tmp_path / "nomodel"), "-i", str(src))
    assert result.exit_code == 1 and "model path does not exist" in result.stderr


def test_plan_batch_resolves_formats() -> None:
    assert plan_batch("a.CSV", "b.csv").content_type == "csv"
    spec = plan_batch("a.parquet", "out.csv")
    assert (spec.content_type, spec.output_format) == ("parquet", "csv")
    assert plan_batch("a.jsonl.gz").content_type == "json"
    assert plan_batch("-").content_type is None and plan_batch("-").output_format == "jsonl"
    assert plan_batch("data.txt", "o.txt").content_type is None  # sniffed at read time
    assert plan_batch("a.csv", "o.csv", output_format="jsonl").output_format == "jsonl"
    with pytest.raises(UsageError):
        plan_batch("a.csv", content_type="xml")


@pytest.mark.parametrize(("head", "kind"), [
    (b"PAR1\x15\x04", "parquet"), (b'  \n{"a"', "json"), (b"\xef\xbb\xbf[1]", "json"),
    (b"a,b\n1,2", "csv"), (b"", "csv")])
def test_sniff(head: bytes, kind: str) -> None:
    assert sniff(head) == kind


# ----------------------------------------------------------------------------- memory
_MEASURE = textwrap.dedent(
    """
    import resource, subprocess, sys
    code = subprocess.call(sys.argv[2:])
    with open(sys.argv[1], "w") as fh:
        fh.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
    sys.exit(code)
    """
)


def _peak_rss_mb(tmp_path: Path, argv: list[str]) -> float:
    """Run ``argv`` in a fresh process and return its peak RSS (MiB), via getrusage."""
    report = tmp_path / f"rss-{len(list(tmp_path.iterdir()))}.txt"
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(report), *argv],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(report.read_text()) / 1024  # ru_maxrss is in KiB on Linux


@pytest.mark.slow
def test_csv_larger_than_the_memory_used(sklearn_model: Path, tmp_path: Path) -> None:
    """A ~420 MB CSV (27M rows; ~860 MB as one float64 DataFrame) scored with a peak RSS
    well below the file size, barely above the baseline of a process that loaded the model
    (~280 MB here: mlflow, pandas, sklearn)."""
    import numpy as np

    rng = np.random.default_rng(0)
    block = "\n".join(",".join(f"{v:.1f}" for v in row)
                      for row in rng.uniform(0.1, 7.9, (100_000, 4)).tolist()) + "\n"
    big = tmp_path / "big.csv"
    with big.open("w") as fh:
        fh.write(",".join(IRIS_COLUMNS) + "\n")
        for _ in range(270):
            fh.write(block)
    size_mb = big.stat().st_size / 2**20
    rows = 270 * 100_000
    assert size_mb > 400

    small = tmp_path / "small.csv"
    small.write_text(",".join(IRIS_COLUMNS) + "\n" + block[: block.index("\n") + 1])
    deployer = [sys.executable, "-c", "from deployer.cli import main; main()"]
    baseline = _peak_rss_mb(tmp_path, [*deployer, "predict", "-m", str(sklearn_model),
                                       "-i", str(small), "-o", str(tmp_path / "small.jsonl")])
    out = tmp_path / "big.jsonl"
    peak = _peak_rss_mb(tmp_path, [*deployer, "predict", "-m", str(sklearn_model), "-i", str(big),
                                   "-o", str(out), "--chunk-rows", "50000"])
    with out.open("rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b""))
    assert lines == rows
    print(f"file {size_mb:.0f} MiB, baseline peak {baseline:.0f} MiB, big-file peak {peak:.0f} MiB")
    assert peak - baseline < 100, (baseline, peak)
    # the whole table as one float64 DataFrame: what scoring it in one piece would hold at least
    frame_mb = rows * len(IRIS_COLUMNS) * 8 / 2**20
    assert peak < 0.5 * frame_mb and peak < size_mb, (peak, frame_mb, size_mb)
    os.unlink(big)

