"""Schema validation of every manifest the Kubernetes and KServe targets render, and the content
that matters to users (security, probes, workers, autoscaling, KServe wiring).

* Kubernetes objects (Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget):
  ``kubernetes-validate`` in strict mode (unknown fields refused), against the oldest Kubernetes
  minor it ships schemas for that knows every apiVersion we render, and the newest it ships,
  both discovered from the package's schema folder.
* KServe objects (ServingRuntime, InferenceService): KServe's CRDs cannot be committed here, so
  they are checked against the generated API models of the KServe Python SDK (the ``kserve``
  wheel, downloaded once per session with a pinned hash, never installed: only its
  ``kserve.models`` modules are imported) plus the official ``kubernetes`` client's models for
  the core types (V1Container, V1Probe...). :class:`SdkSchema` is a strict recursive validator
  over their ``openapi_types`` / ``attribute_map``; the data is then instantiated with the SDK's
  classes (client-side validation: required fields) and serialized back, which must give the
  manifest unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.resources
import inspect
import os
import re
import subprocess
import sys
import tempfile
import types
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.client.models
import kubernetes_validate
import pytest
import yaml

from deployer.targets.kubernetes import manifests
from deployer.targets.kubernetes.export import file_name
from deployer.targets.kubernetes.spec import KubeSpec, parse_spec

NAME = "iris"
NAMESPACE = "ml"
MODEL_NAME = "iris-classifier"
IMAGE = "registry.example.com/ml/iris@sha256:" + "0123456789abcdef" * 4

ALL_KUBE_OPTIONS: dict[str, Any] = {
    "replicas": 3,  # ignored: the HPA owns the replica count
    "cpu": "500m",
    "cpu_limit": "2500m",
    "memory": "512Mi",
    "memory_limit": "1Gi",
    "autoscale": "2:10:70",
    "pdb_min_available": 1,
    "env": ("LOG_LEVEL=debug", "DEPLOYER_SERVE_WORKERS=7"),
    "image_pull_secret": "regcred",
    "service_account": "iris-runner",
}
KUBE_CASES: dict[str, dict[str, Any]] = {
    "minimal": {},
    "all-options": ALL_KUBE_OPTIONS,
    "replicas-0": {"replicas": 0},
    "replicas-3-pdb": {"replicas": 3, "cpu": "2", "memory": "1Gi", "pdb_min_available": 2},
}
KSERVE_CASES: dict[str, dict[str, Any]] = {
    "minimal": {},
    "canary": {"canary": 10},
    "canary-0": {"canary": 0},
    "scale-to-zero": {"min_replicas": 0, "max_replicas": 3},
    "all-options": {
        "canary": 25,
        "min_replicas": 1,
        "max_replicas": 5,
        "cpu": "1",
        "cpu_limit": "2",
        "memory": "1Gi",
        "env": ("LOG_LEVEL=debug",),
        "image_pull_secret": "regcred",
        "service_account": "iris-runner",
    },
}


def spec_of(options: dict[str, Any]) -> KubeSpec:
    return parse_spec(NAME, options, namespace=NAMESPACE, model_name=MODEL_NAME, timeout=None, wait=True)


def kube_objects(options: dict[str, Any]) -> list[dict[str, Any]]:
    return manifests.kubernetes_objects(spec_of(options), IMAGE)


def kserve_objects(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    runtime, isvc = manifests.kserve_objects(spec_of(options), IMAGE)
    assert (runtime["kind"], isvc["kind"]) == ("ServingRuntime", "InferenceService"), (
        f"kserve_objects must return [ServingRuntime, InferenceService], got {[runtime['kind'], isvc['kind']]}")
    return runtime, isvc


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [o["kind"] for o in objects]
    assert len(set(kinds)) == len(kinds), f"one object per kind expected, got {kinds}"
    return {o["kind"]: o for o in objects}


def exported(obj: dict[str, Any]) -> dict[str, Any]:
    """What ``export`` writes and ``kubectl apply`` reads back: the object through YAML."""
    loaded = yaml.safe_load(yaml.safe_dump(obj, sort_keys=False))
    assert loaded == obj, f"{obj['kind']} changes through YAML: {obj} -> {loaded}"
    return loaded


# ------------------------------------------------------------------ kubernetes-validate
def _shipped_versions() -> list[str]:
    """The Kubernetes minors kubernetes-validate ships strict schemas for, oldest first."""
    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    found = {}
    for entry in folder.iterdir():
        m = re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local-strict", entry.name)
        if m and entry.is_dir():
            found[(int(m.group(1)), int(m.group(2)))] = f"{m.group(1)}.{m.group(2)}"
    assert found, f"no strict schema folder found in {folder}"
    return [found[k] for k in sorted(found)]


def _has_schemas(version: str, objects: list[dict[str, Any]]) -> bool:
    for obj in objects:
        try:
            kubernetes_validate.validate({"apiVersion": obj["apiVersion"], "kind": obj["kind"]}, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            return False
        except kubernetes_validate.ValidationError:
            pass  # the schema exists (an empty object is not valid, which is fine here)
    return True


SHIPPED_VERSIONS = _shipped_versions()
#: every (apiVersion, kind) any case renders (the all-options case renders all four kinds)
_EVERY_KIND = [obj for options in KUBE_CASES.values() for obj in kube_objects(options)]
_SUPPORTED = [v for v in SHIPPED_VERSIONS if _has_schemas(v, _EVERY_KIND)]
OLDEST = _SUPPORTED[0] if _SUPPORTED else SHIPPED_VERSIONS[0]
NEWEST = SHIPPED_VERSIONS[-1]
KUBE_VERSIONS = sorted({OLDEST, NEWEST}, key=lambda v: tuple(map(int, v.split("."))))


def test_every_rendered_api_version_exists_from_the_oldest_to_the_newest_shipped_kubernetes() -> None:
    kinds = sorted({f"{o['apiVersion']} {o['kind']}" for o in _EVERY_KIND})
    assert kinds == ["apps/v1 Deployment", "autoscaling/v2 HorizontalPodAutoscaler",
                     "policy/v1 PodDisruptionBudget", "v1 Service"], kinds
    assert _SUPPORTED == SHIPPED_VERSIONS, (
        f"the manifests' apiVersions {kinds} are not all known to Kubernetes "
        f"{sorted(set(SHIPPED_VERSIONS) - set(_SUPPORTED))} (kubernetes-validate ships {SHIPPED_VERSIONS})")


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("case", sorted(KUBE_CASES))
def test_kubernetes_objects_validate_strictly(case: str, version: str) -> None:
    objects = kube_objects(KUBE_CASES[case])
    for obj in objects:
        try:
            validated = kubernetes_validate.validate(exported(obj), version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{obj['kind']} ({case}) is invalid for Kubernetes {version} (strict): "
                        f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}")
        assert validated == version, f"kubernetes-validate used the {validated} schemas, not {version}"


def _misspelled_container_field(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = copy.deepcopy(by_kind(objects)["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    return deployment


def _misspelled_pod_field(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = copy.deepcopy(by_kind(objects)["Deployment"])
    pod = deployment["spec"]["template"]["spec"]
    pod["terminationGracePeriodSecond"] = pod.pop("terminationGracePeriodSeconds")
    return deployment


def _replicas_as_string(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = copy.deepcopy(by_kind(objects)["Deployment"])
    deployment["spec"]["replicas"] = "3"
    return deployment


def _run_as_non_root_as_string(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = copy.deepcopy(by_kind(objects)["Deployment"])
    deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = "true"
    return deployment


def _autoscaling_v1_field_in_v2(objects: list[dict[str, Any]]) -> dict[str, Any]:
    hpa = copy.deepcopy(by_kind(objects)["HorizontalPodAutoscaler"])
    hpa["spec"]["targetCPUUtilizationPercentage"] = 70
    return hpa


#: mutation -> what the error (``path: message``) must name
BAD_KUBE_OBJECTS: dict[str, tuple[Callable[[list[dict[str, Any]]], dict[str, Any]], str]] = {
    "misspelled-container-field": (_misspelled_container_field, "'imagePullPolcy' was unexpected"),
    "misspelled-pod-field": (_misspelled_pod_field, "'terminationGracePeriodSecond' was unexpected"),
    "replicas-as-string": (_replicas_as_string, "spec.replicas: '3' is not of type"),
    "runAsNonRoot-as-string": (_run_as_non_root_as_string, "spec.template.spec.securityContext.runAsNonRoot: 'true'"),
    "autoscaling-v1-field-in-v2": (_autoscaling_v1_field_in_v2, "'targetCPUUtilizationPercentage' was unexpected"),
}


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("mutation", sorted(BAD_KUBE_OBJECTS))
def test_kubernetes_validate_strict_rejects_a_bad_object(mutation: str, version: str) -> None:
    mutate, expected = BAD_KUBE_OBJECTS[mutation]
    bad = mutate(kube_objects(ALL_KUBE_OPTIONS))
    with pytest.raises(kubernetes_validate.ValidationError) as caught:
        kubernetes_validate.validate(bad, version, strict=True)
    error = f"{'.'.join(map(str, caught.value.path))}: {caught.value.message}"
    assert expected in error, f"{mutation}: rejected for another reason: {error}"
    assert caught.value.version == version


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
@pytest.mark.parametrize("case", ["minimal", "all-options"])
def test_kustomization_lists_every_exported_object(target: str, case: str) -> None:
    objects = (kube_objects(KUBE_CASES[case]) if target == "kubernetes"
               else list(kserve_objects(KSERVE_CASES[case])))
    files = [file_name(obj) for obj in objects]
    assert len(set(files)) == len(files), f"two objects would be written to the same file: {files}"
    kustomization = manifests.kustomization(files, NAMESPACE)
    assert kustomization == {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": files,
    }
    assert {obj["metadata"]["namespace"] for obj in objects} == {NAMESPACE}


# ------------------------------------------------------------------ KServe SDK models
KSERVE_VERSION = "0.21.0"
KSERVE_WHEEL = f"kserve-{KSERVE_VERSION}-py3-none-any.whl"
KSERVE_WHEEL_SHA256 = "df9bc5888704d9085015e08f1a8fced5ff0698f3becc6212d4e7b8234c71623b"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kserve_wheel(cache: Path) -> Path:
    """The kserve wheel from PyPI (``pip download``, hash pinned), cached across sessions."""
    wheel = cache / KSERVE_WHEEL
    if wheel.is_file() and _sha256(wheel) == KSERVE_WHEEL_SHA256:
        return wheel
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        requirements = Path(tmp, "requirements.txt")
        requirements.write_text(f"kserve=={KSERVE_VERSION} --hash=sha256:{KSERVE_WHEEL_SHA256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
               "--disable-pip-version-check", "--no-input", "-d", str(Path(tmp, "wheels")), "-r", str(requirements)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            pytest.fail(f"could not download the kserve {KSERVE_VERSION} wheel (PyPI):\n"
                        f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        os.replace(Path(tmp, "wheels", KSERVE_WHEEL), wheel)
    assert _sha256(wheel) == KSERVE_WHEEL_SHA256, f"{wheel} does not have the pinned sha256"
    return wheel


@contextmanager
def _kserve_package(root: Path) -> Iterator[None]:
    """``kserve`` as a bare package on ``root`` (its ``__init__.py``, which imports the model
    server and its heavy dependencies, never runs), removed from ``sys.modules`` afterwards."""
    owned = [k for k in sys.modules if k == "kserve" or k.startswith("kserve.")]
    saved = {k: sys.modules.pop(k) for k in owned}
    package = types.ModuleType("kserve", "the kserve wheel's API models only (test stand-in)")
    package.__path__ = [str(root / "kserve")]
    sys.modules["kserve"] = package
    try:
        yield
    finally:
        for k in [k for k in sys.modules if k == "kserve" or k.startswith("kserve.")]:
            del sys.modules[k]
        sys.modules.update(saved)


@dataclass(frozen=True)
class KServeSdk:
    models: dict[str, type]
    group: str


@pytest.fixture(scope="session")
def kserve_sdk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> KServeSdk:
    cache = getattr(request.config, "cache", None)
    wheel = _kserve_wheel(cache.mkdir("kserve-wheel") if cache is not None else tmp_path_factory.mktemp("kserve-wheel"))
    root = tmp_path_factory.mktemp("kserve-sdk")
    with zipfile.ZipFile(wheel) as zf:
        members = [n for n in zf.namelist() if n.endswith(".py") and (
            n == "kserve/configuration.py" or n.startswith(("kserve/models/", "kserve/constants/")))]
        zf.extractall(root, members)
    with _kserve_package(root):
        models = importlib.import_module("kserve.models")
        constants = importlib.import_module("kserve.constants.constants")
    classes = {name: cls for name, cls in vars(models).items()
               if isinstance(cls, type) and hasattr(cls, "openapi_types") and hasattr(cls, "attribute_map")}
    for required in ("V1beta1InferenceService", "V1alpha1ServingRuntime"):
        assert required in classes, f"kserve {KSERVE_VERSION} has no model {required}"
    return KServeSdk(classes, constants.KSERVE_GROUP)


_LIST = re.compile(r"list\[(.+)\]")
_DICT = re.compile(r"dict[(\[]str, (.+)[)\]]")  # kserve: dict(str, str); kubernetes: dict[str, str]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


#: JSON checks for the generators' primitive type names. 'object' is the kubernetes client's
#: IntOrString (ports, PDB minAvailable) and free-form objects (a ServingRuntime's status).
_PRIMITIVES: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": _is_int,
    "float": lambda v: _is_int(v) or isinstance(v, float),
    "bool": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, (str, dict)) or _is_int(v),
    "datetime": lambda v: isinstance(v, str),
    "date": lambda v: isinstance(v, str),
    "ResourceQuantity": lambda v: isinstance(v, str),  # kserve's name for a quantity
}


class SdkSchema:
    """A strict validator over the generated models: every key must be a JSON key of the model
    (``attribute_map``), every value of the declared type (``openapi_types``), recursively."""

    def __init__(self, sdk: KServeSdk) -> None:
        self.sdk = sdk

    def model(self, type_name: str) -> type | None:
        cls = self.sdk.models.get(type_name) or getattr(kubernetes.client.models, type_name, None)
        return cls if isinstance(cls, type) and hasattr(cls, "openapi_types") else None

    def errors(self, value: Any, type_name: str, path: str = "$") -> list[str]:
        out: list[str] = []
        self._check(value, type_name, path, out)
        return out

    def _check(self, value: Any, t: str, path: str, out: list[str]) -> None:
        if value is None:
            out.append(f"{path}: null where {t} is expected")
        elif m := _LIST.fullmatch(t):
            if not isinstance(value, list):
                out.append(f"{path}: {type(value).__name__} where {t} is expected")
                return
            for i, item in enumerate(value):
                self._check(item, m.group(1), f"{path}[{i}]", out)
        elif m := _DICT.fullmatch(t):
            if not isinstance(value, dict):
                out.append(f"{path}: {type(value).__name__} where {t} is expected")
                return
            for key, item in value.items():
                if not isinstance(key, str):
                    out.append(f"{path}[{key!r}]: a key must be a string ({t})")
                self._check(item, m.group(1), f"{path}[{key!r}]", out)
        elif t in _PRIMITIVES:
            if not _PRIMITIVES[t](value):
                out.append(f"{path}: {value!r} ({type(value).__name__}) is not a {t}")
        elif (cls := self.model(t)) is None:
            out.append(f"{path}: type {t} is in neither the kserve nor the kubernetes SDK: cannot validate")
        elif not isinstance(value, dict):
            out.append(f"{path}: {type(value).__name__} where an object {t} is expected")
        else:
            attributes = {json_key: attr for attr, json_key in cls.attribute_map.items()}
            for key, item in value.items():
                if key not in attributes:
                    out.append(f"{path}.{key}: unknown field of {t} (its fields: {sorted(attributes)})")
                else:
                    self._check(item, cls.openapi_types[attributes[key]], f"{path}.{key}", out)

    def build(self, value: Any, t: str) -> Any:
        """The SDK objects for valid data: the constructors check required fields."""
        if m := _LIST.fullmatch(t):
            return [self.build(item, m.group(1)) for item in value]
        if m := _DICT.fullmatch(t):
            return {key: self.build(item, m.group(1)) for key, item in value.items()}
        if t in _PRIMITIVES:
            return value
        cls = self.model(t)
        assert cls is not None, t
        attributes = {json_key: attr for attr, json_key in cls.attribute_map.items()}
        return cls(**{attributes[k]: self.build(v, cls.openapi_types[attributes[k]]) for k, v in value.items()})

    def assert_valid(self, obj: dict[str, Any], type_name: str) -> Any:
        """``obj`` is a valid ``type_name`` (e.g. V1beta1InferenceService): apiVersion and kind,
        the strict check, the SDK's constructors, and a lossless round trip. The SDK object."""
        m = re.fullmatch(r"(V\d+(?:alpha|beta)?\d*)(\w+)", type_name)
        assert m, type_name
        expected = (f"{self.sdk.group}/{m.group(1).lower()}", m.group(2))
        assert (obj.get("apiVersion"), obj.get("kind")) == expected, (
            f"{obj.get('kind')}: apiVersion/kind {obj.get('apiVersion')}/{obj.get('kind')}, "
            f"KServe's {type_name} is {expected[0]}/{expected[1]}")
        problems = self.errors(obj, type_name)
        assert not problems, f"{type_name} does not match the KServe {KSERVE_VERSION} SDK:\n" + "\n".join(problems)
        built = self.build(obj, type_name)
        assert isinstance(built, self.sdk.models[type_name])
        lost = self.round_trip_errors(obj, built, type_name)
        assert not lost, f"{type_name} does not survive the SDK round trip:\n" + "\n".join(lost)
        return built

    def round_trip_errors(self, value: Any, built: Any, t: str, path: str = "$") -> list[str]:
        """Where the SDK object ``built`` differs from ``value``: every field we set must come
        back unchanged (serialized by the kubernetes client), every other field hold None or the
        constructor's declared default (the kserve SDK defaults a few strings to '')."""
        out: list[str] = []
        if m := _LIST.fullmatch(t):
            if not isinstance(built, list) or len(built) != len(value):
                return [f"{path}: {value!r} came back as {built!r}"]
            for i, (item, got) in enumerate(zip(value, built, strict=True)):
                out += self.round_trip_errors(item, got, m.group(1), f"{path}[{i}]")
            return out
        if m := _DICT.fullmatch(t):
            if not isinstance(built, dict) or set(built) != set(value):
                return [f"{path}: {value!r} came back as {built!r}"]
            for key, item in value.items():
                out += self.round_trip_errors(item, built[key], m.group(1), f"{path}[{key!r}]")
            return out
        cls = self.model(t)
        if cls is None:  # a primitive: serialized as the kubernetes client would send it
            with kubernetes.client.ApiClient() as api:
                back = api.sanitize_for_serialization(built)
            if back != value or type(back) is not type(value):
                out.append(f"{path}: {value!r} came back as {back!r}")
            return out
        defaults = inspect.signature(cls.__init__).parameters
        attributes = {json_key: attr for attr, json_key in cls.attribute_map.items()}
        for attr, json_key in cls.attribute_map.items():
            got = getattr(built, attr)
            if json_key in value:
                out += self.round_trip_errors(value[json_key], got, cls.openapi_types[attr], f"{path}.{json_key}")
            elif got is not None and got != defaults[attr].default:
                out.append(f"{path}.{json_key}: not in the manifest, yet {got!r} in the SDK object")
        assert set(value) <= set(attributes), "validated first"
        return out


