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
import logging
import os
import tarfile
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

log = logging.getLogger("deployer")

__all__ = [
    "ENVIRONMENT_OPTIONS",
    "EnvironmentPlan",
    "PackedEnvironment",
    "base_interpreter",
    "build_environment",
    "pack_environment",
    "plan_environment",
    "runtime_zip",
    "ship_environment",
]

ENV_PREFIX = "deployer-env-"
ARCHIVE_NAME = "env.tar.gz"
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
    if archive.is_file():
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
    if out.is_file():
        return out

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with (
        atomic_output(out, prefix=".env-", suffix=".tar.gz") as tmp,
        tarfile.open(tmp, "w:gz", compresslevel=1) as tar,
    ):
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
