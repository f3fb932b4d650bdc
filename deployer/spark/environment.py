"""``env_manager="virtualenv"``: the model's locked environment, packed for Spark's executors.

The environment is :mod:`deployer.building.host_env`'s (the image's requirement set, lock,
wheelhouse and offline installer), built for the *driver's* Python (PySpark refuses a worker
whose minor version differs from the driver's) and shared with ``deployer serve/predict
--env-manager virtualenv`` and ``deployer prepare-env``: one venv per lock, in
``<build cache>/envs/<key>/env``. Here it is packed next to it as ``env.tar.gz``,
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
import io
import json
import logging
import os
import platform as _platform
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.atomic import atomic_output
from deployer.building.host_env import (
    ENVIRONMENT_OPTIONS,
    HostEnvironment,
    HostEnvPlan,
    base_interpreter,
    build_host_env,
    plan_host_env,
)
from deployer.building.host_env import runtime_zip as _runtime_zip
from deployer.errors import UsageError

log = logging.getLogger("deployer")

__all__ = [
    "ENVIRONMENT_OPTIONS",
    "EnvironmentPlan",
    "PackedEnvironment",
    "base_interpreter",
    "build_environment",
    "check_prebuilt_environment",
    "pack_environment",
    "plan_environment",
    "runtime_zip",
    "ship_environment",
    "ship_prebuilt_environment",
]

ENV_PREFIX = "deployer-env-"
ARCHIVE_NAME = "env.tar.gz"
#: the first member of every packed environment: what it is (see env_manifest), which
#: ``spark_udf(prebuilt_env_uri=...)`` checks before shipping it
MANIFEST = "deployer-env.json"
MANIFEST_FORMAT = "deployer-spark-env-v2"
#: The executor half of deployer.spark, shipped with the serving runtime.
WORKER_FILES = (
    "deployer/spark/__init__.py",
    "deployer/spark/_worker.py",
    "deployer/spark/_env_bridge.py",
)

#: The plan of the environment (the host environment's: packing adds nothing to decide).
EnvironmentPlan = HostEnvPlan


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


def plan_environment(model_dir: Path, *, options: Any = None) -> EnvironmentPlan:
    """``options``: a ``BuildOptions`` whose :data:`ENVIRONMENT_OPTIONS` apply (``--pip``,
    ``--lock``, ``--wheelhouse``...); the platform and Python are the driver's."""
    return plan_host_env(model_dir, options=options, what="env_manager='virtualenv'")


def runtime_zip(plan: EnvironmentPlan) -> Path:
    """deployer's serving runtime + the executor half of deployer.spark, as one zip."""
    return _runtime_zip(plan, WORKER_FILES)


def build_environment(
    plan: EnvironmentPlan, *, resolver: Any = None, say: Any = None
) -> PackedEnvironment:
    """Build (or reuse) the host environment for the lock, and pack it (or reuse its archive)."""
    say = say or log.info
    env = build_host_env(plan, resolver=resolver, say=lambda line: log.debug("%s", line))
    archive = env.folder / ARCHIVE_NAME
    if has_manifest(archive):
        say(f"reusing the packed environment {archive} (lock {env.lock_digest[7:19]})")
        with contextlib.suppress(OSError):
            os.utime(env.folder)  # a reuse counts as use: `deployer prune` judges by this time
        return PackedEnvironment(
            env.key, env.lock_digest, archive, env.prefix, True, runtime_zip(plan)
        )
    if not env.reused:
        say(f"built the environment {env.prefix} in {env.seconds:.0f}s")
    pack_environment(env)
    say(f"packed the environment: {archive} ({archive.stat().st_size / 1e6:.0f} MB)")
    return PackedEnvironment(
        env.key, env.lock_digest, archive, env.prefix, False, runtime_zip(plan)
    )


