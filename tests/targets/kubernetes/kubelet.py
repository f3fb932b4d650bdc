"""Run a pod template's container on Docker the way the kubelet would, and probe it like it.

No Kubernetes cluster can run on these machines (docs: ENVIRONMENT.md, "Kubernetes"), so the
"pod for real" tests take the ``spec.template.spec`` of a rendered Deployment and run its first
container with the docker SDK, translating each field as the kubelet and a CRI runtime do:

=============================================  ============================================
pod template                                   docker
=============================================  ============================================
``image``, ``imagePullPolicy``                 that exact reference; pulled when the policy
                                               says so (``auth_config`` stands in for
                                               ``imagePullSecrets``)
``command`` / ``args``                         ``command`` replaces the image's ENTRYPOINT
                                               (and drops its CMD), ``args`` replaces CMD
``env`` (``value``, ``$(VAR)`` references)     environment, over the variables the kubelet
                                               derives from Services (``services=``; all of
                                               the namespace's unless ``enableServiceLinks:
                                               false``, the API server's always)
``runAsUser`` / ``runAsGroup`` (container,     ``user="uid:gid"``; ``runAsNonRoot`` is
then pod ``securityContext``)                  checked as the kubelet does, before starting
``fsGroup``, ``supplementalGroups``            ``group_add``; an ``emptyDir`` is owned by
                                               the fsGroup
``readOnlyRootFilesystem``                     ``read_only=True``
``allowPrivilegeEscalation: false``            ``no-new-privileges``
``capabilities`` drop/add                      ``cap_drop`` / ``cap_add``
``emptyDir`` + ``volumeMounts``                a tmpfs at the mount path: empty (the image's
                                               files there are hidden), exec allowed,
                                               ``sizeLimit`` as its size, writable by any uid
                                               (runc keeps the image directory's mode, 1777
                                               for /tmp, where Kubernetes makes it 2777)
``resources.limits.cpu`` / ``.memory``         ``nano_cpus`` (CFS quota) / ``mem_limit``
                                               (no swap, as on a Kubernetes node)
``resources.requests.cpu``                     ``cpu_shares`` (milliCPU * 1024 / 1000)
``ports[].containerPort`` (and probe ports)    published on a free port of 127.0.0.1
``terminationGracePeriodSeconds``              ``docker stop`` timeout (SIGTERM, then KILL)
=============================================  ============================================

The image's Docker HEALTHCHECK is disabled (a CRI runtime ignores it: probes are the kubelet's
job). Probes follow the kubelet's rules: ``httpGet`` succeeds on a status in [200, 400) within
``timeoutSeconds``, ``tcpSocket`` on a connection, ``exec`` on exit code 0; probes run every
``periodSeconds`` after ``initialDelaySeconds``; a startup probe allows ``failureThreshold``
consecutive failures, then the kubelet would kill the container.

Not modelled (and refused when a template uses them, rather than silently ignored): other
volume types, ``subPath``, ``valueFrom``/``envFrom``, gRPC probes, init containers. Not
modelled and harmless for deployer's pods: the pod's other containers (only one runs),
restarts (an exited container is reported, where the kubelet would restart it into
CrashLoopBackOff; a failed liveness probe is reported, not acted on), the service-account token
mount, the pod's own IP (probes reach the published port on 127.0.0.1).

Usage::

    with run_pod(docker_client, deployment["spec"]["template"]["spec"]) as pod:
        assert wait_started(pod).succeeded, pod.logs()
        assert wait_ready(pod, timeout=60).succeeded
        urllib.request.urlopen(pod.url() + "/ping")

The container is always removed when the ``with`` block ends, failing or not.
"""

from __future__ import annotations

import copy
import re
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

#: Label on every container this module starts (to find leftovers by hand).
LABEL = "io.deployer.test.kubelet"
_DEFAULT_GRACE = 30  # Kubernetes' default terminationGracePeriodSeconds
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PodError(Exception):
    """The kubelet would refuse to start this container (CreateContainerConfigError,
    ErrImagePull...), or the template uses something this module does not model."""


