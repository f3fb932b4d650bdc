"""The model's uv.lock is the lock: a real uv project, locked offline by uv, a model saved from it
by MLflow (which copies uv.lock in), and what deployer makes of it.

The project locks uvpinned 1.0 / uvdep 0.5; 2.0 / 0.9 are published after the lock and the model's
requirements.txt says just ``uvpinned``, so requirement resolution and the uv.lock disagree and
the tests can tell which one the image gets.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from deployer.building.context import write_context
from deployer.building.dependencies import ImageRequirements
from deployer.building.plan import plan_build
from deployer.building.wheelhouse import Resolver, WheelStore
from deployer.environment.lock import TargetPlatform, read_lock
from deployer.environment.spec import IndexOptions
from deployer.environment.uv_lock import parse_uv_lock
from deployer.errors import EnvironmentSpecError, UnsafePathError
from deployer.intake import load_model
from tests.fixtures.uv_projects import UvProject, save_model


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> WheelStore:
    return WheelStore(tmp_path_factory.mktemp("uv-store"))


def _runtime_packages(uv: UvProject) -> dict[str, tuple[str, set[str]]]:
    """uv.lock's packages minus the dev group (what `uv sync --no-dev` installs)."""
    return {k: v for k, v in uv.locked().items() if k != "uvdevonly"}


def test_intake_takes_the_uv_lock_mlflow_copied_into_the_model(uv_model: Path, uv_project: UvProject) -> None:
    assert (uv_model / "uv.lock").read_bytes() == (uv_project.project / "uv.lock").read_bytes()
    loaded = load_model(str(uv_model))
    lock = loaded.uv_lock
    assert lock is not None and lock is loaded.environment.uv_lock and lock.path == (uv_model / "uv.lock").resolve() and lock.project == "trainer"
    selection = lock.select(loaded.environment.python_version or "")
    # uv itself is the oracle of what the lock installs (MLflow exports requirements with it).
    assert {p.name: (p.version, set(p.hashes)) for p in selection.packages} == uv_project.uv_export()
    assert selection.find("uvdevonly") is None  # dev group: not installed, as `uv sync --no-dev`
    assert loaded.environment.to_dict()["uv_lock"]["packages"] == [
        {"name": "uvdep", "version": "0.5", "hashes": 1}, {"name": "uvpinned", "version": "1.0", "hashes": 1}]


def test_build_context_installs_exactly_the_uv_lock(uv_model: Path, uv_project: UvProject, store: WheelStore,
                                                    tmp_path: Path) -> None:
    plan = plan_build(load_model(str(uv_model)))
    assert plan.requirements.lock_source == "uv.lock"
    locked = _runtime_packages(uv_project)
    for name, (version, hashes) in locked.items():
        (line,) = [r for r in plan.requirements.requirements if r.startswith(f"{name}==")]
        assert line == f"{name}=={version} " + " ".join(f"--hash=sha256:{h}" for h in sorted(hashes))
    write_context(plan, tmp_path / "ctx", resolver=Resolver(store))
    lock = read_lock(tmp_path / "ctx" / "deployer-build" / "requirements.lock")
    for name, (version, hashes) in locked.items():
        pkg = lock.find(name)
        assert pkg is not None and pkg.version == version and pkg.sha256 in hashes, pkg
    assert (tmp_path / "ctx" / "wheels" / "uvpinned-1.0-py3-none-any.whl").is_file()
    assert lock.find("uvdevonly") is None
    # deployer's own additions are still there (requirements.txt's mlflow pin -> mlflow-skinny).
    skinny = lock.find("mlflow-skinny")
    assert skinny is not None and skinny.version == load_model(str(uv_model)).mlmodel.mlflow_version
    assert lock.find("uvicorn") is not None

    # Control: the same requirements without the uv.lock resolve to the newer releases.
    plain = ImageRequirements(python_version="3.11", requirements=("uvpinned",), build_tools=(),
                              index_options=IndexOptions(extra_index_urls=(uv_project.simple.as_uri(),)))
    other = Resolver(store).lock(plain, TargetPlatform.parse("linux/amd64", "3.11"), refresh=True)
    assert {(p.name, p.version) for p in other.packages} == {("uvpinned", "2.0"), ("uvdep", "0.9")}


