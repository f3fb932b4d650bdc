"""The model's locked Python environment, built as a virtualenv on this host.

One implementation for every place deployer runs a model outside a container in its own
environment: ``deployer serve/predict --env-manager virtualenv|uv``, ``deployer prepare-env``
and Spark's packed environments (:mod:`deployer.spark.environment` packs this venv for its
executors). The same pieces as an image's Python environment, in the same order:

1. the requirement set of :func:`deployer.building.plan.plan_build` (the model's requirements,
   mlflow-skinny swap, deployer's serving runtime, plus pyarrow, which Parquet input and
   pandas UDFs need), for this host's platform and the Python of this process (the venv links
   to this interpreter: no pyenv, no interpreter download);
2. the lock and wheelhouse of :mod:`deployer.building.wheelhouse` (resolved and downloaded on
   this host, with the user's pip configuration, proxy and CA bundle; nothing of those is
   written into the environment);
3. the installer the image build runs (``deployer/building/_build_venv.py``): offline,
   ``--no-index``, hash-checked, from the wheelhouse only (with the ``uv`` wheel the lock pins,
   else pip).

The venv is ``<build cache>/envs/<key>/env``; the key is the lock digest and the interpreter,
so every model with the same lock shares it (like the ``deployer-env`` image). A small record
(``<build cache>/envs/inputs/<digest of the plan's inputs>.json``) maps what was asked for
(requirements, platform, index settings, wheelhouse, ``--lock``) to the environment built
for it, so a later run finds it without resolving again: once built, nothing goes to the
network (``--refresh-lock`` resolves afresh).

deployer's own code is not installed in the venv (as the runtime is a separate layer in
images): :func:`runtime_zip` packs the serving runtime (plus any extra files, e.g. Spark's
executor half) into a zip that goes on ``PYTHONPATH``, so a deployer upgrade rebuilds
kilobytes, not the environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform as _platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.atomic import atomic_output
from deployer.errors import BuildError, UsageError

log = logging.getLogger("deployer")

FORMAT = "deployer-host-env-v1"
#: What ``--env-manager`` accepts. ``uv`` and ``virtualenv`` build the same environment: a
#: venv installed by the uv the lock pins (pip when a hand-made wheelhouse has no uv).
ENV_MANAGERS = ("local", "virtualenv", "uv")
#: The ones that run the model in that environment (``local``: in the caller's Python).
ISOLATED_ENV_MANAGERS = ("virtualenv", "uv")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}

#: The build-option group's fields that shape the environment (the rest shape an image).
ENVIRONMENT_OPTIONS = (
    "pip",
    "pip_override_file",
    "lock_file",
    "wheelhouse",
    "refresh_lock",
    "auto_deps",
    "keep_full_mlflow",
)


def check_env_manager(value: str, where: str = "--env-manager") -> str:
    if value not in ENV_MANAGERS:
        raise UsageError(
            f"unknown environment manager {value!r}",
            where=where,
            fix=f"use one of: {', '.join(ENV_MANAGERS)} (virtualenv and uv build the model's "
            "locked environment on this host; local uses this Python)",
        )
    return value


def host_env_cache_dir() -> Path:
    from deployer.building.wheelhouse import default_cache_root

    return default_cache_root() / "envs"


def base_interpreter() -> str:
    """The real interpreter behind this process, not a venv's link to it."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base)


@dataclass(frozen=True)
class HostEnvPlan:
    """What the environment will contain (pure: nothing resolved or built)."""

    model_dir: Path
    python: str  # X.Y, this process's
    base_python: str  # the interpreter the venv links to
    build: Any  # deployer.building.plan.BuildPlan: requirements, platform, runtime files
    cache_dir: Path
    warnings: tuple[str, ...] = ()

    @property
    def inputs_key(self) -> str:
        """Digest of everything the lock is made from (what a resolution would be cached by)
        and of the interpreter: names the record of the environment built for them."""
        from deployer.building.wheelhouse import lock_key

        b = self.build
        src = [
            FORMAT,
            self.base_python,
            lock_key(b.requirements, b.platform, b.wheelhouse),
            b.lock.digest if b.lock is not None else "",
        ]
        return hashlib.sha256("\n".join(src).encode()).hexdigest()[:24]

    def to_dict(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "base_python": self.base_python,
            "platform": self.build.platform.docker_platform,
            "requirements": self.build.requirements.to_dict(),
            "lock_file": str(self.build.lock_file) if self.build.lock_file else None,
            "wheelhouse": str(self.build.wheelhouse) if self.build.wheelhouse else None,
            "options": {
                k: v
                for k, v in (self.build.options.to_params() if self.build.options else {}).items()
                if k in ENVIRONMENT_OPTIONS
            },
            "runtime_digest": self.build.runtime.digest,
            "cache_dir": str(self.cache_dir),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class HostEnvironment:
    """A built environment: ``prefix/bin/python`` runs the model's locked packages."""

    key: str
    lock_digest: str
    prefix: Path
    reused: bool
    seconds: float = 0.0  # building (or finding) it

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"

    @property
    def folder(self) -> Path:
        return self.prefix.parent

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "lock_digest": self.lock_digest,
            "prefix": str(self.prefix),
            "python": str(self.python),
            "reused": self.reused,
            "seconds": round(self.seconds, 2),
        }


