"""Lock files: the exact, hashed set of wheels an image installs, for one target platform.

Why a lock: a model's requirements (``mlflow==3.1``, ``pandas>=2``) describe many possible
environments; an image must contain exactly one, the same every time it is rebuilt, and the
build must be able to check every byte it installs. ``deployer lock`` resolves once, on the
host, and writes this file; ``deployer build --lock FILE`` installs exactly it, offline,
with ``--require-hashes``.

The format is a pip requirements file (so ``pip install --require-hashes -r`` and
``uv pip install`` read it as is) with one structured header comment::

    # deployer-lock: {"version": 1, "python": "3.11", "platform": "linux/amd64", ...}
    numpy==2.1.0 \\
        --hash=sha256:<hex>  # numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl

The header also lists *build tools* (uv): wheels the image's build stage uses but the final
image does not contain. Nothing in a lock names an index URL: where the wheels came from is
the host's business (and may carry credentials), what they are is pinned by hash.

:class:`TargetPlatform` turns ``linux/amd64`` + Python ``3.11`` into the wheel tags pip uses
when downloading for another machine (``--platform``/``--python-version``/``--abi``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from deployer.errors import EnvironmentSpecError

LOCK_VERSION = 1
HEADER_PREFIX = "# deployer-lock: "
_ARCHES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}
_PY = re.compile(r"^(?P<major>3)\.(?P<minor>\d{1,2})(?:\.\d+)?$")
_GLIBC = re.compile(r"^2\.(?P<minor>\d{1,2})$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)$")
_HASH_OPT = re.compile(r"^--hash=sha256:(?P<hex>[0-9a-f]{64})$")

#: Oldest glibc manylinux level accepted, and the default newest (RHEL 8 / Debian 10+ era:
#: wide compatibility for user base images; bookworm, the default base, has 2.36).
MIN_GLIBC_MINOR = 17
DEFAULT_GLIBC = "2.28"


def marker_environment(python_version: str) -> dict[str, str]:
    """PEP 508 marker values of the image (Linux, CPython ``python_version``; no extra), for
    evaluating requirement markers on a host that is not the image."""
    env = dict(default_environment())
    env.update(
        {
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "python_version": python_version,
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "extra": "",
        }
    )
    return env


@dataclass(frozen=True)
class TargetPlatform:
    """Where the locked wheels must run: OS/arch, CPython X.Y, newest glibc of the base."""

    python: str  # "3.11"
    arch: str = "x86_64"  # "x86_64" | "aarch64"
    glibc: str = DEFAULT_GLIBC

    @classmethod
    def parse(cls, platform: str, python: str, glibc: str = DEFAULT_GLIBC) -> TargetPlatform:
        """``parse("linux/amd64", "3.11.7")`` -> TargetPlatform("3.11", "x86_64")."""
        os_name, _, arch = (platform or "").partition("/")
        if os_name != "linux" or arch not in _ARCHES:
            raise EnvironmentSpecError(
                f"unsupported platform {platform!r}",
                fix="use linux/amd64 or linux/arm64 (container images are Linux)",
            )
        m = _PY.match(python or "")
        if not m:
            raise EnvironmentSpecError(
                f"Python version {python!r} is not a CPython 3.X version",
                fix="declare python: 3.11 (or similar) in the model's python_env.yaml",
            )
        g = _GLIBC.match(glibc)
        if not g or int(g["minor"]) < MIN_GLIBC_MINOR:
            raise EnvironmentSpecError(
                f"glibc version {glibc!r} is not supported",
                fix=f"use a glibc of 2.{MIN_GLIBC_MINOR} or newer, e.g. {DEFAULT_GLIBC}",
            )
        return cls(python=f"3.{m['minor']}", arch=_ARCHES[arch], glibc=glibc)

    @property
    def docker_platform(self) -> str:
        return "linux/amd64" if self.arch == "x86_64" else "linux/arm64"

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    def wheel_platforms(self) -> list[str]:
        """pip ``--platform`` values, newest first: manylinux_2_N down to 2_17 (+ legacy
        aliases)."""
        top = int(self.glibc.split(".")[1])
        tags = [f"manylinux_2_{n}_{self.arch}" for n in range(top, MIN_GLIBC_MINOR - 1, -1)]
        tags.append(f"manylinux2014_{self.arch}")
        if self.arch == "x86_64":
            tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
        return tags

    def pip_args(self) -> list[str]:
        """The arguments that make ``pip download`` pick wheels for this platform, not the host."""
        args = [
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            self.python,
            "--abi",
            self.abi,
        ]
        for tag in self.wheel_platforms():
            args += ["--platform", tag]
        return args

    def to_dict(self) -> dict[str, str]:
        return {"python": self.python, "platform": self.docker_platform, "glibc": self.glibc}


@dataclass(frozen=True, order=True)
class LockedPackage:
    """One pinned distribution: the exact file (by sha256) that gets installed."""

    name: str  # canonical (PEP 503) name
    version: str
    sha256: str
    filename: str = ""

    def __post_init__(self) -> None:
        if not _SHA256.match(self.sha256):
            raise EnvironmentSpecError(
                f"invalid sha256 {self.sha256!r} for {self.name}",
                fix="re-create the lock with `deployer lock`",
            )
        if not _PIN.match(f"{self.name}=={self.version}"):
            raise EnvironmentSpecError(
                f"invalid pin {self.name}=={self.version}",
                fix="re-create the lock with `deployer lock`",
            )

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "filename": self.filename,
        }


@dataclass(frozen=True)
class Lock:
    """A resolved environment: runtime packages (installed) + build tools (build stage only)."""

    platform: TargetPlatform
    packages: tuple[LockedPackage, ...]
    build_tools: tuple[LockedPackage, ...] = ()
    inputs_digest: str = ""
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        # Canonical order, so equal sets compare equal and render identically.
        object.__setattr__(self, "packages", tuple(sorted(self.packages)))
        object.__setattr__(self, "build_tools", tuple(sorted(self.build_tools)))

    @property
    def digest(self) -> str:
        """Identity of what gets installed (not of how it was asked for)."""
        h = hashlib.sha256()
        h.update(json.dumps(self.platform.to_dict(), sort_keys=True).encode())
        for pkg in (*sorted(self.packages), *sorted(self.build_tools)):
            h.update(f"{pkg.name}=={pkg.version}:{pkg.sha256}\n".encode())
        return "sha256:" + h.hexdigest()

    def all_packages(self) -> tuple[LockedPackage, ...]:
        return (*self.packages, *self.build_tools)

    def find(self, name: str) -> LockedPackage | None:
        key = canonicalize_name(name)
        return next((p for p in self.all_packages() if p.name == key), None)

    def requirements_text(self) -> str:
        """The pip-format body: ``name==version --hash=sha256:...  # filename`` per package."""
        lines = []
        for pkg in sorted(self.packages):
            tail = f"  # {pkg.filename}" if pkg.filename else ""
            lines.append(f"{pkg.pin} \\\n    --hash=sha256:{pkg.sha256}{tail}")
        return "\n".join(lines) + ("\n" if lines else "")

    def header(self) -> dict[str, object]:
        return {
            "version": LOCK_VERSION,
            **self.platform.to_dict(),
            "inputs": self.inputs_digest,
            "build_tools": [p.to_dict() for p in sorted(self.build_tools)],
        }

    def canonical_text(self) -> str:
        """Only what is installed (no notes, no inputs digest): equal sets give equal bytes.

        This is the copy that goes into build contexts, where any byte difference would
        invalidate the dependency layer's cache.
        """
        return Lock(
            platform=self.platform, packages=self.packages, build_tools=self.build_tools
        ).to_text()

    def to_text(self) -> str:
        head = [
            "# Pinned, hashed Python dependencies of one model image, for one platform.",
            "# Written by `deployer lock`; `deployer build --lock FILE` installs exactly these",
            "# wheels, offline. Plain pip can read it too: pip install --require-hashes -r FILE",
            HEADER_PREFIX + json.dumps(self.header(), sort_keys=True, separators=(",", ":")),
        ]
        head += [f"# note: {n}" for n in self.notes]
        return "\n".join(head) + "\n" + self.requirements_text()

    def to_dict(self) -> dict[str, object]:
        return {
            "digest": self.digest,
            **self.header(),
            "packages": [p.to_dict() for p in sorted(self.packages)],
        }


