"""The models of a multi-model endpoint: ``deployer models add | remove | list``.

A multi-model endpoint serves ``<prefix><TargetModel>``: adding a model is uploading its
``model.tar.gz`` (the reproducible archive of :mod:`deployer.model.files`, as for single-model
endpoints) under the prefix, removing it is deleting that object. Both are planned as data
and run by the one executor (:class:`~deployer.targets.sagemaker.apply.SageMakerOperations`),
so ``--dry-run`` prints them and a failure undoes what the run did.

* **Environment check, before anything is uploaded**: the model's lock, resolved with the
  options the endpoint recorded (:mod:`deployer.targets.sagemaker.multi_model`), must have the
  endpoint's lock digest; otherwise the model is refused with the packages that differ.
* **Idempotence**: each archive carries its content digest as S3 object metadata
  (``deployer-model-digest``, :func:`deployer.model.files.model_digest`); adding the same
  content under the same name again changes nothing. Other content under a taken name is
  refused: instances that loaded the old archive keep serving it (SageMaker does not reload a
  model it has loaded), so a new version goes under a new name.
* ``list`` reads the prefix: every ``.tar.gz`` with its digests (archives uploaded by other
  means show no digests).

Everything read here is read at plan time; nothing is written outside the plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.errors import EnvironmentSpecError, UsageError
from deployer.targets.base import DeployPlan, EndpointStatus, PlannedCall
from deployer.targets.sagemaker.multi_model import (
    RECORD_FOLDER,
    TAG_ENVIRONMENT,
    TAG_LOCK,
    TAG_MODEL_PREFIX,
    EnvironmentRecord,
    head_object,
    lock_differences,
    resolve_environment,
)
from deployer.targets.sagemaker.spec import s3_parts
from deployer.targets.sagemaker.state import EndpointState

TARGET = "sagemaker"
ARCHIVE = ".tar.gz"
#: S3 object metadata of the archives deployer uploads (``x-amz-meta-...``).
META_MODEL_DIGEST = "deployer-model-digest"
META_LOCK_DIGEST = "deployer-lock-digest"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# SageMaker's TargetModel: up to 1024 printable characters; here a relative key, no "..".
_TARGET_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,1023}$")


@dataclass(frozen=True)
class EndpointModels:
    """A deployer multi-model endpoint as its tags describe it."""

    name: str
    prefix: str
    lock_digest: str
    environment: str  # s3:// URI of the environment record

    @property
    def bucket(self) -> str:
        return s3_parts(self.prefix, TAG_MODEL_PREFIX)[0]

    @property
    def prefix_key(self) -> str:
        return s3_parts(self.prefix, TAG_MODEL_PREFIX)[1]

    def key(self, name: str) -> str:
        return f"{self.prefix_key}{name}{ARCHIVE}"


# ------------------------------------------------------------------ names
def archive_name(value: str, option: str = "--as") -> str:
    """A model's name under the prefix (``NAME`` or ``NAME.tar.gz`` given; ``NAME`` returned)."""
    name = value.strip().removesuffix(ARCHIVE)
    if not _NAME.match(name):
        raise UsageError(
            f"model name {value!r} is not a plain name (letters, digits, '.', '_', '-', at most "
            "128, no '/')",
            where=option,
            fix="use e.g. --as churn-eu-v3",
        )
    return name


def target_model_key(value: str) -> str:
    """``--target-model``: ``NAME`` or ``NAME.tar.gz`` (or a relative key of an archive uploaded
    by other means) -> the TargetModel SageMaker takes: the path under the prefix."""
    text = value.strip()
    if not _TARGET_MODEL.match(text) or ".." in text.split("/"):
        raise UsageError(
            f"{value!r} is not a model under the endpoint's prefix",
            where="--target-model",
            fix="pass the name `deployer models list` shows (NAME or NAME.tar.gz)",
        )
    return text if text.endswith(ARCHIVE) else text + ARCHIVE


def _default_name(model_uri: str) -> str:
    path = Path(model_uri)
    if "://" in model_uri or ":/" in model_uri or not path.name:
        raise UsageError(
            f"the model {model_uri!r} has no directory name to serve it under",
            where="--as",
            fix="pass --as NAME (the name requests give as --target-model)",
        )
    return archive_name(path.resolve().name, option="-m (its directory name)")


# ------------------------------------------------------------------ reading
def endpoint_models(state: EndpointState) -> EndpointModels:
    """The endpoint's prefix and environment, from the tags ``deploy --multi-model`` put on its
    model; a usage error for an endpoint that is not such a multi-model endpoint."""
    for variant in state.variants:
        tags = variant.model_tags
        if tags.get(TAG_MODEL_PREFIX) and tags.get(TAG_LOCK) and tags.get(TAG_ENVIRONMENT):
            return EndpointModels(
                state.name, tags[TAG_MODEL_PREFIX], tags[TAG_LOCK], tags[TAG_ENVIRONMENT]
            )
    raise UsageError(
        f"endpoint {state.name} is not a multi-model endpoint deployed by deployer (its model "
        "records no model prefix and environment)",
        where="--name",
        fix=f"deploy it with `deployer deploy --target sagemaker --name {state.name} -m MODEL "
        "--multi-model --model-prefix s3://bucket/models/ --mode replace`",
    )


