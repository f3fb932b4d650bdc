"""Model intake: a model URI -> a local directory -> a parsed MLmodel + resolved environment.

Public API: :func:`load_model` and :class:`LoadedModel` (from :mod:`deployer.model.loader`);
the parsed types live in :mod:`deployer.model.mlmodel` and :mod:`deployer.model.signature`.
Attributes are imported lazily (PEP 562) so that ``deployer.environment`` can import
``deployer.model.mlmodel`` without a circular import through this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deployer.model.loader import LoadedModel, load_model

__all__ = ["LoadedModel", "load_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from deployer.model import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'deployer.model' has no attribute {name!r}")
