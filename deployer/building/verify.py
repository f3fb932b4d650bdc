"""Prove a built image before it is tagged or pushed: run it once, offline, and score it.

Planning (:func:`plan_verify`, pure) picks the routes of the image's serving contract
(:mod:`deployer.building.contracts`: ``/ping`` + ``/invocations``, Azure's ``/`` + ``/score``)
and the request body:
the model's saved ``serving_input_example.json``, else a one-row payload generated from the
signature, else none (health check only).

Execution (:func:`verify_image`) starts the image with its own entrypoint and ``serve``
command, as SageMaker and :class:`~deployer.targets.local.LocalTarget` do, but with
``--network none``: no port is published, so the probe runs *inside* the container with the
image's own Python (stdlib only, like the image's HEALTHCHECK) and reports back on stdout.
It waits for the health route, POSTs the body, and the check passes on a 200 with a
well-formed JSON body. Anything else is a :class:`BuildError` carrying the container's last
log lines and the likely fix (``No module named 'X'`` -> which requirement to add, where).
The container is always removed.

The outcome is recorded in image labels (``io.deployer.verify.*``: status, route, HTTP
status, sha256 of the body sent). Labels can only be set at build time, so the build goes to
a staging tag, is verified, and :func:`label_image` then runs a LABEL-only build FROM it (no
new layer) that gets the requested tag. ``--no-verify`` builds record ``status=skipped``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployer.building.contracts import contract
from deployer.errors import BuildError
from deployer.redact import redact_text

if TYPE_CHECKING:
    from deployer.building.engine import BuildEngine
    from deployer.building.plan import BuildPlan
    from deployer.intake import LoadedModel
    from deployer.model.signature import Signature

log = logging.getLogger("deployer")

LABEL = "io.deployer.verify"
STAGING_REPO = "deployer-unverified"
SERVING_EXAMPLE = "serving_input_example.json"
VERIFY_TIMEOUT = 300.0
#: Verification always runs at least this many workers, whatever the build host's CPUs.
MIN_WORKERS = 2
_PAYLOAD_PATH = "/tmp/deployer-verify-payload.json"
_LOG_TAIL = 30
#: How far back the log is searched for the exception that stopped the model.
_LOG_SCAN = 2000
#: A Python exception's last line ("ValueError: ...", "mlflow.exceptions.MlflowException: ...").
_EXCEPTION_LINE = re.compile(
    r"^\s*(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)\b:? "
)
_MAX_PAYLOAD = 8 << 20
#: The header that names the model of a multi-model image on /invocations (the server's
#: deployer.serving.app.TARGET_HEADERS; tests/building/test_model_set_images.py checks it).
TARGET_MODEL_HEADER = "X-Deployer-Target-Model"
#: The V2 name of a single-model image's model: its directory's (/opt/ml/model) unless the
#: image sets DEPLOYER_SERVE_MODEL_NAME.
DEFAULT_MODEL_NAME = "model"

# The probe runs inside the image (its own Python, stdlib only). argv: port health score
# content-type payload-path timeout [header value]. Prints one JSON line: ready seconds,
# status, body. The optional header names the model of a multi-model image.
PROBE = r"""
import http.client, json, sys, time
port, health, score, ctype, path, timeout = sys.argv[1:7]
extra = {sys.argv[7]: sys.argv[8]} if len(sys.argv) > 8 else {}
t0 = time.monotonic(); deadline = t0 + float(timeout); out = {"ready": None}
while time.monotonic() < deadline:
    try:
        c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
        c.request("GET", health); r = c.getresponse(); r.read(); c.close()
        if r.status == 200:
            out["ready"] = time.monotonic() - t0; break
        out["health_status"] = r.status
    except OSError:
        pass
    time.sleep(0.05)
if out["ready"] is not None and score:
    with open(path, "rb") as fh:
        body = fh.read()
    t1 = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=float(timeout))
        c.request("POST", score, body=body, headers={"Content-Type": ctype, **extra})
        r = c.getresponse()
        out["status"] = r.status; out["body"] = r.read(65536).decode("utf-8", "replace")
    except OSError as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    out["score_seconds"] = time.monotonic() - t1
