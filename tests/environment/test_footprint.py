"""Requirements nothing that runs uses, with the bytes they alone add."""

from __future__ import annotations

import zipfile
from pathlib import Path

from deployer.environment.footprint import (
    PackageFacts,
    facts_from_installed,
    facts_from_wheels,
    unused_requirements,
)
from deployer.environment.loader_deps import ALTERNATIVES

MIB = 1 << 20


def facts(*rows: tuple[str, tuple[str, ...], int, tuple[str, ...]]) -> dict[str, PackageFacts]:
    return {name: PackageFacts(name, "1.0", requires, frozenset(modules or (name.replace("-", "_"),)), size)
            for name, requires, size, modules in rows}


CORPUS = facts(
    ("scikit-learn", ("numpy", "scipy", "joblib"), 40 * MIB, ("sklearn",)),
    ("skops", ("scikit-learn", "rich ; extra == 'rich'"), 1 * MIB, ()),
    ("numpy", (), 30 * MIB, ()), ("scipy", ("numpy",), 90 * MIB, ()), ("joblib", (), 1 * MIB, ()),
    ("torch", ("filelock", "sympy", "numpy", "nvidia-x ; platform_system == 'Windows'"), 700 * MIB, ()),
    ("filelock", (), 1 * MIB, ()), ("sympy", ("mpmath",), 30 * MIB, ()), ("mpmath", (), 3 * MIB, ()),
    ("rich", (), 2 * MIB, ()), ("mlflow-skinny", ("numpy",), 20 * MIB, ("mlflow",)),
    ("xgboost-cpu", ("numpy", "scipy"), 80 * MIB, ("xgboost",)),
)
MODEL = ["mlflow==3.17.2", "numpy==2.4", "scipy==1.17", "scikit-learn==1.9", "skops==0.16", "torch==2.13.0+cpu",
         "rich==15.0"]


def test_torch_captured_through_skops_is_reported_with_what_it_brings() -> None:
    out = unused_requirements(MODEL, ["mlflow-skinny", "scikit-learn", "skops"], ["sklearn", "numpy"], CORPUS,
                              python_version="3.11")
    assert [(u.name, u.size, u.brings) for u in out] == [("torch", 734 * MIB, ("filelock", "mpmath", "sympy"))]
    assert "'torch==2.13.0+cpu' (734 MiB with filelock, mpmath, sympy)" == out[0].describe()


def test_a_dependency_of_something_used_or_a_referenced_module_is_used() -> None:
    # torch needed by a used package
    needed = {**CORPUS, "skops": PackageFacts("skops", "1", ("scikit-learn", "torch"), frozenset({"skops"}), MIB)}
    assert unused_requirements(MODEL, ["scikit-learn", "skops"], [], needed, python_version="3.11") == ()
    # the model's pickle names torch
    assert unused_requirements(MODEL, ["scikit-learn", "skops"], ["torch"], CORPUS, python_version="3.11") == ()


def test_small_ones_are_not_worth_a_warning_and_a_threshold_can_say_so() -> None:
    out = unused_requirements(MODEL, ["scikit-learn", "skops"], [], CORPUS, python_version="3.11", min_bytes=1)
    assert [u.name for u in out] == ["torch", "rich"]  # rich is an extra skops was not asked for


def test_alternatives_provide_what_the_loader_needs() -> None:
    model = ["xgboost-cpu==3.2", "scipy==1.17", "torch==2.13"]
    out = unused_requirements(model, ["xgboost"], [], CORPUS, python_version="3.11", alternatives=ALTERNATIVES)
    assert [u.name for u in out] == ["torch"]  # scipy: needed through xgboost-cpu


def test_incomplete_facts_report_nothing() -> None:
    partial = {k: v for k, v in CORPUS.items() if k != "scipy"}
    assert unused_requirements(MODEL, ["scikit-learn", "skops"], [], partial, python_version="3.11",
                               complete=False) == ()
    assert unused_requirements(MODEL, ["scikit-learn", "skops"], [], partial, python_version="3.11",
                               complete=True) != ()


def test_facts_from_a_real_wheel_and_from_this_python(tmp_path: Path) -> None:
    wheel = tmp_path / "demo_pkg-1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("demo_pkg/__init__.py", "x = 1\n" * 100)
        zf.writestr("demo_single.py", "y = 2\n")
        zf.writestr("demo_pkg-1.2.dist-info/METADATA",
                    "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.2\nRequires-Dist: numpy>=1\n"
                    "Requires-Dist: rich ; extra == 'pretty'\n")
        zf.writestr("demo_pkg-1.2.dist-info/RECORD", "")
    got = facts_from_wheels([wheel])["demo-pkg"]
    assert got.version == "1.2" and got.requires == ("numpy>=1", "rich ; extra == 'pretty'")
    assert got.modules == frozenset({"demo_pkg", "demo_single"}) and got.size > 600
    here = facts_from_installed(["packaging", "PyYAML"])
    assert set(here) == {"packaging", "pyyaml"} and "yaml" in here["pyyaml"].modules and here["packaging"].size > 0
