"""Locate files shipped with deployer (the Jinja templates).

In a wheel, ``templates/`` is installed as ``deployer/_templates``; in a source checkout it is
the top-level ``templates/`` folder next to the package.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def templates_dir() -> Path:
    """Return the folder holding deployer's Jinja templates."""
    installed = _PACKAGE_DIR / "_templates"
    if installed.is_dir():
        return installed
    checkout = _PACKAGE_DIR.parent / "templates"
    if checkout.is_dir():
        return checkout
    from deployer.errors import DeployerError

    raise DeployerError(
        "deployer's templates are missing from this installation",
        where=str(_PACKAGE_DIR),
        fix="reinstall deployer (pip install --force-reinstall deployer)",
    )


def package_dir() -> Path:
    """The installed ``deployer`` package directory (copied into images as the runtime)."""
    return _PACKAGE_DIR
