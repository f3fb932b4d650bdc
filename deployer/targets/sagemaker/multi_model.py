"""What makes a SageMaker multi-model endpoint (MME) deployer's: its image, its environment.

An MME (``deploy --multi-model --model-prefix s3://bucket/models/``) is one model registered
with ``Mode: MultiModel`` and ``ModelDataUrl`` = the prefix: SageMaker downloads
``<prefix><TargetModel>`` on the first request naming it and asks the container to load it.
Every model it ever serves therefore runs in the *one* Python environment of the image, so:

* the image is built from ``-m`` (the reference model: its environment is the endpoint's),
  with the label SageMaker requires of MME containers (:data:`CAPABILITY_LABEL`), and
  started with :data:`SERVER_SWITCH` (the server's multi-model container contract);
* the environment's lock (:func:`deployer.building.context.resolve_lock`: the lock the image
  build installs, so its digest is the image's ``io.deployer.lock.digest`` label) is recorded:
  its digest in the model's tags (:data:`TAG_LOCK`), the lock itself and the options that
  shaped it in an :class:`EnvironmentRecord` stored under the prefix (``.deployer/``, never a
  model archive), so ``deployer models add`` resolves a new model the same way and refuses
  one whose lock differs, naming the packages that differ (:func:`lock_differences`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from deployer.errors import EnvironmentSpecError, TargetError, UsageError
from deployer.targets.sagemaker.client import is_not_found

log = logging.getLogger("deployer")

#: The image label SageMaker requires of a container serving a multi-model endpoint.
CAPABILITY_LABEL = "com.amazonaws.sagemaker.capabilities.multi-models"
#: The container environment that switches deployer's server to SageMaker's MME contract.
SERVER_SWITCH = "DEPLOYER_SERVE_SAGEMAKER_MULTI_MODEL"
TAG_LOCK = "deployer:lock-digest"
TAG_MODEL_PREFIX = "deployer:model-prefix"
TAG_ENVIRONMENT = "deployer:environment"
#: Where deployer keeps its own files under a prefix (not a model: no ``.tar.gz``).
RECORD_FOLDER = ".deployer/"
FORMAT = "deployer-mme-environment-v1"

#: Build options that shape the environment and apply to every model the endpoint loads: they
#: are recorded, and models added later are resolved with them.
RECORDED_OPTIONS = (
    "platform",
    "glibc",
    "python_version",
    "parquet",
    "keep_full_mlflow",
    "pip",
    "auto_deps",
    "gpu",
    "extra_requirements",
)
#: Build options naming files on this host (they could not be applied to models added later
#: from elsewhere), or another kind of environment: refused with --multi-model.
REFUSED_OPTIONS = ("lock_file", "pip_override_file", "conda_lock", "env_kind")


@dataclass(frozen=True)
class EnvironmentRecord:
    """The endpoint's environment as ``models add`` needs it: the lock and its options."""

    lock_text: str
    lock_digest: str
    options: Mapping[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    """The reference model's direct requirements (names): named first when locks differ."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "lock_digest": self.lock_digest,
                "options": dict(self.options),
                "requires": list(self.requires),
                "lock": self.lock_text,
            },
            sort_keys=True,
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str, where: str) -> EnvironmentRecord:
        fix = "redeploy the endpoint (deployer deploy --multi-model ... --mode replace)"
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            return cls(
                str(data["lock"]),
                str(data["lock_digest"]),
                dict(data.get("options") or {}),
                tuple(str(n) for n in data.get("requires") or ()),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EnvironmentSpecError(
                f"the endpoint's environment record is unreadable: {exc}", where=where, fix=fix
            ) from None

    def lock(self, where: str) -> Any:
        from deployer.environment.lock import parse_lock

        return parse_lock(self.lock_text, where=where)

    def key(self, prefix_key: str) -> str:
        """Content-addressed: a record, once written, never changes (so a failed replace that
        removes its new record never touches the one the old model names)."""
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
        return f"{prefix_key}{RECORD_FOLDER}environment-{digest}.json"


@dataclass(frozen=True)
class MultiModelSetup:
    """What a multi-model deploy plans with (read at plan time; see module docstring)."""

    prefix: str
    """``s3://bucket/key/`` (ends with ``/``): the model's ModelDataUrl."""
    record: EnvironmentRecord
    record_exists: bool

    @property
    def bucket(self) -> str:
        return self.prefix[len("s3://") :].split("/", 1)[0]

    @property
    def prefix_key(self) -> str:
        return self.prefix[len("s3://") :].split("/", 1)[1]

    @property
    def record_key(self) -> str:
        return self.record.key(self.prefix_key)

    def tags(self) -> dict[str, str]:
        return {
            TAG_LOCK: self.record.lock_digest,
            TAG_MODEL_PREFIX: self.prefix,
            TAG_ENVIRONMENT: f"s3://{self.bucket}/{self.record_key}",
        }

    def facts(self) -> dict[str, Any]:
        return {
            "multi_model": True,
            "model_prefix": self.prefix,
            "lock_digest": self.record.lock_digest,
            "environment_record": f"s3://{self.bucket}/{self.record_key}",
        }


def labeled_build_options(build: Any) -> Any:
    """The request's build options (None: the defaults) with the MME capability label, after
    refusing the options a multi-model endpoint cannot record (:data:`REFUSED_OPTIONS`)."""
    from deployer.building.plan import BuildOptions
    from deployer.targets.build_options import GROUP

    options = build or BuildOptions()
    defaults = BuildOptions()
    flags = {o.name: o.flag for o in GROUP}
    for name in REFUSED_OPTIONS:
        if getattr(options, name) != getattr(defaults, name):
            flag = flags.get(name, "--" + name.replace("_", "-"))
            raise UsageError(
                f"{flag} does not apply to --multi-model: every model added to the endpoint "
                "later is resolved into the same environment from its own requirements, which a "
                "file on this host or another environment kind cannot follow",
                where=flag,
                fix=f"drop {flag} (pin packages with --pip REQ, which is recorded and applied to "
                "every model added)",
            )
    labels = dict(options.labels)
    labels[CAPABILITY_LABEL] = "true"
    return replace(options, labels=tuple(sorted(labels.items())))


def recorded_options(build: Any) -> dict[str, Any]:
    """The environment-shaping options of ``build`` that differ from the defaults."""
    if build is None:
        return {}
    return {k: v for k, v in build.to_params().items() if k in RECORDED_OPTIONS}


@dataclass(frozen=True)
class ModelEnvironment:
    lock: Any  # deployer.environment.lock.Lock
    requires: tuple[str, ...]  # the image's direct requirements (canonical names)


def resolve_environment(model_uri: str, options: Any) -> ModelEnvironment:
    """The lock of ``model_uri``'s image environment, built with the build ``options`` (the
    same :func:`~deployer.building.context.resolve_lock` the image build runs: cached by its
    inputs, resolved on this host otherwise), and the names it was resolved from."""
    from deployer.building.context import resolve_lock
    from deployer.building.wheelhouse import Resolver
    from deployer.targets.model_image import plan_model_image

    build, _ = plan_model_image(model_uri, options, "sagemaker")
    if build.env_kind != "virtualenv":
        raise UsageError(
            f"the model's environment is {build.env_kind}; a multi-model endpoint compares the "
            "pip locks of its models",
            where=model_uri,
            fix="save the model with pip requirements (python_env.yaml), not only conda.yaml",
        )
    return ModelEnvironment(
        resolve_lock(build, Resolver(), log.info), _names(build.requirements.requirements)
    )


def _names(lines: Any) -> tuple[str, ...]:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    names = []
    for line in lines:
        try:
            names.append(str(canonicalize_name(Requirement(line.split(" --hash")[0]).name)))
        except InvalidRequirement:
            continue
    return tuple(dict.fromkeys(names))


def lock_differences(endpoint: Any, model: Any, requires: Any = ()) -> list[str]:
    """What differs between two locks, as short phrases: the platform first, then the packages
    named in ``requires`` (what either model asks for), then the ones they bring along."""
    platform: list[str] = []
    if endpoint.platform != model.platform:
        a, b = endpoint.platform.to_dict(), model.platform.to_dict()
        platform = [f"{k} {b.get(k)} (endpoint: {a.get(k)})" for k in sorted(a) if a[k] != b.get(k)]
    ours = {p.name: p for p in endpoint.packages}
    theirs = {p.name: p for p in model.packages}
    asked = set(requires)
    direct: list[str] = []
    brought: list[str] = []
    for name in sorted(set(ours) | set(theirs)):
        a, b = ours.get(name), theirs.get(name)
        if a is None and b is not None:
            phrase = f"{name} {b.version} (not in the endpoint)"
        elif b is None and a is not None:
            phrase = f"{name} {a.version} only in the endpoint"
        elif a is not None and b is not None and (a.version, a.sha256) != (b.version, b.sha256):
            what = b.version if a.version != b.version else f"{b.version} (another build)"
            phrase = f"{name} {what} (endpoint: {a.version})"
        else:
            continue
        (direct if name in asked else brought).append(phrase)
    return [*platform, *direct, *brought]


def head_object(aws: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """S3 HeadObject; None when there is no such object."""
    try:
        return dict(
            aws.call("s3", "head_object", where=f"s3://{bucket}/{key}", Bucket=bucket, Key=key)
        )
    except TargetError as exc:
        if exc.__cause__ is not None and is_not_found(exc.__cause__):
            return None
        raise


def plan_setup(aws: Any, spec: Any, model: Any, request: Any) -> tuple[Any, MultiModelSetup]:
    """A multi-model deploy's build options (the label added) and setup: the reference model's
    environment lock, resolved now with the deploy's build options, and whether its record is
    stored already. The build that follows reuses this resolution (``--refresh-lock`` has
    refreshed it here, so the build does not resolve again to another lock)."""
    if not model.uri:
        raise UsageError(
            "--multi-model needs -m MODEL: its environment is the endpoint's, which every model "
            "added later must share",
            where="-m/--model",
            fix="pass -m MODEL (deployer builds the image from it)",
        )
    assert spec.model_prefix
    build = request.build if request.image_uri else labeled_build_options(request.build)
    env = resolve_environment(model.uri, build)
    options = {} if request.image_uri else recorded_options(build)
    record = EnvironmentRecord(env.lock.canonical_text(), env.lock.digest, options, env.requires)
    setup = MultiModelSetup(spec.model_prefix, record, False)
    try:
        aws.call("s3", "head_bucket", where=f"s3://{setup.bucket}", Bucket=setup.bucket)
    except TargetError as exc:
        if exc.__cause__ is not None and is_not_found(exc.__cause__):
            raise UsageError(
                f"bucket {setup.bucket} of --model-prefix does not exist",
                where="--model-prefix",
                fix=f"create it (aws s3 mb s3://{setup.bucket}) or use another --model-prefix",
            ) from None
        raise
    exists = head_object(aws, setup.bucket, setup.record_key) is not None
    if build is not None and build.refresh_lock:
        build = replace(build, refresh_lock=False)
    return build, replace(setup, record_exists=exists)