def plan_host_env(
    model_dir: Path,
    *,
    options: Any = None,
    what: str = "--env-manager virtualenv",
    grpc: bool = False,
) -> HostEnvPlan:
    """``options``: a ``BuildOptions`` whose :data:`ENVIRONMENT_OPTIONS` apply (``--pip``,
    ``--lock``, ``--wheelhouse``...); the platform and Python are this host's. ``grpc``: the
    server will serve gRPC (``serve --grpc-port``): deployer's grpc extra (grpcio, protobuf)
    goes in too, as in an image built with ``--grpc-port`` (another lock, another venv)."""
    from deployer.building.plan import KSERVE_GRPC_PORT, BuildOptions, plan_build
    from deployer.intake import load_model

    python = "{}.{}".format(*sys.version_info[:2])
    arch = _ARCH.get(_platform.machine().lower())
    if arch is None or not sys.platform.startswith("linux"):
        raise UsageError(
            f"{what} builds Linux environments; this host is {sys.platform}/{_platform.machine()}",
            where=what.split()[0],
            fix="run on Linux (amd64/arm64), or use the local environment (env manager local)",
        )
    loaded = load_model(str(model_dir))
    warnings = list(loaded.warnings)
    declared = loaded.environment.python_version
    if declared and ".".join(declared.split(".")[:2]) != python:
        warnings.append(
            f"the model was saved with Python {declared}; the environment is built for this "
            f"Python, {python} ({base_interpreter()}): deployer never downloads an interpreter"
        )
    chosen = (
        {name: getattr(options, name) for name in ENVIRONMENT_OPTIONS}
        if options is not None
        else {}
    )
    build = plan_build(
        loaded,
        BuildOptions(
            python_version=python,
            platform=f"linux/{arch}",
            parquet=True,
            verify=False,
            grpc_port=KSERVE_GRPC_PORT if grpc else None,  # the requirements only: no image
            **chosen,
        ),
    )
    warnings += [w for w in build.warnings if w not in warnings]
    return HostEnvPlan(
        model_dir=Path(model_dir),
        python=python,
        base_python=base_interpreter(),
        build=build,
        cache_dir=host_env_cache_dir(),
        warnings=tuple(dict.fromkeys(warnings)),
    )


def host_env_key(lock_digest: str, base_python: str) -> str:
    src = "\n".join([FORMAT, lock_digest, base_python])
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def is_built(prefix: Path) -> bool:
    """A finished environment (the lock copy is written last by the installer)."""
    from deployer.building._build_venv import LOCK_COPY

    return (prefix / "bin" / "python").exists() and (prefix / LOCK_COPY).is_file()


def _record_path(plan: HostEnvPlan) -> Path:
    return plan.cache_dir / "inputs" / f"{plan.inputs_key}.json"


