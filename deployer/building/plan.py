"""``plan_build``: everything about an image, decided up front, with no side effects.

The plan answers every question a build would otherwise answer piecemeal: which base, which
Python, which requirements (after the mlflow-skinny swap), which layers in which order, which
labels, user, port, command and health check, and the tag. It only *reads* (the model files,
for their digest; deployer's own files, for the runtime digest; a ``--lock`` file); it never
resolves, downloads or builds. So ``deployer build --dry-run`` can print it, tests can check it
without Docker, and :func:`deployer.building.context.write_context` and
:func:`deployer.building.execute.execute_build` only carry it out.

Every value that a template will render is validated here (env vars, labels, tag, base image),
so a hostile model or option fails at planning, before anything is written.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from deployer import __version__
from deployer.building.contracts import contract
from deployer.building.dependencies import ImageRequirements, image_requirements
from deployer.building.runtime import RuntimeFiles, runtime_files
from deployer.building.verify import LABEL as VERIFY_LABEL
from deployer.building.verify import VerifyPlan, plan_verify
from deployer.environment import loader_deps, system_deps
from deployer.environment.loader_deps import LoaderRequirement
from deployer.environment.lock import DEFAULT_GLIBC, Lock, TargetPlatform, read_lock
from deployer.environment.spec import IndexOptions
from deployer.errors import EnvironmentSpecError, RenderError, UsageError
from deployer.intake import LoadedModel
from deployer.model.files import model_digest, scrubbed_files
from deployer.model.references import referenced_modules
from deployer.redact import has_url_credentials
from deployer.rendering.filters import check_env_var, check_image_ref, check_label_key
from deployer.serving import loading
from deployer.serving.loading import ENV as LOAD_MODE_ENV
from deployer.serving.loading import LoadMode
from deployer.serving.model_config import ENV as MODEL_CONFIG_ENV
from deployer.serving.model_config import ignored_keys

ENV_KINDS = ("virtualenv", "conda", "local")
DEFAULT_PORT = 8080
#: KServe's custom-predictor convention (its ModelServer: HTTP 8080, gRPC 8081); what
#: ``--grpc-port`` suggests. Nothing listens for gRPC unless a port is given.
KSERVE_GRPC_PORT = 8081
GRPC_PORT_ENV = "DEPLOYER_SERVE_GRPC_PORT"
VENV_DIR = "/opt/venv"
CONDA_PREFIX = "/opt/conda-env"
RUNTIME_DIR = "/opt/deployer"
MODEL_DIR = "/opt/ml/model"
#: Multi-model images: each model in its own layer at MODEL_REPOSITORY/<name>/ (the server's
#: --model-repository, baked as DEPLOYER_SERVE_MODEL_REPOSITORY).
MODEL_REPOSITORY = "/opt/ml/model-repository"
MODEL_REPOSITORY_ENV = "DEPLOYER_SERVE_MODEL_REPOSITORY"
#: The model /invocations serves without a target-model header: the first one given (the
#: server alone would take the repository's alphabetically first); ``--env`` may name another.
DEFAULT_MODEL_ENV = "DEPLOYER_SERVE_DEFAULT_MODEL"
BUILD_DIR = "/tmp/deployer/build"
WHEELS_DIR = "/tmp/deployer/wheels"
CONDA_PKGS_DIR = "/tmp/deployer/conda-pkgs"
USER_UID = 1000
USER_NAME = "model"
USER_HOME = "/home/model"
DEFAULT_MICROMAMBA = "mambaorg/micromamba:1.5.10"
DEFAULT_CONDA_BASE = "debian:bookworm-slim"
# --gpu default base: CUDA + cuDNN runtime libraries. It ships no Python of the model's version,
# which the build checks up front (execute.check_base_python); users pass --base-image then.
DEFAULT_GPU_BASE = "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"
LABEL_PREFIX = "io.deployer"
#: Multi-model images: the models' names, comma-separated, in layer order.
MODELS_LABEL = f"{LABEL_PREFIX}.models"
#: The image's gRPC port (--grpc-port): what run-local publishes.
GRPC_PORT_LABEL = f"{LABEL_PREFIX}.grpc.port"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TAG_CHARS = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True)
class BuildOptions:
    """What the user asked for (CLI flags / config). Everything optional has a good default."""

    tag: str | None = None
    base_image: str | None = None
    target: str = "local"
    platform: str = "linux/amd64"
    glibc: str = DEFAULT_GLIBC
    python_version: str | None = None
    env_kind: str | None = None  # None: the model's own (virtualenv/conda); "local": trust the base
    lock_file: Path | None = None
    wheelhouse: Path | None = None
    conda_lock: Path | None = None
    micromamba_image: str = DEFAULT_MICROMAMBA
    keep_full_mlflow: bool = False
    parquet: bool = (
        False  # True adds pyarrow for Parquet requests (~160 MB); the model's own pin wins
    )
    run_as_root: bool = False
    refresh_lock: bool = False
    port: int = DEFAULT_PORT
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    extra_requirements: tuple[str, ...] = ()
    gpu: bool = False  # CUDA base by default, io.deployer.gpu label; run-local requests GPUs
    auto_deps: bool = True  # add what the flavor's loader imports but the requirements miss
    verify: bool = True  # run the built image once, offline, before it is tagged (building.verify)
    pip: tuple[str, ...] = ()  # --pip REQ: replaces the model's line for that package, or adds it
    pip_override_file: Path | None = None  # --pip-requirements-override FILE: the same, from a file
    system_packages: tuple[
        str, ...
    ] = ()  # --system-package NAME: Debian packages (apt), an OS layer
    java: bool = (
        True  # a JRE for flavors that need a JVM (spark, h2o, ...); --no-java: the base has one
    )
    # --model-config: the load-time config override, canonical JSON (serving.model_config), baked
    # into the image as SERVING_MODEL_CONFIG (so it is part of the env, the tag and the verify run)
    model_config: str | None = None
    # --grpc-port: the V2 gRPC service on this port too (deployer's grpc extra installed,
    # DEPLOYER_SERVE_GRPC_PORT baked, the port exposed, verified); None: no gRPC in the image
    grpc_port: int | None = None

    def to_params(self) -> dict[str, Any]:
        """The options that differ from the defaults, as JSON-safe data: how a deploy plan
        carries them from planning to the build step (and shows them in ``--dry-run``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            out[f.name] = value
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> BuildOptions:
        """Inverse of :meth:`to_params` (unknown keys are refused: a plan from another version)."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise UsageError(
                f"unknown build options {', '.join(unknown)}",
                fix=f"use only: {', '.join(sorted(known))}",
            )
        values: dict[str, Any] = {}
        for name, value in params.items():
            default = known[name].default
            if name in _PATH_OPTIONS and value is not None:
                value = Path(value)
            elif isinstance(default, tuple):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            values[name] = value
        return cls(**values)


#: BuildOptions fields holding a file or directory.
_PATH_OPTIONS = frozenset({"lock_file", "wheelhouse", "conda_lock", "pip_override_file"})


# Debian policy for package names: lower case letters, digits, '+', '-', '.'; at least two
# characters, starting with a letter or digit. Nothing else reaches the apt command line.
_DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]{1,99}")
#: Flavors whose loader starts a JVM, and so need Java in the image (as MLflow's --install-java).
JVM_FLAVORS = ("spark", "h2o", "johnsnowlabs", "mleap")
#: Flavors whose loader starts a local Spark session inside the server.
SPARK_FLAVORS = ("spark", "johnsnowlabs")
#: The distribution's default headless JRE: Java 17 on Debian 12, 21 on Debian 13 (Spark 4 needs
#: 17+).
JRE_PACKAGE = "default-jre-headless"


@dataclass(frozen=True)
class OsPackages:
    """Debian packages installed with apt in one layer right above the base image."""

    packages: tuple[str, ...]
    reasons: tuple[str, ...] = ()  # why each non-requested package is there, for the plan

    def __bool__(self) -> bool:
        return bool(self.packages)

    def apt_argv(self) -> list[str]:
        """One shell command: install, then remove apt's lists and caches in the same layer
        (a later layer cannot make an earlier one smaller). ``mkdir man1``: slim images drop
        man pages, and the JRE's postinst links one there."""
        names = " ".join(self.packages)  # each matched _DEBIAN_PACKAGE: no shell metacharacters
        script = (
            "set -e; mkdir -p /usr/share/man/man1; apt-get update; "
            f"DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {names}; "
            "apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb "
            "/var/log/apt/*"
        )
        return ["/bin/sh", "-c", script]

    def to_dict(self) -> dict[str, Any]:
        return {"packages": list(self.packages), "reasons": list(self.reasons)}


def check_debian_package(name: str, where: str = "--system-package") -> str:
    if not isinstance(name, str) or not _DEBIAN_PACKAGE.fullmatch(name):
        raise UsageError(
            f"{name!r} is not a Debian package name",
            where=where,
            fix="give a package name as apt knows it: lower case letters, digits, '+', '-', '.' "
            "(e.g. libgomp1); versions and options are not accepted",
        )
    return name


def plan_os_packages(
    loaded: LoadedModel,
    options: BuildOptions,
    warnings: list[str],
    distributions: tuple[str, ...] = (),
    members: tuple[LoadedModel, ...] = (),
) -> OsPackages:
    """--system-package names, plus a JRE when a flavor needs a JVM (unless --no-java), plus
    the shared libraries the image's ``distributions`` leave to the OS (lightgbm -> libgomp1;
    :mod:`deployer.environment.system_deps`) unless --no-auto-deps."""
    requested = [check_debian_package(name) for name in options.system_packages]
    reasons: list[str] = []
    for need in system_deps.needs(distributions):
        if not options.auto_deps:
            warnings.append(
                f"{need.distribution} needs {need.reason}, which --no-auto-deps leaves out: "
                f"the base image must provide it (else --system-package {need.packages[0]})"
            )
            continue
        new = [p for p in need.packages if p not in requested]
        requested += new
        if new:
            reasons.append(f"{need.describe()} (--no-auto-deps skips it)")
    flavors = {f for m in (*members, loaded) for f in m.mlmodel.flavors}
    jvm = [f for f in JVM_FLAVORS if f in flavors]
    if jvm and options.java:
        if JRE_PACKAGE not in requested:
            requested.append(JRE_PACKAGE)
        reasons.append(
            f"{JRE_PACKAGE}: the {', '.join(jvm)} flavor needs a JVM (--no-java skips it)"
        )
    elif jvm:
        warnings.append(
            f"the {', '.join(jvm)} flavor needs a JVM and --no-java leaves Java out: the base "
            "image must provide `java` on PATH"
        )
    return OsPackages(tuple(sorted(set(requested))), tuple(reasons))


def pip_overrides(options: BuildOptions) -> tuple[str, ...]:
    """--pip-requirements-override FILE lines, then --pip values: requirements only (no pip
    options, no local paths, no credentials in URLs: the image keeps its requirements)."""
    from deployer.environment.requirements import parse_requirement_line, split_file_lines

    sources: list[tuple[str, str]] = []
    if options.pip_override_file is not None:
        path = options.pip_override_file
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(
                f"cannot read the requirements override file: {exc}",
                where=str(path),
                fix="pass a readable requirements file to --pip-requirements-override",
            ) from None
        sources += [(line, f"{path}:{n}") for n, line in enumerate(split_file_lines(text), 1)]
    sources += [(value, "--pip") for value in options.pip]
    out: list[str] = []
    for line, where in sources:
        normalized = parse_requirement_line(line, where=where)
        if normalized is None:
            continue
        if "://" not in normalized and (
            "/" in normalized.split(";")[0] or normalized.endswith((".whl", ".tar.gz"))
        ):
            raise UsageError(
                f"{normalized!r} is a local path",
                where=where,
                fix="give a requirement such as 'pandas==2.2.3' (or a package URL)",
            )
        if has_url_credentials(normalized):
            raise UsageError(
                f"a URL in {where} carries credentials",
                where=where,
                fix="keep credentials in this host's pip configuration or netrc, not in "
                "requirements",
            )
        out.append(normalized)
    return tuple(out)


@dataclass(frozen=True)
class Layer:
    """One step of the image, in order, with the digest of what goes into it."""

    name: str
    description: str
    fingerprint: str = ""


@dataclass(frozen=True)
class ImageModel:
    """One model of a multi-model image: its V2 name, where it came from, its own layer."""

    name: str
    uri: str  # credentials stripped
    path: Path
    digest: str
    flavors: tuple[str, ...] = ()

    @property
    def image_path(self) -> str:
        return f"{MODEL_REPOSITORY}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uri": self.uri,
            "path": str(self.path),
            "digest": self.digest,
            "image_path": self.image_path,
            "flavors": list(self.flavors),
        }


