"""What Python packages go into an image: the model's requirements, adjusted, plus the runtime.

Adjustments, each for a reason:

* ``mlflow==X`` -> ``mlflow-skinny==X``. Scoring only loads the model through pyfunc; full
  ``mlflow`` adds the tracking server, UI, SQL and plotting stacks (~350 MB) that nothing in
  the container uses. Opt out with ``keep_full_mlflow`` when model code relies on them.
* A model that names no mlflow at all gets ``mlflow-skinny==<MLmodel's mlflow_version>``.
* python_env.yaml's ``build_dependencies`` (pip, setuptools, wheel) are dropped: they are
  tools for building sdists, and deployer installs wheels only.
* deployer's serving runtime (the ``serve`` extra of deployer's own metadata, so there is one
  source of truth), ``dumb-init`` (PID 1 as a wheel, so air-gapped builds need no apt), and
  the platform's own server when its serving contract names one (Azure ML:
  ``azureml-inference-server-http``; :mod:`deployer.building.contracts`) are added.
* ``--pip REQ`` and ``--pip-requirements-override FILE`` (``overrides``), with MLflow's
  semantics: a requirement naming a package the model lists replaces the model's line, the
  others are added.
* Two builds of one package (``xgboost`` + ``xgboost-cpu``, ``tensorflow`` + ``tensorflow-cpu``,
  the OpenCV wheels), which MLflow lists together and pip would install over each other, are
  reduced to one (:mod:`deployer.environment.variants`): the CPU build, or the GPU one with
  ``gpu=True``; a ``--pip`` choice wins. Each drop is a note and a warning.
* A model saved from a uv project brings its ``uv.lock``: its packages come in as pins with
  hashes (``lock_source``, :mod:`deployer.environment.uv_lock`); an mlflow pinned with hashes
  is kept as it is (swapping it would change the model's locked set).
* pyarrow, in the ``serve`` extra for Parquet request bodies, is ~160 MB installed (more than
  the rest of the runtime and mlflow-skinny together) and is left out unless ``parquet=True``
  (``--parquet``) or the model itself needs it; the server then answers Parquet requests with
  a 415 that says how to get them.
* ``grpc=True`` (``--grpc-port``) adds the ``grpc`` extra of deployer's metadata (grpcio,
  protobuf); images without it carry no gRPC runtime.

Everything here is pure: no network, no files written.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from deployer.environment import variants
from deployer.environment.lock import marker_environment
from deployer.environment.requirements import parse_requirement_line
from deployer.environment.spec import IndexOptions
from deployer.errors import EnvironmentSpecError
from deployer.redact import redact_text

#: Used only when deployer's own metadata is unavailable (e.g. running from a bare checkout).
SERVE_FALLBACK = (
    "mlflow-skinny>=2.9",
    "pandas>=1.5",
    "uvicorn>=0.30",
    "httptools>=0.6",
    "uvloop>=0.19",
    "orjson>=3.9",
    "prometheus-client>=0.20",
    "pyarrow>=14",
)
#: The same for the ``grpc`` extra (an install made before the extra existed lacks it too).
GRPC_FALLBACK = ("grpcio>=1.85.4", "protobuf>=7.35.1,<8")
_FALLBACKS = {"serve": SERVE_FALLBACK, "grpc": GRPC_FALLBACK}
PID1_REQUIREMENT = "dumb-init>=1.2"
#: Build-stage-only tools: resolved into the lock's build tools, never installed in the image.
BUILD_TOOLS = ("uv>=0.4",)
_DROPPED = {"pip", "setuptools", "wheel"}


@dataclass(frozen=True)
class ImageRequirements:
    """The requirement set to lock, with where each adjustment came from (for --dry-run)."""

    python_version: str
    requirements: tuple[str, ...]
    constraints: tuple[str, ...] = ()
    index_options: IndexOptions = field(default_factory=IndexOptions)
    build_tools: tuple[str, ...] = BUILD_TOOLS
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # for the user (also in notes); not part of to_dict
    #: requirements the image itself runs whatever the model says (serving runtime, mlflow,
    #: --pip choices, loader additions): never reported as unused. Not part of to_dict.
    runtime: tuple[str, ...] = ()
    #: where the model's pins come from: "uv.lock" (the model's own lock, versions and hashes),
    #: or "" (resolved from its requirements)
    lock_source: str = ""

    def to_dict(self) -> dict[str, object]:
        source = {"lock_source": self.lock_source} if self.lock_source else {}
        return {
            "python_version": self.python_version,
            **source,
            "requirements": [redact_text(r) for r in self.requirements],
            "constraints": [redact_text(c) for c in self.constraints],
            "index_options": self.index_options.to_dict(redact=True),
            "build_tools": list(self.build_tools),
            "notes": list(self.notes),
        }


def serving_requirements(python_version: str, extra: str = "serve") -> tuple[str, ...]:
    """deployer's ``[serve]`` extra, markers evaluated for a Linux CPython ``python_version``."""
    try:
        declared = importlib.metadata.requires("deployer") or []
    except importlib.metadata.PackageNotFoundError:
        declared = []
    env = marker_environment(python_version)
    out: list[str] = []
    for line in declared:
        req = Requirement(line)
        if req.marker is None or not req.marker.evaluate({**env, "extra": extra}):
            continue
        if req.marker.evaluate({**env, "extra": ""}):
            continue  # a base dependency of deployer (the CLI), not part of the extra
        req.marker = None
        out.append(str(req))
    return tuple(out) or _FALLBACKS[extra]


