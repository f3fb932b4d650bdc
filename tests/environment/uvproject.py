"""A real uv project, locked by uv OFFLINE against a file:// package index written here, and an
MLflow model saved from it (MLflow copies uv.lock, pyproject.toml and .python-version in).

The index holds ``uvpinned`` 1.0 (needs ``uvdep``) and ``uvdep`` 0.5 when the project is locked;
afterwards ``uvpinned`` 2.0 and ``uvdep`` 0.9 are published, so resolving the model's
requirements (``uvpinned``, unpinned) picks 2.0/0.9 and only the uv.lock gives 1.0/0.5: a test
can tell the two apart. ``uvdevonly`` is a dev-group dependency (``uv sync --no-dev`` and the
image leave it out).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tests.building.pkgindex import make_wheel

UV = str(Path(sys.executable).with_name("uv"))

MODEL_CODE = textwrap.dedent(
    '''
    """Model code shipped with the uv fixture model: reports the installed uvpinned version."""
    import importlib.metadata

    import mlflow.pyfunc


    def installed(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "absent"


    class LockedVersion(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [installed("uvpinned")] * len(model_input)
    '''
)


@dataclass(frozen=True)
class UvProject:
    project: Path  # the uv project (pyproject.toml, uv.lock, .python-version)
    simple: Path  # the PEP 503 index (file://) it was locked from
    wheels: Path

    def locked(self) -> dict[str, tuple[str, set[str]]]:
        """name -> (version, sha256 hashes) as uv.lock records them."""
        data = tomllib.loads((self.project / "uv.lock").read_text())
        out = {}
        for p in data["package"]:
            if "registry" in p.get("source", {}):
                hashes = {w["hash"].split(":", 1)[1] for w in p.get("wheels", [])}
                out[p["name"]] = (p["version"], hashes)
        return out

    def publish(self, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
        add_to_index(self.simple, make_wheel(self.wheels, name, version, requires=requires))

    def uv_export(self) -> dict[str, tuple[str, set[str]]]:
        """What `uv export --frozen --no-dev` (MLflow's export) pins: name -> (version, hashes)."""
        out = subprocess.run(
            [UV, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-header",
             "--no-annotate", "--format", "requirements-txt", "--offline", "--no-config"],
            cwd=self.project, capture_output=True, text=True, check=True, env=_uv_env(),
        ).stdout
        pins: dict[str, tuple[str, set[str]]] = {}
        for logical in out.replace("\\\n", " ").splitlines():
            tokens = logical.split()
            if not tokens or tokens[0].startswith("#"):
                continue
            name, _, version = tokens[0].partition("==")
            pins[name] = (version, {t.split(":", 1)[1] for t in tokens[1:] if t.startswith("--hash=")})
        return pins


def add_to_index(simple: Path, wheel: Path) -> None:
    files = simple.parent / "files"
    files.mkdir(parents=True, exist_ok=True)
    (files / wheel.name).write_bytes(wheel.read_bytes())
    project = wheel.name.split("-")[0].replace("_", "-")
    folder = simple / project
    folder.mkdir(parents=True, exist_ok=True)
    links = []
    for f in sorted(files.iterdir()):
        if f.name.split("-")[0].replace("_", "-") == project:
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
            links.append(f'<a href="../../files/{f.name}#sha256={digest}">{f.name}</a>')
    (folder / "index.html").write_text("<html><body>\n" + "\n".join(links) + "\n</body></html>\n")


def _uv_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    env["UV_CACHE_DIR"] = str(Path(env.get("TMPDIR", "/tmp")) / "deployer-tests-uv-cache")
    return env


def make_uv_project(root: Path) -> UvProject:
    """Write the project and lock it with uv, offline, from the local index only."""
    wheels, simple, project = root / "wheels", root / "index" / "simple", root / "trainer"
    wheels.mkdir(parents=True)
    simple.mkdir(parents=True)
    project.mkdir()
    uv = UvProject(project=project, simple=simple, wheels=wheels)
    uv.publish("uvdep", "0.5")
    uv.publish("uvpinned", "1.0", requires=("uvdep>=0.1",))
    uv.publish("uvdevonly", "1.0")
    (project / "pyproject.toml").write_text(textwrap.dedent(
        """
        [project]
        name = "trainer"
        version = "0.1.0"
        requires-python = ">=3.10"
        dependencies = ["uvpinned"]

        [dependency-groups]
        dev = ["uvdevonly"]
        """
    ))
    (project / ".python-version").write_text(f"{sys.version_info.major}.{sys.version_info.minor}\n")
    subprocess.run(
        [UV, "lock", "--offline", "--no-config", "--default-index", simple.as_uri()],
        cwd=project, capture_output=True, text=True, check=True, env=_uv_env(),
    )
    # Published after the lock: requirement resolution would now pick these.
    uv.publish("uvdep", "0.9")
    uv.publish("uvpinned", "2.0", requires=("uvdep>=0.1",))
    return uv


def save_model(uv: UvProject, path: Path, pip_requirements: list[str]) -> Path:
    """An MLflow pyfunc model saved from the uv project (``uv_project_path``: MLflow copies the
    project's uv files into the model, as it does from the working directory)."""
    import pandas as pd

    import mlflow.pyfunc
    from mlflow.models import infer_signature

    code = path.parent / f"{path.name}-code"
    code.mkdir(parents=True)
    (code / "uv_locked_model.py").write_text(MODEL_CODE)
    sys.path.insert(0, str(code))
    try:
        import importlib

        module = importlib.import_module("uv_locked_model")
        example = pd.DataFrame({"x": [1.0, 2.0]})
        mlflow.pyfunc.save_model(
            str(path),
            python_model=module.LockedVersion(),
            code_paths=[str(code / "uv_locked_model.py")],
            pip_requirements=pip_requirements,
            signature=infer_signature(example, ["1.0", "1.0"]),
            input_example=example,
            uv_project_path=str(uv.project),
        )
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("uv_locked_model", None)
    return path