@dataclass(frozen=True)
class BuildPlan:
    model_name: str
    model_uri: str  # credentials stripped
    model_path: Path
    model_digest: str
    target: str
    tag: str
    base_image: str
    env_kind: str
    platform: TargetPlatform
    requirements: ImageRequirements
    runtime: RuntimeFiles
    layers: tuple[Layer, ...]
    labels: tuple[tuple[str, str], ...]
    env: tuple[tuple[str, str], ...]
    user: str
    port: int
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    healthcheck: tuple[str, ...]
    python: str  # interpreter path inside the image
    env_prefix: str  # /opt/venv or /opt/conda-env ("" for env_kind local)
    fingerprint: str
    lock: Lock | None = None
    lock_file: Path | None = None
    wheelhouse: Path | None = None
    conda_lock: Path | None = None
    micromamba_image: str = DEFAULT_MICROMAMBA
    refresh_lock: bool = False
    warnings: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    gpu: bool = False
    os_packages: OsPackages = field(default_factory=lambda: OsPackages(()))
    loader_requirements: tuple[LoaderRequirement, ...] = ()
    auto_added: tuple[str, ...] = ()  # loader requirements added by the static check
    verify: VerifyPlan | None = None  # None: --no-verify
    options: BuildOptions | None = None  # what was asked for (shown in the plan as non-defaults)
    load_mode: LoadMode | None = None  # how the server loads the model (serving.loading)
    grpc_port: int | None = None  # V2 over gRPC (--grpc-port); None: HTTP only
    # multi-model images (-m NAME=DIR ..., --model-repository): each model, in layer order;
    # () for a single-model image (its model at MODEL_DIR)
    models: tuple[ImageModel, ...] = ()

    def with_lock(self, lock: Lock) -> BuildPlan:
        """The plan once dependencies are resolved: lock digest recorded in a label."""
        labels = dict(self.labels)
        labels[f"{LABEL_PREFIX}.lock.digest"] = lock.digest
        if self.env_prefix:  # build_venv.py keeps the lock there: rebuild with `build --lock`
            labels[f"{LABEL_PREFIX}.lock.path"] = f"{self.env_prefix}/deployer-requirements.lock"
        return replace(self, lock=lock, labels=tuple(sorted(labels.items())))

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "options": self.options.to_params() if self.options else {},
            "target": self.target,
            "model": {
                "name": self.model_name,
                "uri": self.model_uri,
                "path": str(self.model_path),
                "digest": self.model_digest,
            },
            "base_image": self.base_image,
            "gpu": self.gpu,
            "os_packages": self.os_packages.to_dict(),
            "env_kind": self.env_kind,
            "platform": self.platform.to_dict(),
            "requirements": self.requirements.to_dict(),
            "lock": None
            if self.lock is None
            else {"digest": self.lock.digest, "packages": len(self.lock.packages)},
            "lock_file": str(self.lock_file) if self.lock_file else None,
            "wheelhouse": str(self.wheelhouse) if self.wheelhouse else None,
            "layers": [
                {"name": x.name, "description": x.description, "fingerprint": x.fingerprint}
                for x in self.layers
            ],
            "labels": dict(self.labels),
            "env": dict(self.env),
            "user": self.user,
            "port": self.port,
            "grpc_port": self.grpc_port,
            "models": [m.to_dict() for m in self.models],
            "entrypoint": list(self.entrypoint),
            "cmd": list(self.cmd),
            "runtime_files": list(self.runtime.files),
            "fingerprint": self.fingerprint,
            "loader_requirements": [r.to_dict() for r in self.loader_requirements],
            "auto_added": list(self.auto_added),
            "verify": self.verify.to_dict() if self.verify else {"skipped": True},
            "load_mode": self.load_mode.to_dict() if self.load_mode else None,
            "warnings": list(self.warnings),
        }


