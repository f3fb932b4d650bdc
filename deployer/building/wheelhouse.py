"""Resolve and download wheels ON THE HOST, for the image's platform; keep them in a cache.

Why on the host: the host is where the user's pip configuration (pip.conf, ``PIP_*``), CA
bundle, proxy variables, netrc and keyring already work. A ``pip install`` inside ``docker
build`` has none of them: behind a TLS-intercepting proxy it fails certificate checks, and
making it work means baking a CA bundle, proxy settings or an index token into the image.
So deployer runs ``python -m pip download`` here, with ``--platform``/``--python-version`` for
the image (not the host), and the image installs offline from the files (``--no-index
--require-hashes``). pip is used rather than uv because it reads the user's pip config as is.

Model index options (``--extra-index-url https://user:token@host/simple`` in the model's
requirements.txt) go into a temporary requirements file (mode 0600, deleted after use), where
pip *adds* them to the configured indexes rather than replacing them as a command-line flag
would. pip's output is logged only after :func:`redact_text`.

Packages published only as sdists: deployer builds them into wheels on the host when the
result is pure Python (``py3-none-any``), which runs anywhere; compiled ones are refused with
a fix (build the wheel for the target, pass ``--wheelhouse``).

Cache layout (``$DEPLOYER_BUILD_CACHE``, else ``$XDG_CACHE_HOME/deployer/build``)::

    wheels/<sha256>/<filename>   every wheel ever fetched, content-addressed
    locks/<inputs-key>.lock      resolutions, reused for ``LOCK_TTL`` seconds
    tmp-*/                       work directories (same filesystem: ingest is a rename)

A model-only rebuild therefore runs no pip at all: the lock comes from the cache and every
wheel is already in the store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from deployer.atomic import atomic_output
from deployer.building.dependencies import ImageRequirements
from deployer.environment.lock import (
    Lock,
    LockedPackage,
    TargetPlatform,
    inputs_digest,
    package_from_file,
    read_lock,
    sha256_file,
    write_lock,
)
from deployer.environment.spec import IndexOptions
from deployer.errors import EnvironmentSpecError
from deployer.redact import redact_text

log = logging.getLogger("deployer")

LOCK_TTL = 24 * 3600
PIP_TIMEOUT = 1800
MAX_SDIST_BUILDS = 8
_NO_MATCH = re.compile(
    r"(?:No matching distribution found for|Could not find a version that satisfies the "
    r"requirement) (?P<req>\S+)"
)
_PURE_TAG = re.compile(r"-py[23](?:\.py[23])?-none-any\.whl$")

LineSink = Callable[[str], None]


def default_cache_root() -> Path:
    explicit = os.environ.get("DEPLOYER_BUILD_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "deployer" / "build"


@dataclass(frozen=True)
class WheelStore:
    """Content-addressed wheel cache plus cached resolutions (see module docstring)."""

    root: Path

    @classmethod
    def default(cls) -> WheelStore:
        return cls(default_cache_root())

    @property
    def wheels(self) -> Path:
        return self.root / "wheels"

    def lookup(self, sha256: str) -> Path | None:
        folder = self.wheels / sha256
        if not folder.is_dir():
            return None
        for path in folder.iterdir():
            if not path.name.startswith("."):
                with contextlib.suppress(OSError):
                    os.utime(folder)  # last use, for `deployer prune`
                return path
        return None

    def ingest(self, path: Path) -> LockedPackage:
        """Move (or copy) a downloaded file into the store; returns its pinned identity."""
        pkg = package_from_file(path)
        if self.lookup(pkg.sha256) is None:
            folder = self.wheels / pkg.sha256
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_output(folder / path.name, prefix=f".{path.name}.") as tmp:
                try:
                    os.replace(path, tmp)
                except OSError:  # another filesystem: copy instead
                    shutil.copy2(path, tmp)
        return pkg

    @contextlib.contextmanager
    def workdir(self) -> Iterator[Path]:
        self.root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="tmp-", dir=self.root))
        os.chmod(path, 0o700)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def cached_lock(self, key: str, ttl: float = LOCK_TTL) -> Lock | None:
        path = self.root / "locks" / (key.replace("sha256:", "") + ".lock")
        if not path.is_file() or time.time() - path.stat().st_mtime > ttl:
            return None
        try:
            return read_lock(path)
        except EnvironmentSpecError:
            return None

    def save_lock(self, key: str, lock: Lock) -> None:
        write_lock(lock, self.root / "locks" / (key.replace("sha256:", "") + ".lock"))


@dataclass(frozen=True)
class PipRunner:
    """Runs the host's ``python -m pip``; everything it prints is redacted before logging."""

    python: str = sys.executable
    timeout: float = PIP_TIMEOUT
    on_line: LineSink | None = None

    def run(self, args: Sequence[str], *, what: str, cwd: Path | None = None) -> str:
        cmd = [self.python, "-m", "pip", *args]
        env = {
            **os.environ,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            "PIP_PROGRESS_BAR": "off",
        }
        log.debug("running pip %s", redact_text(" ".join(args)))
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                cwd=cwd,
                errors="replace",
            )
        except OSError as exc:
            raise EnvironmentSpecError(
                f"cannot run pip ({self.python} -m pip): {exc}",
                fix="install pip for this Python: python -m ensurepip",
            ) from exc
        lines: list[str] = []
        deadline = time.monotonic() + self.timeout
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = redact_text(raw.rstrip("\n"))
            lines.append(line)
            if self.on_line and line.strip() and not line.startswith("WARNING: Location"):
                self.on_line(line)
            if time.monotonic() > deadline:
                proc.kill()
                raise EnvironmentSpecError(
                    f"{what}: pip did not finish within {self.timeout:.0f}s",
                    fix="check network access to your package index",
                )
        code = proc.wait()
        out = "\n".join(lines)
        if code != 0:
            raise PipFailed(what, out, code)
        return out