# ---------------------------------------------------------------------------- quantities
_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))(?P<suffix>[eE][+-]?\d+|[a-zA-Z]*)$")


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity as a number: ``500m`` -> 0.5, ``2`` -> 2, ``512Mi`` -> 536870912,
    ``1G`` -> 10**9, ``1e3`` -> 1000."""
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise PodError(f"{value!r} is not a Kubernetes quantity")
    number, suffix = Decimal(m["number"]), m["suffix"]
    if suffix[:1] in ("e", "E") and suffix[1:].lstrip("+-").isdigit():
        return number * Decimal(10) ** int(suffix[1:])
    if suffix not in _SUFFIXES:
        raise PodError(f"{value!r}: unknown quantity suffix {suffix!r}")
    return number * _SUFFIXES[suffix]


# ---------------------------------------------------------------------------- the pod
def port_number(main: dict[str, Any], port: int | str) -> int:
    """A probe's ``port``: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for item in main.get("ports", []):
        if item.get("name") == port:
            return int(item["containerPort"])
    raise PodError(f"no container port named {port!r}")


@dataclass(frozen=True)
class ProbeRun:
    """The kubelet's view after probing for a while."""

    succeeded: bool
    attempts: int
    seconds: float
    exit_code: int | None  # the container exited (with this code) while being probed
    last_error: str  # why the last failed attempt failed ("" if none failed)


@dataclass(frozen=True)
class Stopped:
    seconds: float  # from SIGTERM to the container's exit
    exit_code: int  # 137: it was killed at the end of the grace period


@dataclass
class Pod:
    """A running container of a pod template, with its published ports."""

    container: Any  # docker.models.containers.Container
    spec: dict[str, Any]  # the pod spec it runs (a copy)
    main: dict[str, Any]  # the container's spec in it
    host_ports: dict[int, int]  # containerPort -> port on 127.0.0.1

    def port_number(self, port: int | str) -> int:
        return port_number(self.main, port)

    def url(self, port: int | str | None = None) -> str:
        """``http://127.0.0.1:HOSTPORT`` of a container port (default: the first one)."""
        number = self.port_number(port) if port is not None else next(iter(self.host_ports))
        return f"http://127.0.0.1:{self.host_ports[number]}"

    def exit_code(self) -> int | None:
        """None while the container runs, else its exit code."""
        self.container.reload()
        if self.container.status in ("created", "running", "restarting", "paused"):
            return None
        return int(self.container.attrs["State"]["ExitCode"])

    def logs(self, tail: int | str = 200) -> str:
        return self.container.logs(tail=tail).decode(errors="replace")

    def exec(self, argv: list[str]) -> tuple[int, str]:
        """Run ``argv`` in the container (as ``kubectl exec``: same user, env and mounts)."""
        code, output = self.container.exec_run(argv, demux=False)
        return int(code), (output or b"").decode(errors="replace")

    @property
    def grace_period(self) -> int:
        return int(self.spec.get("terminationGracePeriodSeconds", _DEFAULT_GRACE))

    def stop(self) -> Stopped:
        """What deleting the pod does: SIGTERM (the image's stop signal), then SIGKILL after
        ``terminationGracePeriodSeconds``."""
        started = time.monotonic()
        self.container.stop(timeout=self.grace_period)
        seconds = time.monotonic() - started
        self.container.reload()
        return Stopped(seconds, int(self.container.attrs["State"]["ExitCode"]))


# ---------------------------------------------------------------------------- translation
_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined variables are replaced, unknown references
    stay as written, ``$$`` is a literal ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF.sub(sub, value)