def strip_credentials(uri: str) -> str:
    """``https://user:tok@host/p?sig=...`` -> ``https://host/p``: safe for labels and logs."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def image_name(loaded: LoadedModel) -> str:
    """A repository name for the model: registered name, else the directory name."""
    uri = loaded.uri
    if uri.startswith("models:/"):
        raw = uri[len("models:/") :].split("/")[0].split("@")[0]
    else:
        raw = loaded.path.name
    name = _TAG_CHARS.sub("-", raw.lower()).strip("._-")
    name = re.sub(r"[._-]{2,}", "-", name)
    return name[:100] or "model"


def _python_version(loaded: LoadedModel, options: BuildOptions, warnings: list[str]) -> str:
    raw = options.python_version or loaded.environment.python_version
    if not raw and loaded.mlmodel.pyfunc is not None:
        raw = loaded.mlmodel.pyfunc.python_version
    if not raw:
        raw = "{}.{}".format(*sys.version_info[:2])
        warnings.append(
            f"the model declares no Python version; building for this host's Python {raw}"
        )
    parts = raw.split(".")
    return ".".join(parts[:2])


def _healthcheck(python: str, path: str, port: int) -> tuple[str, ...]:
    code = (
        "import http.client,os,sys;"
        "p=int(os.environ.get('SAGEMAKER_BIND_TO_PORT') or os.environ.get('PORT') or %d);"
        "c=http.client.HTTPConnection('127.0.0.1',p,timeout=4);"
        "c.request('GET',%r);"
        "sys.exit(0 if c.getresponse().status==200 else 1)"
    )
    return (python, "-c", code % (port, path))


def _labels(
    loaded: LoadedModel,
    plan_bits: dict[str, str],
    options: BuildOptions,
    models: tuple[ImageModel, ...] = (),
) -> tuple[tuple[str, str], ...]:
    ml = loaded.mlmodel
    labels: dict[str, str] = {
        "org.opencontainers.image.title": plan_bits["name"],
        "org.opencontainers.image.description": "MLflow model served by deployer",
        "org.opencontainers.image.source": strip_credentials(loaded.uri),
        "org.opencontainers.image.base.name": plan_bits["base"],
        f"{LABEL_PREFIX}.version": __version__,
        f"{LABEL_PREFIX}.target": options.target,
        f"{LABEL_PREFIX}.env-kind": plan_bits["env_kind"],
        f"{LABEL_PREFIX}.python": plan_bits["python"],
        f"{LABEL_PREFIX}.model.digest": plan_bits["digest"],
        f"{LABEL_PREFIX}.model.flavors": ",".join(sorted(ml.flavors)),
        f"{LABEL_PREFIX}.build.fingerprint": plan_bits["fingerprint"],
    }
    if options.gpu:
        labels[f"{LABEL_PREFIX}.gpu"] = "true"
    if options.grpc_port is not None:
        labels[GRPC_PORT_LABEL] = str(options.grpc_port)
    if plan_bits.get("os_packages"):
        labels[f"{LABEL_PREFIX}.os-packages"] = plan_bits["os_packages"]
    if plan_bits.get("lock_source"):  # the model's own lock (uv.lock) pinned its packages
        labels[f"{LABEL_PREFIX}.lock.source"] = plan_bits["lock_source"]
    own = (
        ("model.uuid", ml.model_uuid),
        ("model.run-id", ml.run_id),
        ("model.id", ml.model_id),
        ("mlflow.version", ml.mlflow_version),
    )
    for key, value in own if not models else own[-1:]:  # one model's ids say nothing of a set
        if value:
            labels[f"{LABEL_PREFIX}.{key}"] = str(value)
    if models:
        labels["org.opencontainers.image.description"] = "MLflow models served by deployer"
        labels["org.opencontainers.image.source"] = ", ".join(m.uri for m in models)
        labels[f"{LABEL_PREFIX}.model.flavors"] = ",".join(
            sorted({f for m in models for f in m.flavors})
        )
        labels[MODELS_LABEL] = ",".join(m.name for m in models)
        for m in models:  # names match the server's model-name pattern: valid in a label key
            labels[f"{MODELS_LABEL}.{m.name}.digest"] = m.digest
    for key, value in options.labels:
        check_label_key(key)
        if key.startswith(LABEL_PREFIX + "."):
            raise UsageError(
                f"label {key!r} is reserved for deployer", fix="use your own key prefix"
            )
        labels[key] = value
    for key, value in labels.items():
        check_label_key(key)
        if _CONTROL.search(value):
            raise RenderError(
                f"label {key} has a value with a control character: {value[:60]!r}",
                fix="remove line breaks from the value (flavor names, URIs, options)",
            )
    return tuple(sorted(labels.items()))


def plan_model_set(
    models: Sequence[tuple[str, LoadedModel]], options: BuildOptions | None = None
) -> BuildPlan:
    """Decide one image for several models (``-m NAME=DIR ...``, ``--model-repository``): one
    environment for all (:func:`deployer.environment.shared.shared_environment`; models that
    need different ones are refused with every conflict, before anything is resolved or
    built), each model in its own layer at ``MODEL_REPOSITORY/<name>/``, the server told where
    (DEPLOYER_SERVE_MODEL_REPOSITORY), every model verified. Pure, like :func:`plan_build`."""
    from deployer.environment.shared import shared_environment

    options = options or BuildOptions()
    names = [name for name, _ in models]
    if len(models) < 2:
        raise UsageError(
            "a multi-model image needs at least two models",
            where="-m NAME=DIR / --model-repository",
            fix="give several models, or build one model with -m DIR",
        )
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise UsageError(
            f"model name {duplicate!r} is given twice",
            where="-m NAME=DIR / --model-repository",
            fix="give every model its own name",
        )
    if contract(options.target).server != "deployer":
        raise UsageError(
            f"--target {options.target} runs the platform's own server, which serves one model",
            where="-m NAME=DIR",
            fix="build a multi-model image for --target local or sagemaker (deployer's server)",
        )
    if options.model_config is not None:
        raise UsageError(
            "--model-config overrides one model's config; this image has several models",
            where="--model-config",
            fix="build a model that needs its own config into its own image",
        )
    shared = shared_environment(
        {name: loaded.environment for name, loaded in models}, pip_overrides(options)
    )
    first = models[0][1]
    warnings = tuple(dict.fromkeys(w for _, m in models for w in m.warnings))
    combined = replace(first, environment=shared.spec, warnings=(*warnings, *shared.notes))
    return plan_build(combined, options, members=tuple(models))


def plan_build(
    loaded: LoadedModel,
    options: BuildOptions | None = None,
    *,
    members: tuple[tuple[str, LoadedModel], ...] = (),
) -> BuildPlan:
    """Decide the whole image for ``loaded`` (pure: reads files, changes nothing).
    ``members``: a multi-model image's models (see :func:`plan_model_set`, which passes the
    first one, with their shared environment, as ``loaded``)."""
    options = options or BuildOptions()
    warnings: list[str] = list(loaded.warnings)
    serving = contract(options.target)
    each = tuple(m for _, m in members) or (loaded,)
    if not 0 < options.port < 65536:
        raise UsageError(
            f"port {options.port} is out of range", fix="use a port between 1 and 65535"
        )
    check_grpc_port(options, serving.server)
    env_kind = options.env_kind or loaded.environment.kind
    if env_kind not in ENV_KINDS:
        raise UsageError(
            f"unknown environment kind {env_kind!r}", fix=f"use one of: {', '.join(ENV_KINDS)}"
        )
    platform, lock = _platform_and_lock(loaded, options, warnings)
    reqs, needed, added = _plan_requirements(
        loaded, options, platform, lock, env_kind, warnings, each
    )
    os_packages = plan_os_packages(
        loaded,
        options,
        warnings,
        tuple(loader_deps.distribution_names(reqs.requirements)) if env_kind != "local" else (),
        each,
    )
    base, env_prefix, python = _base_and_interpreter(options, env_kind, platform, warnings)
    env, load_mode = _image_env(loaded, options, reqs, env_kind, members)
    if options.model_config is not None:
        warnings.extend(model_config_warnings(loaded, options.model_config))
    image_models = tuple(
        ImageModel(
            name,
            strip_credentials(m.uri),
            m.path,
            model_digest(m.path),
            tuple(sorted(m.mlmodel.flavors)),
        )
        for name, m in members
    )
    digest = _set_digest(image_models) if members else model_digest(loaded.path)
    for model in each:
        scrubbed = scrubbed_files(model.path)
        if scrubbed:
            warnings.append(
                f"credentials in URLs of {', '.join(scrubbed)} are removed from the image's copy "
                "of the model (they are used on this host only)"
            )
    runtime = runtime_files()
    name = _set_name(image_models) if members else image_name(loaded)
    user = "root" if options.run_as_root else f"{USER_UID}:{USER_UID}"
    fingerprint = _fingerprint(
        digest, runtime, base, env_kind, platform, reqs, lock, options, user, env, os_packages
    )
    tag = _tag(options, name, fingerprint)
    labels = _labels(
        loaded,
        {
            "name": name,
            "base": base,
            "env_kind": env_kind,
            "python": platform.python,
            "digest": digest,
            "fingerprint": fingerprint,
            "os_packages": ",".join(os_packages.packages),
            "lock_source": reqs.lock_source,
        },
        options,
        image_models,
    )
    if not options.verify:  # a verified image gets its io.deployer.verify.* labels after the check
        labels = tuple(sorted({**dict(labels), f"{VERIFY_LABEL}.status": "skipped"}.items()))
    return BuildPlan(
        model_name=name,
        model_uri=strip_credentials(loaded.uri),
        model_path=loaded.path,
        model_digest=digest,
        target=options.target,
        tag=tag,
        base_image=base,
        env_kind=env_kind,
        platform=platform,
        requirements=reqs,
        runtime=runtime,
        layers=_layers(base, os_packages, options, env_kind, platform, lock, reqs, runtime, digest)[
            : None if not members else -1
        ]
        + tuple(
            Layer(f"model {m.name}", f"model files -> {m.image_path}", m.digest)
            for m in image_models
        ),
        labels=labels,
        env=tuple(env.items()),
        user=user,
        port=options.port,
        entrypoint=(f"{env_prefix}/bin/dumb-init", "--") if env_prefix else ("/usr/bin/env",),
        cmd=("serve",),
        healthcheck=_healthcheck(python, serving.health_route, options.port),
        python=python,
        env_prefix=env_prefix,
        fingerprint=fingerprint,
        lock=lock,
        lock_file=options.lock_file,
        wheelhouse=options.wheelhouse,
        conda_lock=options.conda_lock,
        micromamba_image=options.micromamba_image,
        refresh_lock=options.refresh_lock,
        warnings=tuple(dict.fromkeys(warnings)),
        gpu=options.gpu,
        loader_requirements=needed,
        auto_added=added,
        os_packages=os_packages,
        verify=plan_verify(
            dict(members).get(env.get(DEFAULT_MODEL_ENV, ""), loaded),
            options.target,
            options.port,
            dict(env),
            members,
        )
        if options.verify
        else None,
        options=options,
        load_mode=load_mode,
        grpc_port=options.grpc_port,
        models=image_models,
    )


def _set_digest(models: tuple[ImageModel, ...]) -> str:
    """A multi-model image's model digest: every model's name and digest, in order."""
    text = "\n".join(f"{m.name} {m.digest}" for m in models)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _set_name(models: tuple[ImageModel, ...]) -> str:
    """The repository name of a multi-model image: its models' names, joined."""
    raw = "-".join(m.name for m in models)
    name = re.sub(r"[._-]{2,}", "-", _TAG_CHARS.sub("-", raw.lower()).strip("._-"))
    return name[:100].strip("._-") or "models"


