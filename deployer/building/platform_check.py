"""Can this engine build for the requested platform? Decided before anything is downloaded.

An image for another CPU architecture (``--platform linux/arm64`` on an x86_64 engine) needs two
things the engine does not have by default: a buildx-capable docker CLI (BuildKit's
multi-platform builder) and QEMU registered with the kernel's binfmt_misc, so the ``RUN`` steps
of the foreign image can execute. Without them the build would fail late (after resolving and
downloading every wheel) with an ``exec format error``, or worse, silently build the host's
architecture. So :func:`check_build_platform` asks the engine for its own OS/architecture and
refuses early, naming what is missing. Locking (``deployer lock --platform``) and dry-runs
need no engine and are not affected.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from deployer.errors import BuildError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
# binfmt_misc entry names used by qemu-user-static, binfmt-support and tonistiigi/binfmt.
_QEMU = {
    "arm64": ("qemu-aarch64", "qemu-aarch64-static", "aarch64"),
    "amd64": ("qemu-x86_64", "qemu-x86_64-static", "x86_64"),
}


def normalize_platform(os_type: str, arch: str) -> str:
    """``("linux", "x86_64")`` -> ``"linux/amd64"`` (docker info and platform strings agree)."""
    return f"{(os_type or 'linux').lower()}/{_ARCH.get((arch or '').lower(), (arch or '').lower())}"


def engine_platform(client: Any) -> str:
    """The engine's own platform, from ``docker info`` (OSType / Architecture)."""
    try:
        info = client.info()
    except Exception as exc:  # noqa: BLE001 - docker.errors.* / requests errors
        raise BuildError(
            f"cannot ask the Docker engine for its platform: {exc}",
            fix="check the Docker engine (docker info)",
        ) from exc
    return normalize_platform(
        str(info.get("OSType") or "linux"), str(info.get("Architecture") or "")
    )


def binfmt_registered(platform: str, binfmt_dir: Path = BINFMT_DIR) -> bool:
    """True when a QEMU interpreter for ``platform``'s architecture is registered and enabled."""
    arch = platform.partition("/")[2]
    for name in _QEMU.get(arch, (f"qemu-{arch}",)):
        entry = binfmt_dir / name
        try:
            first = entry.read_text().splitlines()[:1]
        except OSError:
            continue
        if first == ["enabled"]:
            return True
    return False


def cli_has_buildx(cli: str | None) -> bool:
    """True when ``cli buildx version`` works (the buildx plugin is installed)."""
    if not cli:
        return False
    try:
        out = subprocess.run([cli, "buildx", "version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def missing_for_cross_build(
    target: str, native: str, *, buildx: bool, binfmt_dir: Path = BINFMT_DIR
) -> list[str]:
    """What is missing to build ``target`` on an engine whose platform is ``native`` ([] =
    nothing)."""
    if target == native:
        return []
    missing = []
    if not buildx:
        missing.append("a docker CLI with the buildx plugin")
    if not binfmt_registered(target, binfmt_dir):
        arch = target.partition("/")[2]
        names = " or ".join(str(binfmt_dir / n) for n in _QEMU.get(arch, (f"qemu-{arch}",))[:1])
        missing.append(f"QEMU registered for {arch} (no enabled {names})")
    return missing


def check_build_platform(
    client: Any, engine: Any, target: str, *, binfmt_dir: Path = BINFMT_DIR
) -> str | None:
    """Refuse a foreign-platform build this engine cannot do; return the ``--platform`` to pass
    to the builder (None for a native build, so local base images without platform metadata
    still resolve)."""
    native = engine_platform(client)
    if target == native:
        return None
    cli = getattr(engine, "cli", None) if getattr(engine, "buildkit", False) else None
    missing = missing_for_cross_build(
        target, native, buildx=cli_has_buildx(cli), binfmt_dir=binfmt_dir
    )
    if missing:
        arch = target.partition("/")[2]
        raise BuildError(
            f"cannot build a {target} image on this {native} Docker engine: missing "
            + " and ".join(missing),
            where="--platform",
            fix=f"install docker buildx and register QEMU for {arch} (qemu-user-static + "
            "binfmt-support, or "
            f"`docker run --privileged --rm tonistiigi/binfmt --install {arch}`), or build on an "
            f"{arch} machine. "
            f"`deployer lock --platform {target}` and `deployer build --dry-run --platform "
            f"{target}` work "
            "without them",
        )
    return target