#: The API server's own Service: every pod gets its variables, service links or not.
API_SERVICE: dict[str, Any] = {
    "metadata": {"name": "kubernetes"},
    "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
}


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def service_environment(services: Sequence[dict[str, Any]], *, links: bool = True) -> dict[str, str]:
    """The variables the kubelet derives from Services (Docker-links style): the API server's
    always, and with ``links`` (the pod's ``enableServiceLinks``, true unless set false) those
    of every Service of the pod's namespace, e.g. for a Service ``iris`` (port ``http`` 80):
    ``IRIS_SERVICE_HOST``, ``IRIS_SERVICE_PORT``, ``IRIS_SERVICE_PORT_HTTP``,
    ``IRIS_PORT=tcp://IP:80``, ``IRIS_PORT_80_TCP``, ``..._PROTO``, ``..._PORT``, ``..._ADDR``.
    A Service without a ``clusterIP`` gets one (the API server assigns it); headless
    Services (``None``) get no variables."""
    env: dict[str, str] = {}
    for i, service in enumerate([API_SERVICE, *(services if links else ())]):
        ip = service.get("spec", {}).get("clusterIP") or f"10.96.1.{10 + i}"
        ports = service.get("spec", {}).get("ports") or []
        if ip == "None" or not ports:
            continue
        prefix = _env_name(service["metadata"]["name"])
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}"] = str(port["port"])
        for j, port in enumerate(ports):
            protocol = str(port.get("protocol") or "TCP")
            url = f"{protocol.lower()}://{ip}:{port['port']}"
            if j == 0:
                env[f"{prefix}_PORT"] = url
            each = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
            env.update({each: url, f"{each}_PROTO": protocol.lower(),
                        f"{each}_PORT": str(port["port"]), f"{each}_ADDR": ip})
    return env


def _environment(main: dict[str, Any], services: Mapping[str, str]) -> dict[str, str]:
    """The container's environment: its ``env`` (``$(VAR)`` expanded against the variables
    defined before it, then the Services'), over the Services' variables."""
    if main.get("envFrom"):
        raise PodError("envFrom is not modelled")
    env: dict[str, str] = {}
    for item in main.get("env", []):
        if "valueFrom" in item:
            raise PodError(f"env {item['name']}: valueFrom is not modelled")
        env[item["name"]] = _expand(str(item.get("value", "")), {**services, **env})
    return {**services, **env}


def _pull_policy(image: str, policy: str | None) -> str:
    """Kubernetes' default: Always for ``:latest`` or no tag, else IfNotPresent (a digest
    reference is never pulled again when the node has it)."""
    if policy:
        return policy
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    return "Always" if ":" not in last or last.endswith(":latest") else "IfNotPresent"


def _split_reference(image: str) -> tuple[str, str]:
    """``repo@sha256:...`` -> (repo, ``sha256:...``); ``repo:tag`` -> (repo, tag)."""
    if "@" in image:
        repo, digest = image.split("@", 1)
        return repo, digest
    head, _, last = image.rpartition("/")
    if ":" in last:
        name, tag = last.split(":", 1)
        return (f"{head}/{name}" if head else name), tag
    return image, "latest"


def ensure_image(client: Any, image: str, policy: str | None, auth_config: dict[str, str] | None) -> Any:
    """The image the node would run for ``image``, pulled as ``imagePullPolicy`` says."""
    import docker

    policy = _pull_policy(image, policy)
    if policy != "Always":
        try:
            return client.images.get(image)
        except docker.errors.ImageNotFound:
            if policy == "Never":
                raise PodError(f"ErrImageNeverPull: {image} is not on the node") from None
    repo, tag = _split_reference(image)
    try:
        return client.images.pull(repo, tag=tag, auth_config=auth_config)
    except docker.errors.APIError as exc:
        raise PodError(f"ErrImagePull: {image}: {exc}") from exc


