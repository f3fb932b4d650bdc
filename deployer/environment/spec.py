"""The resolved environment of a model: one typed record the builders consume.

A model may describe its environment in up to four files (python_env.yaml, requirements.txt,
constraints.txt, conda.yaml) written by different MLflow versions; :mod:`resolve` folds them
into one :class:`EnvironmentSpec` so that nothing downstream reads those files again.

Index options (``--index-url`` etc.) are kept verbatim because the builder needs them, but they
may carry credentials (``https://user:token@host/simple``). Their ``repr`` and
:meth:`IndexOptions.redacted` hide the userinfo, and every message that echoes them goes
through :func:`deployer.redact.redact_text`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from deployer.redact import redact_url

if TYPE_CHECKING:
    from deployer.environment.uv_lock import UvLock


@dataclass(frozen=True, repr=False)
class IndexOptions:
    """Package index options declared by the model's requirement files (pip semantics)."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.index_url or self.extra_index_urls or self.find_links)

    @property
    def has_credentials(self) -> bool:
        return self.redacted() != self

    def redacted(self) -> IndexOptions:
        """The same options with ``user:password@`` replaced by ``***@`` (safe to print)."""
        return IndexOptions(
            index_url=redact_url(self.index_url) if self.index_url else None,
            extra_index_urls=tuple(redact_url(u) for u in self.extra_index_urls),
            find_links=tuple(redact_url(u) for u in self.find_links),
        )

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        opts = self.redacted() if redact else self
        return {
            "index_url": opts.index_url,
            "extra_index_urls": list(opts.extra_index_urls),
            "find_links": list(opts.find_links),
        }

    def __repr__(self) -> str:
        r = self.redacted()
        return (
            f"IndexOptions(index_url={r.index_url!r}, extra_index_urls={r.extra_index_urls!r}, "
            f"find_links={r.find_links!r})"
        )


@dataclass(frozen=True)
class EnvironmentSpec:
    """What the model needs installed.

    ``kind`` is 'virtualenv' when pip alone can build it (including conda.yaml files that hold
    only python + pip + a pip list, which is what MLflow writes), 'conda' when conda-only
    packages are declared (``conda_packages``). ``pip_requirements`` and ``constraints`` are
    normalized requirement lines with ``-r``/``-c`` references already expanded.
    ``build_dependencies`` are pip/setuptools/wheel pins installed before the requirements.
    ``source`` names the file(s) the spec came from, or 'fallback' when the model declares nothing.
    ``uv_lock`` is the model's uv.lock (saved by MLflow from a uv project), checked to cover
    ``pip_requirements``: when present it is the lock of the image's model packages.
    """

    kind: Literal["virtualenv", "conda"]
    python_version: str | None
    pip_requirements: tuple[str, ...]
    constraints: tuple[str, ...] = ()
    conda_packages: tuple[str, ...] = ()
    conda_channels: tuple[str, ...] = ()
    build_dependencies: tuple[str, ...] = ()
    index_options: IndexOptions = field(default_factory=IndexOptions)
    source: str = "fallback"
    warnings: tuple[str, ...] = ()
    uv_lock: UvLock | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, credentials in index options redacted."""
        return {
            "kind": self.kind,
            "source": self.source,
            "python_version": self.python_version,
            "pip_requirements": list(self.pip_requirements),
            "constraints": list(self.constraints),
            "build_dependencies": list(self.build_dependencies),
            "conda_packages": list(self.conda_packages),
            "conda_channels": list(self.conda_channels),
            "index_options": self.index_options.to_dict(redact=True),
            "uv_lock": self.uv_lock.to_dict(self.python_version) if self.uv_lock else None,
            "warnings": list(self.warnings),
        }