def _name(line: str) -> str | None:
    try:
        return canonicalize_name(Requirement(line.split(" --hash", 1)[0]).name)
    except InvalidRequirement:
        return None  # a direct URL or local archive: its name is only known after download


def image_requirements(
    model_requirements: tuple[str, ...],
    *,
    python_version: str,
    mlflow_version: str | None,
    constraints: tuple[str, ...] = (),
    index_options: IndexOptions | None = None,
    server_requirements: tuple[str, ...] = (),
    keep_full_mlflow: bool = False,
    parquet: bool = False,
    extra_requirements: tuple[str, ...] = (),
    overrides: tuple[str, ...] = (),
    gpu: bool = False,
    where: str = "model requirements",
    lock_source: str = "",
    grpc: bool = False,
) -> ImageRequirements:
    """Combine the model's requirements with what the image itself needs (see module doc)."""
    notes: list[str] = []
    if lock_source:
        notes.append(
            f"the model's packages are pinned by its {lock_source} (exact versions and sha256 "
            "hashes); deployer's additions are resolved around those pins"
        )
    out: list[str] = []
    names: set[str] = set()
    override_by_name = {_name(line): line for line in overrides}
    own = [(line, where, False) for line in (*model_requirements, *extra_requirements)]
    given = [(line, "--pip / --pip-requirements-override", True) for line in overrides]
    for line, source, is_override in [*own, *given]:
        normalized = parse_requirement_line(line, where=source)
        if normalized is None:
            continue
        name = _name(normalized)
        if not is_override and name is not None and name in override_by_name:
            notes.append(
                f"replaced {normalized!r} with {override_by_name[name]!r} (--pip / "
                "--pip-requirements-override)"
            )
            continue
        if name in _DROPPED:
            notes.append(
                f"dropped build tool requirement {normalized!r} (wheels need no build tools)"
            )
            continue
        if name == "mlflow" and not keep_full_mlflow:
            req = Requirement(normalized.split(" --hash", 1)[0])
            if " --hash=" in normalized:
                notes.append(
                    f"kept {req}: pinned with hashes by the model's lock (its dependencies are "
                    "locked with it)"
                )
            elif req.extras:
                notes.append(f"kept {normalized!r}: mlflow extras need the full package")
            else:
                req.name = "mlflow-skinny"
                skinny = str(req)
                notes.append(
                    f"replaced {normalized!r} with {skinny!r} (scoring needs only pyfunc loading; "
                    "--keep-full-mlflow keeps it)"
                )
                normalized, name = skinny, "mlflow-skinny"
        if name:
            names.add(name)
        if normalized not in out:
            out.append(normalized)
    kept, dropped = variants.resolve(out, gpu=gpu, prefer=[n for n in override_by_name if n])
    warnings = [d.describe() for d in dropped]
    notes += warnings
    out = list(kept)
    if not names & {"mlflow", "mlflow-skinny"}:
        pin = f"mlflow-skinny=={mlflow_version}" if mlflow_version else "mlflow-skinny"
        notes.append(f"added {pin!r}: the model's requirements name no mlflow package")
        out.append(pin)
        names.add("mlflow-skinny")
    added = [*serving_requirements(python_version), PID1_REQUIREMENT, *server_requirements]
    if grpc:  # --grpc-port: deployer's ``grpc`` extra (grpcio, protobuf), only then
        grpc_lines = serving_requirements(python_version, "grpc")
        added += grpc_lines
        notes.append(
            f"added deployer's grpc extra ({', '.join(grpc_lines)}): --grpc-port serves V2 over "
            "gRPC"
        )
    for line in added:
        name = _name(line)
        if name in names:
            continue  # the model's own pin wins; the resolver checks it is compatible
        if name == "pyarrow" and not parquet:
            notes.append(
                "left out pyarrow: the image answers JSON and CSV requests (--parquet adds "
                "Parquet support, ~160 MB)"
            )
            continue
        out.append(line)
        if name:
            names.add(name)
    for line in constraints:
        if parse_requirement_line(line, where=f"{where} (constraints)") is None:
            continue
    if not python_version:
        raise EnvironmentSpecError(
            "no Python version to build for",
            where=where,
            fix="declare python in python_env.yaml or pass --python",
        )
    return ImageRequirements(
        python_version=python_version,
        requirements=tuple(out),
        constraints=tuple(c for c in constraints if c.strip()),
        index_options=index_options or IndexOptions(),
        notes=tuple(notes),
        warnings=tuple(warnings),
        runtime=(*added, "mlflow-skinny", "mlflow", *overrides, *extra_requirements),
        lock_source=lock_source,
    )
