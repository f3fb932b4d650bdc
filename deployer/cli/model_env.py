"""``--env-manager local|virtualenv|uv`` of ``serve``, ``predict -m`` and ``prepare-env``.

``local`` (the default) runs the model in this Python. ``virtualenv`` and ``uv`` build the
model's locked environment on this host (:mod:`deployer.building.host_env`: the image's lock
and wheelhouse, installed offline, cached by lock digest, shared with Spark's packed
environments) and run deployer's serving runtime with that environment's interpreter, the
runtime zip alone on ``PYTHONPATH``. The two build the same environment with the same
installer (the uv the lock pins, from the wheelhouse): ``uv`` is accepted for MLflow's
spelling and gives the identical, shared venv.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from deployer.building.host_env import ENV_MANAGERS, check_env_manager

__all__ = ["ModelEnvironment", "env_manager_option", "prepare_model_env", "run_in_env"]


def env_manager_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--env-manager",
        "env_manager",
        default="local",
        show_default=True,
        metavar="|".join(ENV_MANAGERS),
        help="Where the model runs: local = this Python; virtualenv / uv = the model's own "
        "locked environment, built on this host once (offline after that, cached by lock "
        "digest; the same lock and wheelhouse as its image). uv builds the same environment.",
    )(f)


@dataclass(frozen=True)
class ModelEnvironment:
    """A built environment and the runtime zip that puts deployer's serving code in it."""

    env: Any  # deployer.building.host_env.HostEnvironment
    runtime: Path
    plan: Any  # deployer.building.host_env.HostEnvPlan

    @property
    def python(self) -> Path:
        return Path(self.env.python)

    def to_dict(self) -> dict[str, Any]:
        return {**self.env.to_dict(), "runtime": str(self.runtime)}


def prepare_model_env(model_dir: Path, env_manager: str, *, grpc: bool = False) -> ModelEnvironment:
    """Build (or find) the model's environment; its warnings and progress go to the log.
    ``grpc``: with deployer's grpc extra (``serve --grpc-port``)."""
    import logging

    check_env_manager(env_manager)

    from deployer.building.host_env import build_host_env, plan_host_env, runtime_zip

    log = logging.getLogger("deployer")
    plan = plan_host_env(model_dir, what=f"--env-manager {env_manager}", grpc=grpc)
    for warning in plan.warnings:
        log.warning(warning)
    env = build_host_env(plan)
    if env.reused:
        log.info("environment found in %.1fs: %s", env.seconds, env.prefix)
    else:
        log.info("environment built in %.1fs: %s", env.seconds, env.prefix)
    return ModelEnvironment(env, runtime_zip(plan), plan)


def run_in_env(menv: ModelEnvironment, args: Sequence[str]) -> int:
    """``<env>/bin/python -m deployer.serving ARGS`` in the foreground; SIGTERM/SIGINT are
    passed on to it (the server drains and stops); returns its exit code."""
    from deployer.building.host_env import run_env

    cmd = [str(menv.python), "-m", "deployer.serving", *args]
    proc = subprocess.Popen(cmd, env=run_env(menv.runtime))

    def forward(signum: int, _frame: Any) -> None:
        proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