class PipFailed(EnvironmentSpecError):
    def __init__(self, what: str, output: str, code: int) -> None:
        tail = "\n".join(
            line for line in output.splitlines()[-25:] if not line.startswith("WARNING: Location")
        )
        super().__init__(
            f"{what} failed (pip exit {code}):\n{tail}",
            fix="check the requirement names/versions and that your pip configuration reaches the "
            "index; for air-gapped builds pass --wheelhouse DIR",
        )
        self.output = output


def _index_lines(opts: IndexOptions, model_dir: Path | None) -> list[str]:
    lines = []
    if opts.index_url:
        lines.append(f"--index-url {opts.index_url}")
    lines += [f"--extra-index-url {u}" for u in opts.extra_index_urls]
    for link in opts.find_links:
        if "://" not in link and model_dir is not None:
            link = str((model_dir / link).resolve())
        lines.append(f"--find-links {link}")
    return lines


def _requirement_line(line: str, model_dir: Path | None) -> str:
    """Drop ``--hash`` (checked after download) and make model-relative archives absolute."""
    req = line.split(" --hash", 1)[0].strip()
    first = req.split(" ", 1)[0]
    if model_dir is not None and "://" not in first and "/" in first and "@" not in req:
        return str((model_dir / first).resolve())
    return req