def test_a_file_that_does_not_match_the_uv_lock_hash_is_refused(uv_model: Path, uv_project: UvProject,
                                                                store: WheelStore, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(uv_model, model)
    (_, hashes), = [v for k, v in uv_project.locked().items() if k == "uvpinned"]
    text = (model / "uv.lock").read_text()
    (model / "uv.lock").write_text(text.replace(next(iter(hashes)), "0" * 64))
    plan = plan_build(load_model(str(model)))
    with pytest.raises(EnvironmentSpecError, match=r"uvpinned-1.0-py3-none-any.whl does not match the --hash"):
        Resolver(store).lock(plan.requirements, plan.platform, model_dir=model, refresh=True)


def test_a_uv_lock_that_does_not_cover_the_requirements_is_refused(uv_project: UvProject, tmp_path: Path) -> None:
    model = save_model(uv_project, tmp_path / "model", ["uvpinned==2.0", "notlocked>=1"])
    with pytest.raises(EnvironmentSpecError) as err:
        load_model(str(model))
    e = err.value
    assert e.where == str((model / "uv.lock").resolve())
    assert "uvpinned==2.0 (uv.lock has 1.0)" in e.what and "notlocked>=1" in e.what
    assert "requirements.txt" in e.what
    assert e.fix is not None and "uv lock" in e.fix and "remove uv.lock" in e.fix
    # Removing uv.lock, as the fix says, takes the model back to requirement resolution.
    (model / "uv.lock").unlink()
    assert load_model(str(model)).environment.uv_lock is None


# ------------------------------------------------------------------ the lock format, by hand

_ROOT = '''
version = 1
requires-python = ">=3.10"

[[package]]
name = "app"
version = "0.1.0"
source = {{ virtual = "." }}
dependencies = [
{deps}
]
'''


def _pkg(name: str, version: str, source: str = '{ registry = "https://pypi.org/simple" }', deps: str = "",
         extra: str = "") -> str:
    digest = re.sub(r"[^0-9a-f]", "a", (name + version).encode().hex())[:64].ljust(64, "b")
    return (f'\n[[package]]\nname = "{name}"\nversion = "{version}"\nsource = {source}\n'
            f"dependencies = [{deps}]\n"
            f'wheels = [{{ url = "https://files.example/{name}-{version}-py3-none-any.whl", '
            f'hash = "sha256:{digest}" }}]\n{extra}')


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "uv.lock"
    path.write_text(text)
    return path


def test_markers_forks_and_extras_are_evaluated_for_the_image(tmp_path: Path) -> None:
    deps = "\n".join([
        '{ name = "np", version = "1.0", source = { registry = "https://pypi.org/simple" }, '
        "marker = \"python_full_version < '3.11'\" },",
        '{ name = "np", version = "2.0", source = { registry = "https://pypi.org/simple" }, '
        "marker = \"python_full_version >= '3.11'\" },",
        "{ name = \"winonly\", marker = \"sys_platform == 'win32'\" },",
        '{ name = "lib", extra = ["fast"] },',
    ])
    text = (_ROOT.format(deps=deps) + _pkg("np", "1.0") + _pkg("np", "2.0") + _pkg("winonly", "1")
            + _pkg("lib", "3", extra='[package.optional-dependencies]\nfast = [{ name = "speed" }]\n')
            + _pkg("speed", "4", source='{ registry = "https://pkgs.example/simple" }'))
    lock = parse_uv_lock(_write(tmp_path, text))
    old = lock.select("3.10")
    new = lock.select("3.11", machine="aarch64")
    assert [(p.name, p.version) for p in old.packages] == [("lib", "3"), ("np", "1.0"), ("speed", "4")]
    assert [(p.name, p.version) for p in new.packages] == [("lib", "3"), ("np", "2.0"), ("speed", "4")]
    assert new.index_urls == ("https://pkgs.example/simple",)  # PyPI is not repeated
    assert all(len(p.hashes) == 1 for p in new.packages)


@pytest.mark.parametrize(("source", "kind"), [
    ('{ git = "https://github.example/x.git?rev=main#abc" }', "git"),
    ('{ path = "../wheels/x-1-py3-none-any.whl" }', "path"),
    ('{ editable = "../x" }', "editable"),
])
def test_sources_an_image_cannot_install_are_refused(tmp_path: Path, source: str, kind: str) -> None:
    text = _ROOT.format(deps='{ name = "x" },') + _pkg("x", "1", source=source)
    with pytest.raises(EnvironmentSpecError, match=f"installs x from a {kind} source") as err:
        parse_uv_lock(_write(tmp_path, text)).select("3.11")
    assert "remove uv.lock" in (err.value.fix or "")


def test_unknown_lock_version_and_no_project_are_refused(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentSpecError, match="format version 99"):
        parse_uv_lock(_write(tmp_path, "version = 99\n"))
    with pytest.raises(EnvironmentSpecError, match="cannot tell which project"):
        parse_uv_lock(_write(tmp_path, "version = 1\n" + _pkg("x", "1")))
    with pytest.raises(EnvironmentSpecError, match="cannot read uv.lock"):
        parse_uv_lock(_write(tmp_path, "version = [\n"))


def test_a_uv_lock_symlink_leaving_the_model_is_refused(uv_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(uv_model, model)
    outside = tmp_path / "elsewhere.lock"
    shutil.move(model / "uv.lock", outside)
    os.symlink(outside, model / "uv.lock")
    with pytest.raises(UnsafePathError, match="outside the model directory"):
        load_model(str(model))