def package_from_file(path: Path) -> LockedPackage:
    """Name/version from a wheel (or sdist) filename, sha256 from its bytes."""
    name, version = parse_dist_filename(path.name)
    return LockedPackage(name=name, version=version, sha256=sha256_file(path), filename=path.name)


def parse_dist_filename(filename: str) -> tuple[str, str]:
    try:
        if filename.endswith(".whl"):
            name, ver, _build, _tags = parse_wheel_filename(filename)
        else:
            name, ver = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise EnvironmentSpecError(
            f"{filename!r} is not a wheel or sdist file name",
            fix="remove the file from the wheelhouse",
        ) from exc
    return str(name), str(ver)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def inputs_digest(parts: Iterable[str]) -> str:
    """Digest of what a lock was made *from* (requirements, platform, index options)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return "sha256:" + h.hexdigest()


def read_lock(path: Path) -> Lock:
    """Parse a lock file written by :meth:`Lock.to_text` (strictly: anything else is refused)."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvironmentSpecError(
            f"cannot read lock file: {exc}",
            where=where,
            fix="pass a file written by `deployer lock`",
        ) from exc
    return parse_lock(text, where=where)


def parse_lock(text: str, *, where: str = "lock file") -> Lock:
    header: dict[str, object] | None = None
    notes: list[str] = []
    logical: list[tuple[str, str]] = []  # (requirement text, trailing comment)
    buf = ""
    for raw in text.splitlines():
        if raw.startswith(HEADER_PREFIX):
            try:
                header = json.loads(raw[len(HEADER_PREFIX) :])
            except json.JSONDecodeError as exc:
                raise EnvironmentSpecError(
                    f"lock header is not valid JSON: {exc}",
                    where=where,
                    fix="re-create the lock with `deployer lock`",
                ) from exc
            continue
        if raw.startswith("# note: "):
            notes.append(raw[len("# note: ") :])
            continue
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        code, _, comment = raw.partition(" #")
        code = code.rstrip()
        if code.endswith("\\"):
            buf += code[:-1] + " "
            continue
        logical.append(((buf + code).strip(), comment.strip()))
        buf = ""
    if not isinstance(header, dict) or header.get("version") != LOCK_VERSION:
        raise EnvironmentSpecError(
            "not a deployer lock file (missing or unknown '# deployer-lock:' header)",
            where=where,
            fix="create one with `deployer lock -m MODEL -o FILE`",
        )
    platform = TargetPlatform.parse(
        str(header.get("platform")),
        str(header.get("python")),
        str(header.get("glibc", DEFAULT_GLIBC)),
    )
    packages = []
    for body, filename in logical:
        tokens = body.split()
        pin = _PIN.match(tokens[0]) if tokens else None
        hashes = [_HASH_OPT.match(t) for t in tokens[1:]]
        if not pin or len(hashes) != 1 or not hashes[0]:
            raise EnvironmentSpecError(
                f"lock entry {body[:120]!r} is not 'name==version --hash=sha256:<hex>' (one hash: "
                "a lock is for one platform)",
                where=where,
                fix="re-create the lock with `deployer lock` "
                "(hand edits must keep pins and hashes)",
            )
        packages.append(
            LockedPackage(
                canonicalize_name(pin["name"]), pin["version"], hashes[0]["hex"], filename
            )
        )
    tools = []
    for item in header.get("build_tools") or []:  # type: ignore[union-attr]
        if not isinstance(item, dict):
            raise EnvironmentSpecError(
                "lock header build_tools entries must be objects",
                where=where,
                fix="re-create the lock with `deployer lock`",
            )
        tools.append(
            LockedPackage(
                canonicalize_name(str(item.get("name"))),
                str(item.get("version")),
                str(item.get("sha256")),
                str(item.get("filename") or ""),
            )
        )
    return Lock(
        platform=platform,
        packages=tuple(packages),
        build_tools=tuple(tools),
        inputs_digest=str(header.get("inputs") or ""),
        notes=tuple(notes),
    )


def write_lock(lock: Lock, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(lock.to_text(), encoding="utf-8")
    tmp.replace(path)