def pack_environment(env: HostEnvironment) -> Path:
    """``<envs>/<key>/env.tar.gz``: a tar of the venv (symlinks kept, no owner names), made
    once per environment, atomically."""
    out = env.folder / ARCHIVE_NAME
    if has_manifest(out):  # (an archive packed before manifests is packed again)
        return out

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    manifest = json.dumps(env_manifest(env), indent=1, sort_keys=True).encode()
    with (
        atomic_output(out, prefix=".env-", suffix=".tar.gz") as tmp,
        tarfile.open(tmp, "w:gz", compresslevel=1) as tar,
    ):
        # the manifest first: reading it (prebuilt_env_uri) decompresses a few bytes only
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode = len(manifest), 0o644
        tar.addfile(info, io.BytesIO(manifest))
        for path in sorted(env.prefix.iterdir()):
            tar.add(str(path), arcname=path.name, filter=clean)
    return out


def ship_environment(spark: Any, model_dir: Path, *, options: Any = None) -> str:
    """Build (or reuse) the environment, ship it; returns the interpreter the UDF runs under."""

    plan = plan_environment(model_dir, options=options)
    for warning in plan.warnings:
        log.warning(warning)
    packed = build_environment(plan)
    return python_for(spark, packed)


def python_for(spark: Any, packed: PackedEnvironment) -> str:
    """The interpreter the UDF runs under; for a Spark Connect session (whose server picks
    every worker's interpreter), the name the environment unpacks to on the workers, where
    :mod:`deployer.spark._env_bridge` runs the model in it."""
    from deployer.spark.connect import is_connect_session
    from deployer.spark.shipping import add_archive, add_py_file, is_local_master

    add_py_file(spark, packed.runtime)
    if is_local_master(spark):
        return str(packed.prefix / "bin" / "python")
    if is_connect_session(spark):
        # a Connect session names artifacts by file name: one per environment key
        add_archive(spark, named_archive(packed), packed.name)
        return packed.name
    add_archive(spark, packed.archive, packed.name)
    return f"./{packed.name}/bin/python"


def named_archive(packed: PackedEnvironment) -> Path:
    """``<key folder>/<name>.tar.gz``: a link to the environment's archive under a name of its
    own (every archive is ``env.tar.gz``)."""
    link = packed.archive.with_name(packed.name + ".tar.gz")
    if not link.exists():
        with contextlib.suppress(FileExistsError):
            os.symlink(packed.archive.name, link)
    return link


# ------------------------------------------------------------------ prebuilt environments
def env_manifest(env: HostEnvironment) -> dict[str, Any]:
    """What a packed environment records about itself (``deployer-env.json``, the archive's
    first member), read from the environment: what :func:`check_prebuilt_environment`
    compares with the model and the driver."""
    from deployer import __version__

    return {
        "format": MANIFEST_FORMAT,
        "key": env.key,
        "lock_digest": env.lock_digest,
        "python": "{}.{}".format(*sys.version_info[:2]),
        "base_python": os.path.realpath(env.prefix / "bin" / "python"),
        "os": sys.platform,
        "machine": _platform.machine().lower(),
        "deployer_version": __version__,
    }


def has_manifest(archive: Path) -> bool:
    """Whether ``archive`` is a packed environment of this format (checked from its first
    member only)."""
    try:
        read_env_manifest(archive)
    except UsageError:
        return False
    return True


