"""The one small interface every deployment target implements.

A target turns a :class:`DeployRequest` into a :class:`DeployPlan` (pure: it may *read* the
cloud to see what exists, but changes nothing), then applies that plan. ``--dry-run`` prints
the plan and stops. Results are frozen dataclasses, so ``--output json`` is a dump of them.

Targets are discovered through the ``deployer.targets`` entry-point group (see
:mod:`deployer.targets.registry`); built-in targets are registered there exactly like
third-party ones.

Writing a target (the contract the CLI relies on)
-------------------------------------------------
* The entry point names a *factory*, normally the target class. The CLI reads the class
  attribute ``options`` (a tuple of :class:`OptionSpec`) **without instantiating it**, so
  ``deployer deploy --help`` works with no credentials and no SDK import. Import cloud SDKs
  inside methods, never at module import.
* Every ``OptionSpec`` becomes a command-line option of the commands named in its
  ``commands`` field (``--instance-type`` for ``name="instance_type"``), with an env var
  ``DEPLOYER_<NAME>`` and a config-file default under ``[targets.<target>]``. Options are
  declared as data: no click in targets. Several targets may declare the same option name if
  the declarations agree on ``type``, ``multiple`` and ``connection`` (the help shows each
  target's text); a clashing declaration is dropped (targets merge in name order) and its
  target fails with a clear error when selected. Names of the generic options (``name``,
  ``model_uri``, ``image_uri``, ``dry_run``, ``wait``, ``timeout``, ``output``, ``target``...)
  are reserved. Using an option no declaration of the selected target owns is a usage error
  that names the target(s) it belongs to; env-var or config-file values of other targets'
  options are ignored.
* Where values go:

  - ``connection=True`` options (region, subscription, workspace...) are passed as keyword
    arguments to the factory: ``factory(region="eu-west-1")``. Options the user did not set
    are left out, so factories should have defaults.
  - on ``deploy``, the other options go to ``DeployRequest.options`` (every declared deploy
    option of that target is present, with its default when not set).
  - on ``status`` / ``list`` / ``delete`` / ``predict``, the other options are keyword
    arguments of the method (``target.delete(name, archive=True)``); a target declaring none
    is called with the base signature below. ``delete --dry-run`` calls the optional
    ``plan_delete(name, **options) -> DeployPlan``.
  - on ``batch``, they go to ``BatchRequest.options``.
  - the build-option group (``--base-image``, ``--pip``, ``--gpu``... see
    :mod:`deployer.targets.build_options`) is generic too: one ``BuildOptions`` in
    ``DeployRequest.build`` / ``BatchRequest.build``, for the image a target builds from
    ``-m``; targets must not declare those names. A target that never builds an image sets
    the class attribute ``builds_images = False``: the CLI then refuses build options
    given with ``-m`` instead of ignoring them; one that builds only when one of its own
    options is given names that option (``builds_images = "registry"``).
  - ``--wait/--no-wait`` and ``--timeout`` are generic: ``DeployRequest.wait`` /
    ``DeployRequest.timeout`` (None: the target's default); targets must not declare them.
* ``plan`` may read the cloud, never change it. ``apply`` runs ``plan.calls`` with the one
  executor, :func:`deployer.targets.executor.execute`, and the target's ``operations()``
  (an :class:`~deployer.targets.executor.Operations`: one handler per operation); the
  executor owns the order, the phases and the one rollback rule (a failure undoes what the
  run did, in reverse order; a failing ``create`` call's own undo runs too), so every target
  fails the same way.
* Record what was deployed: a deploy from ``-m`` writes the model's
  :class:`~deployer.model.provenance.Provenance` on the endpoint (labels, tags, annotations,
  each target under its own key prefix) and the optional method ``provenance(name) ->
  Provenance | None`` reads it back (None: no endpoint, or nothing recorded); ``status``
  shows it as ``details["provenance"]``. ``deployer sync`` needs it to compare an endpoint
  with the registry.
* Translate SDK errors into :class:`deployer.errors.TargetError` (with what/where/fix).
* Optional capabilities are separate protocols checked with ``isinstance``:
  :class:`BatchTarget` (``deployer batch``). A batch target may also offer
  ``batch_status(job) -> EndpointStatus``, ``list_batch() -> Sequence[EndpointStatus]`` and
  ``plan_clean_batch(job | None) -> DeployPlan`` (``batch --status / --list / --clean``);
  the CLI refuses those flags for a target without them. A target with multi-model endpoints
  offers ``plan_models_add(name, model_uri, as_name)``, ``plan_models_remove(name, model)``,
  ``list_models(name) -> EndpointStatus`` and ``apply_models(plan) -> DeployResult``
  (``deployer models add / remove / list``; its ``models`` options are the connection ones).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: Commands whose options a target may declare.
TARGET_COMMANDS = ("deploy", "status", "list", "delete", "predict", "batch", "models")

#: Option types an :class:`OptionSpec` may use.
OPTION_TYPES = ("str", "int", "float", "bool", "path", "choice", "mapping")


@dataclass(frozen=True)
class OptionSpec:
    """A target-specific command-line option, declared as data.

    ``name`` is a Python identifier (``instance_type`` -> ``--instance-type``). ``type`` is one
    of :data:`OPTION_TYPES`; ``bool`` makes an on/off flag (``--archive/--no-archive``), ``path``
    an existing file, ``choice`` one of ``choices``, ``mapping`` a mapping (Python API) or its
    text (a JSON object or a file, parsed by the option's consumer). ``multiple`` collects
    repeated options into a tuple (``--env A=1 --env B=2``). ``commands`` lists the commands
    that carry the option.
    """

    name: str
    help: str
    type: str = "str"
    multiple: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    commands: tuple[str, ...] = ("deploy",)
    connection: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class DeployRequest:
    """What the user asked for, target-neutral. ``options`` holds target-specific settings."""

    name: str
    model_uri: str | None = None
    image_uri: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    wait: bool = True
    timeout: float | None = None
    build: Any = None
    """``BuildOptions`` for the image built from ``model_uri`` (None: the defaults); the
    target sets its ``target`` (how the image starts) itself."""


@dataclass(frozen=True)
class PlannedCall:
    """One cloud operation in the order it will run: e.g. ("sagemaker", "create_model", {...}).

    ``phase`` says how the executor treats a failure of this call:

    * ``"create"``  - makes a new resource; ``undo`` (if any) removes it again when a later
      step of the same run fails;
    * ``"commit"``  - switches what serves traffic (create/update an endpoint); a failure
      rolls back everything created before it;
    * ``"wait"``    - not a cloud change: waits for the commit to settle;
    * ``"cleanup"`` - removes resources replaced by this run, only after success; failures are
      reported as warnings, never undone;
    * ``"prepare"`` - changes an existing resource so the commit may happen (e.g. deregister a
      variant from autoscaling); undone (``undo`` restores it) when a later step fails;
    * ``"post"``    - runs after the wait, on what now serves (e.g. register autoscaling); a
      failure undoes only this run's post steps, keeps the committed change and says to re-run.
    """

    service: str
    operation: str
    params: Mapping[str, Any]
    description: str = ""
    phase: str = "create"
    undo: PlannedCall | None = None


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


@dataclass(frozen=True)
class BatchRequest:
    """A batch scoring job: read ``input``, write predictions to ``output``."""

    model_uri: str | None
    input: str
    output: str
    image_uri: str | None = None
    name: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    wait: bool = True
    timeout: float | None = None
    build: Any = None
    """``BuildOptions`` for the image built from ``model_uri`` (see :class:`DeployRequest`)."""


@runtime_checkable
class Target(Protocol):
    """A deployment target. Implementations translate their SDK's errors into TargetError.

    Class attribute (optional, read before instantiation): ``options: tuple[OptionSpec, ...]``.
    """

    name: str

    def plan(self, request: DeployRequest) -> DeployPlan: ...

    def apply(self, plan: DeployPlan) -> DeployResult: ...

    def status(self, name: str) -> EndpointStatus: ...

    def list(self) -> Sequence[EndpointStatus]: ...

    def delete(self, name: str) -> DeployResult: ...

    def predict(self, name: str, body: bytes, content_type: str) -> bytes: ...


@runtime_checkable
class BatchTarget(Protocol):
    """Optional: a target that runs batch scoring jobs (``deployer batch``).

    ``plan_batch`` is pure like ``plan``; the plan is run by the target's ``apply``.
    """

    def plan_batch(self, request: BatchRequest) -> DeployPlan: ...

    def apply(self, plan: DeployPlan) -> DeployResult: ...

    def stop_batch(self, job_name: str) -> DeployResult: ...


def image_build_options(build: Any, target: str) -> Any:
    """The ``BuildOptions`` a target builds its image from ``-m`` with: the request's group
    (``build``; None: the defaults), started as ``target`` starts it, on the port its
    platform expects."""
    from dataclasses import replace

    from deployer.building.plan import DEFAULT_PORT, BuildOptions

    return replace(build or BuildOptions(), target=target, port=DEFAULT_PORT)
