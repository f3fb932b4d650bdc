"""shared_environment: can several real MLflow-saved models run in one Python environment?"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deployer.environment import resolve_environment
from deployer.environment.shared import shared_environment
from deployer.environment.spec import EnvironmentSpec
from deployer.errors import EnvironmentConflictError, EnvironmentSpecError
from deployer.model.mlmodel import parse_mlmodel
from tests.model._edit import copy_model


def _spec(model: Path) -> EnvironmentSpec:
    return resolve_environment(model, parse_mlmodel(model))


def _requirements(model: Path, **pins: str) -> Path:
    """Rewrite ``model``'s requirements.txt: ``pins`` replace (or add) a package's line."""
    path = model / "requirements.txt"
    lines = [x for x in path.read_text().splitlines() if x.strip()]
    for name, line in pins.items():
        name = name.replace("_", "-")
        lines = [x for x in lines if not x.lower().startswith(name)] + ([line] if line else [])
    path.write_text("\n".join(lines) + "\n")
    return model


def _python(model: Path, version: str) -> Path:
    data = yaml.safe_load((model / "python_env.yaml").read_text())
    data["python"] = version
    (model / "python_env.yaml").write_text(yaml.safe_dump(data))
    return model


def test_three_flavors_with_agreeing_pins_share_one_environment(
        sklearn_model: Path, params_model: Path, tensor_model: Path) -> None:
    specs = {"iris": _spec(sklearn_model), "params": _spec(params_model), "tensor": _spec(tensor_model)}
    shared = shared_environment(specs)
    assert shared.models == ("iris", "params", "tensor")
    merged = shared.spec.pip_requirements
    # every model's lines, each package once
    for spec in specs.values():
        assert set(spec.pip_requirements) <= set(merged)
    names = [line.split("==")[0] for line in merged]
    assert len(names) == len(set(names)) and "scikit-learn" in names and "cloudpickle" in names
    assert shared.spec.python_version == specs["iris"].python_version
    assert shared.spec.kind == "virtualenv" and not shared.identical
    assert "iris:" in shared.spec.source and "tensor:" in shared.spec.source
    # one model: its own spec, untouched
    alone = shared_environment({"iris": specs["iris"]})
    assert alone.spec == specs["iris"] and alone.identical


def test_ranges_merge_and_a_pin_inside_them_wins(sklearn_model: Path, params_model: Path, tmp_path: Path) -> None:
    a = _requirements(copy_model(sklearn_model, tmp_path / "a"), requests="requests>=2.0,<3")
    b = _requirements(copy_model(params_model, tmp_path / "b"), requests="requests==2.32.3")
    c = _requirements(copy_model(params_model, tmp_path / "c"), tqdm="tqdm>=4.0")
    d = _requirements(copy_model(sklearn_model, tmp_path / "d"), tqdm="tqdm<5")
    shared = shared_environment({"a": _spec(a), "b": _spec(b), "c": _spec(c), "d": _spec(d)})
    merged = shared.spec.pip_requirements
    assert "requests==2.32.3" in merged and not any(x.startswith("requests>") for x in merged)
    tqdm = [x for x in merged if x.startswith("tqdm")]
    assert len(tqdm) == 1 and set(tqdm[0][4:].split(",")) == {"<5", ">=4.0"}
    assert any(note.startswith("package requests:") for note in shared.notes)


def test_conflicts_are_listed_per_package_with_each_models_line(
        sklearn_model: Path, params_model: Path, tensor_model: Path, tmp_path: Path) -> None:
    old = _requirements(copy_model(sklearn_model, tmp_path / "old"), scikit_learn="scikit-learn==1.5.2",
                        requests="requests<2")
    new = _requirements(copy_model(params_model, tmp_path / "new"), requests="requests==2.32.3")
    py310 = _python(copy_model(tensor_model, tmp_path / "py310"), "3.10.14")
    models = {"iris": _spec(sklearn_model), "old": _spec(old), "new": _spec(new), "py310": _spec(py310)}
    with pytest.raises(EnvironmentConflictError) as info:
        shared_environment(models)
    err = info.value
    assert isinstance(err, EnvironmentSpecError) and err.exit_code == 1
    by_subject = {(c.kind, c.subject): dict(c.by_model) for c in err.conflicts}
    sklearn_pin = next(x for x in models["iris"].pip_requirements if x.startswith("scikit-learn=="))
    assert by_subject[("package", "scikit-learn")] == {"iris": sklearn_pin, "old": "scikit-learn==1.5.2"}
    assert by_subject[("package", "requests")] == {"old": "requests<2", "new": "requests==2.32.3"}
    assert by_subject[("python", "version")]["py310"] == "3.10.14"
    assert set(by_subject) == {("package", "scikit-learn"), ("package", "requests"), ("python", "version")}
    assert "scikit-learn: iris: " in err.what and "old: scikit-learn==1.5.2" in err.what
    assert err.fix and "--pip" in err.fix and err.where and "old (" in err.where
    assert err.to_dict()["conflicts"][0]["models"]


def test_conda_and_virtualenv_models_do_not_mix(sklearn_model: Path, conda_model: Path) -> None:
    with pytest.raises(EnvironmentConflictError) as info:
        shared_environment({"pip": _spec(sklearn_model), "conda": _spec(conda_model)})
    kinds = {c.kind: dict(c.by_model) for c in info.value.conflicts}
    assert kinds["environment"] == {"pip": "virtualenv", "conda": "conda"}


def test_mlflow_and_mlflow_skinny_count_as_one_package(sklearn_model: Path, params_model: Path,
                                                       tmp_path: Path) -> None:
    skinny = _requirements(copy_model(params_model, tmp_path / "skinny"), mlflow="", mlflow_skinny="mlflow-skinny==2.9.0")
    with pytest.raises(EnvironmentConflictError) as info:
        shared_environment({"iris": _spec(sklearn_model), "skinny": _spec(skinny)})
    assert [(c.kind, c.subject) for c in info.value.conflicts] == [("package", "mlflow")]


def test_an_override_settles_a_package_conflict(sklearn_model: Path, tmp_path: Path) -> None:
    """``--pip scikit-learn==X`` replaces every model's line for scikit-learn (MLflow's
    semantics), so two different pins of it no longer conflict; others still do."""
    old = _requirements(copy_model(sklearn_model, tmp_path / "old"), scikit_learn="scikit-learn==1.5.2",
                        scipy="scipy==1.0.0")
    models = {"iris": _spec(sklearn_model), "old": _spec(old)}
    with pytest.raises(EnvironmentConflictError) as info:
        shared_environment(models, ["scikit-learn==1.6.1"])
    assert [c.subject for c in info.value.conflicts] == ["scipy"]
    shared = shared_environment(models, ["scikit-learn==1.6.1", "scipy>=1"])
    assert any("--pip replaces" in note for note in shared.notes)