print(json.dumps(out))
"""

# The gRPC probe (``--grpc-port``), run inside the image after the HTTP check passed: the
# image's own grpcio and deployer's generated V2 stubs (on the image's PYTHONPATH). argv: port
# timeout model-names... For each model: ModelReady, ModelMetadata, then ModelInfer with one
# sample element per input the metadata lists (variable dimensions as 1); a model whose
# metadata lists no inputs (no signature) is checked up to its metadata. Prints one JSON line.
GRPC_PROBE = r"""
import json, math, sys, time
import grpc
from deployer.serving.grpc import grpc_predict_v2_pb2 as pb
from deployer.serving.grpc import grpc_predict_v2_pb2_grpc as pbg
port, timeout, names = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
SAMPLE = {"BOOL": ("bool_contents", False), "INT8": ("int_contents", 0),
          "INT16": ("int_contents", 0), "INT32": ("int_contents", 0),
          "INT64": ("int64_contents", 0), "UINT8": ("uint_contents", 0),
          "UINT16": ("uint_contents", 0), "UINT32": ("uint_contents", 0),
          "UINT64": ("uint64_contents", 0), "FP16": ("fp32_contents", 0.0),
          "FP32": ("fp32_contents", 0.0), "FP64": ("fp64_contents", 0.0),
          "BYTES": ("bytes_contents", b"a")}
stub = pbg.GRPCInferenceServiceStub(grpc.insecure_channel("127.0.0.1:" + port))
out = {"ready": False, "models": {}}
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        if stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready:
            out["ready"] = True; break
    except grpc.RpcError as e:
        out["error"] = "ServerReady: %s: %s" % (e.code().name, e.details())
    time.sleep(0.1)
for name in names if out["ready"] else ():
    step, m = "ModelReady", {}
    try:
        if not stub.ModelReady(pb.ModelReadyRequest(name=name), timeout=timeout).ready:
            m["error"] = "ModelReady: not ready"; out["models"][name] = m; continue
        step = "ModelMetadata"
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=name), timeout=timeout)
        request = pb.ModelInferRequest(model_name=name)
        for t in meta.inputs:
            shape = [d if d > 0 else 1 for d in t.shape] or [1]
            field, value = SAMPLE.get(t.datatype, SAMPLE["BYTES"])
            tensor = request.inputs.add(name=t.name, datatype=t.datatype, shape=shape)
            getattr(tensor.contents, field).extend([value] * math.prod(shape))
        if meta.inputs:
            step = "ModelInfer"
            answer = stub.ModelInfer(request, timeout=timeout)
            m["outputs"] = [o.name for o in answer.outputs]
        m["checked"] = step
    except grpc.RpcError as e:
        m["error"] = "%s: %s: %s" % (step, e.code().name, e.details())
    out["models"][name] = m