def read_env_manifest(archive: Path) -> dict[str, Any]:
    """The manifest of a packed environment archive (its first member); refuses a file that
    is not one, with the fix."""
    where = str(archive)
    rebuild = (
        "pass the env.tar.gz that `deployer prepare-env -m MODEL --pack` printed (or that a "
        "spark_udf with env_manager='virtualenv' packed), or leave prebuilt_env_uri unset"
    )
    if not archive.is_file():
        raise UsageError(
            "the prebuilt environment archive does not exist"
            if not archive.exists()
            else "the prebuilt environment is not a file",
            where=where,
            fix=rebuild,
        )
    try:
        with tarfile.open(archive, "r|gz") as tar:
            first = tar.next()
            data = tar.extractfile(first) if first is not None and first.name == MANIFEST else None
            manifest = json.loads(data.read().decode()) if data is not None else None
    except (OSError, tarfile.TarError, EOFError, ValueError) as exc:
        raise UsageError(
            f"cannot read the prebuilt environment archive: {exc}", where=where, fix=rebuild
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise UsageError(
            "this is not a packed environment of this deployer version"
            + (
                f" (format {found!r}, expected {MANIFEST_FORMAT!r})"
                if found
                else f" (no {MANIFEST})"
            ),
            where=where,
            fix=rebuild,
        )
    return manifest


def check_prebuilt_environment(archive: Path, plan: EnvironmentPlan) -> dict[str, Any]:
    """The manifest of ``archive`` if it can run ``plan``'s model on this driver's Spark: the
    driver's Python minor, OS and machine, the interpreter it links to present here, and the
    model's lock when that is known without resolving (``--lock``, or a resolution cached on
    this host: :func:`deployer.building.host_env.known_lock_digest`). Refuses otherwise."""
    from deployer.building.host_env import known_lock_digest

    manifest = read_env_manifest(archive)
    where = str(archive)
    rebuild = (
        f"rebuild it for this model with this Python: deployer prepare-env -m {plan.model_dir} "
        "--pack"
    )
    if manifest.get("python") != plan.python:
        raise UsageError(
            f"the prebuilt environment is for Python {manifest.get('python')}, but the driver "
            f"runs Python {plan.python} (Spark's workers must run the driver's minor version)",
            where=where,
            fix=rebuild,
        )
    here = (sys.platform, _platform.machine().lower())
    built = (manifest.get("os"), manifest.get("machine"))
    if built != here:
        raise UsageError(
            f"the prebuilt environment is for {built[0]}/{built[1]}, this host is "
            f"{here[0]}/{here[1]}",
            where=where,
            fix=rebuild,
        )
    base = str(manifest.get("base_python") or "")
    if not base or not os.path.exists(base):
        raise UsageError(
            f"the prebuilt environment links to the interpreter {base or '(none)'}, which this "
            "host does not have (a packed virtualenv needs its base Python at the same path)",
            where=where,
            fix="build it on a host (or image) with the same Python install: " + rebuild,
        )
    known = known_lock_digest(plan)
    if known is not None and manifest.get("lock_digest") != known:
        raise UsageError(
            f"the prebuilt environment holds the lock {str(manifest.get('lock_digest'))[7:19]}, "
            f"but this model's lock is {known[7:19]} (another model, other requirements or "
            "another deployer version)",
            where=where,
            fix=rebuild,
        )
    if known is None:
        log.warning(
            "%s: no lock is recorded for this model on this host (no --lock, no cached "
            "resolution), so the prebuilt environment is taken on its manifest",
            archive,
        )
    return manifest


def prebuilt_environment(
    archive: Path, plan: EnvironmentPlan, *, unpack: bool
) -> PackedEnvironment:
    """``archive`` (checked by :func:`check_prebuilt_environment`) as a packed environment;
    ``unpack``: also unpacked on this host (local mode runs it in place) where the same
    environment built here would be, ``<build cache>/envs/<key>/env``."""
    from deployer.building.host_env import is_built

    manifest = check_prebuilt_environment(archive, plan)
    key = str(manifest["key"])
    prefix = plan.cache_dir / key / "env"
    if unpack and not is_built(prefix):
        plan.cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=plan.cache_dir))
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = [m for m in tar.getmembers() if m.name != MANIFEST]
                # "tar": links to the base interpreter are kept, paths outside refused
                tar.extractall(work / "env", members=members, filter="tar")
            prefix.parent.mkdir(parents=True, exist_ok=True)
            if prefix.exists():
                shutil.rmtree(prefix)
            os.replace(work / "env", prefix)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return PackedEnvironment(
        key, str(manifest["lock_digest"]), archive.resolve(), prefix, True, runtime_zip(plan)
    )


def ship_prebuilt_environment(
    spark: Any, archive: Path, model_dir: Path, *, options: Any = None
) -> str:
    """``spark_udf(prebuilt_env_uri=...)``: check the archive against the model and driver,
    ship it (nothing resolved or built); returns the interpreter the UDF runs under."""
    from deployer.spark.shipping import is_local_master

    plan = plan_environment(model_dir, options=options)
    packed = prebuilt_environment(archive, plan, unpack=is_local_master(spark))
    log.info("using the prebuilt environment %s (lock %s)", archive, packed.lock_digest[7:19])
    return python_for(spark, packed)
