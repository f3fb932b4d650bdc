"""Shared libraries wheels leave to the OS: added to the image's OS layer, named on failure."""

from __future__ import annotations

from pathlib import Path

from deployer.building.plan import BuildOptions, plan_build
from deployer.environment.system_deps import missing_libraries, needs
from deployer.intake import load_model
from tests.model._edit import copy_model


def test_needs_by_distribution() -> None:
    assert [(n.distribution, n.packages) for n in needs(["numpy", "LightGBM", "opencv-python"])] == [
        ("lightgbm", ("libgomp1",)), ("opencv-python", ("libgl1", "libglib2.0-0"))]
    assert needs(["scikit-learn", "xgboost-cpu", "torch", "opencv-python-headless"]) == ()


def test_missing_libraries_in_a_log() -> None:
    log = ("OSError: libgomp.so.1: cannot open shared object file: No such file or directory\n"
           "ImportError: libGL.so.1: cannot open shared object file: No such file or directory\n"
           "OSError: libgomp.so.1: cannot open shared object file\n"
           "OSError: libnothing.so.7: cannot open shared object file")
    assert missing_libraries(log) == (("libgomp.so.1", "libgomp1"), ("libGL.so.1", "libgl1"),
                                      ("libnothing.so.7", None))


def _with_requirement(sklearn_model: Path, tmp_path: Path, line: str) -> Path:
    model = copy_model(sklearn_model, tmp_path / "m")
    reqs = model / "requirements.txt"
    reqs.write_text(reqs.read_text().rstrip("\n") + f"\n{line}\n")
    return model


def test_the_plan_adds_the_os_packages_a_requirement_needs(sklearn_model: Path, tmp_path: Path) -> None:
    model = _with_requirement(sklearn_model, tmp_path, "lightgbm==4.7.0")
    plan = plan_build(load_model(str(model)))
    assert plan.os_packages.packages == ("libgomp1",)
    assert any("lightgbm needs GNU OpenMP" in r for r in plan.os_packages.reasons)
    assert [layer.name for layer in plan.layers][:2] == ["base", "os"]
    both = plan_build(load_model(str(model)), BuildOptions(system_packages=("libgomp1", "curl")))
    assert both.os_packages.packages == ("curl", "libgomp1")
    off = plan_build(load_model(str(model)), BuildOptions(auto_deps=False))
    assert off.os_packages.packages == ()
    assert any("--no-auto-deps leaves out" in w and "--system-package libgomp1" in w for w in off.warnings)