def check_grpc_port(options: BuildOptions, server: str) -> None:
    """``--grpc-port``: a port of its own, on a platform whose server is deployer's."""
    port = options.grpc_port
    if port is None:
        return
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UsageError(
            f"gRPC port {port!r} is out of range",
            where="--grpc-port",
            fix=f"use a port between 1 and 65535 (KServe's convention: {KSERVE_GRPC_PORT})",
        )
    if port == options.port:
        raise UsageError(
            f"the gRPC port {port} is the HTTP port too",
            where="--grpc-port",
            fix=f"give gRPC a port of its own (KServe's convention: HTTP {DEFAULT_PORT}, gRPC "
            f"{KSERVE_GRPC_PORT})",
        )
    if server != "deployer":
        raise UsageError(
            f"--target {options.target} runs the platform's own server ({server}), which "
            "serves no gRPC",
            where="--grpc-port",
            fix="drop --grpc-port, or build for a target deployer's own server runs on "
            "(--target local, which Kubernetes and KServe run too)",
        )


def _platform_and_lock(
    loaded: LoadedModel, options: BuildOptions, warnings: list[str]
) -> tuple[TargetPlatform, Lock | None]:
    """The target platform (the model's Python, or the ``--lock`` file's, which must agree)."""
    python_version = _python_version(loaded, options, warnings)
    platform = TargetPlatform.parse(options.platform, python_version, options.glibc)
    lock = read_lock(options.lock_file) if options.lock_file else None
    if lock is not None and lock.platform.python != platform.python:
        raise UsageError(
            f"the lock file is for Python {lock.platform.python}, "
            f"the model needs {platform.python}",
            where=str(options.lock_file),
            fix="re-create it: deployer lock -m MODEL -o FILE",
        )
    return (lock.platform if lock is not None else platform), lock


