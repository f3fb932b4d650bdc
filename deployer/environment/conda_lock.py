"""Running conda-lock for a conda model: ``deployer lock`` for models whose environment is conda.

A conda model's packages come from conda channels, which only conda's solver understands, so
deployer does not solve them itself: it writes a conda.yaml derived from the model's
:class:`~deployer.environment.spec.EnvironmentSpec` (the model's own file may hold comments,
credentials in URLs or fields conda-lock rejects) into a temporary directory and runs the
``conda-lock`` executable (extra ``conda``) on it, for exactly one platform.

conda-lock needs network access to the channels (and, on a machine without conda, to fetch a
conda executable). Every failure is translated here into a DeployerError; the output file is
written to a temporary name next to its destination and renamed only on success, so a failed
run never leaves a half-written lockfile behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from deployer.atomic import atomic_output
from deployer.environment.lock import TargetPlatform
from deployer.environment.spec import EnvironmentSpec
from deployer.errors import EnvironmentSpecError, MissingDependencyError
from deployer.redact import redact_text

CONDA_PLATFORMS = {"x86_64": "linux-64", "aarch64": "linux-aarch64"}
DEFAULT_CHANNELS = ("conda-forge",)
CONDA_LOCK_TIMEOUT = 1800
_NETWORK = re.compile(
    r"ConnectionError|NameResolution|Max retries|Name or service not known|"
    r"Temporary failure in name resolution|timed out|CondaHTTPError|Connection refused|"
    r"SSLError|ProxyError|HTTP 000",
    re.IGNORECASE,
)
_TAIL = 1


def conda_environment(spec: EnvironmentSpec, python: str) -> dict[str, object]:
    """The conda.yaml (as data) conda-lock solves: channels, python X.Y, conda packages, pip
    list."""
    deps: list[object] = [f"python={python}"]
    deps += [p for p in spec.conda_packages if p.split("=")[0].split(" ")[0].strip() != "python"]
    if spec.pip_requirements:
        deps += ["pip", {"pip": list(spec.pip_requirements)}]
    return {"channels": list(spec.conda_channels or DEFAULT_CHANNELS), "dependencies": deps}


def find_conda_lock(search_path: str | None = None) -> str | None:
    """The conda-lock executable: on ``search_path`` (default ``$PATH``), else next to this
    Python (a venv's bin directory is often not on PATH)."""
    found = shutil.which("conda-lock", path=search_path)
    if found or search_path is not None:
        return found
    beside = Path(sys.executable).parent / "conda-lock"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def run_conda_lock(
    spec: EnvironmentSpec,
    platform: TargetPlatform,
    out: Path,
    *,
    executable: str | None = None,
    search_path: str | None = None,
    timeout: float = CONDA_LOCK_TIMEOUT,
) -> Path:
    """Solve ``spec`` for ``platform`` with conda-lock and write the lockfile to ``out``.

    ``executable``: the conda-lock to run (default :func:`find_conda_lock` on ``search_path``).
    Raises MissingDependencyError when conda-lock is not installed, EnvironmentSpecError when
    it fails (channel unreachable, unsatisfiable spec); ``out`` is then left untouched.
    """
    exe = executable or find_conda_lock(search_path)
    if not exe:
        raise MissingDependencyError("conda-lock", "conda", "locking a conda model")
    conda_platform = CONDA_PLATFORMS[platform.arch]
    channels = ", ".join(spec.conda_channels or DEFAULT_CHANNELS)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="deployer-conda-lock-") as tmp:
        env_file = Path(tmp) / "conda.yaml"
        env_file.write_text(
            yaml.safe_dump(conda_environment(spec, platform.python), sort_keys=False)
        )
        # The lockfile is written beside ``out`` and renamed over it only when conda-lock
        # succeeded; a failure leaves ``out`` untouched.
        with atomic_output(out, prefix=f".{out.name}.", suffix=".partial") as partial:
            cmd = [
                exe,
                "lock",
                "--file",
                str(env_file),
                "--platform",
                conda_platform,
                "--lockfile",
                str(partial),
            ]
            try:
                proc = subprocess.run(
                    cmd,
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    errors="replace",
                    timeout=timeout,
                    stdin=subprocess.DEVNULL,
                )
            except FileNotFoundError as exc:
                raise MissingDependencyError(
                    "conda-lock", "conda", "locking a conda model"
                ) from exc
            except subprocess.TimeoutExpired as exc:
                raise EnvironmentSpecError(
                    f"conda-lock did not finish within {timeout:.0f}s solving for channels "
                    f"{channels}",
                    fix="conda-lock needs access to these conda channels; check the network, or "
                    "run "
                    "`deployer lock` where they are reachable",
                ) from exc
            except OSError as exc:
                raise EnvironmentSpecError(
                    f"cannot run conda-lock ({exe}): {exc}",
                    fix="reinstall it: pip install 'deployer[conda]'",
                ) from exc
            if proc.returncode != 0 or not partial.is_file():
                raise _failure(proc.stdout + "\n" + proc.stderr, channels, conda_platform)
    return out


def _failure(output: str, channels: str, conda_platform: str) -> EnvironmentSpecError:
    """conda-lock's output (often a Python traceback) reduced to its last meaningful lines."""
    lines = [redact_text(line) for line in output.splitlines() if line.strip()]
    # Drop traceback frames, exception-chaining prose and retry chatter: the last few
    # "SomeError: message" lines say what happened.
    noise = (
        "  ",
        "\t",
        "Traceback",
        "During handling",
        "The above exception",
        "Request to ",
        "^",
        "~",
    )
    meaningful = [line for line in lines if not line.startswith(noise)]
    tail = "\n".join((meaningful or lines)[-_TAIL:])
    if _NETWORK.search(output):
        return EnvironmentSpecError(
            f"conda-lock could not reach the conda channels ({channels}) to solve for "
            f"{conda_platform}:\n{tail}",
            fix="conda-lock needs network access to these channels (and to a conda/micromamba "
            "download "
            "when none is installed); run `deployer lock` where they are reachable, or pass an "
            "existing "
            "lockfile to `deployer build --conda-lock FILE`",
        )
    return EnvironmentSpecError(
        f"conda-lock failed to solve the model's conda environment for {conda_platform} "
        f"(channels {channels}):\n{tail}",
        fix="check the conda packages and pins in the model's conda.yaml; the channels must be "
        "reachable "
        "and must provide every package for this platform",
    )
