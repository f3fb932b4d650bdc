"""The in-image runtime imports with only the ``serve`` extra: no CLI, template or SDK deps."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import deployer.serving

FORBIDDEN = ("click", "jinja2", "docker", "rich", "deployer.cli", "boto3", "azure")
SERVING = Path(deployer.serving.__file__).parent
# azure.py renders score.py with jinja2 on the build host; batch.py is `deployer predict`'s.
HOST_SIDE = {"azure.py", "batch.py"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_module_of_the_runtime_imports_host_side_packages() -> None:
    for path in sorted(SERVING.glob("*.py")):
        if path.name in HOST_SIDE:
            continue
        bad = {n for n in _imports(path) if n.split(".")[0] in FORBIDDEN or
               n.startswith("deployer.cli")}
        assert not bad, f"{path.name} imports {bad}"


def test_importing_the_runtime_loads_none_of_them() -> None:
    code = (
        "import sys\n"
        "import deployer.serving, deployer.serving.core, deployer.serving.app, "
        "deployer.serving.server, deployer.serving.v2, deployer.serving.openapi, "
        "deployer.serving.metrics, deployer.serving.options, deployer.serving.__main__\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} "
        "or m.startswith('deployer.cli')]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_module_entrypoint_help_works_without_click() -> None:
    code = ("import sys, runpy; sys.modules['click'] = None; sys.argv = ['x', 'serve', '--help'];"
            "runpy.run_module('deployer.serving', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--model-dir" in proc.stdout and "--max-body-bytes" in proc.stdout