def _plan_requirements(
    loaded: LoadedModel,
    options: BuildOptions,
    platform: TargetPlatform,
    lock: Lock | None,
    env_kind: str,
    warnings: list[str],
    each: tuple[LoadedModel, ...] = (),
) -> tuple[ImageRequirements, tuple[LoaderRequirement, ...], tuple[str, ...]]:
    """The image's requirements, with what the flavor's loader needs added (or refused), for
    every model of ``each`` (default: ``loaded``; a multi-model image's models share
    ``loaded.environment``)."""
    env_spec = loaded.environment
    overrides = pip_overrides(options)
    server = contract(options.target).server_requirements
    model_reqs, index_options, lock_source = env_spec.pip_requirements, env_spec.index_options, ""
    if env_spec.uv_lock is not None and env_kind == "virtualenv":
        model_reqs, index_options = _uv_locked_requirements(loaded, platform, warnings)
        lock_source = env_spec.uv_lock.relpath

    def requirements(extra: tuple[str, ...]) -> ImageRequirements:
        return image_requirements(
            model_reqs,
            python_version=platform.python,
            mlflow_version=loaded.mlmodel.mlflow_version,
            constraints=env_spec.constraints,
            index_options=index_options,
            server_requirements=server,
            keep_full_mlflow=options.keep_full_mlflow,
            parquet=options.parquet,
            extra_requirements=extra,
            overrides=overrides,
            gpu=options.gpu,
            where=str(loaded.path),
            lock_source=lock_source,
            grpc=options.grpc_port is not None,
        )

    reqs = requirements(options.extra_requirements)
    warnings += reqs.warnings
    needed: tuple[LoaderRequirement, ...] = ()
    added: tuple[str, ...] = ()
    for model in each or (loaded,):
        loader_deps.check_model_files(model.path, model.mlmodel)
        # the shared environment's requirements, checked against this model's loader
        shared = replace(model, environment=loaded.environment)
        more_needed, more_added = check_loader_requirements(
            shared, reqs, lock, env_kind, options, warnings
        )
        needed = tuple(dict.fromkeys((*needed, *more_needed)))
        added = tuple(dict.fromkeys((*added, *more_added)))
    if added:
        reqs = requirements((*options.extra_requirements, *added))
    return reqs, needed, added


