"""Model URIs end to end: moto's S3 over HTTP, a real ``mlflow server``, real saved models.

Cache behaviour is proven by what the servers saw (moto's request log, the MLflow server's
access log) and by inode/mtime of cached files, never by timing.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from deployer.errors import (
    ModelNotFoundError,
    ModelURIError,
    UnsafePathError,
)
from deployer.model.cache import default_cache_dir
from deployer.model.uri import redact, resolve_model_uri
from tests.fixtures.services import MlflowTrackingServer, MotoAWS, free_port

REPO = Path(__file__).resolve().parents[2]


def tree(path: Path) -> dict[str, str]:
    """Relative file path -> sha256 of its bytes."""
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def assert_same_model(got: Path, expected: Path) -> None:
    """Every file of the saved model arrived byte for byte (MLflow may add metadata files)."""
    want, have = tree(expected), tree(got)
    assert want, expected
    assert {k: have.get(k) for k in want} == want


def entries(cache: Path) -> list[str]:
    """Published cache entries (hidden names are temp dirs and locks)."""
    if not cache.exists():
        return []
    return sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))


def temp_dirs(cache: Path) -> list[Path]:
    return sorted(cache.glob(".tmp-*")) if cache.exists() else []


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


# ---------------------------------------------------------------------------- local / misc


def test_local_path_and_file_uri_are_used_in_place(sklearn_model: Path, tmp_path: Path) -> None:
    assert resolve_model_uri(str(sklearn_model), cache_dir=tmp_path) == sklearn_model.resolve()
    assert resolve_model_uri(sklearn_model.as_uri(), cache_dir=tmp_path) == sklearn_model.resolve()
    assert entries(tmp_path) == []


def test_path_objects_are_model_uris_as_in_mlflow(sklearn_model: Path, tmp_path: Path) -> None:
    """A pathlib.Path (any os.PathLike) is a model URI, as MLflow takes it: it used to crash
    with AttributeError 'startswith'. The load MLflow does from it finds the same model."""
    import mlflow.pyfunc

    from deployer.intake import load_model

    class Fspath:  # os.PathLike that is not a pathlib.Path
        def __fspath__(self) -> str:
            return str(sklearn_model)

    for uri in (sklearn_model, Fspath(), Path(os.path.relpath(sklearn_model))):
        assert resolve_model_uri(uri, cache_dir=tmp_path) == sklearn_model.resolve()
    assert load_model(sklearn_model).path == sklearn_model.resolve()
    assert load_model(sklearn_model).uri == str(sklearn_model)
    mlflow_model = mlflow.pyfunc.load_model(sklearn_model)  # the oracle takes a Path too
    assert mlflow_model.metadata.get_input_schema() is not None
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model_uri(tmp_path / "missing", cache_dir=tmp_path)
    with pytest.raises(ModelURIError, match="string or a path, not int") as info:
        resolve_model_uri(3, cache_dir=tmp_path)  # type: ignore[arg-type]
    assert "pathlib.Path" in (info.value.fix or "")
    assert entries(tmp_path) == []


def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(ModelURIError, match="unsupported model URI scheme 'gs'") as info:
        resolve_model_uri("gs://bucket/model", cache_dir=tmp_path)
    assert "s3://" in (info.value.fix or "")


def test_default_cache_dir_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEPLOYER_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "deployer" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "deployer" / "models"
    monkeypatch.setenv("DEPLOYER_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"


def test_default_cache_dir_is_used(
    aws: MotoAWS, sklearn_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload(aws, "models", "iris", sklearn_model)
    monkeypatch.setenv("DEPLOYER_CACHE_DIR", str(tmp_path / "c"))
    path = resolve_model_uri("s3://models/iris")
    assert path.is_relative_to(tmp_path / "c")


def test_redact_hides_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2-pw")
    text = (
        "http://bob:pw@host/x https://h/o?X-Amz-Signature=abc&X-Amz-Credential=AKIA/x&a=1 "
        "failed with hunter2-pw"
    )
    out = redact(text)
    assert "bob" not in out and ":pw@" not in out and "abc" not in out and "AKIA" not in out
    assert "hunter2-pw" not in out
    assert "http://***@host/x" in out and "a=1" in out


# -------------------------------------------------------------------------------------- S3


def upload(
    aws: MotoAWS, bucket: str, prefix: str, src: Path, *, create: bool = True, **extra: object
) -> list[str]:
    s3 = aws.client("s3")
    if create:
        s3.create_bucket(Bucket=bucket)
    keys = []
    for f in sorted(src.rglob("*")):
        if f.is_file():
            key = f"{prefix}/{f.relative_to(src).as_posix()}".lstrip("/")
            s3.put_object(Bucket=bucket, Key=key, Body=f.read_bytes(), **extra)
            keys.append(key)
    return keys


def object_gets(aws: MotoAWS, bucket: str) -> list[str]:
    """Paths of successful GetObject requests (listings have a query string, objects don't)."""
    return [
        path
        for method, path, status in aws.requests
        if method == "GET"
        and status == "200"
        and path.startswith(f"/{bucket}/")
        and "?" not in path
    ]


def test_s3_prefix_resolves_to_cached_copy(
    aws: MotoAWS, sklearn_model: Path, tmp_path: Path
) -> None:
    upload(aws, "models", "team/iris", sklearn_model)
    # a sibling prefix that shares the text prefix must not be mixed in
    aws.client("s3").put_object(Bucket="models", Key="team/iris2/MLmodel", Body=b"other")
    path = resolve_model_uri("s3://models/team/iris", cache_dir=tmp_path)
    assert path.is_relative_to(tmp_path)
    assert tree(path) == tree(sklearn_model)
    assert (path.parent / "source.json").is_file()
    # the trailing-slash spelling is the same source, hence the same entry
    assert resolve_model_uri("s3://models/team/iris/", cache_dir=tmp_path) == path
    assert len(entries(tmp_path)) == 1 and temp_dirs(tmp_path) == []


def test_s3_cache_hit_downloads_nothing(aws: MotoAWS, sklearn_model: Path, tmp_path: Path) -> None:
    keys = upload(aws, "models", "iris", sklearn_model)
    aws.clear_requests()
    first = resolve_model_uri("s3://models/iris", cache_dir=tmp_path)
    assert sorted(object_gets(aws, "models")) == sorted(f"/models/{k}" for k in keys)
    before = (first / "MLmodel").stat()

    aws.clear_requests()
    second = resolve_model_uri("s3://models/iris", cache_dir=tmp_path)
    assert second == first
    assert object_gets(aws, "models") == []  # only the listing (for the ETags) was sent
    assert any("list-type=2" in path for _, path, _ in aws.requests)
    after = (second / "MLmodel").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_s3_changed_object_is_downloaded_again(
    aws: MotoAWS, sklearn_model: Path, tmp_path: Path
) -> None:
    upload(aws, "models", "iris", sklearn_model)
    old = resolve_model_uri("s3://models/iris", cache_dir=tmp_path)
    changed = (sklearn_model / "requirements.txt").read_bytes() + b"extra-package==1.0\n"
    aws.client("s3").put_object(Bucket="models", Key="iris/requirements.txt", Body=changed)
    new = resolve_model_uri("s3://models/iris", cache_dir=tmp_path)
    assert new != old
    assert (new / "requirements.txt").read_bytes() == changed
    assert tree(old) == tree(sklearn_model)  # the old entry is untouched


def test_s3_whole_bucket_and_endpoint_url_s3(
    aws: MotoAWS, sklearn_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service-specific AWS_ENDPOINT_URL_S3 wins over a (dead) global AWS_ENDPOINT_URL."""
    upload(aws, "whole", "", sklearn_model)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    path = resolve_model_uri("s3://whole", cache_dir=tmp_path)
    assert tree(path) == tree(sklearn_model)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://no-such-bucket/iris", "bucket does not exist"),
        ("s3://models/nothing-here", "no objects found under this S3 prefix"),
        ("s3://models/iris/MLmodel", "names a single object"),
        ("s3://models/data-only", "no MLmodel file at the root"),
        ("s3:///iris", "needs a bucket name"),
    ],
)
def test_s3_errors(
    aws: MotoAWS, sklearn_model: Path, tmp_path: Path, uri: str, message: str
) -> None:
    upload(aws, "models", "iris", sklearn_model)
    aws.client("s3").put_object(Bucket="models", Key="data-only/model.skops", Body=b"x")
    with pytest.raises(ModelURIError, match=message) as info:
        resolve_model_uri(uri, cache_dir=tmp_path)
    assert info.value.where and info.value.fix
    assert entries(tmp_path) == [] and temp_dirs(tmp_path) == []


def test_s3_no_mlmodel_hint_names_subdirectory(
    aws: MotoAWS, sklearn_model: Path, tmp_path: Path
) -> None:
    upload(aws, "models", "runs/1/artifacts/model", sklearn_model)
    with pytest.raises(ModelURIError, match="no MLmodel") as info:
        resolve_model_uri("s3://models/runs/1", cache_dir=tmp_path)
    assert info.value.fix == "did you mean s3://models/runs/1/artifacts/model ?"


def test_s3_key_escaping_the_model_dir_is_refused(aws: MotoAWS, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="evil")
    s3.put_object(Bucket="evil", Key="m/MLmodel", Body=b"flavors: {}\n")
    s3.put_object(Bucket="evil", Key="m/../../outside.txt", Body=b"pwned")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="evil")["Contents"]]
    assert "m/../../outside.txt" in listed  # S3 keeps the key verbatim
    with pytest.raises(UnsafePathError, match="outside the model directory"):
        resolve_model_uri("s3://evil/m", cache_dir=tmp_path)
    assert not (tmp_path.parent / "outside.txt").exists()
    assert entries(tmp_path) == []


def test_s3_access_denied(
    aws: MotoAWS, sklearn_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload(aws, "models", "iris", sklearn_model)
    list_only = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}],
    }
    nobody = aws.iam_user("nobody")
    lister = aws.iam_user("lister", list_only)
    aws.iam_auth()

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", nobody[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", nobody[1])
    with pytest.raises(ModelURIError, match="ListObjectsV2: access denied") as info:
        resolve_model_uri("s3://models/iris", cache_dir=tmp_path)
    assert nobody[1] not in str(info.value)

    # listing allowed, reading not: fails during the download, leaves nothing behind
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", lister[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", lister[1])
    with pytest.raises(ModelURIError, match="GetObject: access denied") as info:
        resolve_model_uri("s3://models/iris", cache_dir=tmp_path)
    assert lister[1] not in str(info.value) and "s3:GetObject" in (info.value.fix or "")
    assert entries(tmp_path) == [] and temp_dirs(tmp_path) == []

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
    with pytest.raises(ModelURIError, match="secret key is wrong") as info:
        resolve_model_uri("s3://models/iris", cache_dir=tmp_path)
    assert "wrong-secret-value" not in str(info.value)


def test_s3_without_credentials(
    aws: MotoAWS, sklearn_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload(aws, "models", "iris", sklearn_model)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ModelURIError, match="no AWS credentials") as info:
        resolve_model_uri("s3://models/iris", cache_dir=tmp_path)
    assert "aws configure" in (info.value.fix or "")


def test_s3_unreachable_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_server: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(ModelURIError, match="cannot reach S3") as info:
        resolve_model_uri("s3://models/iris", cache_dir=tmp_path)
    assert "AWS_ENDPOINT_URL" in (info.value.fix or "")


def test_s3_failure_mid_download_leaves_no_entry(
    aws: MotoAWS, sklearn_model: Path, tmp_path: Path
) -> None:
    """One object is archived (Glacier): GETs before it succeed, then the download fails."""
    upload(aws, "models", "iris", sklearn_model)
    s3 = aws.client("s3")
    s3.put_object(
        Bucket="models", Key="iris/zz-weights.bin", Body=b"w" * 1000, StorageClass="GLACIER"
    )
    aws.clear_requests()
    with pytest.raises(ModelURIError, match="archived") as info:
        resolve_model_uri("s3://models/iris", cache_dir=tmp_path)
    assert "restore" in (info.value.fix or "")
    assert len(object_gets(aws, "models")) == len(tree(sklearn_model))  # failed part-way
    assert entries(tmp_path) == [] and temp_dirs(tmp_path) == []

    s3.put_object(Bucket="models", Key="iris/zz-weights.bin", Body=b"w" * 1000)  # restored
    path = resolve_model_uri("s3://models/iris", cache_dir=tmp_path)
    assert (path / "zz-weights.bin").read_bytes() == b"w" * 1000
    assert_same_model(path, sklearn_model)


def pad_model(aws: MotoAWS, sklearn_model: Path, n: int = 150) -> int:
    """A model with ``n`` extra small files, so downloading it takes a while."""
    from concurrent.futures import ThreadPoolExecutor

    upload(aws, "models", "big", sklearn_model)
    s3 = aws.client("s3")  # botocore clients are thread-safe

    def put(i: int) -> None:
        s3.put_object(Bucket="models", Key=f"big/extra/pad-{i:04d}.bin", Body=os.urandom(2048))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(n)))
    return len(tree(sklearn_model)) + n


RESOLVE_SNIPPET = """
import sys
from pathlib import Path
from deployer.model.uri import resolve_model_uri
print(resolve_model_uri(sys.argv[1], cache_dir=Path(sys.argv[2])))
"""


@pytest.mark.slow
def test_s3_killed_download_is_never_used(
    aws: MotoAWS, sklearn_model: Path, tmp_path: Path
) -> None:
    total = pad_model(aws, sklearn_model)
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-c", RESOLVE_SNIPPET, "s3://models/big", str(cache)], cwd=REPO
    )
    try:
        deadline = time.monotonic() + 60
        partial: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            partial = [p for d in temp_dirs(cache) for p in d.rglob("*.bin")]
            if len(partial) >= 5:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the download finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    debris = temp_dirs(cache)
    assert len(debris) == 1, debris
    assert 5 <= len([p for p in debris[0].rglob("*") if p.is_file()]) < total
    assert entries(cache) == []  # nothing half-downloaded is published

    path = resolve_model_uri("s3://models/big", cache_dir=cache)
    assert len(tree(path)) == total
    assert_same_model(path, sklearn_model)
    assert temp_dirs(cache) == []  # the interrupted download was cleaned up


@pytest.mark.slow
def test_s3_concurrent_resolves_download_once(
    aws: MotoAWS, sklearn_model: Path, tmp_path: Path
) -> None:
    total = pad_model(aws, sklearn_model)
    # debris of another key nobody holds a lock on: swept after a download
    stale = tmp_path / ".tmp-0123456789abcdef0123456789abcdef-x"
    (stale / "download").mkdir(parents=True)
    aws.clear_requests()
    barrier = threading.Barrier(3)
    results: list[Path | BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(resolve_model_uri("s3://models/big", cache_dir=tmp_path))
        except BaseException as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 3 and all(isinstance(r, Path) for r in results), results
    assert len(set(results)) == 1
    gets = object_gets(aws, "models")
    assert len(gets) == total and len(set(gets)) == total  # every object fetched exactly once
    assert entries(tmp_path) == [results[0].parent.name]  # type: ignore[union-attr]
    assert not stale.exists()


def test_missing_boto3_is_a_clear_error(tmp_path: Path) -> None:
    result = run_python(
        """
        import sys
        sys.modules["boto3"] = None  # as if boto3 were not installed
        from deployer.errors import MissingDependencyError
        from deployer.model.uri import resolve_model_uri
        try:
            resolve_model_uri("s3://bucket/model", cache_dir=None)
        except MissingDependencyError as exc:
            print("OK", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "boto3" in result.stdout and "deployer[s3]" in result.stdout


# ---------------------------------------------------------------------------------- MLflow


def artifact_downloads(server: MlflowTrackingServer) -> int:
    return server.count_requests(r'"GET /api/2\.0/mlflow-artifacts/artifacts/\S+ HTTP/1\.1" 200')


def wait_for_count(server: MlflowTrackingServer, at_least: int) -> int:
    """Access-log lines are written right after the response: allow them a moment to land."""
    deadline = time.monotonic() + 5
    while (count := artifact_downloads(server)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def log_model_dir(model: Path, artifact_path: str = "model") -> str:
    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(model), artifact_path)
    return str(run.info.run_id)


def register(run_id: str, name: str, artifact_path: str = "model") -> str:
    import mlflow

    return str(mlflow.register_model(f"runs:/{run_id}/{artifact_path}", name).version)


def test_runs_uri(
    mlflow_env: str,
    mlflow_tracking_server_info: MlflowTrackingServer,
    sklearn_model: Path,
    tmp_path: Path,
) -> None:
    run_id = log_model_dir(sklearn_model)
    start = artifact_downloads(mlflow_tracking_server_info)
    path = resolve_model_uri(f"runs:/{run_id}/model", cache_dir=tmp_path)
    assert tree(path) == tree(sklearn_model)
    downloaded = wait_for_count(mlflow_tracking_server_info, start + len(tree(sklearn_model)))
    assert downloaded - start == len(tree(sklearn_model))
    stat = (path / "MLmodel").stat()

    again = resolve_model_uri(f"runs:/{run_id}/model/", cache_dir=tmp_path)
    assert again == path
    time.sleep(0.2)
    assert artifact_downloads(mlflow_tracking_server_info) == downloaded  # cache hit
    assert (again / "MLmodel").stat().st_ino == stat.st_ino


def test_runs_uri_of_mlflow3_logged_model(
    mlflow_env: str,
    iris_data,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    X, y = iris_data
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            LogisticRegression(max_iter=300).fit(X, y),
            name="tree",
            pip_requirements=["scikit-learn"],  # skip requirement inference (a subprocess)
        )
    by_run = resolve_model_uri(f"runs:/{run.info.run_id}/tree", cache_dir=tmp_path)
    by_id = resolve_model_uri(info.model_uri, cache_dir=tmp_path)  # models:/m-<model_id>
    assert info.model_uri.startswith("models:/m-")
    for path in (by_run, by_id):
        assert (path / "MLmodel").is_file() and (path / "model.skops").is_file()
        assert mlflow.pyfunc.load_model(str(path)).predict(X.head(2)).shape == (2,)


def test_registered_versions_aliases_and_latest(
    mlflow_env: str,
    mlflow_tracking_server_info: MlflowTrackingServer,
    sklearn_model: Path,
    sklearn_pickle_model: Path,
    tmp_path: Path,
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    name = f"iris-{uuid.uuid4().hex[:8]}"
    assert register(log_model_dir(sklearn_model), name) == "1"
    assert register(log_model_dir(sklearn_pickle_model), name) == "2"
    client.set_registered_model_alias(name, "champion", "1")

    v1 = resolve_model_uri(f"models:/{name}/1", cache_dir=tmp_path)
    assert_same_model(v1, sklearn_model)
    count = wait_for_count(mlflow_tracking_server_info, 1)
    champion = resolve_model_uri(f"models:/{name}@champion", cache_dir=tmp_path)
    assert champion == v1  # the alias resolved to version 1: same source, same entry
    time.sleep(0.2)
    assert artifact_downloads(mlflow_tracking_server_info) == count  # no download

    client.set_registered_model_alias(name, "champion", "2")  # move the alias
    moved = resolve_model_uri(f"models:/{name}@champion", cache_dir=tmp_path)
    assert moved != v1
    assert_same_model(moved, sklearn_pickle_model)
    assert (moved / "model.pkl").is_file() and not (moved / "model.skops").exists()
    assert resolve_model_uri(f"models:/{name}/latest", cache_dir=tmp_path) == moved
    assert resolve_model_uri(f"models:/{name}/2", cache_dir=tmp_path) == moved
    assert sorted(entries(tmp_path)) == sorted([v1.parent.name, moved.parent.name])


def test_registered_stage_uri(mlflow_env: str, sklearn_model: Path, tmp_path: Path) -> None:
    import warnings

    from mlflow import MlflowClient

    name = f"staged-{uuid.uuid4().hex[:8]}"
    register(log_model_dir(sklearn_model), name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        MlflowClient().transition_model_version_stage(name, "1", "Production")
    path = resolve_model_uri(f"models:/{name}/Production", cache_dir=tmp_path)
    assert_same_model(path, sklearn_model)
    with pytest.raises(ModelURIError, match="no version in stage 'Staging'"):
        resolve_model_uri(f"models:/{name}/Staging", cache_dir=tmp_path)


@pytest.fixture
def registered(mlflow_env: str, sklearn_model: Path) -> tuple[str, str]:
    """(run id with the model under 'model/', registered model name with version 1)."""
    import mlflow

    name = f"err-{uuid.uuid4().hex[:8]}"
    run_id = log_model_dir(sklearn_model)
    register(run_id, name)
    mlflow.MlflowClient().create_registered_model(f"{name}-empty")
    return run_id, name


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "runs:/0123456789abcdef0123456789abcdef/model",
            "run '0123456789abcdef0123456789abcdef' not found",
        ),
        ("runs:/{run}/not-there", "the artifacts at runs:/{run}/not-there not found"),
        ("runs:/{run}", "no MLmodel file at the root"),
        ("runs:/{run}/model/MLmodel", "names a file, not a model directory"),
        ("models:/{name}-missing/1", "version 1 of registered model '{name}-missing' not found"),
        ("models:/{name}/7", "version 7 of registered model '{name}' not found"),
        ("models:/{name}@nope", "alias 'nope' of registered model '{name}' not found"),
        ("models:/{name}-missing/latest", "registered model '{name}-missing' not found"),
        ("models:/{name}-empty/latest", "has no versions"),
        ("models:/m-0123456789abcdef", "logged model 'm-0123456789abcdef' not found"),
        ("models:/", "not a valid MLflow model URI"),
        ("models:/a/b/c", "not a valid MLflow model URI"),
        ("runs:/", "not a valid MLflow model URI"),
        ("runs:/{run}/../other", "not a valid MLflow model URI"),
    ],
)
def test_mlflow_errors(
    registered: tuple[str, str], tmp_path: Path, template: str, message: str
) -> None:
    run_id, name = registered
    uri = template.format(run=run_id, name=name)
    with pytest.raises(ModelURIError, match=message.format(name=name, run=run_id)) as info:
        resolve_model_uri(uri, cache_dir=tmp_path)
    assert info.value.where and info.value.fix
    assert entries(tmp_path) == [] and temp_dirs(tmp_path) == []
    if template == "models:/m-0123456789abcdef":
        assert "models:/m-0123456789abcdef/latest" in (info.value.fix or "")
    if template == "runs:/{run}":  # points at the sub-directory holding the MLmodel
        assert info.value.fix == f"did you mean runs:/{run_id}/model ?"


def test_no_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ModelURIError, match="MLFLOW_TRACKING_URI is not set") as info:
        resolve_model_uri("models:/iris/1", cache_dir=tmp_path)
    assert "export MLFLOW_TRACKING_URI" in (info.value.fix or "")


def test_tracking_credentials_never_in_messages(
    mlflow_tracking_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # a real server reached with credentials in the URI, and an unreachable one
    authed = mlflow_tracking_server.replace("http://", "http://alice:pw-s3cret@")
    for tracking in (authed, f"http://alice:pw-s3cret@127.0.0.1:{free_port()}"):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
        with pytest.raises(ModelURIError, match="run '0123456789abcdef0123456789abcdef'") as info:
            resolve_model_uri("runs:/0123456789abcdef0123456789abcdef/model", cache_dir=tmp_path)
        text = str(info.value) + repr(info.value.to_dict())
        assert "pw-s3cret" not in text and "alice" not in text, text


def test_missing_mlflow_is_a_clear_error() -> None:
    result = run_python(
        """
        import os, sys
        sys.modules["mlflow"] = None  # as if mlflow were not installed
        os.environ["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:9"
        from deployer.errors import MissingDependencyError
        from deployer.model.uri import resolve_model_uri
        try:
            resolve_model_uri("models:/iris/1")
        except MissingDependencyError as exc:
            print("OK", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "mlflow" in result.stdout
