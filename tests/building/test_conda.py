"""conda models: lockfile parsing, the explicit install spec, and the offline build layout.

conda channels are unreachable from this project's machines, so the end-to-end build is marked
``needs_conda_channel`` and runs only where ``DEPLOYER_CONDA_CHANNEL_OK=1`` says a channel works.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from deployer.building.conda import (
    CondaPackage,
    download_conda_packages,
    explicit_spec,
    find_lockfile,
    parse_conda_lock,
    pip_lock,
)
from deployer.building.context import write_context
from deployer.building.plan import BuildOptions, plan_build
from deployer.environment.lock import TargetPlatform
from deployer.errors import EnvironmentSpecError
from deployer.intake import load_model

MD5 = "0" * 32
SHA = "1" * 64
LOCK = {
    "version": 1,
    "metadata": {"platforms": ["linux-64", "osx-arm64"], "channels": [{"url": "conda-forge"}],
                 "content_hash": {"linux-64": "x"}, "sources": ["conda.yaml"]},
    "package": [
        {"name": "python", "version": "3.11.9", "manager": "conda", "platform": "linux-64",
         "url": "https://conda.example.org/conda-forge/linux-64/python-3.11.9-hb806964_0_cpython.conda",
         "hash": {"md5": MD5, "sha256": SHA}, "dependencies": {}, "category": "main", "optional": False},
        {"name": "libgomp", "version": "14.1.0", "manager": "conda", "platform": "linux-64",
         "url": "https://conda.example.org/conda-forge/linux-64/libgomp-14.1.0-h77fa898_0.conda",
         "hash": {"md5": "2" * 32}, "dependencies": {}, "category": "main", "optional": False},
        {"name": "python", "version": "3.11.9", "manager": "conda", "platform": "osx-arm64",
         "url": "https://conda.example.org/conda-forge/osx-arm64/python-3.11.9-h932a869_0_cpython.conda",
         "hash": {"md5": "3" * 32}, "dependencies": {}, "category": "main", "optional": False},
        {"name": "tinypkg", "version": "1.0", "manager": "pip", "platform": "linux-64",
         "url": "https://files.example.org/tinypkg-1.0-py3-none-any.whl",
         "hash": {"sha256": "4" * 64}, "dependencies": {}, "category": "main", "optional": False},
    ],
}


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "conda-lock.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_parse_lockfile_and_select_a_platform(tmp_path: Path) -> None:
    lock = parse_conda_lock(_write(tmp_path, LOCK))
    assert lock.platforms == ("linux-64", "osx-arm64")
    linux = lock.for_platform("linux-64")
    assert [p.name for p in linux] == ["python", "libgomp", "tinypkg"]
    assert lock.python_version("linux-64") == "3.11"
    with pytest.raises(EnvironmentSpecError, match="linux-aarch64"):
        lock.for_platform("linux-aarch64")


def test_explicit_spec_points_at_the_build_context(tmp_path: Path) -> None:
    linux = parse_conda_lock(_write(tmp_path, LOCK)).for_platform("linux-64")
    spec = explicit_spec(linux, "/tmp/deployer/conda-pkgs")
    assert spec.splitlines()[1:] == [
        "@EXPLICIT",
        f"file:///tmp/deployer/conda-pkgs/python-3.11.9-hb806964_0_cpython.conda#{MD5}",
        f"file:///tmp/deployer/conda-pkgs/libgomp-14.1.0-h77fa898_0.conda#{'2' * 32}",
    ]
    assert "conda.example.org" not in spec  # no channel URL (or channel token) reaches the image
    pip = pip_lock(linux, TargetPlatform.parse("linux/amd64", "3.11"))
    assert [(p.name, p.version, p.sha256) for p in pip.packages] == [("tinypkg", "1.0", "4" * 64)]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(version=2), "version 1"),
    (lambda d: d["package"][0].update(manager="brew"), "unknown manager"),
    (lambda d: d["package"][0].update(url="file:///etc/passwd"), "unsupported URL"),
    (lambda d: d["package"][0].update(url="https://x/python-3.11.conda\nRUN evil"), "unsupported URL"),
    (lambda d: d["package"][0].update(name="py thon"), "not plain text"),
    (lambda d: d["package"][0].update(hash={"md5": "nothex"}), "no valid md5"),
    (lambda d: d["package"][3].update(hash={"md5": MD5}), "no sha256"),
])
def test_bad_lockfiles_are_refused(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    import copy

    data = copy.deepcopy(LOCK)
    mutate(data)
    with pytest.raises(EnvironmentSpecError, match=message):
        parse_conda_lock(_write(tmp_path, data))


def test_conda_model_plans_a_conda_build(conda_model: Path) -> None:
    plan = plan_build(load_model(str(conda_model)))
    assert plan.env_kind == "conda" and plan.env_prefix == "/opt/conda-env"
    assert plan.base_image == "debian:bookworm-slim"
    assert plan.python == "/opt/conda-env/bin/python"


def test_conda_model_without_lockfile_gets_an_actionable_error(conda_model: Path, tmp_path: Path) -> None:
    plan = plan_build(load_model(str(conda_model)))
    assert find_lockfile(conda_model, None) is None
    with pytest.raises(EnvironmentSpecError, match="conda-lock -f conda.yaml -p linux-64"):
        write_context(plan, tmp_path / "ctx")


@pytest.mark.needs_conda_channel
@pytest.mark.docker
def test_conda_model_builds_from_its_lockfile(conda_model: Path, tmp_path: Path) -> None:
    if os.environ.get("DEPLOYER_CONDA_CHANNEL_OK") != "1":
        pytest.skip("no conda channel is reachable here (set DEPLOYER_CONDA_CHANNEL_OK=1 where one is)")
    import subprocess

    subprocess.run(["conda-lock", "-f", "conda.yaml", "-p", "linux-64"], cwd=conda_model, check=True)
    from deployer.building.execute import build_model_image

    _plan, result = build_model_image(str(conda_model), BuildOptions())
    assert result.layers > 0


@pytest.fixture
def channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on localhost standing in for a conda channel's file store."""
    root = tmp_path / "channel"
    root.mkdir()
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def _package(base: str, root: Path, name: str, data: bytes, *, sha256: str | None = None) -> CondaPackage:
    (root / name).write_bytes(data)
    return CondaPackage("pkg", "1.0", "conda", "linux-64", f"{base}/{name}", "",
                        sha256 or hashlib.sha256(data).hexdigest())