print(json.dumps(out))
"""

# import name -> distribution, for the fix of a ModuleNotFoundError
_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "skops": "skops",
    "cv2": "opencv-python-headless",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "cloudpickle": "cloudpickle",
    "google.protobuf": "protobuf",
    "bs4": "beautifulsoup4",
    "paddle": "paddlepaddle",
    "llama_index": "llama-index",
    "sentence_transformers": "sentence-transformers",
    "dateutil": "python-dateutil",
    "attr": "attrs",
}
_NO_MODULE = re.compile(r"No module named '([A-Za-z0-9_.]+)'")


@dataclass(frozen=True)
class ModelCheck:
    """One model of a multi-model image: wait for ``GET /v2/models/NAME/ready``, then POST
    its payload to the score route with ``X-Deployer-Target-Model: NAME``."""

    name: str
    score_route: str | None  # None: readiness only (no example, no signature)
    payload: bytes = b""
    payload_source: str = "none"

    @property
    def health_route(self) -> str:
        return f"/v2/models/{self.name}/ready"

    @property
    def payload_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.payload).hexdigest() if self.score_route else ""

    def describe(self) -> str:
        if not self.score_route:
            return f"{self.name}: GET {self.health_route} (no input example, no signature)"
        return f"{self.name}: POST {self.score_route} with {self.payload_source}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "health_route": self.health_route,
            "score_route": self.score_route,
            "payload_source": self.payload_source,
            "payload_digest": self.payload_digest,
        }


@dataclass(frozen=True)
class VerifyPlan:
    """What verification will do (pure; printed by --dry-run)."""

    health_route: str
    score_route: str | None  # None: health check only (no example, no signature)
    payload: bytes = b""
    payload_source: str = "none"  # serving_input_example.json | the signature | none
    content_type: str = "application/json"
    port: int = 8080
    timeout: float = VERIFY_TIMEOUT
    workers: int = MIN_WORKERS  # worker processes the check runs (>= 2: forking is exercised)
    load_mode: str = "auto"  # what the image's server is told (DEPLOYER_SERVE_LOAD_MODE)
    request_timeout: float = 60.0  # the server's own per-request limit (504 after it)
    grpc_port: int | None = None  # --grpc-port: the gRPC probe runs too (GRPC_PROBE)
    grpc_models: tuple[str, ...] = ()  # the V2 model names it asks for
    # multi-model images: one check per model (its V2 readiness, then its payload on the score
    # route with TARGET_MODEL_HEADER), run after this plan's own; () for one model
    models: tuple[ModelCheck, ...] = ()

    def describe_grpc(self) -> str:
        if self.grpc_port is None:
            return ""
        return (
            f"gRPC :{self.grpc_port}: ServerReady, then ModelReady, ModelMetadata and ModelInfer "
            f"(one sample row from the V2 metadata) for {', '.join(self.grpc_models)}"
        )

    @property
    def payload_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.payload).hexdigest() if self.score_route else ""

    def describe(self) -> str:
        run = f"run offline (--network none) with {self.workers} workers"
        grpc = f"; {self.describe_grpc()}" if self.grpc_port is not None else ""
        if self.models:
            each = "; ".join(m.describe() for m in self.models)
            return (
                f"{run}, wait for GET {self.health_route}, then every model ({each}, header "
                f"{TARGET_MODEL_HEADER}); expect 200 and a JSON body each{grpc}"
            )
        if not self.score_route:
            return f"{run}, wait for GET {self.health_route} (no input example, no signature){grpc}"
        return (
            f"{run}, wait for GET {self.health_route}, POST {self.score_route} "
            f"with {self.payload_source} ({len(self.payload)} bytes); expect 200 and a JSON body"
            f"{grpc}"
        )

    def environment(self) -> dict[str, str]:
        """What the verification container gets on top of the image's own environment: the
        worker count, for deployer's server and for azmlinfsrv (Azure's images)."""
        return {"DEPLOYER_SERVE_WORKERS": str(self.workers), "WORKER_COUNT": str(self.workers)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "health_route": self.health_route,
            "score_route": self.score_route,
            "payload_source": self.payload_source,
            "payload_digest": self.payload_digest,
            "payload_bytes": len(self.payload),
            "network": "none",
            "timeout": self.timeout,
            "workers": self.workers,
            "grpc": None
            if self.grpc_port is None
            else {"port": self.grpc_port, "models": list(self.grpc_models)},
            "models": [m.to_dict() for m in self.models],
        }


@dataclass(frozen=True)
class VerifyResult:
    status: str  # "passed" | "skipped"
    route: str = ""
    http_status: int | None = None
    payload_digest: str = ""
    payload_source: str = ""
    cold_start: float | None = None  # container start -> first 200 on the health route
    seconds: float = 0.0  # the whole check: start, wait, score, remove
    grpc: str = ""  # what the gRPC probe proved ("" without --grpc-port)
    models: str = ""  # multi-model images: each model and the status it answered

    def labels(self) -> tuple[tuple[str, str], ...]:
        """Deterministic (no timings): the same content verified twice gets the same labels."""
        out = {f"{LABEL}.status": self.status}
        if self.status == "passed":
            out[f"{LABEL}.route"] = self.route
            if self.http_status is not None:
                out[f"{LABEL}.http-status"] = str(self.http_status)
            if self.payload_digest:
                out[f"{LABEL}.payload"] = f"{self.payload_source} {self.payload_digest}"
            if self.grpc:
                out[f"{LABEL}.grpc"] = self.grpc
            if self.models:
                out[f"{LABEL}.models"] = self.models
        return tuple(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "route": self.route,
            "http_status": self.http_status,
            "payload_digest": self.payload_digest,
            "payload_source": self.payload_source,
            "cold_start": None if self.cold_start is None else round(self.cold_start, 2),
            "seconds": round(self.seconds, 2),
            "grpc": self.grpc or None,
            "models": self.models or None,
        }


SKIPPED = VerifyResult(status="skipped")


# ---------------------------------------------------------------------------- planning (pure)
def plan_verify(
    loaded: LoadedModel,
    target: str,
    port: int,
    env: Mapping[str, str] | None = None,
    models: Sequence[tuple[str, LoadedModel]] = (),
) -> VerifyPlan:
    """``env``: the image's environment (its worker count and load mode, if set).
    ``models``: a multi-model image's models (name, model), checked one by one; ``loaded`` is
    the one ``/invocations`` serves without a header (the image's default model)."""
    env = env or {}
    grpc_port = env.get("DEPLOYER_SERVE_GRPC_PORT")
    checks = tuple(_model_check(name, model, target) for name, model in models)
    common = {
        "models": checks,
        "grpc_port": int(grpc_port) if grpc_port else None,
        "grpc_models": tuple(c.name for c in checks)
        or (env.get("DEPLOYER_SERVE_MODEL_NAME") or DEFAULT_MODEL_NAME,),
        "port": port,
        "workers": verify_workers(env),
        "load_mode": env.get("DEPLOYER_SERVE_LOAD_MODE", "auto"),
        "request_timeout": _number(
            env, ("DEPLOYER_SERVE_TIMEOUT", "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"), 60.0
        ),
    }
    serving = contract(target)
    health, score = serving.health_route, serving.score_route
    example = loaded.serving_input_path or (
        loaded.path / SERVING_EXAMPLE if (loaded.path / SERVING_EXAMPLE).is_file() else None
    )
    if example is not None and example.stat().st_size <= _MAX_PAYLOAD:
        return VerifyPlan(health, score, example.read_bytes(), example.name, **common)
    generated = payload_from_signature(loaded.mlmodel.signature)
    if generated is not None:
        return VerifyPlan(
            health,
            score,
            json.dumps(generated).encode(),
            "a payload generated from the signature",
            **common,
        )
    return VerifyPlan(health, None, **common)


def _model_check(name: str, loaded: LoadedModel, target: str) -> ModelCheck:
    one = plan_verify(loaded, target, 0)
    return ModelCheck(name, one.score_route, one.payload, one.payload_source)


def verify_workers(env: Mapping[str, str]) -> int:
    """The worker count the endpoint will run (the image's ``DEPLOYER_SERVE_WORKERS`` /
    ``MLFLOW_MODELS_WORKERS``), at least :data:`MIN_WORKERS`; never this build host's CPU
    count, which says nothing about the endpoint's (a 1-CPU builder would run one worker and
    never fork: a model that hangs in forked workers would pass)."""
    return max(
        MIN_WORKERS,
        int(_number(env, ("DEPLOYER_SERVE_WORKERS", "MLFLOW_MODELS_WORKERS"), MIN_WORKERS)),
    )


def _number(env: Mapping[str, str], names: tuple[str, ...], default: float) -> float:
    for name in names:
        with contextlib.suppress(ValueError, TypeError):
            if env.get(name):
                return float(env[name])
    return default


_SAMPLES: Mapping[str, object] = {
    "boolean": False,
    "integer": 0,
    "long": 0,
    "float": 0.0,
    "double": 0.0,
    "string": "a",
    "datetime": "2020-01-01T00:00:00",
    "binary": "",
}


def payload_from_signature(signature: Signature | None) -> dict[str, Any] | None:
    """One row that the signature accepts (``dataframe_split`` for columns, ``inputs`` for
    tensors), or None when there is no input schema or a type has no obvious sample."""
    if signature is None or signature.inputs is None or not signature.inputs.columns:
        return None
    schema = signature.inputs
    if schema.kind == "tensor":
        from deployer.model.signature import TensorSpec

        tensors = [c for c in schema.columns if isinstance(c, TensorSpec)]

        def zeros(shape: tuple[int, ...], dtype: str) -> object:
            value: object = "a" if dtype in ("str", "object") else (False if dtype == "bool" else 0)
            for dim in reversed(shape or (1,)):
                value = [value] * (dim if dim > 0 else 1)
            return value

        if len(tensors) == 1 and tensors[0].name is None:
            return {"inputs": zeros(tensors[0].shape, tensors[0].dtype)}
        return {"inputs": {str(t.name): zeros(t.shape, t.dtype) for t in tensors}}
    columns, row = [], []
    for col in schema.columns:
        if not getattr(col, "required", True):
            continue  # the smallest valid row: required columns only
        sample = _SAMPLES.get(getattr(col, "type", ""))
        if sample is None:
            return None  # nested / any: no safe guess
        columns.append(col.name)
        row.append(sample)
    if any(name is None for name in columns):
        return {"inputs": [row]}
    return {"dataframe_split": {"columns": columns, "data": [row]}}


# ---------------------------------------------------------------------------- execution
def staging_tag(plan: BuildPlan) -> str:
    """Where an image waits for verification: never the requested tag."""
    return f"{STAGING_REPO}:{plan.fingerprint[7:27]}-{uuid.uuid4().hex[:8]}"


def verify_image(
    client: Any,
    image: str,
    plan: BuildPlan,
    *,
    say: Callable[[str], None] | None = None,
    verify: VerifyPlan | None = None,
    shown: str | None = None,
    cpuset_cpus: str | None = None,
) -> VerifyResult:
    """Run ``image`` once offline and score it (see module docstring). Raises BuildError
    naming ``shown`` (the tag the user asked for; default ``image``). ``cpuset_cpus``: pin the
    container to these CPUs (``"0"``: a one-CPU machine), as ``docker run --cpuset-cpus``."""
    vp = verify or plan.verify
    assert vp is not None
    say = say or (lambda _line: None)
    what = (
        f"POST {vp.score_route} with {vp.payload_source}"
        if vp.score_route
        else f"GET {vp.health_route}"
    )
    say(f"verifying the image: offline run, {what}")
    t0 = time.monotonic()
    name = f"deployer-verify-{uuid.uuid4().hex[:12]}"
    try:
        container = client.containers.create(
            image,
            command=["serve"],
            name=name,
            network_mode="none",
            detach=True,
            environment=vp.environment(),
            cpuset_cpus=cpuset_cpus,
            labels={f"{LABEL}.run": plan.fingerprint},
        )
    except Exception as exc:  # noqa: BLE001 - docker.errors.*
        raise BuildError(
            f"cannot start the image for verification: {redact_text(str(exc))}",
            where=image,
            fix="check the Docker engine (docker info)",
        ) from exc
    try:
        if vp.score_route:
            container.put_archive("/tmp", _tar("deployer-verify-payload.json", vp.payload))
        started = time.monotonic()
        container.start()
        exec_at = time.monotonic()
        probe = _probe(container, plan.python, vp)
        if probe is None or probe.get("ready") is None:
            raise _failure(container, vp, shown or image, probe)
        cold_start = exec_at - started + float(probe["ready"])
        status = probe.get("status")
        if vp.score_route and (status != 200 or not _well_formed(str(probe.get("body", "")), vp)):
            raise _failure(container, vp, shown or image, probe)
        models = _check_models(container, plan.python, vp, shown or image)
        grpc = _check_grpc(container, plan.python, vp, shown or image)
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)
    result = VerifyResult(
        status="passed",
        route=vp.score_route or vp.health_route,
        http_status=int(status) if vp.score_route and status is not None else 200,
        payload_digest=vp.payload_digest,
        payload_source=vp.payload_source,
        cold_start=cold_start,
        seconds=time.monotonic() - t0,
        grpc=grpc,
        models=models,
    )
    say(
        f"verified: {result.route} -> {result.http_status} (ready after {cold_start:.1f}s, "
        f"check took {result.seconds:.1f}s)" + (f"; gRPC {grpc}" if grpc else "")
    )
    return result


