"""What a Kubernetes / KServe deploy asks for, validated: :class:`KubeSpec` from the options.

Everything a user types is checked here, before any manifest is built or any API call made:
names and namespaces are RFC 1123 labels (what the API server would refuse, refused earlier
with the rule spelled out), CPU and memory are Kubernetes quantities, ``--autoscale`` is
``MIN:MAX:CPU%``, percentages are 0-100, environment variables are ``KEY=VALUE`` with a
C identifier for a key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deployer.errors import UsageError

#: RFC 1123 label: what Kubernetes takes for Deployment, Service and namespace names.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(
    r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
)
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNITS = {
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
#: The container port deployer's server listens on in the pod.
PORT = 8080
#: Seconds SIGTERM waits for in-flight requests in deployer's server (its default is
#: min(timeout + 1, 25)); the pod's grace period must be longer.
GRACEFUL_SECONDS = 25
GRACE_PERIOD = 40


def check_name(value: str, *, what: str, flag: str, max_len: int = 63) -> str:
    """An RFC 1123 label (lower case letters, digits, '-'; starts and ends alphanumeric)."""
    if not isinstance(value, str) or len(value) > max_len or not _DNS_LABEL.match(value):
        raise UsageError(
            f"{what} {value!r} is not a valid Kubernetes name",
            where=flag,
            fix=f"use at most {max_len} lower-case letters, digits and '-', starting and ending "
            "with a letter or digit (RFC 1123), e.g. iris-classifier",
        )
    return value


def quantity(value: str, *, what: str, flag: str, cpu: bool) -> str:
    """A Kubernetes quantity (``500m``, ``2``, ``1Gi``), returned as given."""
    m = _QUANTITY.match(str(value).strip())
    if not m or (not cpu and m.group("unit") == "m") or float(m.group("number")) <= 0:
        example = "500m or 2" if cpu else "512Mi or 2Gi"
        raise UsageError(
            f"{what} {value!r} is not a Kubernetes quantity",
            where=flag,
            fix=f"write it as Kubernetes does, e.g. {example}",
        )
    return str(value).strip()


def cpus(value: str) -> float:
    """CPUs of a CPU quantity (``500m`` -> 0.5)."""
    m = _QUANTITY.match(value)
    assert m is not None
    number, unit = float(m.group("number")), m.group("unit") or ""
    return number / 1000 if unit == "m" else number * _UNITS[unit]


@dataclass(frozen=True)
class Autoscale:
    """``--autoscale MIN:MAX:CPU%``: a HorizontalPodAutoscaler on average CPU utilization."""

    min_replicas: int
    max_replicas: int
    cpu_percent: int

    @classmethod
    def parse(cls, raw: str) -> Autoscale:
        parts = str(raw).split(":")
        fix = "write MIN:MAX:CPU%, e.g. 2:10:70 (2 to 10 pods, 70% of the CPU request on average)"
        try:
            low, high, target = (int(p.rstrip("%")) for p in parts)
        except ValueError:
            raise UsageError(
                f"--autoscale {raw!r} is not MIN:MAX:CPU%", where="--autoscale", fix=fix
            ) from None
        if not (1 <= low <= high) or not 1 <= target <= 100:
            raise UsageError(
                f"--autoscale {raw!r}: need 1 <= MIN <= MAX and 1 <= CPU% <= 100",
                where="--autoscale",
                fix=fix,
            )
        return cls(low, high, target)


@dataclass(frozen=True)
class KubeSpec:
    """One Kubernetes or KServe deployment, validated (see module docstring)."""

    name: str
    namespace: str
    replicas: int = 1
    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    autoscale: Autoscale | None = None
    pdb_min_available: int | None = None
    env: tuple[tuple[str, str], ...] = ()
    image_pull_secret: str | None = None
    service_account: str | None = None
    model_name: str = "model"  # the name V2 routes answer to
    timeout: float = 600.0
    wait: bool = True
    # KServe
    canary: int | None = None  # percent of the traffic for the new revision
    min_replicas: int | None = None
    max_replicas: int | None = None
    # what the model came from (deployer.model.provenance), as annotations of the workload
    provenance: tuple[tuple[str, str], ...] = ()

    @property
    def workers(self) -> int | None:
        """Server workers: one per whole CPU of the limit (else the request; at least 1). The
        container sees the node's CPU count, not its quota, so this is set explicitly. None
        without a CPU setting: the server's default (the CPUs it sees)."""
        source = self.cpu_limit or self.cpu_request
        return max(1, math.floor(cpus(source))) if source else None

    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": self.name, "app.kubernetes.io/managed-by": "deployer"}


