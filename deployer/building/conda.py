"""conda models: a conda-lock lockfile -> packages fetched on the host -> an offline install.

Same principle as the wheelhouse: the host (with the user's proxy and CA) downloads the exact
package files a ``conda-lock.yml`` pins, checks their hashes, and puts them in the build
context; micromamba then installs an ``@EXPLICIT`` list of ``file://`` URLs with ``--offline``
in a build stage. No channel URL, channel token (``/t/<token>/``) or CA reaches the image.

A conda.yaml with real conda packages but no lockfile cannot be solved without a channel;
deployer asks for ``conda-lock -f conda.yaml -p linux-64`` (or ``--conda-lock FILE``) instead
of solving inside the build. The pip section of the lockfile becomes a regular pip
:class:`~deployer.environment.lock.Lock`, installed from the wheelhouse like any other.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import yaml

from deployer.atomic import atomic_output
from deployer.environment.lock import Lock, LockedPackage, TargetPlatform
from deployer.errors import EnvironmentSpecError
from deployer.redact import redact_text

CONDA_PLATFORMS = {"x86_64": "linux-64", "aarch64": "linux-aarch64"}
LOCKFILE_NAMES = ("conda-lock.yml", "conda-lock.yaml")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]*\.(conda|tar\.bz2|whl)$")


@dataclass(frozen=True)
class CondaPackage:
    name: str
    version: str
    manager: str  # "conda" | "pip"
    platform: str
    url: str
    md5: str
    sha256: str

    @property
    def filename(self) -> str:
        return PurePosixPath(urlsplit(self.url).path).name


@dataclass(frozen=True)
class CondaLockFile:
    path: Path
    platforms: tuple[str, ...]
    packages: tuple[CondaPackage, ...]

    def for_platform(self, platform: str) -> tuple[CondaPackage, ...]:
        if platform not in self.platforms:
            raise EnvironmentSpecError(
                f"the conda lockfile has no packages for {platform} (it has: "
                f"{', '.join(self.platforms)})",
                where=str(self.path),
                fix=f"re-run conda-lock with -p {platform}",
            )
        return tuple(p for p in self.packages if p.platform == platform)

    def python_version(self, platform: str) -> str | None:
        for pkg in self.for_platform(platform):
            if pkg.manager == "conda" and pkg.name == "python":
                return ".".join(pkg.version.split(".")[:2])
        return None


def find_lockfile(model_dir: Path, given: Path | None) -> Path | None:
    if given is not None:
        return given
    for name in LOCKFILE_NAMES:
        if (model_dir / name).is_file():
            return model_dir / name
    return None


def parse_conda_lock(path: Path) -> CondaLockFile:
    """Parse a conda-lock v1 unified lockfile, validating every field a build relies on."""
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise EnvironmentSpecError(
            f"cannot read the conda lockfile: {exc}",
            where=where,
            fix="regenerate it with conda-lock",
        ) from exc
    if (
        not isinstance(data, dict)
        or data.get("version") != 1
        or not isinstance(data.get("package"), list)
    ):
        raise EnvironmentSpecError(
            "not a conda-lock version 1 lockfile (need 'version: 1' and a 'package' list)",
            where=where,
            fix="regenerate it with conda-lock >= 1.0",
        )
    meta = data.get("metadata") or {}
    platforms = tuple(str(p) for p in (meta.get("platforms") or []))
    packages = []
    for i, raw in enumerate(data["package"]):
        here = f"{where}: package[{i}]"
        if not isinstance(raw, dict):
            raise EnvironmentSpecError(
                "package entry is not a mapping", where=here, fix="regenerate the lockfile"
            )
        name, version = str(raw.get("name", "")), str(raw.get("version", ""))
        manager, platform, url = (
            str(raw.get("manager", "")),
            str(raw.get("platform", "")),
            str(raw.get("url", "")),
        )
        hashes = raw.get("hash") or {}
        md5, sha = str(hashes.get("md5", "") or ""), str(hashes.get("sha256", "") or "")
        if manager not in ("conda", "pip"):
            raise EnvironmentSpecError(
                f"package {name!r} has unknown manager {manager!r}",
                where=here,
                fix="regenerate the lockfile",
            )
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", name) or not re.match(
            r"^[A-Za-z0-9.+!_-]+$", version
        ):
            raise EnvironmentSpecError(
                f"package name/version {name!r} {version!r} is not plain text",
                where=here,
                fix="regenerate the lockfile",
            )
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not _FILENAME.match(
            PurePosixPath(parts.path).name
        ):
            raise EnvironmentSpecError(
                f"package {name!r} has an unsupported URL {redact_text(url)!r}",
                where=here,
                fix="conda packages must be https URLs to .conda/.tar.bz2 files",
            )
        if (md5 and not _MD5.match(md5)) or (sha and not _SHA256.match(sha)) or not (md5 or sha):
            raise EnvironmentSpecError(
                f"package {name!r} has no valid md5/sha256 hash",
                where=here,
                fix="regenerate the lockfile",
            )
        if manager == "pip" and not sha:
            raise EnvironmentSpecError(
                f"pip package {name!r} has no sha256", where=here, fix="regenerate the lockfile"
            )
        packages.append(CondaPackage(name, version, manager, platform, url, md5, sha))
    return CondaLockFile(
        path=path,
        platforms=platforms or tuple(sorted({p.platform for p in packages})),
        packages=tuple(packages),
    )


def explicit_spec(packages: tuple[CondaPackage, ...], pkgs_dir: str) -> str:
    """micromamba's ``@EXPLICIT`` file pointing at the files copied into the build context."""
    lines = [
        "# conda packages for the image, installed offline from the build context",
        "@EXPLICIT",
    ]
    for pkg in packages:
        if pkg.manager != "conda":
            continue
        suffix = f"#{pkg.md5}" if pkg.md5 else f"#sha256:{pkg.sha256}"
        lines.append(f"file://{pkgs_dir}/{pkg.filename}{suffix}")
    return "\n".join(lines) + "\n"