def _check_models(container: Any, python: str, vp: VerifyPlan, image: str) -> str:
    """Multi-model images: every model ready and scoring (the probe once per model, its name
    in the target-model header); what they answered, as a deterministic label line."""
    answered = []
    for check in vp.models:
        one = replace(
            vp,
            health_route=check.health_route,
            score_route=check.score_route,
            payload=check.payload,
            payload_source=f"{check.name}'s {check.payload_source}",
            models=(),
        )
        if check.score_route:
            container.put_archive("/tmp", _tar("deployer-verify-payload.json", check.payload))
        probe = _probe(container, python, one, (TARGET_MODEL_HEADER, check.name))
        status = (probe or {}).get("status")
        if probe is None or probe.get("ready") is None:
            raise _failure(container, one, image, probe)
        if check.score_route and (
            status != 200 or not _well_formed(str(probe.get("body", "")), one)
        ):
            raise _failure(container, one, image, probe)
        answered.append(f"{check.name}:{status if check.score_route else 'ready'}")
    return ",".join(answered)


def _check_grpc(container: Any, python: str, vp: VerifyPlan, image: str) -> str:
    """The gRPC probe (:data:`GRPC_PROBE`) after the HTTP check passed; what it proved, as a
    deterministic line for the label (``port 8081: ModelInfer model``), or a BuildError."""
    if vp.grpc_port is None:
        return ""
    argv = [python, "-c", GRPC_PROBE, str(vp.grpc_port), str(vp.timeout), *vp.grpc_models]
    probe: dict[str, Any] | None = None
    try:
        code, out = container.exec_run(argv, stdout=True, stderr=True)
        text = out.decode(errors="replace").strip().splitlines() if isinstance(out, bytes) else []
        with contextlib.suppress(ValueError):
            probe = json.loads(text[-1]) if code == 0 and text else None
    except Exception:  # noqa: BLE001 - the container died during the probe
        text = []
    models = (probe or {}).get("models") or {}
    failed = [f"{name}: {m.get('error')}" for name, m in models.items() if m.get("error")]
    if probe is None or not probe.get("ready") or failed or len(models) != len(vp.grpc_models):
        if probe is None:
            what = "the gRPC probe did not run: " + redact_text(" ".join(text[-3:]))[:600]
        elif not probe.get("ready"):
            what = f"port {vp.grpc_port} did not answer ServerReady within {vp.timeout:.0f}s" + (
                f" ({probe['error']})" if probe.get("error") else ""
            )
        else:
            what = "; ".join(failed)[:1200]
        try:
            logs = _log_excerpt(redact_text(container.logs(tail=_LOG_SCAN).decode()).splitlines())
        except Exception:  # noqa: BLE001
            logs = ""
        tail = f"\ncontainer log (last lines):\n{logs}" if logs else ""
        raise BuildError(
            f"image verification failed over gRPC (--grpc-port {vp.grpc_port}): {what}{tail}",
            where=f"{image} (offline verification run)",
            fix=(
                diagnose(logs)
                or "the HTTP check passed, so the model loads: read the gRPC "
                "error above (the same request over REST V2 reproduces a model error); "
                "--no-verify builds without this check"
            )
            + ". Nothing was tagged or pushed",
        )
    checked = ", ".join(f"{m.get('checked')} {name}" for name, m in sorted(models.items()))
    return f"port {vp.grpc_port}: ServerReady, {checked}"