def _uv_locked_requirements(
    loaded: LoadedModel, platform: TargetPlatform, warnings: list[str]
) -> tuple[tuple[str, ...], IndexOptions]:
    """The model's uv.lock as its requirement set for ``platform``: every package pinned with
    all its recorded hashes (the resolver checks the downloaded wheel against them), plus the
    mlflow requirement MLflow wrote when the project locks no mlflow; uv.lock's own indexes are
    added to the model's index options."""
    env_spec = loaded.environment
    assert env_spec.uv_lock is not None
    declared = env_spec.python_version or ""
    python = declared if declared.startswith(platform.python + ".") else platform.python
    selection = env_spec.uv_lock.select(python, machine=platform.arch)
    warnings += [f"{env_spec.uv_lock.relpath}: {n}" for n in selection.notes]
    lines = (*selection.requirements, *selection.unlocked_mlflow(env_spec.pip_requirements))
    opts = env_spec.index_options
    extra = tuple(dict.fromkeys([*opts.extra_index_urls, *selection.index_urls]))
    return lines, replace(opts, extra_index_urls=extra)


def _base_and_interpreter(
    options: BuildOptions, env_kind: str, platform: TargetPlatform, warnings: list[str]
) -> tuple[str, str, str]:
    """(base image, environment prefix, the interpreter the image runs)."""
    slim = DEFAULT_GPU_BASE if options.gpu else f"python:{platform.python}-slim"
    if env_kind == "conda":
        base = options.base_image or (DEFAULT_GPU_BASE if options.gpu else DEFAULT_CONDA_BASE)
        env_prefix, python = CONDA_PREFIX, f"{CONDA_PREFIX}/bin/python"
    elif env_kind == "local":
        base, env_prefix, python = options.base_image or slim, "", "python3"
        warnings.append(
            "env kind 'local': nothing is installed; the base image must already have "
            "the model's packages and deployer's serving runtime"
        )
    else:
        base, env_prefix, python = options.base_image or slim, VENV_DIR, f"{VENV_DIR}/bin/python"
    check_image_ref(base, "base image")
    check_image_ref(options.micromamba_image, "micromamba image")
    return base, env_prefix, python


