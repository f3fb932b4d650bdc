"""The ``local`` target: a model image running as a container on this machine's Docker engine.

Used by ``deployer run-local`` and by ``deployer deploy --target local``. The container is
started the way its real platform starts it, so a local run is a faithful rehearsal:

* ``serve_as=local`` / ``sagemaker``: ``docker run IMAGE serve`` (SageMaker's contract),
  readiness on ``GET /ping``, scoring on ``POST /invocations``;
* ``serve_as=azureml``: the image built for Azure runs azmlinfsrv with the generated
  ``score.py``; readiness on ``GET /``, scoring on ``POST /score``.

Ports are published on 127.0.0.1 only. Containers carry the ``io.deployer.endpoint`` label;
that label (not the container name) is what ``list``/``status``/``delete`` look for.
Docker SDK errors are translated into :class:`TargetError` here.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from deployer.building.contracts import CONTRACTS
from deployer.building.plan import GRPC_PORT_LABEL
from deployer.errors import DeployerError, TargetError, UsageError
from deployer.targets.base import (
    DeployPlan,
    DeployRequest,
    DeployResult,
    EndpointStatus,
    OptionSpec,
    PlannedCall,
)

if TYPE_CHECKING:
    from deployer.model.provenance import Provenance

log = logging.getLogger("deployer")

ENDPOINT_LABEL = "io.deployer.endpoint"
#: Prefix of the provenance labels (:class:`~deployer.model.provenance.Provenance`).
PROVENANCE_PREFIX = "io.deployer."
CONTAINER_PREFIX = "deployer-"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
READY_TIMEOUT = 300.0

OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("port", "Host port on 127.0.0.1 (0: any free port).", type="int", default=8080),
    OptionSpec(
        "serve_as",
        "Start the container as this platform would.",
        type="choice",
        choices=("local", "sagemaker", "azureml"),
        default="local",
    ),
)


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise UsageError(
            f"endpoint name {name!r} is not valid for a local container",
            fix="use letters, digits, '_', '.', '-' (max 63, starting with a letter/digit)",
        )
    return name


class LocalTarget:
    """Containers on the local engine (see module docstring)."""

    name = "local"
    options = OPTIONS

    def __init__(self, *, client: Any = None, ready_timeout: float = READY_TIMEOUT) -> None:
        self._client = client
        self.ready_timeout = ready_timeout

    # ------------------------------------------------------------------ engine access
    @property
    def client(self) -> Any:
        if self._client is None:
            from deployer.building.engine import docker_client

            try:
                self._client = docker_client()
            except DeployerError as exc:
                raise TargetError(exc.what, fix=exc.fix) from exc
        return self._client

    def _container(self, name: str) -> Any | None:
        try:
            found = self.client.containers.list(
                all=True, filters={"label": f"{ENDPOINT_LABEL}={name}"}
            )
        except Exception as exc:  # noqa: BLE001 - docker.errors.*
            raise TargetError(
                f"cannot list containers: {exc}", fix="check the Docker engine"
            ) from exc
        return found[0] if found else None

    # ------------------------------------------------------------------ Target protocol
    def plan(self, request: DeployRequest) -> DeployPlan:
        """Build (if the image is missing or stale) then run; reads the engine, changes nothing.

        Replacing a running endpoint keeps it until the new container is ready: the old one is
        renamed and stopped (``prepare``: it frees the port; undone by starting it again), the
        new one runs (``create``: undone by removing it) and must answer its readiness route
        (``wait``), and only then is the old one removed (``cleanup``).
        """
        name = check_name(request.name)
        opts = dict(request.options)
        serve_as = str(opts.get("serve_as") or "local")
        if serve_as not in CONTRACTS:
            raise UsageError(
                f"unknown serve_as {serve_as!r}", fix="use local, sagemaker or azureml"
            )
        port = int(opts.get("port") if opts.get("port") is not None else 8080)
        calls: list[PlannedCall] = []
        facts: dict[str, Any] = {"serve_as": serve_as, "port": port}
        provenance_labels: dict[str, str] = {}
        if request.image_uri:
            image = request.image_uri
        elif request.model_uri:
            from deployer.building.execute import existing_build
            from deployer.model.provenance import model_provenance
            from deployer.targets.model_image import build_call, plan_model_image

            build, step = plan_model_image(request.model_uri, request.build, serve_as)
            provenance = model_provenance(
                request.model_uri, build.model_path, digest=build.model_digest
            )
            provenance_labels = provenance.to_tags(PROVENANCE_PREFIX)
            if build.gpu:
                self._check_gpu_runtime()
            image = build.tag
            fresh = existing_build(self.client, build.tag, build.fingerprint) is not None
            facts.update(
                model_uri=build.model_uri,
                fingerprint=build.fingerprint,
                image_up_to_date=fresh,
                image=image,
                build=step["Build"],
                provenance=provenance.to_dict(),
            )
            if not fresh:
                calls.append(build_call(step, f"image {image}"))
        else:
            raise UsageError(
                "the local target needs a model (-m) or an image (--image-uri)",
                fix="pass -m MODEL or --image-uri IMAGE",
            )
        # --gpu builds a GPU image from -m, and runs any image (also --image-uri) with the GPUs
        gpu = bool(getattr(request.build, "gpu", False))
        if gpu and request.image_uri:
            self._check_gpu_runtime()
        container = CONTAINER_PREFIX + name
        existing = self._container(name)
        previous = f"{container}-previous"
        if existing is not None:
            running = existing.status == "running"
            calls.append(
                PlannedCall(
                    "docker",
                    "set_aside",
                    {"name": existing.name, "rename_to": previous},
                    phase="prepare",
                    description=f"stop the running container {existing.name} (kept as {previous} "
                    "until the new "
                    "one is ready)",
                    undo=PlannedCall(
                        "docker",
                        "restore",
                        {"name": previous, "rename_to": existing.name, "start": running},
                        description=f"start {existing.name} again",
                    ),
                )
            )
        calls.append(
            PlannedCall(
                "docker",
                "run",
                {
                    "image": image,
                    "name": container,
                    "endpoint": name,
                    "command": ["serve"],
                    "port": port,
                    "serve_as": serve_as,
                    "gpu": gpu,
                    "labels": provenance_labels,
                },
                f"run {image} as {serve_as} on 127.0.0.1:{port or '<any>'}"
                + (" with all GPUs" if gpu else ""),
                undo=PlannedCall(
                    "docker",
                    "remove_container",
                    {"name": container},
                    description=f"remove container {container}",
                ),
            )
        )
        if request.wait:
            calls.append(
                PlannedCall(
                    "docker",
                    "wait_ready",
                    {"name": container, "serve_as": serve_as, "timeout": request.timeout},
                    f"wait until {CONTRACTS[serve_as].health_route} answers 200",
                    phase="wait",
                )
            )
        if existing is not None:
            calls.append(
                PlannedCall(
                    "docker",
                    "remove_container",
                    {"name": previous},
                    phase="cleanup",
                    description=f"remove the replaced container {previous}",
                )
            )
        return DeployPlan(
            target=self.name,
            name=name,
            action="replace" if existing else "create",
            calls=tuple(calls),
            summary=f"run {image} locally",
            facts=facts,
        )

    def apply(
        self,
        plan: DeployPlan,
        *,
        step: Callable[[str], None] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> DeployResult:
        from deployer.targets.executor import execute

        say = step or (lambda msg: log.info(msg))
        report = execute(plan, self.operations(say, on_line), progress=say)
        run = next((c for c in plan.calls if c.operation == "run"), None)
        if run is None:
            raise TargetError("the plan has no run step", fix="this is a bug: report it")
        grpc: dict[str, Any] = {}
        if report.outputs.get("run"):  # an image built with --grpc-port publishes its port
            found = self._details(self.client.containers.get(run.params["name"])).get("grpc")
            grpc = {"grpc": found} if found else {}
        return DeployResult(
            target=self.name,
            name=plan.name,
            action=plan.action,
            status="running",
            endpoint_url=str(report.outputs["run"]),
            details={
                "image": report.outputs.get("build_image") or run.params["image"],
                "container": run.params["name"],
                "serve_as": run.params["serve_as"],
                "removed": report.removed,
                "warnings": report.warnings,
                **grpc,
            },
        )

    def operations(
        self, say: Callable[[str], None] | None = None, on_line: Callable[[str], None] | None = None
    ) -> Any:
        """What the one executor runs this target's plans with (progress to ``say``)."""
        return _LocalOperations(self, say or log.info, on_line)

    def status(self, name: str) -> EndpointStatus:
        container = self._container(check_name(name))
        if container is None:
            return EndpointStatus(target=self.name, name=name, status="absent")
        return EndpointStatus(
            target=self.name, name=name, status=container.status, details=self._details(container)
        )

    def provenance(self, name: str) -> Provenance | None:
        """What the endpoint's container was deployed from (None: absent or not recorded)."""
        from deployer.model.provenance import Provenance

        container = self._container(check_name(name))
        if container is None:
            return None
        return Provenance.from_tags(container.labels or {}, PROVENANCE_PREFIX)

    def list(self) -> Sequence[EndpointStatus]:
        try:
            found = self.client.containers.list(all=True, filters={"label": ENDPOINT_LABEL})
        except Exception as exc:  # noqa: BLE001
            raise TargetError(
                f"cannot list containers: {exc}", fix="check the Docker engine"
            ) from exc
        return [
            EndpointStatus(
                target=self.name,
                name=c.labels.get(ENDPOINT_LABEL, c.name),
                status=c.status,
                details=self._details(c),
            )
            for c in found
        ]

    def delete(self, name: str) -> DeployResult:
        container = self._container(check_name(name))
        if container is None:
            return DeployResult(target=self.name, name=name, action="delete", status="absent")
        self._remove(container.name)
        return DeployResult(target=self.name, name=name, action="delete", status="deleted")

    def predict(self, name: str, body: bytes, content_type: str) -> bytes:
        container = self._container(check_name(name))
        if container is None or container.status != "running":
            raise TargetError(
                f"no running local endpoint {name!r}", fix=f"deployer run-local ... --name {name}"
            )
        details = self._details(container)
        url = f"{details['url']}{CONTRACTS[details['serve_as']].score_route}"
        req = urllib.request.Request(
            url, data=body, headers={"Content-Type": content_type}, method="POST"
        )
        try:
            with _opener().open(req, timeout=120) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read(2000).decode(errors="replace").strip()
            raise TargetError(
                f"local endpoint {name!r} answered HTTP {exc.code}: {detail}",
                where=url,
                fix="check the request against the model's signature (deployer inspect -m MODEL) "
                f"and the container's logs (docker logs {container.name})",
            ) from None
        except OSError as exc:
            raise TargetError(f"cannot reach {url}: {exc}", fix="check the container logs") from exc

    # ------------------------------------------------------------------ helpers
    def _details(self, container: Any) -> dict[str, Any]:
        container.reload()
        serve_as = container.labels.get("io.deployer.serve-as", "local")
        port = container.labels.get("io.deployer.container-port", "8080")
        bound = (container.ports or {}).get(f"{port}/tcp") or []
        host_port = bound[0]["HostPort"] if bound else None
        health = (container.attrs.get("State", {}).get("Health") or {}).get("Status")
        from deployer.model.provenance import Provenance

        provenance = Provenance.from_tags(container.labels or {}, PROVENANCE_PREFIX)
        details = {
            "container": container.name,
            "image": container.attrs.get("Config", {}).get("Image"),
            "serve_as": serve_as,
            "url": f"http://127.0.0.1:{host_port}" if host_port else None,
            "health": health,
            "provenance": provenance.to_dict() if provenance else None,
        }
        grpc_port = container.labels.get(GRPC_PORT_LABEL)
        grpc_bound = (container.ports or {}).get(f"{grpc_port}/tcp") or [] if grpc_port else []
        if grpc_bound:  # an image built with --grpc-port: V2 over gRPC on a free host port
            details["grpc"] = f"127.0.0.1:{grpc_bound[0]['HostPort']}"
        return details

    def _check_gpu_runtime(self) -> None:
        """--gpu needs the NVIDIA container runtime in the engine; refuse before building."""
        try:
            runtimes = self.client.info().get("Runtimes") or {}
        except Exception as exc:  # noqa: BLE001 - docker.errors.* / requests errors
            raise TargetError(
                f"cannot ask the Docker engine for its runtimes: {exc}",
                fix="check the Docker engine (docker info)",
            ) from exc
        if "nvidia" not in runtimes:
            raise TargetError(
                "this Docker engine has no NVIDIA GPU runtime (docker info lists runtimes: "
                f"{', '.join(sorted(runtimes)) or 'none'})",
                where="--gpu",
                fix="install the NVIDIA driver and nvidia-container-toolkit on the engine's host "
                "(nvidia-ctk runtime configure --runtime=docker, then restart Docker), or run "
                "without --gpu",
            )

    def _remove(self, container_name: str) -> None:
        try:
            container = self.client.containers.get(container_name)
            container.stop(timeout=10)
            container.remove(force=True)
        except Exception as exc:  # noqa: BLE001
            if "No such container" not in str(exc) and "404" not in str(exc):
                raise TargetError(
                    f"cannot remove container {container_name}: {exc}",
                    fix=f"docker rm -f {container_name}",
                ) from exc

    def _run(self, name: str, params: Any, say: Callable[[str], None], image: str) -> str:
        serve_as = str(params["serve_as"])
        port = int(params["port"])
        container_port = 8080
        try:
            labels = self.client.images.get(image).labels or {}
        except Exception as exc:  # noqa: BLE001
            raise TargetError(
                f"image {image!r} is not in the local engine: {exc}",
                fix="build it first (deployer build) or pull it",
            ) from exc
        if labels.get("io.deployer.target") == "azureml" and serve_as != "azureml":
            say("note: this image was built for azureml; it serves Azure's protocol")
            serve_as = "azureml"
        extra: dict[str, Any] = {}
        ports: dict[str, Any] = {f"{container_port}/tcp": ("127.0.0.1", port or None)}
        run_labels = {
            **dict(params.get("labels") or {}),
            ENDPOINT_LABEL: name,
            "io.deployer.serve-as": serve_as,
            "io.deployer.container-port": str(container_port),
        }
        grpc_port = labels.get(GRPC_PORT_LABEL)
        if grpc_port and grpc_port.isdigit():  # built with --grpc-port: published too
            ports[f"{grpc_port}/tcp"] = ("127.0.0.1", None)
            run_labels[GRPC_PORT_LABEL] = grpc_port
        if params.get("gpu"):
            import docker

            extra["device_requests"] = [
                docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])
            ]
        try:
            container = self.client.containers.run(
                image,
                command=list(params["command"]),
                name=str(params["name"]),
                detach=True,
                **extra,
                ports=ports,
                labels=run_labels,
            )
        except Exception as exc:  # noqa: BLE001 - docker.errors.APIError (port in use, ...)
            hint = (
                "pick another port with -p (or -p 0 for any free port)"
                if "port" in str(exc).lower()
                else "check `docker ps -a` and the engine"
            )
            raise TargetError(f"cannot start the container: {exc}", fix=hint) from exc
        return str(self._details(container)["url"])

    def _wait_ready(self, container_name: str, timeout: float, say: Callable[[str], None]) -> None:
        try:
            container = self.client.containers.get(container_name)
        except Exception as exc:  # noqa: BLE001
            raise TargetError(
                f"the container {container_name} is gone: {exc}",
                fix="check `docker ps -a` and the engine",
            ) from exc
        details = self._details(container)
        url = f"{details['url']}{CONTRACTS[details['serve_as']].health_route}"
        say(f"waiting for {url}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            container.reload()
            if container.status in ("exited", "dead"):
                logs = container.logs(tail=40).decode(errors="replace")
                code = container.attrs.get("State", {}).get("ExitCode")
                raise TargetError(
                    f"the container exited (code {code}) before it was ready:\n{logs}",
                    fix="read the log above (the model failed to load?)",
                )
            try:
                with _opener().open(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.25)
        raise TargetError(
            f"the container was not ready within {timeout:.0f}s ({url})",
            fix="check `docker logs` of the container; a large model may need --timeout",
        )

    def _set_aside(self, name: str, rename_to: str) -> None:
        """Rename and stop a container (its name and port free for the new one)."""
        self._remove(rename_to)  # debris of an earlier interrupted replace
        try:
            container = self.client.containers.get(name)
            container.rename(rename_to)
            container.stop(timeout=10)
        except Exception as exc:  # noqa: BLE001
            raise TargetError(
                f"cannot stop container {name}: {exc}", fix=f"docker stop {name}"
            ) from exc

    def _restore(self, name: str, rename_to: str, start: bool) -> None:
        try:
            container = self.client.containers.get(name)
            container.rename(rename_to)
            if start:
                container.start()
        except Exception as exc:  # noqa: BLE001
            raise TargetError(
                f"cannot restore container {rename_to} (now {name}): {exc}",
                fix=f"docker rename {name} {rename_to} && docker start {rename_to}",
            ) from exc


class _LocalOperations:
    """The local target's operations for the one executor (:mod:`deployer.targets.executor`)."""

    def __init__(
        self, target: LocalTarget, say: Callable[[str], None], on_line: Callable[[str], None] | None
    ) -> None:
        self.target, self.say, self.on_line = target, say, on_line

    def handle(self, call: PlannedCall, outputs: Any) -> Any:
        p = call.params
        if call.operation == "build_image":
            from deployer.targets.model_image import build_step

            return build_step(p, step=self.say, on_line=self.on_line)
        if call.operation == "set_aside":
            return self.target._set_aside(str(p["name"]), str(p["rename_to"]))
        if call.operation == "restore":
            return self.target._restore(str(p["name"]), str(p["rename_to"]), bool(p.get("start")))
        if call.operation == "run":
            image = str(outputs.get("build_image") or p["image"])
            return self.target._run(str(p["endpoint"]), p, self.say, image)
        if call.operation == "wait_ready":
            return self.target._wait_ready(
                str(p["name"]), float(p.get("timeout") or self.target.ready_timeout), self.say
            )
        if call.operation == "remove_container":
            return self.target._remove(str(p["name"]))
        raise TargetError(f"unknown planned operation {call.operation!r}", where="local plan")

    def label(self, call: PlannedCall) -> str:
        return call.description or call.operation

    def is_not_found(self, exc: DeployerError) -> bool:
        return "No such container" in exc.what

    def keeps(self, plan: DeployPlan, call: PlannedCall) -> bool:
        return False

    def story(self, plan: DeployPlan, call: PlannedCall, exc: DeployerError) -> Sequence[str]:
        if plan.action == "replace":
            return [f"the endpoint {plan.name} keeps its previous container"]
        return []


def _opener() -> urllib.request.OpenerDirector:
    """Talks to 127.0.0.1 directly: proxy variables must not route local traffic away."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))