def _user(main: dict[str, Any], pod: dict[str, Any], image_user: str) -> str | None:
    """``uid:gid`` for docker, after the kubelet's runAsNonRoot check."""
    mine, theirs = main.get("securityContext") or {}, pod.get("securityContext") or {}

    def setting(key: str) -> Any:
        return mine[key] if key in mine else theirs.get(key)

    uid, gid, non_root = setting("runAsUser"), setting("runAsGroup"), setting("runAsNonRoot")
    if non_root:
        if uid is None:
            image_uid = image_user.split(":", 1)[0]
            if not image_uid.isdigit():  # the kubelet cannot tell a user name's uid
                raise PodError(f"image has non-numeric user ({image_uid or 'root'}), cannot "
                               "verify user is non-root")
            uid = int(image_uid)
        if int(uid) == 0:
            raise PodError("container's runAsUser breaks non-root policy")
    if uid is None and gid is None:
        return None
    user = str(uid) if uid is not None else (image_user.split(":", 1)[0] or "0")
    return f"{user}:{gid}" if gid is not None else user


def _tmpfs(main: dict[str, Any], pod: dict[str, Any]) -> dict[str, str]:
    """Each mounted emptyDir as a tmpfs: empty, mode 0777 (2777 and owned by the fsGroup when
    the pod sets one), exec allowed like a Kubernetes emptyDir."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    fs_group = (pod.get("securityContext") or {}).get("fsGroup")
    mounts: dict[str, str] = {}
    for mount in main.get("volumeMounts", []):
        volume = volumes.get(mount["name"])
        if volume is None:
            raise PodError(f"volumeMount {mount['name']!r}: no such volume in the pod")
        if "emptyDir" not in volume:
            raise PodError(f"volume {mount['name']!r}: only emptyDir is modelled")
        if mount.get("subPath") or mount.get("subPathExpr"):
            raise PodError("subPath is not modelled")
        options = ["rw" if not mount.get("readOnly") else "ro", "exec"]
        options.append("mode=2777" if fs_group is not None else "mode=0777")
        if fs_group is not None:
            options.append(f"gid={int(fs_group)}")
        size = (volume["emptyDir"] or {}).get("sizeLimit")
        if size:
            options.append(f"size={int(quantity(size))}")
        mounts[mount["mountPath"]] = ",".join(options)
    return mounts


def _security(main: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
    ctx, pod_ctx = main.get("securityContext") or {}, pod.get("securityContext") or {}
    out: dict[str, Any] = {"security_opt": []}
    if ctx.get("readOnlyRootFilesystem"):
        out["read_only"] = True
    if ctx.get("allowPrivilegeEscalation") is False:
        out["security_opt"].append("no-new-privileges:true")
    if ctx.get("privileged"):
        out["privileged"] = True
    caps = ctx.get("capabilities") or {}
    if caps.get("drop"):
        out["cap_drop"] = list(caps["drop"])
    if caps.get("add"):
        out["cap_add"] = list(caps["add"])
    seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
    if seccomp == "Unconfined":
        out["security_opt"].append("seccomp=unconfined")
    elif seccomp not in (None, "RuntimeDefault"):  # RuntimeDefault: the engine's own profile
        raise PodError(f"seccompProfile {seccomp} is not modelled")
    groups = [*pod_ctx.get("supplementalGroups", [])]
    if pod_ctx.get("fsGroup") is not None:
        groups.append(pod_ctx["fsGroup"])
    if groups:
        out["group_add"] = [str(g) for g in groups]
    return out


def _resources(main: dict[str, Any], host_cpus: int) -> dict[str, Any]:
    resources = main.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    out: dict[str, Any] = {}
    if "cpu" in limits:
        # A quota above the node's CPUs never binds; docker refuses one, so cap it there.
        out["nano_cpus"] = int(min(quantity(limits["cpu"]), host_cpus) * 10**9)
    request = requests.get("cpu", limits.get("cpu"))  # the API server defaults it to the limit
    if request is not None:
        out["cpu_shares"] = max(2, int(quantity(request) * 1000) * 1024 // 1000)
    if "memory" in limits:
        out["mem_limit"] = int(quantity(limits["memory"]).to_integral_value(rounding=ROUND_CEILING))
        out["memswap_limit"] = out["mem_limit"]  # Kubernetes nodes run without swap
    return out


def _probe_ports(main: dict[str, Any]) -> set[int | str]:
    ports: set[int | str] = set()
    for key in ("startupProbe", "readinessProbe", "livenessProbe"):
        action = (main.get(key) or {}).get("httpGet") or (main.get(key) or {}).get("tcpSocket")
        if action:
            ports.add(action["port"])
    return ports


def container_options(client: Any, pod_spec: dict[str, Any], index: int = 0,
                      services: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The docker SDK ``containers.create`` keyword arguments for container ``index`` of
    ``pod_spec`` (image reference included, as ``image``); ``services``: the Services of the
    pod's namespace (see :func:`service_environment`)."""
    main = pod_spec["containers"][index]
    if pod_spec.get("initContainers"):
        raise PodError("initContainers are not modelled")
    image = client.images.get(main["image"])
    links = pod_spec.get("enableServiceLinks", True) is not False
    env = _environment(main, service_environment(services, links=links))
    options: dict[str, Any] = {
        "image": main["image"],
        "environment": env,
        "healthcheck": {"test": ["NONE"]},  # a CRI runtime ignores HEALTHCHECK
        "labels": {LABEL: "1"},
        "tmpfs": _tmpfs(main, pod_spec),
        **_security(main, pod_spec),
        **_resources(main, int(client.info()["NCPU"])),
    }
    user = _user(main, pod_spec, image.attrs["Config"].get("User") or "")
    if user:
        options["user"] = user
    if main.get("command") is not None:  # replaces ENTRYPOINT; the image's CMD goes too
        options["entrypoint"] = [_expand(a, env) for a in main["command"]]
        options["command"] = [_expand(a, env) for a in main.get("args", [])]
    elif main.get("args") is not None:  # replaces CMD, keeps ENTRYPOINT
        options["command"] = [_expand(a, env) for a in main["args"]]
    if main.get("workingDir"):
        options["working_dir"] = main["workingDir"]
    return options