def test_downloads_land_whole_and_verified(channel: tuple[str, Path], tmp_path: Path) -> None:
    base, root = channel
    dest = tmp_path / "pkgs"
    pkg = _package(base, root, "pkg-1.0-0.conda", b"conda package bytes" * 1000)
    download_conda_packages((pkg,), dest)
    assert (dest / pkg.filename).read_bytes() == b"conda package bytes" * 1000
    assert sorted(p.name for p in dest.iterdir()) == [pkg.filename]  # no partial file left


def test_a_download_with_the_wrong_hash_leaves_nothing_behind(channel: tuple[str, Path], tmp_path: Path) -> None:
    base, root = channel
    dest = tmp_path / "pkgs"
    dest.mkdir()
    bad = _package(base, root, "bad-1.0-0.conda", b"tampered", sha256="5" * 64)
    (dest / bad.filename).write_bytes(b"an earlier, also wrong, copy")
    with pytest.raises(EnvironmentSpecError, match="does not match the lockfile's hash"):
        download_conda_packages((bad,), dest)
    # The earlier file is untouched, and no half-verified download is left to be picked up.
    assert (dest / bad.filename).read_bytes() == b"an earlier, also wrong, copy"
    assert sorted(p.name for p in dest.iterdir()) == [bad.filename]
    missing = CondaPackage("gone", "1.0", "conda", "linux-64", f"{base}/gone-1.0-0.conda", "", "6" * 64)
    with pytest.raises(EnvironmentSpecError, match="cannot download conda package gone-1.0-0.conda"):
        download_conda_packages((missing,), dest)
    assert sorted(p.name for p in dest.iterdir()) == [bad.filename]
