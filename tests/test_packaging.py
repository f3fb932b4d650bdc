"""The wheel ships templates/ inside the package, and an installed wheel finds them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_wheel_contains_every_template(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {str(p.relative_to(ROOT / "templates")) for p in (ROOT / "templates").rglob("*") if p.is_file()}
    assert shipped, "no templates in the checkout?"
    for rel in shipped:
        assert f"deployer/_templates/{rel}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "deployer = deployer.cli:main" in text
    for target in ("local", "sagemaker", "azureml"):
        assert f"{target} = deployer.targets." in text
        # the MLflow deployments plugin ships with the package (mlflow deployments -t deployer-...)
        assert f"deployer-{target} = deployer.integrations.mlflow_deployments:{target}" in text
    assert "[mlflow.deployments]" in text


def test_installed_wheel_finds_its_templates_and_runs(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import deployer.resources as r; "
            "d = r.templates_dir(); print(d); assert (d / 'Dockerfile.j2').is_file(); "
            "from deployer.cli import main; sys.argv = ['deployer', '--version']; main()")
    res = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    templates, version = res.stdout.splitlines()
    assert templates == str(site / "deployer" / "_templates")
    assert version.startswith("deployer, version ")
