"""``deployer export --target kubernetes|kserve``: the manifests for GitOps, no cluster needed.

The same manifests ``deploy`` applies (:mod:`.manifests`), one YAML file per object, plus a
``kustomization.yaml`` listing them with the namespace, written to a temporary folder and
renamed into place (never half-written). The image is named by digest: a tag is resolved
through the registry first, so what the cluster runs is what was verified.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.targets.kubernetes import manifests
from deployer.targets.kubernetes.spec import check_name, parse_spec

TARGETS = ("kubernetes", "kserve")


@dataclass(frozen=True)
class ExportResult:
    output: Path
    target: str
    name: str
    namespace: str
    image: str
    files: tuple[str, ...]


def name_for(model_dir: Path) -> str:
    """A Kubernetes name from the model folder's name (``My_Model`` -> ``my-model``)."""
    name = re.sub(r"[^a-z0-9-]+", "-", model_dir.name.lower()).strip("-")[:63].rstrip("-")
    return name or "model"


def file_name(obj: Mapping[str, Any]) -> str:
    return f"{str(obj['kind']).lower()}.yaml"


def export_manifests(
    target: str,
    model_uri: str,
    image: str,
    output: str | Path,
    options: Mapping[str, Any],
    *,
    name: str | None = None,
    namespace: str | None = None,
    force: bool = False,
) -> ExportResult:
    """Write ``target``'s manifests for ``model_uri`` served by ``image`` into ``output``."""
    import yaml

    from deployer.atomic import atomic_directory, check_output_dir
    from deployer.intake import load_model
    from deployer.targets.kubernetes.target import resolve_digest

    out = Path(output).expanduser().absolute()
    check_output_dir(out, force=force)
    loaded = load_model(model_uri)
    name = check_name(name or name_for(Path(loaded.path)), what="endpoint name", flag="--name")
    namespace = namespace or "default"
    model_name = str(options.get("model_name") or name)
    spec = parse_spec(
        name, options, namespace=namespace, model_name=model_name, timeout=None, wait=True
    )
    image = resolve_digest(image)
    objects = (
        manifests.kubernetes_objects(spec, image)
        if target == "kubernetes"
        else manifests.kserve_objects(spec, image)
    )
    files = [file_name(obj) for obj in objects]
    with atomic_directory(out, force=force) as tmp:
        for obj, file in zip(objects, files, strict=True):
            (tmp / file).write_text(
                _header(target, model_uri) + yaml.safe_dump(obj, sort_keys=False)
            )
        (tmp / "kustomization.yaml").write_text(
            _header(target, model_uri)
            + yaml.safe_dump(manifests.kustomization(files, namespace), sort_keys=False)
        )
    return ExportResult(out, target, name, namespace, image, (*files, "kustomization.yaml"))


def _header(target: str, model_uri: str) -> str:
    from deployer import __version__

    source = re.sub(r"[\x00-\x1f\x7f]", "", str(model_uri))
    return (
        f"# Written by deployer {__version__} (export --target {target}) for the model "
        f"{source!r}.\n# Apply with: kubectl apply -k <this folder>\n"
    )