@pytest.fixture(scope="session")
def kserve_schema(kserve_sdk: KServeSdk) -> SdkSchema:
    return SdkSchema(kserve_sdk)


@pytest.mark.parametrize("case", sorted(KSERVE_CASES))
def test_serving_runtime_matches_the_kserve_sdk(kserve_schema: SdkSchema, case: str) -> None:
    runtime, _ = kserve_objects(KSERVE_CASES[case])
    kserve_schema.assert_valid(exported(runtime), "V1alpha1ServingRuntime")


@pytest.mark.parametrize("case", sorted(KSERVE_CASES))
def test_inference_service_matches_the_kserve_sdk(kserve_schema: SdkSchema, case: str) -> None:
    _, isvc = kserve_objects(KSERVE_CASES[case])
    built = kserve_schema.assert_valid(exported(isvc), "V1beta1InferenceService")
    predictor = built.spec.predictor  # the SDK's typed view: the fields landed where KServe reads them
    assert predictor.model.protocol_version == "v2"
    assert predictor.model.model_format.name == manifests.MODEL_FORMAT
    assert predictor.canary_traffic_percent == KSERVE_CASES[case].get("canary")


def _isvc(objects: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    return copy.deepcopy(objects[1])


def _runtime(objects: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    return copy.deepcopy(objects[0])


def _set(path: str, value: Any, which: Callable[[Any], dict[str, Any]] = _isvc) -> Callable[[Any], dict[str, Any]]:
    """A mutation: ``path`` (dot-separated, ints index lists) set to ``value``."""
    def mutate(objects: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        obj = which(objects)
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = obj
        for p in parents:
            node = node[p]
        node[last] = value
        return obj
    return mutate


def _rename(path: str, new: str, which: Callable[[Any], dict[str, Any]] = _isvc) -> Callable[[Any], dict[str, Any]]:
    def mutate(objects: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        obj = which(objects)
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = obj
        for p in parents:
            node = node[p]
        node[new] = node.pop(last)
        return obj
    return mutate


#: (mutation, the type it is checked as, the JSON path the validator must name)
BAD_KSERVE_OBJECTS: dict[str, tuple[Callable[[Any], dict[str, Any]], str, str]] = {
    "misspelled-canaryTrafficPercent": (
        _rename("spec.predictor.canaryTrafficPercent", "canaryTraficPercent"),
        "V1beta1InferenceService", "$.spec.predictor.canaryTraficPercent"),
    "canaryTrafficPercent-as-string": (
        _set("spec.predictor.canaryTrafficPercent", "25"),
        "V1beta1InferenceService", "$.spec.predictor.canaryTrafficPercent"),
    "minReplicas-as-bool": (
        _set("spec.predictor.minReplicas", True), "V1beta1InferenceService", "$.spec.predictor.minReplicas"),
    "misspelled-protocolVersion": (
        _rename("spec.predictor.model.protocolVersion", "protocolVerison"),
        "V1beta1InferenceService", "$.spec.predictor.model.protocolVerison"),
    "modelFormat-as-string": (
        _set("spec.predictor.model.modelFormat", manifests.MODEL_FORMAT),
        "V1beta1InferenceService", "$.spec.predictor.model.modelFormat"),
    "unknown-metadata-field": (
        _set("metadata.label", {"a": "b"}), "V1beta1InferenceService", "$.metadata.label"),
    "protocolVersions-as-string": (
        _set("spec.protocolVersions", "v2", _runtime), "V1alpha1ServingRuntime", "$.spec.protocolVersions"),
    "misspelled-probe-field (kubernetes model)": (
        _rename("spec.containers.0.readinessProbe.httpGet.path", "paht", _runtime),
        "V1alpha1ServingRuntime", "$.spec.containers[0].readinessProbe.httpGet.paht"),
    "containerPort-as-string (kubernetes model)": (
        _set("spec.containers.0.ports.0.containerPort", "8080", _runtime),
        "V1alpha1ServingRuntime", "$.spec.containers[0].ports[0].containerPort"),
    "cpu-limit-as-number (quantity)": (
        _set("spec.containers.0.resources.limits.cpu", 2, _runtime),
        "V1alpha1ServingRuntime", "$.spec.containers[0].resources.limits['cpu']"),
    "env-value-as-number": (
        _set("spec.containers.0.env.0.value", 2, _runtime),
        "V1alpha1ServingRuntime", "$.spec.containers[0].env[0].value"),
    "supported-model-format-autoSelect-as-string": (
        _set("spec.supportedModelFormats.0.autoSelect", "false", _runtime),
        "V1alpha1ServingRuntime", "$.spec.supportedModelFormats[0].autoSelect"),
}


@pytest.mark.parametrize("mutation", sorted(BAD_KSERVE_OBJECTS))
def test_kserve_validator_rejects_a_bad_field(kserve_schema: SdkSchema, mutation: str) -> None:
    mutate, type_name, path = BAD_KSERVE_OBJECTS[mutation]
    good = kserve_objects(KSERVE_CASES["all-options"])
    assert not kserve_schema.errors(good[0 if type_name == "V1alpha1ServingRuntime" else 1], type_name)
    problems = kserve_schema.errors(mutate(good), type_name)
    assert problems, f"{mutation}: accepted by the validator"
    assert [p for p in problems if p.startswith(f"{path}:")] == problems, (
        f"{mutation}: expected one problem at {path}, got {problems}")
    with pytest.raises(AssertionError, match=re.escape(path)):
        kserve_schema.assert_valid(mutate(good), type_name)


@pytest.mark.parametrize(("type_name", "path", "field"), [
    ("V1beta1InferenceService", "spec.predictor.model.modelFormat", "model_format"),
    ("V1beta1InferenceService", "spec.predictor", "predictor"),
    ("V1alpha1ServingRuntime", "spec.containers", "containers"),
    ("V1alpha1ServingRuntime", "spec.containers.0.name", "name"),  # V1Container, kubernetes client
])
def test_kserve_sdk_constructors_refuse_a_missing_required_field(
        kserve_schema: SdkSchema, type_name: str, path: str, field: str) -> None:
    runtime, isvc = kserve_objects(KSERVE_CASES["minimal"])
    obj = copy.deepcopy(runtime if type_name == "V1alpha1ServingRuntime" else isvc)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = obj
    for p in parents:
        node = node[p]
    del node[last]
    assert not kserve_schema.errors(obj, type_name)  # no unknown field, no wrong type: only a missing one
    with pytest.raises(ValueError, match=f"`{field}`, must not be `None`"):
        kserve_schema.build(obj, type_name)


def test_kserve_validator_refuses_a_type_neither_sdk_knows(kserve_schema: SdkSchema) -> None:
    problems = kserve_schema.errors({"a": 1}, "V1beta1NoSuchThing")
    assert problems and "cannot validate" in problems[0], problems


# ------------------------------------------------------------------ content
def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] == "Deployment":
        return obj["spec"]["template"]["spec"]["containers"]
    if obj["kind"] == "ServingRuntime":
        return obj["spec"]["containers"]
    return []


def _env(container: dict[str, Any]) -> dict[str, str]:
    names = [e["name"] for e in container.get("env", [])]
    assert len(set(names)) == len(names), f"duplicate environment variables in {container['name']}: {names}"
    return {e["name"]: e["value"] for e in container.get("env", [])}


def _server_container(target: str, options: dict[str, Any]) -> dict[str, Any]:
    if target == "kubernetes":
        containers = _containers(by_kind(kube_objects(options))["Deployment"])
    else:
        containers = _containers(kserve_objects(options)[0])
    assert len(containers) == 1, containers
    return containers[0]


@pytest.mark.parametrize(("case", "kinds"), [
    ("minimal", ["Deployment", "Service"]),
    ("replicas-0", ["Deployment", "Service"]),
    ("replicas-3-pdb", ["Deployment", "Service", "PodDisruptionBudget"]),
    ("all-options", ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]),
])
def test_kubernetes_objects_are_the_ones_asked_for(case: str, kinds: list[str]) -> None:
    objects = kube_objects(KUBE_CASES[case])
    assert [o["kind"] for o in objects] == kinds
    assert {(o["metadata"]["name"], o["metadata"]["namespace"]) for o in objects} == {(NAME, NAMESPACE)}


@pytest.mark.parametrize("case", sorted(KUBE_CASES))
def test_image_is_exactly_the_digest_reference_kubernetes(case: str) -> None:
    images = [c["image"] for o in kube_objects(KUBE_CASES[case]) for c in _containers(o)]
    assert images == [IMAGE]


@pytest.mark.parametrize("case", sorted(KSERVE_CASES))
def test_image_is_exactly_the_digest_reference_kserve(case: str) -> None:
    runtime, isvc = kserve_objects(KSERVE_CASES[case])
    assert [c["image"] for c in _containers(runtime)] == [IMAGE]
    assert isvc["spec"]["predictor"]["model"]["image"] == IMAGE


@pytest.mark.parametrize("case", sorted(KUBE_CASES))
def test_deployment_pod_runs_non_root_read_only(case: str) -> None:
    pod = by_kind(kube_objects(KUBE_CASES[case]))["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 1000
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
def test_tmp_is_a_writable_empty_dir(target: str) -> None:
    if target == "kubernetes":
        pod = by_kind(kube_objects({}))["Deployment"]["spec"]["template"]["spec"]
    else:
        pod = kserve_objects({})[0]["spec"]
    (container,) = pod["containers"]
    mounts = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(mounts) == 1, container["volumeMounts"]
    assert not mounts[0].get("readOnly", False)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[0]["name"]] == {"name": mounts[0]["name"], "emptyDir": {}}
    assert {"HOME": "/tmp", "TMPDIR": "/tmp"}.items() <= _env(container).items()


def test_grace_period_outlasts_the_servers_graceful_shutdown() -> None:
    pod = by_kind(kube_objects({}))["Deployment"]["spec"]["template"]["spec"]
    graceful = int(_env(pod["containers"][0])["DEPLOYER_SERVE_GRACEFUL_TIMEOUT"])
    assert (pod["terminationGracePeriodSeconds"], graceful) == (40, 25)
    assert pod["terminationGracePeriodSeconds"] > graceful


def test_deployment_probes() -> None:
    container = _server_container("kubernetes", {})
    (port,) = container["ports"]
    readiness, liveness, startup = (container[k]["httpGet"] for k in ("readinessProbe", "livenessProbe", "startupProbe"))
    assert readiness == {"path": f"/v2/models/{MODEL_NAME}/ready", "port": port["containerPort"]}
    assert liveness == {"path": "/ping", "port": port["containerPort"]}
    assert startup == {"path": "/ping", "port": port["containerPort"]}
    # a slow model load is not killed: the startup probe allows minutes, not seconds
    startup_probe = container["startupProbe"]
    assert startup_probe["periodSeconds"] * startup_probe["failureThreshold"] >= 300
    assert _env(container)["DEPLOYER_SERVE_MODEL_NAME"] == MODEL_NAME


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
@pytest.mark.parametrize(("options", "workers"), [
    ({}, None),
    ({"memory": "1Gi"}, None),
    ({"cpu": "100m"}, "1"),
    ({"cpu": "500m"}, "1"),
    ({"cpu": "2"}, "2"),
    ({"cpu": "2500m"}, "2"),
    ({"cpu": "250m", "cpu_limit": "2500m"}, "2"),  # the limit, not the request
    ({"cpu_limit": "3"}, "3"),
], ids=["no-cpu", "memory-only", "100m", "500m", "2", "2500m", "request-250m-limit-2500m", "limit-3"])
def test_workers_follow_the_cpu_limit(target: str, options: dict[str, Any], workers: str | None) -> None:
    env = _env(_server_container(target, options))
    assert env.get("DEPLOYER_SERVE_WORKERS") == workers, (
        f"{options}: DEPLOYER_SERVE_WORKERS={env.get('DEPLOYER_SERVE_WORKERS')}, expected {workers}")


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
def test_user_env_overrides_a_default_once(target: str) -> None:
    container = _server_container(target, {"cpu": "2", "env": ("DEPLOYER_SERVE_WORKERS=7", "LOG_LEVEL=debug")})
    entries = [e for e in container["env"] if e["name"] == "DEPLOYER_SERVE_WORKERS"]
    assert entries == [{"name": "DEPLOYER_SERVE_WORKERS", "value": "7"}]
    assert _env(container)["LOG_LEVEL"] == "debug"


@pytest.mark.parametrize("case", sorted(KUBE_CASES))
def test_environment_variable_names_are_unique(case: str) -> None:
    for obj in kube_objects(KUBE_CASES[case]):
        for container in _containers(obj):
            _env(container)


def test_autoscaler_targets_the_deployment_which_leaves_it_the_replicas() -> None:
    objects = by_kind(kube_objects(ALL_KUBE_OPTIONS))
    deployment, hpa = objects["Deployment"], objects["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"], "kind": "Deployment", "name": deployment["metadata"]["name"]}
    assert "replicas" not in deployment["spec"], "with an HPA the Deployment must not set replicas (each apply would reset the scale)"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    # utilization is relative to the request: the container must have one
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "500m"


@pytest.mark.parametrize(("case", "replicas"), [("minimal", 1), ("replicas-0", 0), ("replicas-3-pdb", 3)])
def test_deployment_replicas_without_autoscaling(case: str, replicas: int) -> None:
    deployment = by_kind(kube_objects(KUBE_CASES[case]))["Deployment"]
    assert "replicas" in deployment["spec"] and deployment["spec"]["replicas"] == replicas


@pytest.mark.parametrize("case", sorted(KUBE_CASES))
def test_selectors_select_the_pods(case: str) -> None:
    objects = by_kind(kube_objects(KUBE_CASES[case]))
    deployment = objects["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {"Deployment": deployment["spec"]["selector"]["matchLabels"],
                 "Service": objects["Service"]["spec"]["selector"]}
    if "PodDisruptionBudget" in objects:
        selectors["PodDisruptionBudget"] = objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    for kind, selector in selectors.items():
        assert selector and selector.items() <= pod_labels.items(), f"{kind} selector {selector} misses the pods {pod_labels}"


def test_service_routes_to_the_server_port() -> None:
    objects = by_kind(kube_objects({}))
    (port,) = objects["Service"]["spec"]["ports"]
    (container_port,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert port["targetPort"] in (container_port["name"], container_port["containerPort"])
    assert container_port["containerPort"] == 8080


def test_pod_options_land_in_the_pod() -> None:
    objects = by_kind(kube_objects(ALL_KUBE_OPTIONS))
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "iris-runner"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "2500m", "memory": "1Gi"}}
    assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert _env(pod["containers"][0])["DEPLOYER_SERVE_WORKERS"] == "7"  # the user's, over 2 from the limit


