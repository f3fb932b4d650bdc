"""What an endpoint serves, as the model registry knows it: one record written on the endpoint.

Every deploy from ``-m`` records a :class:`Provenance` on what it creates (local containers:
labels; SageMaker: tags; Azure ML: endpoint and deployment tags; Kubernetes: annotations),
each target under its own key prefix (:meth:`Provenance.to_tags` / :meth:`Provenance.from_tags`
are the one spelling of the keys). ``deployer status`` shows it and ``deployer sync`` compares it
with what the registry's alias names now.

A model from the MLflow registry (``models:/name@alias``, ``models:/name/version``) records its
registered name, version, the alias when the URI used one, the run id and the content digest
(:func:`deployer.model.files.model_digest`); ``runs:/`` records the run id and the digest; a
plain directory records the digest only. Name, version and run id come from the download
cache's record of the version that was downloaded (``source.json``), so they always describe
the bytes that ship, even when the alias moved meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

#: field -> key suffix; a target writes ``prefix + suffix`` (e.g. ``io.deployer.model-version``).
KEYS = {
    "registered_model": "model-name",
    "version": "model-version",
    "alias": "model-alias",
    "run_id": "model-run-id",
    "digest": "model-digest",
}


@dataclass(frozen=True)
class Provenance:
    """The registry's view of a deployed model; ``digest`` is always set."""

    digest: str
    registered_model: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None

    def to_tags(self, prefix: str) -> dict[str, str]:
        """The record as string key/values under ``prefix`` (unset fields left out)."""
        return {
            prefix + KEYS[f.name]: str(value)
            for f in fields(self)
            if (value := getattr(self, f.name)) not in (None, "")
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str], prefix: str) -> Provenance | None:
        """The record written by :meth:`to_tags` (None: no digest under ``prefix``)."""
        values = {name: tags.get(prefix + key) or None for name, key in KEYS.items()}
        digest = values.pop("digest")
        return cls(digest=digest, **values) if digest else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def registry_version(self) -> tuple[str, str] | None:
        """(registered model, version), or None for a model that is not a registered version."""
        if self.registered_model and self.version:
            return self.registered_model, self.version
        return None

    def describe(self) -> str:
        """One line for people: ``iris v3 (@champion, run 1a2b...), sha256:...``."""
        parts = []
        if self.registered_model:
            parts.append(f"{self.registered_model} v{self.version}")
            if self.alias:
                parts.append(f"@{self.alias}")
        if self.run_id:
            parts.append(f"run {self.run_id}")
        parts.append(self.digest)
        return ", ".join(parts)


def model_provenance(uri: str, model_dir: Path, *, digest: str | None = None) -> Provenance:
    """The provenance of the model ``uri`` resolved to ``model_dir`` (``digest``: its
    :func:`~deployer.model.files.model_digest` when the caller computed it already)."""
    from deployer.model.cache import source_record
    from deployer.model.files import model_digest
    from deployer.model.uri import uri_alias

    digest = digest or model_digest(model_dir)
    source = source_record(model_dir) if uri.startswith(("models:/", "runs:/")) else None
    if not source:
        return Provenance(digest=digest)
    name = source.get("name")
    return Provenance(
        digest=digest,
        registered_model=str(name) if name else None,
        version=str(source["version"]) if name and source.get("version") else None,
        alias=uri_alias(uri) if name else None,
        run_id=str(source["run_id"]) if source.get("run_id") else None,
    )