def model_config_warnings(loaded: LoadedModel, config_json: str) -> list[str]:
    """What MLflow will ignore of ``--model-config``: keys the model did not save in its pyfunc
    config (MLflow overrides only those, and logs a warning at load)."""
    import json

    saved = (loaded.mlmodel.flavors.get("python_function") or {}).get("config")
    ignored = ignored_keys(json.loads(config_json), saved if isinstance(saved, dict) else None)
    if not ignored:
        return []
    return [
        f"--model-config keys {', '.join(ignored)} are not in the model's saved config "
        f"({', '.join(sorted(saved or {})) or 'none'}): MLflow's load_model ignores them; log "
        "the model with model_config= holding those keys"
    ]


def _image_env(
    loaded: LoadedModel,
    options: BuildOptions,
    reqs: ImageRequirements,
    env_kind: str,
    members: tuple[tuple[str, LoadedModel], ...] = (),
) -> tuple[dict[str, str], LoadMode]:
    """The image's environment variables (the load mode decided here; ``--env`` wins)."""
    env: dict[str, str] = {
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": RUNTIME_DIR,
        "DEPLOYER_TARGET": options.target,
    }
    if members:  # the server serves every subdirectory of the repository, named after it
        env[MODEL_REPOSITORY_ENV] = MODEL_REPOSITORY
        names = [name for name, _ in members]
        env[DEFAULT_MODEL_ENV] = dict(options.env).get(DEFAULT_MODEL_ENV, names[0])
        if env[DEFAULT_MODEL_ENV] not in names:
            raise UsageError(
                f"--env {DEFAULT_MODEL_ENV}={env[DEFAULT_MODEL_ENV]} is not one of the image's "
                "models",
                where="--env",
                fix=f"name one of: {', '.join(names)}",
            )
        for key in (MODEL_REPOSITORY_ENV, "DEPLOYER_SERVE_MODELS", "DEPLOYER_SERVE_MODEL_DIR"):
            if key in dict(options.env):
                raise UsageError(
                    f"--env {key} would change which models a multi-model image serves",
                    where="--env",
                    fix=f"drop --env {key}: the image serves the models it was built with",
                )
    else:
        env["DEPLOYER_MODEL_DIR"] = MODEL_DIR
    each = tuple(m for _, m in members) or (loaded,)
    if any(f in m.mlmodel.flavors for m in each for f in SPARK_FLAVORS):
        # The loader starts a local Spark session, which resolves the container's hostname
        # unless told its address: without a network (verification, SageMaker network
        # isolation) that lookup fails and the JVM exits. --env SPARK_LOCAL_IP=... overrides.
        env["SPARK_LOCAL_IP"] = "127.0.0.1"
    load_mode = _set_load_mode(
        [
            (name, plan_load_mode(m, reqs, dict(options.env), env_kind))
            for name, m in (members or (("", loaded),))
        ]
    )
    if load_mode.certain:
        env[LOAD_MODE_ENV] = (
            load_mode.mode
        )  # undecided: the server decides and checks after loading
    for key, value in options.env:
        k, v = check_env_var(key, value)
        env[k] = v
    given = dict(options.env)
    for flag, what, var, value in (
        ("--model-config", "the model config", MODEL_CONFIG_ENV, options.model_config),
        ("--grpc-port", "the gRPC port", GRPC_PORT_ENV, options.grpc_port),
    ):
        if value is None:
            continue
        if var in given:  # an option baked as a variable: given once, by its flag
            raise UsageError(
                f"{what} is given twice: {flag} and --env {var}",
                where=flag,
                fix=f"drop --env {var}=...",
            )
        env[var] = str(value)
    return env, load_mode


def _fingerprint(
    digest: str,
    runtime: RuntimeFiles,
    base: str,
    env_kind: str,
    platform: TargetPlatform,
    reqs: ImageRequirements,
    lock: Lock | None,
    options: BuildOptions,
    user: str,
    env: Mapping[str, str],
    os_packages: OsPackages,
) -> str:
    """sha256 of everything that makes the image what it is (the tag is derived from it)."""
    source = repr(
        (
            __version__,
            digest,
            runtime.digest,
            base,
            env_kind,
            platform.to_dict(),
            reqs.to_dict(),
            lock.digest if lock else None,
            options.target,
            user,
            sorted(env.items()),
            options.port,
            options.labels,
            options.micromamba_image,
            options.gpu,
            os_packages.packages,
            options.grpc_port,
        )
    )
    return "sha256:" + hashlib.sha256(source.encode()).hexdigest()


def _tag(options: BuildOptions, name: str, fingerprint: str) -> str:
    tag = options.tag or f"{name}:{fingerprint[7:19]}"
    check_image_ref(tag, "image tag")
    if "@" in tag:
        raise UsageError(
            f"image tag {tag!r} contains a digest", fix="give a name[:tag] without @sha256"
        )
    return tag


