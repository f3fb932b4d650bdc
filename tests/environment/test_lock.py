"""Lock files: format, parsing, target-platform tags, and real resolutions with the host's pip.

Resolutions run real ``pip download`` against a private index served on 127.0.0.1 (basic auth
with a random token), so they need no internet and exercise credentials end to end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.building.dependencies import ImageRequirements
from deployer.building.wheelhouse import PipRunner, Resolver, WheelStore, link_wheels
from deployer.environment.lock import (
    HEADER_PREFIX,
    Lock,
    LockedPackage,
    TargetPlatform,
    parse_lock,
    read_lock,
    sha256_file,
    write_lock,
)
from deployer.environment.spec import IndexOptions
from deployer.errors import EnvironmentSpecError
from tests.building.pkgindex import PrivateIndex, make_sdist, make_wheel, start_index

SHA_A = "a" * 64
SHA_B = "b" * 64


def _lock() -> Lock:
    return Lock(
        platform=TargetPlatform.parse("linux/amd64", "3.11.7"),
        packages=(LockedPackage("numpy", "2.1.0", SHA_A, "numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl"),
                  LockedPackage("dumb-init", "1.2.5", SHA_B, "")),
        build_tools=(LockedPackage("uv", "0.4.0", "c" * 64, "uv-0.4.0-py3-none-any.whl"),),
        inputs_digest="sha256:" + "d" * 64,
    )


# ---------------------------------------------------------------- format
def test_lock_text_round_trips(tmp_path: Path) -> None:
    lock = _lock()
    write_lock(lock, tmp_path / "x.lock")
    back = read_lock(tmp_path / "x.lock")
    assert back == lock
    assert back.digest == lock.digest
    assert back.find("NumPy").version == "2.1.0"  # type: ignore[union-attr]
    assert back.find("uv") is not None and back.find("pandas") is None


def test_lock_body_is_a_pip_hash_file() -> None:
    text = _lock().to_text()
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert body == [
        "dumb-init==1.2.5 \\",
        f"    --hash=sha256:{SHA_B}",
        "numpy==2.1.0 \\",
        f"    --hash=sha256:{SHA_A}  # numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
    ]
    header = next(line for line in text.splitlines() if line.startswith(HEADER_PREFIX))
    meta = json.loads(header[len(HEADER_PREFIX):])
    assert meta["platform"] == "linux/amd64" and meta["python"] == "3.11"
    assert [t["name"] for t in meta["build_tools"]] == ["uv"]
    assert "uv==" not in "\n".join(body)  # build tools are not installed in the image


def test_digest_depends_on_hashes_not_notes() -> None:
    a = _lock()
    b = Lock(platform=a.platform, packages=a.packages, build_tools=a.build_tools, notes=("x",))
    c = Lock(platform=a.platform, packages=(a.packages[0],), build_tools=a.build_tools)
    assert a.digest == b.digest != c.digest


@pytest.mark.parametrize("text, message", [
    ("numpy==1.0 --hash=sha256:" + SHA_A + "\n", "not a deployer lock file"),
    (HEADER_PREFIX + "{bad json\n", "not valid JSON"),
    (HEADER_PREFIX + '{"version": 1, "python": "3.11", "platform": "linux/amd64"}\nnumpy>=1\n', "name==version"),
    (HEADER_PREFIX + '{"version": 1, "python": "3.11", "platform": "linux/amd64"}\nnumpy==1.0\n', "name==version"),
    (HEADER_PREFIX + '{"version": 1, "python": "3.11", "platform": "linux/amd64"}\n'
     f"numpy==1.0 --hash=sha256:{SHA_A} --hash=sha256:{SHA_B}\n", "one hash"),
    (HEADER_PREFIX + '{"version": 1, "python": "3.11", "platform": "windows/amd64"}\n', "unsupported platform"),
    (HEADER_PREFIX + '{"version": 1, "python": "3.11", "platform": "linux/amd64"}\n'
     "numpy==1.0 --hash=sha256:xyz\n", "name==version"),
    (HEADER_PREFIX + '{"version": 1, "python": "3.11", "platform": "linux/amd64"}\n'
     "--index-url http://evil/simple\n", "name==version"),
])
def test_bad_lock_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(EnvironmentSpecError, match=message):
        parse_lock(text)


def test_target_platform_pip_arguments() -> None:
    p = TargetPlatform.parse("linux/amd64", "3.11.7")
    args = p.pip_args()
    assert args[:2] == ["--only-binary=:all:", "--implementation"]
    assert args[args.index("--python-version") + 1] == "3.11"
    assert args[args.index("--abi") + 1] == "cp311"
    plats = [args[i + 1] for i, a in enumerate(args) if a == "--platform"]
    assert plats[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in plats
    assert "manylinux2014_x86_64" in plats and "manylinux_2_29_x86_64" not in plats
    arm = TargetPlatform.parse("linux/arm64", "3.12", glibc="2.31")
    assert arm.docker_platform == "linux/arm64"
    assert "manylinux_2_31_aarch64" in arm.wheel_platforms()
    assert all("x86_64" not in t for t in arm.wheel_platforms())


@pytest.mark.parametrize("platform, python, glibc", [
    ("linux/s390x", "3.11", "2.28"), ("darwin/arm64", "3.11", "2.28"), ("linux/amd64", "2.7", "2.28"),
    ("linux/amd64", "3.11", "2.5"), ("linux/amd64", "three", "2.28"),
])
def test_target_platform_rejects_unsupported(platform: str, python: str, glibc: str) -> None:
    with pytest.raises(EnvironmentSpecError):
        TargetPlatform.parse(platform, python, glibc)


# ---------------------------------------------------------------- real resolution
@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateIndex]:
    root = tmp_path_factory.mktemp("index")
    build = tmp_path_factory.mktemp("dists")
    idx, server = start_index(root)
    idx.add(make_wheel(build, "tinypkg", "1.0"))
    idx.add(make_wheel(build, "tinypkg", "2.0"))
    idx.add(make_sdist(build, "sdistonly", "0.3"))
    yield idx
    server.shutdown()


def _reqs(*lines: str, index: PrivateIndex, extra: bool = False) -> ImageRequirements:
    opts = IndexOptions(extra_index_urls=(index.url,)) if extra else IndexOptions(index_url=index.url)
    return ImageRequirements(python_version="3.11", requirements=lines, index_options=opts, build_tools=())


def test_resolution_uses_credentials_and_pins_hashes(index: PrivateIndex, tmp_path: Path) -> None:
    lines: list[str] = []
    resolver = Resolver(WheelStore(tmp_path / "cache"), PipRunner(on_line=lines.append))
    platform = TargetPlatform.parse("linux/amd64", "3.11")
    lock = resolver.lock(_reqs("tinypkg<2", index=index), platform, refresh=True)
    assert [(p.name, p.version) for p in lock.packages] == [("tinypkg", "1.0")]
    stored = resolver.store.lookup(lock.packages[0].sha256)
    assert stored is not None and sha256_file(stored) == lock.packages[0].sha256
    assert index.requests > 0
    text = "\n".join(lines) + lock.to_text()
    assert index.token not in text  # pip's output and the lock never carry the token
    assert "127.0.0.1" not in lock.to_text()  # the lock names no index at all
    # A second call is served from the cache: no request reaches the index.
    before = index.requests
    again = resolver.lock(_reqs("tinypkg<2", index=index), platform)
    assert again == lock and index.requests == before


def test_sdist_only_pure_package_is_built_on_the_host(index: PrivateIndex, tmp_path: Path) -> None:
    resolver = Resolver(WheelStore(tmp_path / "cache"))
    lock = resolver.lock(_reqs("sdistonly==0.3", index=index), TargetPlatform.parse("linux/amd64", "3.11"),
                         refresh=True)
    pkg = lock.packages[0]
    assert (pkg.name, pkg.version) == ("sdistonly", "0.3")
    assert pkg.filename.endswith("-py3-none-any.whl")


def test_unknown_package_error_is_actionable_and_redacted(index: PrivateIndex, tmp_path: Path) -> None:
    resolver = Resolver(WheelStore(tmp_path / "cache"))
    with pytest.raises(EnvironmentSpecError) as err:
        resolver.lock(_reqs("no-such-pkg-deployer==1.0", index=index),
                      TargetPlatform.parse("linux/amd64", "3.11"), refresh=True)
    message = err.value.format_message()
    assert "no-such-pkg-deployer" in message and "--wheelhouse" in message
    assert index.token not in message


def test_materialize_offline_from_wheelhouse(index: PrivateIndex, tmp_path: Path) -> None:
    online = Resolver(WheelStore(tmp_path / "online"))
    platform = TargetPlatform.parse("linux/amd64", "3.11")
    lock = online.lock(_reqs("tinypkg==2.0", index=index), platform, refresh=True)
    house = tmp_path / "house"
    link_wheels(online.materialize(lock), house)
    # A fresh cache, no index: everything comes from the wheelhouse, checked by hash.
    offline = Resolver(WheelStore(tmp_path / "offline"))
    before = index.requests
    files = offline.materialize(lock, offline_wheelhouse=house)
    assert {p.name for p in files} == {"tinypkg"} and index.requests == before
    # Offline *resolution* from the wheelhouse works too (pip --no-index).
    relocked = offline.lock(ImageRequirements(python_version="3.11", requirements=("tinypkg",), build_tools=()),
                            platform, offline_wheelhouse=house, refresh=True)
    assert relocked.packages == lock.packages
    # A wheelhouse missing a locked file is an error naming the package.
    (house / files[lock.packages[0]].name).unlink()
    with pytest.raises(EnvironmentSpecError, match="tinypkg==2.0"):
        Resolver(WheelStore(tmp_path / "empty")).materialize(lock, offline_wheelhouse=house)


def test_canonical_text_ignores_notes_and_inputs(tmp_path: Path) -> None:
    """Build contexts get the canonical text: how a lock was made must not bust layer caches."""
    a = _lock()
    b = Lock(platform=a.platform, packages=a.packages, build_tools=a.build_tools, inputs_digest="other",
             notes=("replaced mlflow with mlflow-skinny",))
    assert a.canonical_text() == b.canonical_text()
    assert b.notes[0] in b.to_text()
    write_lock(b, tmp_path / "b.lock")
    assert read_lock(tmp_path / "b.lock").notes == b.notes
