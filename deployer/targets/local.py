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
from typing import Any

from deployer.errors import DeployerError, TargetError, UsageError
from deployer.targets.base import (
    DeployPlan,
    DeployRequest,
    DeployResult,
    EndpointStatus,
    OptionSpec,
    PlannedCall,
    image_build_options,
)

log = logging.getLogger("deployer")

ENDPOINT_LABEL = "io.deployer.endpoint"
CONTAINER_PREFIX = "deployer-"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
ROUTES = {"local": ("/ping", "/invocations"), "sagemaker": ("/ping", "/invocations"),
          "azureml": ("/", "/score")}
READY_TIMEOUT = 300.0

OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("port", "Host port on 127.0.0.1 (0: any free port).", type="int", default=8080),
    OptionSpec("serve_as", "Start the container as this platform would.", type="choice",
               choices=("local", "sagemaker", "azureml"), default="local"),
)


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise UsageError(f"endpoint name {name!r} is not valid for a local container",
                         fix="use letters, digits, '_', '.', '-' (max 63, starting with a letter/digit)")
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
            found = self.client.containers.list(all=True, filters={"label": f"{ENDPOINT_LABEL}={name}"})
        except Exception as exc:  # noqa: BLE001 - docker.errors.*
            raise TargetError(f"cannot list containers: {exc}", fix="check the Docker engine") from exc
        return found[0] if found else None

    # ------------------------------------------------------------------ Target protocol
    def plan(self, request: DeployRequest) -> DeployPlan:
        """Build (if the image is missing or stale) then run; reads the engine, changes nothing."""
        name = check_name(request.name)
        opts = dict(request.options)
        serve_as = str(opts.get("serve_as") or "local")
        if serve_as not in ROUTES:
            raise UsageError(f"unknown serve_as {serve_as!r}", fix="use local, sagemaker or azureml")
        port = int(opts.get("port") if opts.get("port") is not None else 8080)
        calls: list[PlannedCall] = []
        facts: dict[str, Any] = {"serve_as": serve_as, "port": port}
        if request.image_uri:
            image = request.image_uri
        elif request.model_uri:
            from deployer.building.execute import existing_build
            from deployer.building.plan import plan_build
            from deployer.model import load_model

            build_opts = image_build_options(request.build, serve_as)
            if build_opts.gpu:
                self._check_gpu_runtime()
            plan = plan_build(load_model(request.model_uri), build_opts)
            image = plan.tag
            fresh = existing_build(self.client, plan.tag, plan.fingerprint) is not None
            facts.update(model_uri=plan.model_uri, fingerprint=plan.fingerprint, image_up_to_date=fresh,
                         image=image, build=build_opts.to_params())
            if not fresh:
                calls.append(PlannedCall("docker", "build", {"model_uri": request.model_uri, "tag": image,
                                                             "build": facts["build"]},
                                         f"build {image}" + (", run it offline and score its input example"
                                                             if plan.verify else " (not verified: --no-verify)")))
        else:
            raise UsageError("the local target needs a model (-m) or an image (--image-uri)",
                             fix="pass -m MODEL or --image-uri IMAGE")
        # --gpu builds a GPU image from -m, and runs any image (also --image-uri) with the GPUs
        gpu = bool(getattr(request.build, "gpu", False))
        if gpu and request.image_uri:
            self._check_gpu_runtime()
        existing = self._container(name)
        if existing is not None:
            calls.append(PlannedCall("docker", "remove_container", {"name": existing.name},
                                     f"replace the running container {existing.name}"))
        calls.append(PlannedCall("docker", "run", {
            "image": image, "name": CONTAINER_PREFIX + name, "command": ["serve"], "port": port,
            "serve_as": serve_as, "wait": request.wait, "timeout": request.timeout, "gpu": gpu,
        }, f"run {image} as {serve_as} on 127.0.0.1:{port or '<any>'}" + (" with all GPUs" if gpu else "")))
        return DeployPlan(target=self.name, name=name, action="replace" if existing else "create",
                          calls=tuple(calls), summary=f"run {image} locally", facts=facts)

    def apply(self, plan: DeployPlan, *, step: Callable[[str], None] | None = None,
              on_line: Callable[[str], None] | None = None) -> DeployResult:
        say = step or (lambda msg: log.info(msg))
        image = ""
        for call in plan.calls:
            if call.operation == "build":
                from deployer.building.execute import build_model_image
                from deployer.building.plan import BuildOptions

                options = BuildOptions.from_params(call.params["build"])
                _p, result = build_model_image(str(call.params["model_uri"]), options,
                                               step=say, on_line=on_line, client=self.client)
                image = result.image
            elif call.operation == "remove_container":
                self._remove(str(call.params["name"]))
            elif call.operation == "run":
                image = str(call.params["image"])
                url = self._run(plan.name, call.params, say)
                return DeployResult(target=self.name, name=plan.name, action=plan.action, status="running",
                                    endpoint_url=url, details={"image": image,
                                                               "container": CONTAINER_PREFIX + plan.name,
                                                               "serve_as": call.params["serve_as"]})
        raise TargetError("the plan has no run step", fix="this is a bug: report it")

    def status(self, name: str) -> EndpointStatus:
        container = self._container(check_name(name))
        if container is None:
            return EndpointStatus(target=self.name, name=name, status="absent")
        return EndpointStatus(target=self.name, name=name, status=container.status,
                              details=self._details(container))

    def list(self) -> Sequence[EndpointStatus]:
        try:
            found = self.client.containers.list(all=True, filters={"label": ENDPOINT_LABEL})
        except Exception as exc:  # noqa: BLE001
            raise TargetError(f"cannot list containers: {exc}", fix="check the Docker engine") from exc
        return [EndpointStatus(target=self.name, name=c.labels.get(ENDPOINT_LABEL, c.name), status=c.status,
                               details=self._details(c)) for c in found]

    def delete(self, name: str) -> DeployResult:
        container = self._container(check_name(name))
        if container is None:
            return DeployResult(target=self.name, name=name, action="delete", status="absent")
        self._remove(container.name)
        return DeployResult(target=self.name, name=name, action="delete", status="deleted")

    def predict(self, name: str, body: bytes, content_type: str) -> bytes:
        container = self._container(check_name(name))
        if container is None or container.status != "running":
            raise TargetError(f"no running local endpoint {name!r}", fix=f"deployer run-local ... --name {name}")
        details = self._details(container)
        url = f"{details['url']}{ROUTES[details['serve_as']][1]}"
        req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
        try:
            with _opener().open(req, timeout=120) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read(2000).decode(errors="replace").strip()
            raise TargetError(f"local endpoint {name!r} answered HTTP {exc.code}: {detail}", where=url,
                              fix="check the request against the model's signature (deployer inspect -m MODEL) "
                                  f"and the container's logs (docker logs {container.name})") from None
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
        return {"container": container.name, "image": container.attrs.get("Config", {}).get("Image"),
                "serve_as": serve_as, "url": f"http://127.0.0.1:{host_port}" if host_port else None,
                "health": health}

    def _check_gpu_runtime(self) -> None:
        """--gpu needs the NVIDIA container runtime in the engine; refuse before building."""
        try:
            runtimes = self.client.info().get("Runtimes") or {}
        except Exception as exc:  # noqa: BLE001 - docker.errors.* / requests errors
            raise TargetError(f"cannot ask the Docker engine for its runtimes: {exc}",
                              fix="check the Docker engine (docker info)") from exc
        if "nvidia" not in runtimes:
            raise TargetError(
                "this Docker engine has no NVIDIA GPU runtime (docker info lists runtimes: "
                f"{', '.join(sorted(runtimes)) or 'none'})", where="--gpu",
                fix="install the NVIDIA driver and nvidia-container-toolkit on the engine's host "
                "(nvidia-ctk runtime configure --runtime=docker, then restart Docker), or run without --gpu")

    def _remove(self, container_name: str) -> None:
        try:
            container = self.client.containers.get(container_name)
            container.stop(timeout=10)
            container.remove(force=True)
        except Exception as exc:  # noqa: BLE001
            if "No such container" not in str(exc) and "404" not in str(exc):
                raise TargetError(f"cannot remove container {container_name}: {exc}",
                                  fix=f"docker rm -f {container_name}") from exc

    def _run(self, name: str, params: Any, say: Callable[[str], None]) -> str:
        image, serve_as = str(params["image"]), str(params["serve_as"])
        port = int(params["port"])
        container_port = 8080
        try:
            labels = self.client.images.get(image).labels or {}
        except Exception as exc:  # noqa: BLE001
            raise TargetError(f"image {image!r} is not in the local engine: {exc}",
                              fix="build it first (deployer build) or pull it") from exc
        if labels.get("io.deployer.target") == "azureml" and serve_as != "azureml":
            say("note: this image was built for azureml; it serves Azure's protocol")
            serve_as = "azureml"
        extra: dict[str, Any] = {}
        if params.get("gpu"):
            import docker

            extra["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        try:
            container = self.client.containers.run(
                image, command=list(params["command"]), name=str(params["name"]), detach=True, **extra,
                ports={f"{container_port}/tcp": ("127.0.0.1", port or None)},
                labels={ENDPOINT_LABEL: name, "io.deployer.serve-as": serve_as,
                        "io.deployer.container-port": str(container_port)},
            )
        except Exception as exc:  # noqa: BLE001 - docker.errors.APIError (port in use, ...)
            hint = "pick another port with -p (or -p 0 for any free port)" if "port" in str(exc).lower() \
                else "check `docker ps -a` and the engine"
            raise TargetError(f"cannot start the container: {exc}", fix=hint) from exc
        url = self._details(container)["url"]
        if params.get("wait", True):
            self._wait_ready(container, f"{url}{ROUTES[serve_as][0]}",
                             float(params.get("timeout") or self.ready_timeout), say)
        return str(url)

    def _wait_ready(self, container: Any, url: str, timeout: float, say: Callable[[str], None]) -> None:
        say(f"waiting for {url}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            container.reload()
            if container.status in ("exited", "dead"):
                logs = container.logs(tail=40).decode(errors="replace")
                code = container.attrs.get("State", {}).get("ExitCode")
                raise TargetError(f"the container exited (code {code}) before it was ready:\n{logs}",
                                  fix="read the log above (the model failed to load?)")
            try:
                with _opener().open(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.25)
        raise TargetError(f"the container was not ready within {timeout:.0f}s ({url})",
                          fix="check `docker logs` of the container; a large model may need --timeout")


def _opener() -> urllib.request.OpenerDirector:
    """Talks to 127.0.0.1 directly: proxy variables must not route local traffic away."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))