def _layers(
    base: str,
    os_packages: OsPackages,
    options: BuildOptions,
    env_kind: str,
    platform: TargetPlatform,
    lock: Lock | None,
    reqs: ImageRequirements,
    runtime: RuntimeFiles,
    digest: str,
) -> tuple[Layer, ...]:
    """The image's layers in order, each with the digest of what goes into it."""
    env_desc = {
        "virtualenv": f"Python {platform.python} virtualenv, installed offline from locked wheels",
        "conda": "conda environment from the conda lock (micromamba, offline)",
        "local": "none: the base image's Python is used as is",
    }[env_kind]
    deps_fp = (
        lock.digest
        if lock
        else "sha256:" + hashlib.sha256(repr(reqs.to_dict()).encode()).hexdigest()
    )
    os_layer = (
        ()
        if not os_packages
        else (
            Layer(
                "os",
                "apt: "
                + ", ".join(os_packages.packages)
                + "".join(f" ({why})" for why in os_packages.reasons)
                + "; apt lists removed in the same layer",
                "sha256:" + hashlib.sha256(" ".join(os_packages.packages).encode()).hexdigest(),
            ),
        )
    )
    return (
        Layer("base", f"FROM {base}"),
        *os_layer,
        Layer(
            "user",
            "non-root user (uid 1000)"
            if not options.run_as_root
            else "runs as root (--run-as-root)",
        ),
        Layer("environment", env_desc, deps_fp if env_kind != "local" else ""),
        Layer(
            "runtime",
            f"deployer {__version__} serving runtime ({len(runtime.files)} files, byte-compiled)",
            runtime.digest,
        ),
        Layer("model", f"model files -> {MODEL_DIR}", digest),
    )


def _set_load_mode(modes: list[tuple[str, LoadMode]]) -> LoadMode:
    """One load mode for every model of an image: per-worker when any model needs it (a
    library that does not survive fork hangs whatever else was preloaded with it), preload
    when every model is certain of it, else undecided (the server checks after loading)."""
    if len(modes) == 1:
        return modes[0][1]
    for name, mode in modes:
        if mode.certain and mode.mode != loading.PRELOAD:
            return replace(mode, reason=f"model {name}: {mode.reason}")
    for name, mode in modes:
        if not mode.certain:
            return replace(mode, reason=f"model {name}: {mode.reason}")
    return replace(modes[0][1], reason="every model: " + modes[0][1].reason)


def plan_load_mode(
    loaded: LoadedModel, reqs: ImageRequirements, env: Mapping[str, str], env_kind: str
) -> LoadMode:
    """How the image's server will load the model: :func:`deployer.serving.loading.decide` on
    the loader, the image's requirements and what the model's files import; an explicit
    ``--env DEPLOYER_SERVE_LOAD_MODE=...`` wins."""
    requested = env.get(LOAD_MODE_ENV, loading.AUTO)
    if requested not in loading.MODES:
        raise UsageError(
            f"{LOAD_MODE_ENV}={requested!r} is not a load mode",
            where="--env",
            fix=f"use one of: {', '.join(loading.MODES)}",
        )
    pyfunc = loaded.mlmodel.pyfunc
    names = loader_deps.distribution_names(reqs.requirements) if env_kind != "local" else ()
    return loading.decide(
        pyfunc.loader_module if pyfunc else None, names, referenced_modules(loaded.path), requested
    )


def check_loader_requirements(
    loaded: LoadedModel,
    reqs: ImageRequirements,
    lock: Lock | None,
    env_kind: str,
    options: BuildOptions,
    warnings: list[str],
) -> tuple[tuple[LoaderRequirement, ...], tuple[str, ...]]:
    """Static check: does the image get what the flavor's loader imports? (pure)

    Compared with the image's requirements (plus conda packages), or with every package of a
    ``--lock`` file. A missing one is added (unpinned: the lock decides its version) with a
    warning naming the MLmodel field, unless ``auto_deps`` is off or a ``--lock`` fixes the
    set: then it is an error. Returns (what the loader needs, what was added).
    """
    needed = loader_deps.loader_requirements(loaded.mlmodel)  # (a JVM: plan_os_packages adds a JRE)
    if env_kind == "local" or not needed:
        return needed, ()
    if lock is not None:
        have = loader_deps.distribution_names(p.name for p in lock.packages)
    else:
        have = loader_deps.distribution_names(
            (*reqs.requirements, *loaded.environment.conda_packages)
        )
    absent = loader_deps.missing(needed, have)
    if not absent:
        return needed, ()
    listed = ", ".join(loader_deps.describe(r) for r in absent)
    names = " ".join(r.package for r in absent)
    source = loaded.environment.source
    if lock is not None:
        raise EnvironmentSpecError(
            f"the lock file has no {listed}: the image could not load the model",
            where=str(options.lock_file),
            fix=f"add {names} to the model's requirements ({source}) and run `deployer lock` again",
        )
    if not options.auto_deps:
        raise EnvironmentSpecError(
            f"the model's requirements ({source}) do not list {listed}: the image could not load "
            "the model",
            where=str(loaded.path / "MLmodel"),
            fix=f"add {names} to the model's requirements ({source}; or pip_requirements= / "
            "extra_pip_requirements= when saving with mlflow), or drop --no-auto-deps to let "
            "deployer add it",
        )
    for req in absent:
        warnings.append(
            f"{req.field} needs '{req.package}', which the model's requirements ({source}) do not "
            f"list: added requirement '{req.package}' (version pinned by the lock)"
        )
    return needed, tuple(r.package for r in absent)