def find_host_env(plan: HostEnvPlan) -> HostEnvironment | None:
    """The environment already built for the plan's inputs, found without resolving (offline);
    None if there is none (or ``--refresh-lock`` asks for a fresh resolution)."""
    if plan.build.refresh_lock:
        return None
    try:
        record = json.loads(_record_path(plan).read_text())
        key, digest = str(record["key"]), str(record["lock_digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    prefix = plan.cache_dir / key / "env"
    if not is_built(prefix):
        return None
    with contextlib.suppress(OSError):
        os.utime(prefix.parent)  # a reuse counts as use: `deployer prune` judges by this time
    return HostEnvironment(key, digest, prefix, True)


def known_lock_digest(plan: HostEnvPlan) -> str | None:
    """The lock digest, if it is known without resolving: ``--lock``, or a cached resolution."""
    from deployer.building.wheelhouse import Resolver, lock_key

    if plan.build.lock is not None:
        return str(plan.build.lock.digest)
    b = plan.build
    cached = Resolver().store.cached_lock(lock_key(b.requirements, b.platform, b.wheelhouse))
    return cached.digest if cached is not None and cached.build_tools else None


def build_host_env(
    plan: HostEnvPlan, *, resolver: Any = None, say: Callable[[str], None] | None = None
) -> HostEnvironment:
    """The plan's environment: found (by the plan's inputs, offline), or resolved, installed
    offline from the wheelhouse and recorded."""
    started = time.monotonic()
    say = say or log.info
    found = find_host_env(plan)
    if found is not None:
        say(f"reusing the environment {found.prefix} (lock {found.lock_digest[7:19]})")
        return _timed(found, started)
    from deployer.building.context import resolve_lock, uv_sha256_of
    from deployer.building.wheelhouse import Resolver, link_wheels

    resolver = resolver or Resolver()
    lock = resolve_lock(plan.build, resolver, say)
    key = host_env_key(lock.digest, plan.base_python)
    prefix = plan.cache_dir / key / "env"
    if is_built(prefix):
        say(f"reusing the environment {prefix} (lock {lock.digest[7:19]})")
        _write_record(plan, key, lock.digest)
        with contextlib.suppress(OSError):
            os.utime(prefix.parent)
        return _timed(HostEnvironment(key, lock.digest, prefix, True), started)
    files = resolver.materialize(
        lock,
        index_options=plan.build.requirements.index_options,
        model_dir=plan.build.model_path,
        offline_wheelhouse=plan.build.wheelhouse,
    )
    plan.cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=plan.cache_dir))
    try:
        link_wheels(files, work / "wheels")
        (work / "requirements.lock").write_text(lock.canonical_text())
        env_dir = work / "env"
        say(f"installing {len(lock.packages)} locked packages offline into {prefix}")
        cmd = [
            plan.base_python,
            str(Path(__file__).parent / "_build_venv.py"),
            "--wheels",
            str(work / "wheels"),
            "--lock",
            str(work / "requirements.lock"),
            "--prefix",
            str(env_dir),
            "--python-version",
            plan.python,
        ]
        if sha := uv_sha256_of(lock):
            cmd += ["--uv-sha256", sha]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=offline_env(), check=False)
        if proc.returncode != 0:
            from deployer.redact import redact_text

            raise BuildError(
                f"installing the model's environment failed:\n"
                f"{redact_text((proc.stdout + proc.stderr)[-3000:])}",
                where=str(plan.model_dir),
                fix="check the model's requirements (deployer lock -m MODEL)",
            )
        prefix.parent.mkdir(parents=True, exist_ok=True)
        _install(env_dir, prefix)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _write_record(plan, key, lock.digest)
    return _timed(HostEnvironment(key, lock.digest, prefix, False), started)


def _install(built: Path, prefix: Path) -> None:
    """Move a finished venv to its place; a concurrent build of the same lock that finished
    first wins (its copy is identical), a half-built one (killed run) is replaced."""
    if is_built(prefix):
        return
    if prefix.exists():
        shutil.rmtree(prefix, ignore_errors=True)
    try:
        os.replace(built, prefix)
    except OSError:
        if not is_built(prefix):
            raise


def _timed(env: HostEnvironment, started: float) -> HostEnvironment:
    from dataclasses import replace

    return replace(env, seconds=time.monotonic() - started)


def _write_record(plan: HostEnvPlan, key: str, lock_digest: str) -> None:
    path = _record_path(plan)
    with atomic_output(path, prefix=".record-", suffix=".json") as tmp:
        tmp.write_text(json.dumps({"key": key, "lock_digest": lock_digest}) + "\n")


def offline_env() -> dict[str, str]:
    """The installer's environment: offline, and without the user's proxy/CA/index settings
    (nothing is downloaded; nothing of them can end up in the environment)."""
    dropped = ("PROXY", "PIP_", "UV_", "REQUESTS_CA_BUNDLE", "SSL_CERT", "CURL_CA_BUNDLE", "NETRC")
    return {k: v for k, v in os.environ.items() if not any(d in k.upper() for d in dropped)}


def runtime_zip(plan: HostEnvPlan, extra_files: Iterable[str] = ()) -> Path:
    """``<build cache>/runtime/deployer-runtime-<digest>.zip``: deployer's serving runtime
    (plus ``extra_files``), pure Python, importable from the zip; built once per digest."""
    import zipfile

    from deployer.resources import package_dir

    root = package_dir().parent
    rels = sorted({*plan.build.runtime.files, *extra_files})
    h = hashlib.sha256()
    for rel in rels:
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    out = plan.cache_dir.parent / "runtime" / f"deployer-runtime-{h.hexdigest()[:16]}.zip"
    if out.is_file():
        return out
    with (
        atomic_output(out, prefix=".runtime-", suffix=".zip") as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf,
    ):
        for rel in rels:
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, (root / rel).read_bytes())
    return out


def run_env(runtime: Path) -> dict[str, str]:
    """The environment of a process run with the venv's interpreter: deployer's runtime zip is
    the only thing on ``PYTHONPATH`` (this host's ``PYTHONPATH``, user site-packages and
    ``PYTHONHOME`` cannot leak packages into the model's environment)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update({"PYTHONPATH": str(runtime), "PYTHONNOUSERSITE": "1"})
    return env
