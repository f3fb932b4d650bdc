"""``env_manager="virtualenv"``: the model's locked environment, packed for Spark's executors.

The same pieces as an image's Python environment, in the same order:

1. the requirement set of :func:`deployer.building.plan.plan_build` (the model's requirements,
   mlflow-skinny swap, deployer's serving runtime, plus pyarrow, which pandas UDFs need),
   for this host's platform and the *driver's* Python minor version (PySpark refuses a worker
   whose minor version differs from the driver's);
2. the lock and wheelhouse of :mod:`deployer.building.wheelhouse` (resolved and downloaded on
   this host, with the user's pip configuration, proxy and CA bundle; nothing of those is
   written into the environment);
3. the installer the image build runs (``deployer/building/_build_venv.py``): offline,
   ``--no-index``, hash-checked, from the wheelhouse only;
Then it is packed as ``<cache>/spark/envs/<key>/env.tar.gz`` (key: the lock digest and the
interpreter; like the ``deployer-env`` image, every model with the same lock shares it),
shipped with ``spark.archives`` / ``SparkContext.addArchive`` and run as
``./<name>/bin/python``. deployer's own code is not in it (as the runtime is a separate layer
in images): deployer's serving runtime plus the executor half of :mod:`deployer.spark` go out
as a small zip (``SparkContext.addPyFile``, keyed by its digest), so a deployer upgrade
re-ships kilobytes, not the environment. Packing is a plain tar of the virtualenv: a venv whose only
entry point Spark uses is ``bin/python`` is relocatable as is (``pyvenv.cfg`` is found next to
the interpreter; site-packages is relative to it). Like venv-pack's archives, it links to the
base interpreter, which must exist at the same path on executors (same image / same Python
install); executors need no pip, no conda, no internet and none of the model's packages.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform as _platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.atomic import atomic_output
from deployer.errors import BuildError, UsageError

log = logging.getLogger("deployer")

FORMAT = "deployer-spark-env-v1"
ENV_PREFIX = "deployer-env-"
#: The executor half of deployer.spark, shipped with the serving runtime.
WORKER_FILES = ("deployer/spark/__init__.py", "deployer/spark/_worker.py")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class EnvironmentPlan:
    """What the packed environment will contain (pure: nothing resolved or built)."""

    model_dir: Path
    python: str  # X.Y, the driver's
    base_python: str  # the interpreter the venv links to (same path on executors)
    build: Any  # deployer.building.plan.BuildPlan: requirements, platform, runtime files
    cache_dir: Path
    warnings: tuple[str, ...] = ()

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
class PackedEnvironment:
    key: str
    lock_digest: str
    archive: Path  # the .tar.gz shipped to executors
    prefix: Path  # the same environment, unpacked on this host (local mode runs it in place)
    reused: bool
    runtime: Path  # deployer's runtime zip (SparkContext.addPyFile)

    @property
    def name(self) -> str:
        return ENV_PREFIX + self.key

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "lock_digest": self.lock_digest,
            "archive": str(self.archive),
            "prefix": str(self.prefix),
            "reused": self.reused,
            "runtime": str(self.runtime),
        }


def base_interpreter() -> str:
    """The real interpreter behind this process (the driver), not a venv's link to it."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base)


#: The build-option group's fields that shape the packed environment (the rest shape an image).
ENVIRONMENT_OPTIONS = (
    "pip",
    "pip_override_file",
    "lock_file",
    "wheelhouse",
    "refresh_lock",
    "auto_deps",
    "keep_full_mlflow",
)


def plan_environment(model_dir: Path, *, options: Any = None) -> EnvironmentPlan:
    """``options``: a ``BuildOptions`` whose :data:`ENVIRONMENT_OPTIONS` apply (``--pip``,
    ``--lock``, ``--wheelhouse``...); the platform and Python are the driver's."""
    from deployer.building.plan import BuildOptions, plan_build
    from deployer.intake import load_model
    from deployer.spark.shipping import spark_cache_dir

    python = "{}.{}".format(*sys.version_info[:2])
    arch = _ARCH.get(_platform.machine().lower())
    if arch is None or not sys.platform.startswith("linux"):
        raise UsageError(
            f"env_manager='virtualenv' builds Linux environments; this host is "
            f"{sys.platform}/{_platform.machine()}",
            where="env_manager",
            fix="run the driver on Linux (amd64/arm64), or use env_manager='local'",
        )
    loaded = load_model(str(model_dir))
    warnings = list(loaded.warnings)
    declared = loaded.environment.python_version
    if declared and ".".join(declared.split(".")[:2]) != python:
        warnings.append(
            f"the model was saved with Python {declared}; Spark's workers must run the "
            f"driver's Python {python}, so the environment is built for {python}"
        )
    chosen = (
        {name: getattr(options, name) for name in ENVIRONMENT_OPTIONS}
        if options is not None
        else {}
    )
    build = plan_build(
        loaded,
        BuildOptions(
            python_version=python, platform=f"linux/{arch}", parquet=True, verify=False, **chosen
        ),
    )
    warnings += [w for w in build.warnings if w not in warnings]
    return EnvironmentPlan(
        model_dir=Path(model_dir),
        python=python,
        base_python=base_interpreter(),
        build=build,
        cache_dir=spark_cache_dir() / "envs",
        warnings=tuple(dict.fromkeys(warnings)),
    )


