"""The one small interface every deployment target implements.

A target turns a :class:`DeployRequest` into a :class:`DeployPlan` (pure: it may *read* the
cloud to see what exists, but changes nothing), then applies that plan. ``--dry-run`` prints
the plan and stops. Results are frozen dataclasses, so ``--output json`` is a dump of them.

Targets are discovered through the ``deployer.targets`` entry-point group (see
:mod:`deployer.targets.registry`); built-in targets are registered there exactly like
third-party ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class DeployRequest:
    """What the user asked for, target-neutral. ``options`` holds target-specific settings."""

    name: str
    model_uri: str | None = None
    image_uri: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedCall:
    """One cloud operation in the order it will run: e.g. ("sagemaker", "create_model", {...})."""

    service: str
    operation: str
    params: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True)
class DeployPlan:
    target: str
    name: str
    action: str  # "create" | "update" | "noop" | ...
    calls: Sequence[PlannedCall]
    summary: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeployResult:
    target: str
    name: str
    action: str
    status: str
    endpoint_url: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointStatus:
    target: str
    name: str
    status: str
    details: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Target(Protocol):
    """A deployment target. Implementations translate their SDK's errors into TargetError."""

    name: str

    def plan(self, request: DeployRequest) -> DeployPlan: ...

    def apply(self, plan: DeployPlan) -> DeployResult: ...

    def status(self, name: str) -> EndpointStatus: ...

    def list(self) -> Sequence[EndpointStatus]: ...

    def delete(self, name: str) -> DeployResult: ...

    def predict(self, name: str, body: bytes, content_type: str) -> bytes: ...
