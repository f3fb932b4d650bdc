"""The flavor table of loader requirements and the static checks built on it (pure: no engine)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployer.building.plan import BuildOptions, plan_build
from deployer.cli import cli
from deployer.environment import loader_deps
from deployer.errors import EnvironmentSpecError, ModelFormatError
from deployer.intake import load_model
from deployer.model.mlmodel import parse_mlmodel

MLFLOW_ROOT = Path(__import__("mlflow").__file__).parent


def _mlmodel(tmp_path: Path, loader: str, flavor: str, conf: dict[str, object], pyfunc_extra: str = ""):  # type: ignore[no-untyped-def]
    lines = [f"    {k}: {json.dumps(v)}" for k, v in conf.items()]
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  python_function:\n"
        f"    loader_module: {loader}\n{pyfunc_extra}"
        f"  {flavor}:\n" + ("\n".join(lines) or "    {}") + "\n")
    return parse_mlmodel(tmp_path)


def test_every_pyfunc_loader_mlflow_ships_is_in_the_table() -> None:
    """Scans the installed MLflow for ``loader_module="mlflow.X"``: a new flavor fails this."""
    found = set()
    for path in MLFLOW_ROOT.rglob("*.py"):
        found |= set(re.findall(r'loader_module\s*=\s*"(mlflow\.[a-z_.]+)"', path.read_text(errors="replace")))
    assert len(found) >= 20
    assert sorted(found - set(loader_deps.LOADER_FLAVORS)) == []
    for loader, flavor in loader_deps.LOADER_FLAVORS.items():
        assert flavor in loader_deps.FLAVORS, loader


@pytest.mark.parametrize("loader, flavor, conf, expected", [
    ("mlflow.sklearn", "sklearn", {"serialization_format": "skops", "sklearn_version": "1.9.1"},
     ["scikit-learn", "skops"]),
    ("mlflow.sklearn", "sklearn", {"serialization_format": "cloudpickle"}, ["scikit-learn", "cloudpickle"]),
    ("mlflow.sklearn", "sklearn", {"serialization_format": "pickle"}, ["scikit-learn"]),
    ("mlflow.lightgbm", "lightgbm", {"serialization_format": "skops"}, ["lightgbm", "skops"]),
    ("mlflow.onnx", "onnx", {"onnx_version": "1.17.0"}, ["onnx", "onnxruntime"]),
    ("mlflow.keras", "keras", {"keras_backend": "torch"}, ["keras", "torch"]),
    ("mlflow.transformers", "transformers", {"framework": "pt"}, ["transformers", "torch"]),
    ("mlflow.pytorch", "pytorch", {"pytorch_version": "2.5.0"}, ["torch", "cloudpickle"]),
    ("mlflow.spark", "spark", {"pyspark_version": "4.0.0"}, ["pyspark"]),
    ("mlflow.paddle", "paddle", {}, ["paddlepaddle"]),
])
def test_loader_requirements_per_flavor(tmp_path: Path, loader: str, flavor: str, conf: dict[str, object],
                                        expected: list[str]) -> None:
    needed = loader_deps.loader_requirements(_mlmodel(tmp_path, loader, flavor, conf))
    assert [r.package for r in needed] == expected


def test_each_requirement_names_the_mlmodel_field_that_needs_it(tmp_path: Path) -> None:
    ml = _mlmodel(tmp_path, "mlflow.sklearn", "sklearn", {"serialization_format": "skops", "sklearn_version": "1.9.1"})
    sk, skops = loader_deps.loader_requirements(ml)
    assert sk.field == "flavors.python_function.loader_module: mlflow.sklearn" and sk.saved_version == "1.9.1"
    assert skops.field == "flavors.sklearn.serialization_format: skops" and skops.saved_version is None
    assert "saved with scikit-learn 1.9.1" in loader_deps.describe(sk)


def test_spark_and_h2o_name_what_pip_cannot_install(tmp_path: Path) -> None:
    assert "Java" in (loader_deps.system_requirement(_mlmodel(tmp_path, "mlflow.spark", "spark", {})) or "")
    ml = _mlmodel(tmp_path, "mlflow.sklearn", "sklearn", {})
    assert loader_deps.system_requirement(ml) is None


def test_unknown_loader_needs_nothing_known(tmp_path: Path) -> None:
    assert loader_deps.loader_requirements(_mlmodel(tmp_path, "my_company.loader", "custom", {})) == ()


def test_missing_knows_alternatives_and_what_every_image_has() -> None:
    needed = (loader_deps.LoaderRequirement("onnxruntime", "f"), loader_deps.LoaderRequirement("cloudpickle", "g"),
              loader_deps.LoaderRequirement("skops", "h"))
    names = loader_deps.distribution_names(["onnxruntime-gpu==1.20", "pytorch=2.1", "# comment", "Scikit_Learn>=1"])
    assert names == {"onnxruntime-gpu", "pytorch", "scikit-learn"}
    assert [r.package for r in loader_deps.missing(needed, names)] == ["skops"]


def test_real_models_saved_by_mlflow(sklearn_model: Path, sklearn_pickle_model: Path, skops_unlisted_model: Path,
                                     custom_pyfunc_model: Path) -> None:
    for model, expected in ((sklearn_model, ["scikit-learn", "skops"]),
                            (skops_unlisted_model, ["scikit-learn", "skops"]),
                            (sklearn_pickle_model, ["scikit-learn", "cloudpickle"]),
                            (custom_pyfunc_model, ["cloudpickle"])):
        assert [r.package for r in loader_deps.loader_requirements(parse_mlmodel(model))] == expected, model


# ---------------------------------------------------------------- in plan_build and the CLI
def test_plan_adds_the_missing_skops_with_a_warning(skops_unlisted_model: Path, sklearn_model: Path) -> None:
    plan = plan_build(load_model(str(skops_unlisted_model)))
    assert plan.auto_added == ("skops",)
    assert "skops" in plan.requirements.requirements  # unpinned: the lock decides the version
    warning = next(w for w in plan.warnings if "skops" in w)
    assert "flavors.sklearn.serialization_format: skops" in warning and "added requirement 'skops'" in warning
    listed = plan_build(load_model(str(sklearn_model)))  # saved by MLflow with skops listed
    assert listed.auto_added == () and not any("added requirement" in w for w in listed.warnings)
    assert [r.package for r in listed.loader_requirements] == ["scikit-learn", "skops"]


def test_no_auto_deps_makes_it_an_error(skops_unlisted_model: Path) -> None:
    with pytest.raises(EnvironmentSpecError) as info:
        plan_build(load_model(str(skops_unlisted_model)), BuildOptions(auto_deps=False))
    err = info.value
    assert "'skops'" in err.what and "flavors.sklearn.serialization_format: skops" in err.what
    assert err.where and err.where.endswith("MLmodel")
    assert err.fix and "add skops" in err.fix
    res = CliRunner().invoke(cli, ["build", "-m", str(skops_unlisted_model), "--dry-run", "--no-auto-deps"])
    assert res.exit_code == 1 and "skops" in res.stderr and "Traceback" not in res.output


def test_dry_run_shows_loader_needs_and_the_verify_step(skops_unlisted_model: Path) -> None:
    res = CliRunner().invoke(cli, ["build", "-m", str(skops_unlisted_model), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "loader needs: scikit-learn, skops (added)" in res.stdout
    assert "verify     run offline (--network none) with 2 workers, wait for GET /ping, POST /invocations " \
           "with serving_input_example.json" in res.stdout
    assert "load mode  preload: load once, then fork the workers (shared memory); sklearn flavor" in res.stdout
    assert "added requirement 'skops'" in res.stderr
    res = CliRunner().invoke(cli, ["build", "-m", str(skops_unlisted_model), "--dry-run", "--no-verify",
                                   "--output", "json"])
    plan = json.loads(res.stdout)["plan"]
    assert plan["verify"] == {"skipped": True} and plan["auto_added"] == ["skops"]
    assert plan["labels"]["io.deployer.verify.status"] == "skipped"


def test_inspect_shows_what_the_build_would_add(skops_unlisted_model: Path) -> None:
    res = CliRunner().invoke(cli, ["inspect", "-m", str(skops_unlisted_model), "--output", "json"])
    data = json.loads(res.stdout)
    assert data["auto_deps"] == ["skops"]
    assert [(r["package"], r["listed"]) for r in data["loader_requirements"]] == [("scikit-learn", True),
                                                                                ("skops", False)]
    text = CliRunner().invoke(cli, ["inspect", "-m", str(skops_unlisted_model)]).stdout
    assert "Loader needs:   scikit-learn, skops (not in the requirements)" in text


@pytest.mark.parametrize("remove, field", [
    ("artifacts/n.txt", "flavors.python_function.artifacts.n_file.path"),
    ("code", "flavors.python_function.code"),
])
def test_named_code_and_artifacts_must_exist(custom_pyfunc_model: Path, tmp_path: Path, remove: str,
                                             field: str) -> None:
    model = tmp_path / "model"
    shutil.copytree(custom_pyfunc_model, model)
    target = model / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ModelFormatError) as info:
        plan_build(load_model(str(model)))
    assert field in info.value.what and "not in the model directory" in info.value.what
    res = CliRunner().invoke(cli, ["build", "-m", str(model), "--dry-run"])
    assert res.exit_code == 1 and field in res.stderr and "Traceback" not in res.output