# ---------------------------------------------------------------------------- running
@contextmanager
def run_pod(
    client: Any,
    pod_spec: dict[str, Any],
    *,
    name: str = "pod",
    index: int = 0,
    auth_config: dict[str, str] | None = None,
    services: Sequence[dict[str, Any]] = (),
) -> Iterator[Pod]:
    """Start container ``index`` of ``pod_spec`` as the kubelet would (see the module
    docstring); yield the :class:`Pod`; remove the container at the end, whatever happens.
    ``auth_config``: the registry login the node's ``imagePullSecrets`` would give;
    ``services``: the Services of the pod's namespace (their variables are injected)."""
    spec = copy.deepcopy(pod_spec)
    main = spec["containers"][index]
    ensure_image(client, main["image"], main.get("imagePullPolicy"), auth_config)
    options = container_options(client, spec, index, services)
    ports = {int(p["containerPort"]) for p in main.get("ports", [])}
    ports |= {port_number(main, p) for p in _probe_ports(main)}
    unique = f"kubelet-{name}-{secrets.token_hex(4)}"
    container = client.containers.create(
        detach=True,
        name=unique,
        hostname=name,
        ports={f"{p}/tcp": ("127.0.0.1", None) for p in sorted(ports)},
        **options,
    )
    try:
        container.start()
        container.reload()
        published = {
            int(key.split("/")[0]): int(bindings[0]["HostPort"])
            for key, bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).items()
            if bindings
        }
        yield Pod(container, spec, main, published)
    finally:
        container.remove(force=True)