def _tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _probe(
    container: Any, python: str, vp: VerifyPlan, header: tuple[str, str] | None = None
) -> dict[str, Any] | None:
    argv = [
        python,
        "-c",
        PROBE,
        str(vp.port),
        vp.health_route,
        vp.score_route or "",
        vp.content_type,
        _PAYLOAD_PATH,
        str(vp.timeout),
        *(header or ()),
    ]
    try:
        code, out = container.exec_run(argv, stdout=True, stderr=False)
    except Exception:  # noqa: BLE001 - the container died before or during the probe
        return None
    if code != 0:
        return None
    text = out.decode(errors="replace").strip().splitlines() if isinstance(out, bytes) else []
    try:
        data = json.loads(text[-1]) if text else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _well_formed(body: str, vp: VerifyPlan) -> bool:
    """A JSON document: ``{"predictions": ...}`` for most models, but MLflow answers chat /
    LLM-style requests unwrapped (``{"choices": ...}``) and Azure's score.py a bare list."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if isinstance(data, dict) and "error_code" in data:
        return False
    return data is not None


def _failure(
    container: Any, vp: VerifyPlan, image: str, probe: dict[str, Any] | None
) -> BuildError:
    if probe is None:  # the probe was cut off: the server is probably exiting; let it finish
        with contextlib.suppress(Exception):
            container.wait(timeout=10)
    with contextlib.suppress(Exception):
        container.reload()
    state = getattr(container, "attrs", {}).get("State", {}) or {}
    exited = getattr(container, "status", "") in ("exited", "dead")
    try:
        full = container.logs(tail=_LOG_SCAN).decode(errors="replace")
    except Exception:  # noqa: BLE001
        full = ""
    logs = _log_excerpt(redact_text(full.rstrip()).splitlines())
    where = f"{image} (offline verification run)"
    if probe is None or probe.get("ready") is None:
        if exited:
            what = (
                f"the image exited (code {state.get('ExitCode')}) before {vp.health_route} answered"
            )
        elif probe is None:
            what = f"the image stopped answering before {vp.health_route} was ready"
        else:
            what = f"{vp.health_route} did not answer 200 within {vp.timeout:.0f}s"
        fix = diagnose(logs) or "read the log above: the model failed to load in the image"
    elif _hung(probe):
        what = (
            f"POST {vp.score_route} with {vp.payload_source} got no answer within "
            f"{float(probe.get('score_seconds') or 0):.0f}s from {vp.workers} workers "
            f"({probe.get('error') or 'HTTP ' + str(probe.get('status'))}): the model hangs"
        )
        fix = diagnose(logs) or hang_fix(vp)
    else:
        status, body = probe.get("status"), str(probe.get("body", ""))[:600]
        what = (
            f"POST {vp.score_route} with {vp.payload_source} answered {status}"
            + ("" if status != 200 else " with a body that is not the expected JSON")
            + f": {body}"
        )
        fix = diagnose(logs) or (
            f"the model fails on {vp.payload_source}: fix the model (or the example saved with "
            "it); "
            "--no-verify builds without this check"
        )
    tail = f"\ncontainer log (last lines):\n{logs}" if logs else ""
    return BuildError(
        f"image verification failed: {what}{tail}",
        where=where,
        fix=f"{fix}. Nothing was tagged or pushed",
    )


def _hung(probe: dict[str, Any]) -> bool:
    """The score request timed out: the server's 504 (its request timeout), or no answer at all
    (the connection timed out or was dropped by a server that killed its stuck worker)."""
    return probe.get("status") == 504 or bool(probe.get("error"))


def hang_fix(vp: VerifyPlan) -> str:
    """What to do about a request that never finished, by how the image loads the model."""
    fork = (
        "a library that does not survive fork (TensorFlow/Keras, PyTorch, XGBoost or LightGBM "
        "with OpenMP threads, a JVM gateway) hangs every worker forked after the model loaded"
    )
    slow = (
        f"if the model is only slow, raise the server's {vp.request_timeout:g} s request limit "
        "with "
        "--env DEPLOYER_SERVE_TIMEOUT=SECONDS"
    )
    if vp.load_mode == "preload":
        return (
            "the image loads the model before forking its workers "
            "(DEPLOYER_SERVE_LOAD_MODE=preload) and "
            f"{fork}: build with --env DEPLOYER_SERVE_LOAD_MODE=per-worker (each worker loads its "
            "own "
            f"copy); {slow}"
        )
    if vp.load_mode == "per-worker":
        return (
            "each worker loaded its own copy (per-worker), so forking is not the cause: run the "
            "model "
            f"with `deployer serve -m MODEL --workers 1` to see where it stops; {slow}"
        )
    return (
        "the image's server chose preload for this model (nothing in its flavor, requirements or "
        "code "
        f"named a library that breaks under fork), and {fork}: build with --env "
        f"DEPLOYER_SERVE_LOAD_MODE=per-worker; {slow}"
    )


def _log_excerpt(lines: list[str]) -> str:
    """The last lines of the container's log, indented. Exceptions further up (the model's own
    error above a server's wrapping exception and shutdown chatter) come first, so the cause
    is shown however long the chatter after it is."""
    shown = lines[-_LOG_TAIL:]
    hidden = [
        line for line in lines[:-_LOG_TAIL] if _EXCEPTION_LINE.match(line) and line not in shown
    ]
    causes = list(dict.fromkeys(hidden))[-3:]
    return "\n".join("  " + line for line in ([*causes, "..."] if causes else []) + shown)


def diagnose(logs: str) -> str | None:
    """The likely fix for a failure seen in the container's log (None: no known pattern)."""
    from deployer.environment.system_deps import missing_libraries

    libraries = missing_libraries(logs)
    if libraries:
        soname, package = libraries[-1]
        if package:
            return (
                f"the image lacks the shared library {soname}, which the Debian package "
                f"{package} provides: build with --system-package {package}"
            )
        return (
            f"the image lacks the shared library {soname}: install the OS package that provides "
            "it with --system-package NAME (`apt-file search` names it), or use a base image that "
            "has it"
        )
    found = _NO_MODULE.findall(logs)
    if found:
        module = found[-1]
        top = module.split(".")[0]
        dist = _DISTRIBUTIONS.get(module) or _DISTRIBUTIONS.get(top) or top.replace("_", "-")
        return (
            f"the image lacks the module '{module}': add '{dist}' to the model's requirements "
            "(requirements.txt and python_env.yaml's dependencies, or conda.yaml's pip list; "
            "pip_requirements= / extra_pip_requirements= when saving with mlflow)"
        )
    return None


def label_image(
    engine: BuildEngine,
    source: str,
    tag: str,
    labels: tuple[tuple[str, str], ...],
    platform: str | None = None,
) -> str:
    """``FROM source`` + labels, tagged ``tag``: metadata only, no new layer. Returns the image
    ID."""
    from deployer.building.engine import BuildRequest

    with tempfile.TemporaryDirectory(prefix="deployer-label-") as tmp:
        # ``source`` is deployer's own staging tag or a tag plan_build validated (check_image_ref)
        (Path(tmp) / "Dockerfile").write_text(f"FROM {source}\n")
        return engine.build(
            BuildRequest(context=Path(tmp), tag=tag, labels=labels, platform=platform),
            lambda _line: None,
        )


def recorded(labels: Mapping[str, str]) -> str | None:
    """The verification status an image's labels record (passed / skipped / None)."""
    return labels.get(f"{LABEL}.status")