def pip_lock(packages: tuple[CondaPackage, ...], platform: TargetPlatform) -> Lock:
    """The pip section of the conda lock, as a regular hashed pip lock."""
    pinned = tuple(
        LockedPackage(p.name.lower().replace("_", "-"), p.version, p.sha256, p.filename)
        for p in packages
        if p.manager == "pip"
    )
    return Lock(platform=platform, packages=tuple(sorted(pinned)))


def download_conda_packages(
    packages: tuple[CondaPackage, ...], dest: Path, *, timeout: float = 300
) -> None:
    """Fetch each conda package on the host (user's proxy/CA apply) and verify its hash."""
    dest.mkdir(parents=True, exist_ok=True)
    for pkg in packages:
        if pkg.manager != "conda":
            continue
        target = dest / pkg.filename
        if target.is_file() and _matches(target, pkg):
            continue
        with atomic_output(target, prefix=".dl-") as tmp:
            try:
                with (
                    tmp.open("wb") as out,
                    urllib.request.urlopen(pkg.url, timeout=timeout) as resp,
                ):  # noqa: S310
                    shutil.copyfileobj(resp, out)
            except OSError as exc:
                raise EnvironmentSpecError(
                    f"cannot download conda package {pkg.filename}: {redact_text(str(exc))}",
                    where=redact_text(pkg.url),
                    fix="check that this host reaches the channel (proxy, CA bundle)",
                ) from exc
            if not _matches(tmp, pkg):
                raise EnvironmentSpecError(
                    f"{pkg.filename} does not match the lockfile's hash",
                    where=redact_text(pkg.url),
                    fix="regenerate the lockfile or check the channel",
                )


def _matches(path: Path, pkg: CondaPackage) -> bool:
    algo, expected = ("sha256", pkg.sha256) if pkg.sha256 else ("md5", pkg.md5)
    h = hashlib.new(algo)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest() == expected
