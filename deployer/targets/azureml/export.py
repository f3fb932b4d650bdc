"""``deployer export --target azureml``: a self-contained folder for the ``az ml`` CLI (v2).

What ``mlflow azureml export`` used to produce, for today's Azure ML:

* ``model/`` - the MLflow model, copied (symbolic links must stay inside the model);
* ``score.py`` - deployer's Azure entry script (:func:`deployer.serving.azure.render_score_py`);
* ``environment.yml`` - either the built image with inference_config routes (``--image-uri``), or
  a conda file derived from the model's environment for Azure to build (then the deployer
  runtime that ``score.py`` imports is copied to ``deployer/``, uploaded as code);
* ``endpoint.yml`` / ``deployment.yml`` - managed online endpoint and deployment;
* ``create_service.sh`` - the ``az ml`` commands, ``set -euo pipefail``, shell-quoted values;
* ``README.md``, ``.amlignore``, ``sample-request.json`` (from the model's input example).

The folder is written to a temporary sibling and renamed into place, so ``-o DIR`` is never
left half-written: it holds the previous bundle or the new one.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deployer.errors import DeployerError, UsageError
from deployer.model.files import copy_model
from deployer.targets.azureml.plan import ImageRoutes

log = logging.getLogger("deployer")

#: Azure ML's curated inference base image for conda-file environments.
DEFAULT_BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"


@dataclass(frozen=True)
class ExportOptions:
    """What the bundle deploys. ``image`` set: bring-your-own-container, else conda mode."""

    endpoint: str | None = None  # None: derived from the model folder name
    deployment: str = "blue"
    instance_type: str = "Standard_DS3_v2"
    instance_count: int = 1
    image: str | None = None
    routes: ImageRoutes = ImageRoutes()
    env: dict[str, str] = field(default_factory=dict)
    auth_mode: str = "key"
    traffic: str = "all"  # "all" | "none" | "blue=90 green=10"
    base_image: str = DEFAULT_BASE_IMAGE
    request_timeout_ms: int = 5000
    max_concurrent_requests: int = 1
    probe_initial_delay: int = 10


@dataclass(frozen=True)
class ExportResult:
    output: Path
    mode: str  # "image" | "conda"
    endpoint: str
    deployment: str
    files: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def endpoint_name_for(model_dir: Path) -> str:
    """A valid endpoint name from a folder name: ``sklearn_skops`` -> ``sklearn-skops``."""
    name = re.sub(r"[^a-z0-9-]+", "-", model_dir.name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = "model-" + name
    name = name[:32].rstrip("-")
    return name if len(name) >= 3 else (name + "-endpoint")[:32]


def export_bundle(
    model_uri: str, output: str | Path, options: ExportOptions, *, force: bool = False
) -> ExportResult:
    """Write the bundle for ``model_uri`` into ``output`` (atomically; see module doc)."""
    from deployer.atomic import atomic_directory, check_output_dir
    from deployer.intake import load_model
    from deployer.targets.azureml.payload import serving_example
    from deployer.targets.azureml.traffic import check_name

    out = Path(output).expanduser().absolute()
    _check_options(options)
    check_output_dir(out, force=force)  # before the model is read
    loaded = load_model(model_uri)
    model_dir = Path(loaded.path)
    endpoint = check_name(
        options.endpoint or endpoint_name_for(model_dir), kind="endpoint", flag="--name"
    )
    deployment = check_name(options.deployment, kind="deployment", flag="--deployment")
    traffic = _traffic_arg(options.traffic)
    warnings = list(getattr(loaded, "warnings", ()) or ())
    mode = "image" if options.image else "conda"
    info = getattr(loaded.mlmodel, "saved_input_example_info", None)
    example = serving_example(model_dir, getattr(info, "serving_input_path", None))

    with atomic_directory(out, force=force) as tmp:
        copy_model(model_dir, tmp / "model")
        files = _write_bundle(
            tmp, loaded, options, endpoint, deployment, traffic, mode, example, warnings
        )
    return ExportResult(out, mode, endpoint, deployment, tuple(files), tuple(warnings))


def _write_bundle(
    tmp: Path,
    loaded: Any,
    options: ExportOptions,
    endpoint: str,
    deployment: str,
    traffic: str,
    mode: str,
    example: Any,
    warnings: list[str],
) -> list[str]:
    from deployer import __version__
    from deployer.rendering.render import render_template
    from deployer.serving.azure import render_score_py

    label = _model_label(loaded)
    env_name = f"{endpoint}-env"
    common = {
        "deployer_version": __version__,
        "model_label": label,
        "endpoint": endpoint,
        "deployment": deployment,
        "mode": mode,
    }
    files = ["model/"]
    (tmp / "score.py").write_text(render_score_py(model_subdir="model", model_name=label))
    files.append("score.py")
    python_version = ""
    if mode == "conda":
        python_version = _write_conda(tmp / "conda.yaml", loaded, warnings)
        _copy_runtime(tmp / "deployer")
        files += ["conda.yaml", "deployer/"]
    (tmp / "environment.yml").write_text(
        render_template(
            "azureml/environment.yml.j2",
            **common,
            env_name=env_name,
            description=f"Serving environment for {label}, generated by deployer",
            image=options.image or "",
            routes=options.routes,
            base_image=options.base_image,
            conda_file="conda.yaml",
        )
    )
    (tmp / "endpoint.yml").write_text(
        render_template(
            "azureml/endpoint.yml.j2",
            **common,
            auth_mode=options.auth_mode,
            description=f"Serves {label}",
        )
    )
    (tmp / "deployment.yml").write_text(
        render_template(
            "azureml/deployment.yml.j2",
            **common,
            environment_ref=f"azureml:{env_name}@latest",
            model_path="model",
            code_path=".",
            scoring_script="score.py",
            instance_type=options.instance_type,
            instance_count=options.instance_count,
            environment_variables=dict(options.env),
            request_timeout_ms=options.request_timeout_ms,
            max_concurrent_requests=options.max_concurrent_requests,
            probe_initial_delay=options.probe_initial_delay,
        )
    )
    script = tmp / "create_service.sh"
    script.write_text(render_template("azureml/create_service.sh.j2", **common, traffic=traffic))
    script.chmod(0o755)
    (tmp / ".amlignore").write_text(
        "# Keep the model (registered separately) and the deployment files out of the code "
        "upload.\n"
        "model/\n*.yml\nconda.yaml\ncreate_service.sh\nREADME.md\nsample-request.json\n__pycache__/\n"
    )
    if example is not None:
        (tmp / "sample-request.json").write_text(json.dumps(example, indent=2) + "\n")
        files.append("sample-request.json")
    (tmp / "README.md").write_text(
        render_template(
            "azureml/README.md.j2",
            **common,
            image=options.image or "",
            python_version=python_version or "?",
            instance_type=options.instance_type,
            instance_count=str(options.instance_count),
            has_example=example is not None,
        )
    )
    files += [
        "environment.yml",
        "endpoint.yml",
        "deployment.yml",
        "create_service.sh",
        ".amlignore",
        "README.md",
    ]
    return files


def _write_conda(path: Path, loaded: Any, warnings: list[str]) -> str:
    """conda.yaml for Azure to build: python + pip + the image's requirement set."""
    from deployer.building.contracts import contract
    from deployer.building.dependencies import image_requirements

    spec = loaded.environment
    python_version = spec.python_version or ""
    if not python_version:
        raise DeployerError(
            "the model does not say which Python it needs",
            where=str(loaded.path),
            fix="save the model with MLflow >= 2 (python_env.yaml), or use --image-uri",
        )
    reqs = image_requirements(
        tuple(spec.pip_requirements),
        python_version=python_version,
        mlflow_version=getattr(loaded.mlmodel, "mlflow_version", None),
        constraints=tuple(spec.constraints),
        index_options=spec.index_options,
        server_requirements=contract("azureml").server_requirements,
        where=str(loaded.path),
    )
    pip: list[str] = []
    options = spec.index_options
    if options and options.has_credentials:
        warnings.append(
            "the model's requirements name a package index with credentials; it was left out "
            "of conda.yaml (Azure would store it in the environment). Use a workspace "
            "connection or a private feed without inline credentials."
        )
    elif options:
        if options.index_url:
            pip.append(f"--index-url {options.index_url}")
        pip += [f"--extra-index-url {u}" for u in options.extra_index_urls]
        pip += [f"--find-links {u}" for u in options.find_links]
    pip += [
        r
        for r in reqs.requirements
        if r.split(";")[0].strip() and not r.lower().startswith("dumb-init")
    ]
    deps: list[Any] = [f"python={python_version}", "pip"]
    deps += list(getattr(spec, "conda_packages", ()) or ())
    deps.append({"pip": pip})
    channels = list(getattr(spec, "conda_channels", ()) or ()) or ["conda-forge"]
    doc = {"name": "deployer-scoring", "channels": channels, "dependencies": deps}
    path.write_text(
        "# Generated by deployer from the model's environment, plus the serving runtime.\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    return python_version


def _copy_runtime(dst: Path) -> None:
    """deployer's own package (what score.py imports), without caches or templates."""
    from deployer.resources import package_dir

    shutil.copytree(
        package_dir(), dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_templates")
    )


def _check_options(options: ExportOptions) -> None:
    """Refuse values that would make a broken or unsafe bundle, naming the flag."""
    from deployer.errors import RenderError
    from deployer.rendering.filters import check_env_name, check_image_ref

    for flag, ref in (("--image-uri", options.image), ("--base-image", options.base_image)):
        if ref:
            try:
                check_image_ref(ref, flag)
            except RenderError as exc:
                raise UsageError(exc.what, where=flag, fix=exc.fix) from None
    routes = options.routes
    for flag, path in (
        ("--scoring-route", routes.scoring),
        ("--health-route", routes.liveness),
        ("--health-route", routes.readiness),
    ):
        if not path.startswith("/") or any(c.isspace() or ord(c) < 32 for c in path):
            raise UsageError(
                f"bad route {path!r}", where=flag, fix="use an absolute path such as /score"
            )
    if not 1 <= routes.port <= 65535:
        raise UsageError(
            f"bad port {routes.port}", where="--image-port", fix="use a port from 1 to 65535"
        )
    if options.instance_count < 1:
        raise UsageError(
            "--instance-count must be at least 1", where="--instance-count", fix="pass 1 or more"
        )
    if options.auth_mode not in ("key", "aml_token", "aad_token"):
        raise UsageError(
            f"unknown auth mode {options.auth_mode!r}",
            where="--auth-mode",
            fix="use key, aml_token or aad_token",
        )
    if not re.match(r"^[A-Za-z][A-Za-z0-9_]{0,63}$", options.instance_type):
        raise UsageError(
            f"bad instance type {options.instance_type!r}",
            where="--instance-type",
            fix="use an Azure VM size such as Standard_DS3_v2",
        )
    for key, value in options.env.items():
        try:
            check_env_name(key)
        except RenderError as exc:
            raise UsageError(exc.what, where="--env", fix=exc.fix) from None
        if re.search(r"[\x00-\x1f\x7f]", value):
            raise UsageError(
                f"the value of {key} contains a control character (line break, tab...)",
                where="--env",
                fix="pass a single-line value",
            )


def _traffic_arg(value: str) -> str:
    """The create_service.sh default: "all", "none", or az's "A=90 B=10" form."""
    from deployer.targets.azureml.traffic import parse_traffic

    text = (value or "all").strip()
    if text in ("all", "none"):
        return text
    parsed = parse_traffic(text.replace(" ", ","))
    return " ".join(f"{k}={v}" for k, v in parsed.items())


def _model_label(loaded: Any) -> str:
    name = Path(loaded.path).name
    return re.sub(r"[\x00-\x1f\x7f]", "", name) or "mlflow-model"