def environment_key(lock_digest: str, plan: EnvironmentPlan) -> str:
    src = "\n".join([FORMAT, lock_digest, plan.base_python])
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def runtime_zip(plan: EnvironmentPlan) -> Path:
    """``<cache>/spark/runtime/<digest>.zip``: deployer's serving runtime + the executor half
    of deployer.spark (pure Python, importable from the zip), built once per digest."""
    import zipfile

    from deployer.resources import package_dir

    root = package_dir().parent
    rels = sorted({*plan.build.runtime.files, *WORKER_FILES})
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


def build_environment(
    plan: EnvironmentPlan, *, resolver: Any = None, say: Any = None
) -> PackedEnvironment:
    """Resolve, install offline and pack (or reuse the cached archive for the same lock)."""
    from deployer.building.context import resolve_lock, uv_sha256_of
    from deployer.building.wheelhouse import Resolver, link_wheels

    say = say or log.info
    resolver = resolver or Resolver()
    lock = resolve_lock(plan.build, resolver, say)
    key = environment_key(lock.digest, plan)
    folder = plan.cache_dir / key
    archive, prefix = folder / "env.tar.gz", folder / "env"
    if archive.is_file() and (prefix / "bin" / "python").exists():
        say(f"reusing the packed environment {archive} (lock {lock.digest[7:19]})")
        with contextlib.suppress(OSError):
            os.utime(folder)  # a reuse counts as use: `deployer prune` judges by this time
        return PackedEnvironment(key, lock.digest, archive, prefix, True, runtime_zip(plan))
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
        say(f"installing {len(lock.packages)} locked packages offline into the Spark environment")
        cmd = [
            plan.base_python,
            str(Path(__file__).parent.parent / "building" / "_build_venv.py"),
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
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_offline_env(), check=False)
        if proc.returncode != 0:
            from deployer.redact import redact_text

            raise BuildError(
                f"installing the model's environment failed:\n"
                f"{redact_text((proc.stdout + proc.stderr)[-3000:])}",
                where=str(plan.model_dir),
                fix="check the model's requirements (deployer lock -m MODEL)",
            )
        _pack(env_dir, work / "env.tar.gz")
        folder.mkdir(parents=True, exist_ok=True)
        if prefix.exists():
            shutil.rmtree(prefix)
        os.replace(env_dir, prefix)
        os.replace(work / "env.tar.gz", archive)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"packed the environment: {archive} ({archive.stat().st_size / 1e6:.0f} MB)")
    return PackedEnvironment(key, lock.digest, archive, prefix, False, runtime_zip(plan))


def _offline_env() -> dict[str, str]:
    """The installer's environment: offline, and without the user's proxy/CA/index settings
    (nothing is downloaded; nothing of them can end up in the environment)."""
    dropped = ("PROXY", "PIP_", "UV_", "REQUESTS_CA_BUNDLE", "SSL_CERT", "CURL_CA_BUNDLE", "NETRC")
    return {k: v for k, v in os.environ.items() if not any(d in k.upper() for d in dropped)}


def _pack(env_dir: Path, out: Path) -> None:
    """A tar of the venv (symlinks kept, fixed mtimes, no owner names)."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        for path in sorted(env_dir.iterdir()):
            tar.add(str(path), arcname=path.name, filter=clean)


def ship_environment(spark: Any, model_dir: Path, *, options: Any = None) -> str:
    """Build (or reuse) the environment, ship it; returns the interpreter the UDF runs under."""

    plan = plan_environment(model_dir, options=options)
    for warning in plan.warnings:
        log.warning(warning)
    packed = build_environment(plan)
    return python_for(spark, packed)


def python_for(spark: Any, packed: PackedEnvironment) -> str:
    from deployer.spark.shipping import add_archive, add_py_file, is_local_master

    add_py_file(spark, packed.runtime)
    if is_local_master(spark):
        return str(packed.prefix / "bin" / "python")
    add_archive(spark, packed.archive, packed.name)
    return f"./{packed.name}/bin/python"