# ---------------------------------------------------------------------------- probing
def _http(pod: Pod, action: dict[str, Any], timeout: float) -> tuple[bool, str]:
    port = pod.host_ports[pod.port_number(action["port"])]
    scheme = str(action.get("scheme", "HTTP")).lower()
    path = action.get("path", "/")
    headers = {"User-Agent": "kube-probe/1.31", "Accept": "*/*"}
    headers.update({h["name"]: h["value"] for h in action.get("httpHeaders", [])})
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", headers=headers)
    try:
        # no redirect handler installed on purpose: the kubelet counts a 3xx as success
        with _OPENER.open(request, timeout=timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:  # refused, reset, timed out...
        return False, f"{path}: {exc}"
    return 200 <= status < 400, f"{path}: HTTP {status}"


def probe(pod: Pod, spec: dict[str, Any]) -> bool:
    """One attempt of a probe (``httpGet``, ``tcpSocket`` or ``exec``), as the kubelet makes
    it: success or failure within ``timeoutSeconds`` (default 1)."""
    return _attempt(pod, spec)[0]


def _attempt(pod: Pod, spec: dict[str, Any]) -> tuple[bool, str]:
    timeout = float(spec.get("timeoutSeconds", 1))
    if "httpGet" in spec:
        return _http(pod, spec["httpGet"], timeout)
    if "tcpSocket" in spec:
        port = pod.host_ports[pod.port_number(spec["tcpSocket"]["port"])]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
        except OSError as exc:
            return False, f"tcp {port}: {exc}"
        return True, ""
    if "exec" in spec:  # (the SDK's exec has no timeout; deployer's templates use none)
        code, output = pod.exec(list(spec["exec"]["command"]))
        return code == 0, output[-500:]
    raise PodError(f"probe {sorted(spec)} is not modelled")


def run_probe(pod: Pod, spec: dict[str, Any], *, give_up_after: int | None,
              timeout: float | None) -> ProbeRun:
    """Probe every ``periodSeconds`` (after ``initialDelaySeconds``) until
    ``successThreshold`` consecutive successes; fail after ``give_up_after`` consecutive
    failures, after ``timeout`` seconds, or when the container exits."""
    started = time.monotonic()
    period = float(spec.get("periodSeconds", 10))
    needed = int(spec.get("successThreshold", 1))
    time.sleep(float(spec.get("initialDelaySeconds", 0)))
    attempts = successes = failures = 0
    last_error = ""
    next_at = time.monotonic()
    while True:
        exit_code = pod.exit_code()
        if exit_code is not None:
            return ProbeRun(False, attempts, time.monotonic() - started, exit_code, last_error)
        ok, detail = _attempt(pod, spec)
        attempts += 1
        if ok:
            successes, failures = successes + 1, 0
            if successes >= needed:
                return ProbeRun(True, attempts, time.monotonic() - started, None, last_error)
        else:
            successes, failures, last_error = 0, failures + 1, detail
            if give_up_after is not None and failures >= give_up_after:
                return ProbeRun(False, attempts, time.monotonic() - started, None, last_error)
        next_at += period
        if timeout is not None and next_at - started > timeout:
            return ProbeRun(False, attempts, time.monotonic() - started, pod.exit_code(), last_error)
        time.sleep(max(0.0, next_at - time.monotonic()))


def wait_started(pod: Pod) -> ProbeRun:
    """The startup probe, until it succeeds or ``failureThreshold`` consecutive attempts
    failed (where the kubelet kills the container). No startup probe: started at once."""
    spec = pod.main.get("startupProbe")
    if not spec:
        return ProbeRun(True, 0, 0.0, None, "")
    return run_probe(pod, spec, give_up_after=int(spec.get("failureThreshold", 3)), timeout=None)


def wait_ready(pod: Pod, timeout: float) -> ProbeRun:
    """The readiness probe until the pod is Ready; a failing readiness probe only keeps the
    pod out of its Service (no restart), so the caller says how long to wait."""
    spec = pod.main.get("readinessProbe")
    if not spec:
        return ProbeRun(True, 0, 0.0, None, "")
    return run_probe(pod, spec, give_up_after=None, timeout=timeout)


def ready(pod: Pod) -> bool:
    """One readiness probe attempt (no probe: Ready once running)."""
    spec = pod.main.get("readinessProbe")
    return probe(pod, spec) if spec else pod.exit_code() is None


def live(pod: Pod) -> bool:
    """One liveness probe attempt (no probe: alive while running)."""
    spec = pod.main.get("livenessProbe")
    return probe(pod, spec) if spec else pod.exit_code() is None