def _expected_hashes(requirements: Sequence[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in requirements:
        if " --hash" not in line:
            continue
        try:
            name = canonicalize_name(Requirement(line.split(" --hash", 1)[0]).name)
        except InvalidRequirement:
            continue
        out[name] = {h.split(":", 1)[1] for h in line.split()[1:] if h.startswith("--hash=sha256:")}
    return out


def lock_key(reqs: ImageRequirements, platform: TargetPlatform, offline: Path | None) -> str:
    """Cache key of a resolution: every input, index URLs included (hashed, never stored)."""
    opts = reqs.index_options
    return inputs_digest(
        [
            "deployer-lock-v1",
            *platform.to_dict().values(),
            *reqs.requirements,
            "--",
            *reqs.constraints,
            "--",
            *reqs.build_tools,
            "--",
            opts.index_url or "",
            *opts.extra_index_urls,
            *opts.find_links,
            str(offline or ""),
        ]
    )


class Resolver:
    """Resolution (requirements -> Lock) and materialization (Lock -> wheel files)."""

    def __init__(self, store: WheelStore | None = None, pip: PipRunner | None = None) -> None:
        self.store = store or WheelStore.default()
        self.pip = pip or PipRunner()

    # ------------------------------------------------------------------ resolution
    def lock(
        self,
        reqs: ImageRequirements,
        platform: TargetPlatform,
        *,
        model_dir: Path | None = None,
        offline_wheelhouse: Path | None = None,
        refresh: bool = False,
    ) -> Lock:
        """The pinned, hashed set for ``reqs`` on ``platform`` (cached unless ``refresh``)."""
        key = lock_key(reqs, platform, offline_wheelhouse)
        if not refresh:
            cached = self.store.cached_lock(key)
            if cached is not None and all(
                self.store.lookup(p.sha256) for p in cached.all_packages()
            ):
                log.debug("reusing cached resolution %s", key)
                return cached
        with self.store.workdir() as work:
            dest = work / "download"
            dest.mkdir()
            self._download(
                reqs, platform, dest, work, model_dir=model_dir, offline=offline_wheelhouse
            )
            expected = _expected_hashes(reqs.requirements)
            requested = {canonicalize_name(n) for n in _names(reqs.requirements)}
            runtime: list[LockedPackage] = []
            tools: list[LockedPackage] = []
            tool_names = {canonicalize_name(n) for n in _names(reqs.build_tools)}
            for path in sorted(dest.iterdir()):
                if not path.name.endswith(".whl"):
                    raise EnvironmentSpecError(
                        f"pip returned {path.name}, which is not a wheel",
                        fix="report this as a bug",
                    )
                pkg = self.store.ingest(path)
                if pkg.name in expected and pkg.sha256 not in expected[pkg.name]:
                    raise EnvironmentSpecError(
                        f"{pkg.filename} does not match the --hash the model's requirements pin",
                        fix="fix the hash in the model's requirements, or check your index for "
                        "tampering",
                    )
                (tools if pkg.name in tool_names and pkg.name not in requested else runtime).append(
                    pkg
                )
        lock = Lock(
            platform=platform,
            packages=tuple(sorted(runtime)),
            build_tools=tuple(sorted(tools)),
            inputs_digest=key,
            notes=reqs.notes,
        )
        self.store.save_lock(key, lock)
        return lock

    def _download(
        self,
        reqs: ImageRequirements,
        platform: TargetPlatform,
        dest: Path,
        work: Path,
        *,
        model_dir: Path | None,
        offline: Path | None,
    ) -> None:
        req_file = work / "requirements.in"
        lines = [] if offline else _index_lines(reqs.index_options, model_dir)
        lines += [_requirement_line(r, model_dir) for r in (*reqs.requirements, *reqs.build_tools)]
        if reqs.constraints:
            (work / "constraints.txt").write_text("\n".join(reqs.constraints) + "\n")
            lines.append(f"-c {work / 'constraints.txt'}")
        req_file.write_text("\n".join(lines) + "\n")
        os.chmod(req_file, 0o600)
        built = work / "built"
        built.mkdir()
        args = [
            "download",
            "--dest",
            str(dest),
            "--requirement",
            str(req_file),
            *platform.pip_args(),
            "--find-links",
            str(built),
        ]
        if offline:
            args += ["--no-index", "--find-links", str(offline)]
        tried: set[str] = set()
        for _ in range(MAX_SDIST_BUILDS + 1):
            try:
                self.pip.run(args, what="resolving dependencies (pip download)", cwd=model_dir)
                return
            except PipFailed as exc:
                match = _NO_MATCH.search(exc.output)
                if not match or offline or match["req"] in tried:
                    raise
                tried.add(match["req"])
                index = [] if offline else _index_lines(reqs.index_options, model_dir)
                self._build_pure_wheel(match["req"], built, work, exc, index)
        raise EnvironmentSpecError(
            f"gave up after building {MAX_SDIST_BUILDS} wheels from sdists",
            fix="pre-build the wheels and pass --wheelhouse DIR",
        )

    def _build_pure_wheel(
        self, req: str, out: Path, work: Path, original: PipFailed, index_lines: list[str]
    ) -> None:
        """No wheel for ``req``: build it from its sdist on the host if it is pure Python."""
        sdists = work / "sdists"
        sdists.mkdir(exist_ok=True)
        log.info("no wheel of %s for the target platform: building one from its sdist", req)
        req_file = work / "sdist.in"
        req_file.write_text("\n".join([*index_lines, req]) + "\n")
        os.chmod(req_file, 0o600)
        try:
            self.pip.run(
                [
                    "download",
                    "--no-deps",
                    "--no-binary=:all:",
                    "--dest",
                    str(sdists),
                    "--requirement",
                    str(req_file),
                ],
                what=f"downloading the sdist of {req}",
            )
        except PipFailed:
            raise original from None
        before = set(out.iterdir())
        for sdist in sorted(sdists.iterdir()):
            self.pip.run(
                ["wheel", "--no-deps", "--wheel-dir", str(out), str(sdist)],
                what=f"building a wheel of {sdist.name}",
            )
            sdist.unlink()
        for wheel in set(out.iterdir()) - before:
            if not _PURE_TAG.search(wheel.name):
                raise EnvironmentSpecError(
                    f"{req} has no wheel for the image's platform and its sdist builds a "
                    f"platform-specific wheel ({wheel.name}) on this host",
                    fix="build a wheel for the target (linux, the model's Python) and pass "
                    "--wheelhouse DIR containing it, or pin a version that ships wheels",
                )

    # ------------------------------------------------------------------ materialization
    def materialize(
        self,
        lock: Lock,
        *,
        index_options: IndexOptions | None = None,
        model_dir: Path | None = None,
        offline_wheelhouse: Path | None = None,
    ) -> dict[LockedPackage, Path]:
        """Make sure every locked file is in the store; returns package -> store path."""
        missing = [p for p in lock.all_packages() if self.store.lookup(p.sha256) is None]
        if missing and offline_wheelhouse is not None:
            self._ingest_from(offline_wheelhouse, {p.sha256 for p in missing})
            missing = [p for p in missing if self.store.lookup(p.sha256) is None]
            if missing:
                raise EnvironmentSpecError(
                    f"{len(missing)} locked wheel(s) are not in the wheelhouse: "
                    + ", ".join(f"{p.pin} ({p.filename or p.sha256[:12]})" for p in missing[:10]),
                    where=str(offline_wheelhouse),
                    fix="add the wheels (pip download -r LOCK --no-deps -d DIR on a connected "
                    "machine), or re-lock against this wheelhouse",
                )
        elif missing:
            with self.store.workdir() as work:
                req_file = work / "locked.txt"
                lines = _index_lines(index_options or IndexOptions(), model_dir)
                lines += [f"{p.pin} --hash=sha256:{p.sha256}" for p in missing]
                req_file.write_text("\n".join(lines) + "\n")
                os.chmod(req_file, 0o600)
                dest = work / "download"
                self.pip.run(
                    [
                        "download",
                        "--no-deps",
                        "--require-hashes",
                        "--dest",
                        str(dest),
                        "--requirement",
                        str(req_file),
                        *lock.platform.pip_args(),
                    ],
                    what="downloading locked wheels",
                    cwd=model_dir,
                )
                for path in dest.iterdir():
                    self.store.ingest(path)
        out = {}
        for pkg in lock.all_packages():
            path = self.store.lookup(pkg.sha256)
            if path is None:
                raise EnvironmentSpecError(
                    f"locked wheel {pkg.pin} (sha256 {pkg.sha256[:12]}) could not be fetched",
                    fix="check that your index still serves this exact file",
                )
            out[pkg] = path
        return out

    def _ingest_from(self, folder: Path, wanted: set[str]) -> None:
        if not folder.is_dir():
            raise EnvironmentSpecError(
                "wheelhouse is not a directory",
                where=str(folder),
                fix="pass --wheelhouse DIR with the .whl files",
            )
        self.store.root.mkdir(parents=True, exist_ok=True)
        for path in folder.rglob("*.whl"):
            if sha256_file(path) in wanted:
                tmp_dir = Path(tempfile.mkdtemp(dir=self.store.root))
                try:
                    copy = tmp_dir / path.name
                    shutil.copy2(path, copy)
                    self.store.ingest(copy)
                finally:
                    shutil.rmtree(tmp_dir, ignore_errors=True)


def _names(lines: Sequence[str]) -> list[str]:
    out = []
    for line in lines:
        try:
            out.append(Requirement(line.split(" --hash", 1)[0]).name)
        except InvalidRequirement:
            continue
    return out


def link_wheels(files: dict[LockedPackage, Path], dest: Path) -> None:
    """Place the locked wheels in a build context (hard links when possible, else copies)."""
    dest.mkdir(parents=True, exist_ok=True)
    for _pkg, src in sorted(files.items()):
        target = dest / src.name
        if target.exists():
            continue
        try:
            os.link(src, target)
        except OSError:
            shutil.copy2(src, target)
        os.chmod(target, 0o644)