@pytest.mark.parametrize("case", sorted(KSERVE_CASES))
def test_kserve_container_has_nothing_knative_refuses(case: str) -> None:
    runtime, isvc = kserve_objects(KSERVE_CASES[case])
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container", "KServe merges the predictor into the container named kserve-container"
    for refused in ("startupProbe", "livenessProbe"):
        assert refused not in container, f"Knative refuses {refused}"
    assert "runAsGroup" not in container["securityContext"], "Knative refuses runAsGroup"
    for refused in ("securityContext", "terminationGracePeriodSeconds"):
        assert refused not in runtime["spec"] and refused not in isvc["spec"]["predictor"], f"Knative refuses a pod {refused}"
    assert [p["name"] for p in container["ports"]] == ["http1"], "Knative takes only the port names http1 and h2c"
    assert container["readinessProbe"]["httpGet"] == {
        "path": f"/v2/models/{MODEL_NAME}/ready", "port": container["ports"][0]["containerPort"]}
    security = container["securityContext"]
    assert (security["runAsNonRoot"], security["runAsUser"], security["readOnlyRootFilesystem"]) == (True, 1000, True)


@pytest.mark.parametrize("case", sorted(KSERVE_CASES))
def test_inference_service_predictor_uses_the_runtime(case: str) -> None:
    options = KSERVE_CASES[case]
    runtime, isvc = kserve_objects(options)
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["protocolVersion"] == "v2"
    assert "v2" in runtime["spec"]["protocolVersions"]
    assert model["runtime"] == runtime["metadata"]["name"] == f"deployer-{NAME}"
    assert model["modelFormat"] == {"name": "deployer-mlflow"}
    assert "deployer-mlflow" in [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    assert runtime["metadata"]["namespace"] == isvc["metadata"]["namespace"] == NAMESPACE
    assert isvc["metadata"]["name"] == NAME
    for key, option in (("canaryTrafficPercent", "canary"), ("minReplicas", "min_replicas"),
                        ("maxReplicas", "max_replicas"), ("serviceAccountName", "service_account")):
        if option in options:
            assert predictor.get(key) == options[option], f"{option}={options[option]} -> {key}={predictor.get(key)}"
        else:
            assert key not in predictor, f"{key} set though --{option.replace('_', '-')} was not given"
    if "image_pull_secret" in options:
        assert runtime["spec"]["imagePullSecrets"] == [{"name": options["image_pull_secret"]}]
    else:
        assert "imagePullSecrets" not in runtime["spec"]