def parse_env(values: Any) -> tuple[tuple[str, str], ...]:
    out = []
    for item in values or ():
        key, sep, value = str(item).partition("=")
        if not sep or not _ENV_KEY.match(key):
            raise UsageError(
                f"--env {item!r} is not KEY=VALUE",
                where="--env",
                fix="write --env NAME=value (NAME: letters, digits, '_')",
            )
        out.append((key, value))
    return tuple(out)


def _int(
    options: Mapping[str, Any], key: str, flag: str, low: int, high: int | None = None
) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    number = int(value)
    if number < low or (high is not None and number > high):
        bound = f"{low}-{high}" if high is not None else f">= {low}"
        raise UsageError(f"{flag} {value} is out of range", where=flag, fix=f"use a number {bound}")
    return number


def parse_spec(
    name: str,
    options: Mapping[str, Any],
    *,
    namespace: str,
    model_name: str,
    timeout: float | None,
    wait: bool,
) -> KubeSpec:
    """The request's options -> :class:`KubeSpec` (UsageError on any bad value)."""
    check_name(name, what="endpoint name", flag="--name")
    check_name(namespace, what="namespace", flag="--namespace")
    for key, flag in (
        ("image_pull_secret", "--image-pull-secret"),
        ("service_account", "--service-account"),
    ):
        if options.get(key):
            check_name(str(options[key]), what=flag[2:].replace("-", " "), flag=flag, max_len=253)

    def q(key: str, flag: str, cpu: bool) -> str | None:
        raw = options.get(key)
        return quantity(str(raw), what=flag, flag=flag, cpu=cpu) if raw else None

    autoscale = Autoscale.parse(str(options["autoscale"])) if options.get("autoscale") else None
    spec = KubeSpec(
        name=name,
        namespace=namespace,
        replicas=_int(options, "replicas", "--replicas", 0)
        if options.get("replicas") is not None
        else 1,
        # a limit defaults to the request: guaranteed resources, and a worker count that fits
        cpu_request=q("cpu", "--cpu", True),
        cpu_limit=q("cpu_limit", "--cpu-limit", True) or q("cpu", "--cpu", True),
        memory_request=q("memory", "--memory", False),
        memory_limit=q("memory_limit", "--memory-limit", False) or q("memory", "--memory", False),
        autoscale=autoscale,
        pdb_min_available=_int(options, "pdb_min_available", "--pdb-min-available", 0),
        env=parse_env(options.get("env")),
        image_pull_secret=options.get("image_pull_secret") or None,
        service_account=options.get("service_account") or None,
        model_name=model_name,
        timeout=600.0 if timeout is None else float(timeout),
        wait=wait,
        canary=_int(options, "canary", "--canary", 0, 100),
        min_replicas=_int(options, "min_replicas", "--min-replicas", 0),
        max_replicas=_int(options, "max_replicas", "--max-replicas", 1),
    )
    if spec.cpu_limit and spec.cpu_request and cpus(spec.cpu_limit) < cpus(spec.cpu_request):
        raise UsageError(
            f"--cpu-limit {spec.cpu_limit} is below --cpu {spec.cpu_request}",
            where="--cpu-limit",
            fix="make the limit at least the request",
        )
    if spec.autoscale and spec.cpu_request is None:
        raise UsageError(
            "--autoscale scales on CPU utilization, which needs a CPU request",
            where="--autoscale",
            fix="add --cpu (e.g. --cpu 500m)",
        )
    if (
        spec.min_replicas is not None
        and spec.max_replicas is not None
        and spec.min_replicas > spec.max_replicas
    ):
        raise UsageError(
            "--min-replicas is above --max-replicas", where="--min-replicas", fix="make MIN <= MAX"
        )
    return spec