def read_record(aws: Any, mme: EndpointModels) -> EnvironmentRecord:
    bucket, key = s3_parts(mme.environment, TAG_ENVIRONMENT)
    body = aws.call("s3", "get_object", where=mme.environment, Bucket=bucket, Key=key)["Body"]
    record = EnvironmentRecord.from_json(body.read().decode("utf-8", "replace"), mme.environment)
    if record.lock_digest != mme.lock_digest:
        raise EnvironmentSpecError(
            f"the environment record names lock {record.lock_digest}, the endpoint's model "
            f"{mme.lock_digest}",
            where=mme.environment,
            fix="redeploy the endpoint (deploy --multi-model ... --mode replace)",
        )
    return record


# ------------------------------------------------------------------ models add / remove
def plan_add(aws: Any, state: EndpointState, model_uri: str, as_name: str | None) -> DeployPlan:
    from deployer.building.plan import BuildOptions
    from deployer.intake import load_model
    from deployer.model.files import model_digest

    mme = endpoint_models(state)
    name = archive_name(as_name) if as_name else _default_name(model_uri)
    loaded = load_model(model_uri)
    digest = model_digest(Path(loaded.path))
    key = mme.key(name)
    url = f"s3://{mme.bucket}/{key}"
    facts: dict[str, Any] = {
        "endpoint": state.name,
        "model": name,
        "target_model": name + ARCHIVE,
        "archive": url,
        "model_digest": digest,
        "lock_digest": mme.lock_digest,
    }
    found = head_object(aws, mme.bucket, key)
    if found is not None:
        there = (found.get("Metadata") or {}).get(META_MODEL_DIGEST)
        if there == digest:
            return DeployPlan(
                TARGET,
                state.name,
                "noop",
                (),
                summary=f"{url} holds this model already (digest {digest[:19]}); nothing to do",
                facts=facts,
            )
        raise UsageError(
            f"endpoint {state.name} has a model {name!r} with other content ({url})",
            where="--as",
            fix="add the new version under a new name (--as NAME-v2): instances that loaded "
            f"{name!r} keep serving the old archive, SageMaker does not reload it",
        )
    record = read_record(aws, mme)
    env = resolve_environment(model_uri, BuildOptions.from_params(dict(record.options)))
    lock = env.lock
    if lock.digest != record.lock_digest:
        differences = lock_differences(
            record.lock(mme.environment), lock, (*record.requires, *env.requires)
        )
        shown = "; ".join(differences[:12]) + (
            f"; and {len(differences) - 12} more" if len(differences) > 12 else ""
        )
        raise EnvironmentSpecError(
            f"model {name!r} needs another environment than endpoint {state.name}: "
            + (shown or f"lock {lock.digest} (endpoint: {record.lock_digest})"),
            where=model_uri,
            fix="save the model with the endpoint's requirements, or serve it from its own "
            "endpoint (one multi-model endpoint per environment)",
        )
    call = PlannedCall(
        "s3",
        "upload_model_archive",
        {
            "Bucket": mme.bucket,
            "Key": key,
            "ModelDir": str(loaded.path),
            "ModelDigest": digest,
            "Metadata": {META_LOCK_DIGEST: lock.digest},
        },
        description="upload model.tar.gz (its environment is the endpoint's: lock "
        f"{lock.digest[:19]})",
        undo=PlannedCall("s3", "delete_object", {"Bucket": mme.bucket, "Key": key}),
    )
    return DeployPlan(
        TARGET,
        state.name,
        "add",
        (call,),
        summary=f"add model {name} to endpoint {state.name}: {url}",
        facts=facts,
    )


def plan_remove(aws: Any, state: EndpointState, model: str) -> DeployPlan:
    mme = endpoint_models(state)
    name = archive_name(model, option="NAME")
    key = mme.key(name)
    url = f"s3://{mme.bucket}/{key}"
    facts = {"endpoint": state.name, "model": name, "archive": url}
    if head_object(aws, mme.bucket, key) is None:
        return DeployPlan(
            TARGET,
            state.name,
            "noop",
            (),
            summary=f"endpoint {state.name} has no model {name!r} ({url}); nothing to do",
            facts=facts,
        )
    call = PlannedCall(
        "s3",
        "delete_object",
        {"Bucket": mme.bucket, "Key": key},
        phase="commit",
        description="delete the archive (instances that loaded it may serve it until they "
        "unload it)",
    )
    return DeployPlan(
        TARGET,
        state.name,
        "remove",
        (call,),
        summary=f"remove model {name} from endpoint {state.name}: {url}",
        facts=facts,
    )


# ------------------------------------------------------------------ models list
def list_archives(aws: Any, state: EndpointState) -> EndpointStatus:
    mme = endpoint_models(state)
    models: list[dict[str, Any]] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": mme.bucket, "Prefix": mme.prefix_key}
        if token:
            kwargs["ContinuationToken"] = token
        page = aws.call("s3", "list_objects_v2", where=mme.prefix, **kwargs)
        for obj in page.get("Contents", []) or []:
            key = str(obj["Key"])
            rel = key[len(mme.prefix_key) :]
            if not rel.endswith(ARCHIVE) or rel.startswith(RECORD_FOLDER):
                continue
            meta = (head_object(aws, mme.bucket, key) or {}).get("Metadata") or {}
            lock = meta.get(META_LOCK_DIGEST)
            models.append(
                {
                    "name": rel.removesuffix(ARCHIVE),
                    "target_model": rel,
                    "size": int(obj.get("Size", 0)),
                    "modified": str(obj.get("LastModified")),
                    "model_digest": meta.get(META_MODEL_DIGEST),
                    "lock_digest": lock,
                    "same_environment": None if lock is None else lock == mme.lock_digest,
                }
            )
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            break
    return EndpointStatus(
        TARGET,
        state.name,
        f"{len(models)} model(s)",
        {"model_prefix": mme.prefix, "lock_digest": mme.lock_digest, "models": models},
    )
