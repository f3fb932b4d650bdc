"""``deployer export``: write a self-contained deployment bundle for a cloud's own CLI."""

from __future__ import annotations

from typing import Any

import click

from deployer.cli.common import command as deployer_command
from deployer.cli.common import get_console, model_option


@deployer_command("export")
@model_option
@click.option(
    "--target",
    "-t",
    "target",
    type=click.Choice(["azureml", "kubernetes", "kserve"]),
    required=True,
    help="Bundle format: azureml (az ml CLI v2 folder); kubernetes (Deployment, Service...) or "
    "kserve (ServingRuntime, InferenceService) manifests with a kustomization.yaml.",
)
@click.option(
    "-o",
    "--output-dir",
    "output_dir",
    required=True,
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Folder to write (replaced only with --force).",
)
@click.option("--force", is_flag=True, help="Replace a non-empty output folder.")
@click.option(
    "--name",
    "-n",
    "name",
    metavar="NAME",
    help="Endpoint name (default: from the model folder name).",
)
@click.option(
    "--deployment", default="blue", show_default=True, metavar="NAME", help="Deployment name."
)
@click.option(
    "--instance-type", default="Standard_DS3_v2", show_default=True, metavar="SKU", help="VM size."
)
@click.option(
    "--instance-count",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="Number of instances.",
)
@click.option(
    "--image-uri",
    "--image",
    "image_uri",
    metavar="IMAGE",
    help="azureml: use this pushed image (bring your own container) instead of a conda "
    "environment Azure builds. kubernetes/kserve (required): deployer's image of the model, "
    "written by digest (a tag is resolved through the registry).",
)
@click.option(
    "--image-port",
    default=8080,
    show_default=True,
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Port the --image-uri container listens on.",
)
@click.option(
    "--scoring-route",
    default="/score",
    show_default=True,
    metavar="PATH",
    help="Scoring path inside the --image-uri container.",
)
@click.option(
    "--health-route",
    default="/",
    show_default=True,
    metavar="PATH",
    help="Liveness/readiness path inside the --image-uri container.",
)
@click.option(
    "--base-image", metavar="IMAGE", help="Azure ML inference base image for the conda environment."
)
@click.option(
    "--env", "env", multiple=True, metavar="KEY=VALUE", help="Environment variable (repeatable)."
)
@click.option(
    "--model-config",
    "model_config",
    metavar="FILE|JSON",
    help="Load-time override of the model's config (as mlflow.pyfunc.load_model(model_config="
    "...)): a JSON object or a YAML/JSON file; set as SERVING_MODEL_CONFIG in the deployment's "
    "environment.",
)
@click.option(
    "--auth-mode",
    type=click.Choice(["key", "aml_token", "aad_token"]),
    default="key",
    show_default=True,
    help="Endpoint authentication.",
)
@click.option(
    "--traffic",
    default="all",
    show_default=True,
    metavar="all|none|NAME=PCT,...",
    help="What create_service.sh does with traffic by default.",
)
@click.option("--namespace", metavar="NAME", help="kubernetes/kserve: namespace [default].")
@click.option("--replicas", type=click.IntRange(min=0), metavar="N", help="kubernetes: pods [1].")
@click.option("--cpu", metavar="QUANTITY", help="kubernetes/kserve: CPU request (and limit).")
@click.option("--cpu-limit", metavar="QUANTITY", help="kubernetes/kserve: CPU limit.")
@click.option("--memory", metavar="QUANTITY", help="kubernetes/kserve: memory request (and limit).")
@click.option("--memory-limit", metavar="QUANTITY", help="kubernetes/kserve: memory limit.")
@click.option("--autoscale", metavar="MIN:MAX:CPU%", help="kubernetes: HorizontalPodAutoscaler.")
@click.option("--pdb-min-available", type=int, metavar="N", help="kubernetes: PodDisruptionBudget.")
@click.option("--image-pull-secret", metavar="NAME", help="kubernetes/kserve: pull secret.")
@click.option("--service-account", metavar="NAME", help="kubernetes/kserve: ServiceAccount.")
@click.option(
    "--model-name", metavar="NAME", help="kubernetes/kserve: name in the V2 routes [--name]."
)
@click.option("--canary", type=int, metavar="PCT", help="kserve: canaryTrafficPercent.")
@click.option("--min-replicas", type=int, metavar="N", help="kserve: fewest predictor pods.")
@click.option("--max-replicas", type=int, metavar="N", help="kserve: most predictor pods.")
def command(
    model_uri: str,
    target: str,
    output_dir: str,
    force: bool,
    name: str | None,
    deployment: str,
    instance_type: str,
    instance_count: int,
    image_uri: str | None,
    image_port: int,
    scoring_route: str,
    health_route: str,
    base_image: str | None,
    env: tuple[str, ...],
    model_config: str | None,
    auth_mode: str,
    traffic: str,
    **kube: Any,
) -> None:
    """Write a folder that deploys MODEL with the cloud's own tools.

    \b
      deployer export --target azureml -m ./model -o ./azureml-bundle
      cd azureml-bundle && ./create_service.sh -g MY_GROUP -w MY_WORKSPACE

    \b
      deployer export --target kubernetes -m ./model --image REGISTRY/iris@sha256:... -o k8s/
      kubectl apply -k k8s/

    azureml: the folder holds model/, score.py, environment.yml, endpoint.yml, deployment.yml,
    create_service.sh and README.md. kubernetes / kserve: one YAML file per object and a
    kustomization.yaml. The folder is written to a temporary folder and renamed into place,
    so DIR is never left half-written.
    """
    _refuse_foreign_options(target)
    env = _with_model_config(env, model_config)
    if target in ("kubernetes", "kserve"):
        _export_kubernetes(target, model_uri, output_dir, force, name, image_uri, env, kube)
        return
    from deployer.targets.azureml.export import DEFAULT_BASE_IMAGE, ExportOptions, export_bundle
    from deployer.targets.azureml.plan import ImageRoutes
    from deployer.targets.azureml.target import parse_env

    options = ExportOptions(
        endpoint=name,
        deployment=deployment,
        instance_type=instance_type,
        instance_count=instance_count,
        image=image_uri,
        routes=ImageRoutes(
            port=image_port, liveness=health_route, readiness=health_route, scoring=scoring_route
        ),
        env=parse_env(env),
        auth_mode=auth_mode,
        traffic=traffic,
        base_image=base_image or DEFAULT_BASE_IMAGE,
    )
    result = export_bundle(model_uri, output_dir, options, force=force)
    console = get_console()
    for warning in result.warnings:
        console.warn(warning)
    data: dict[str, Any] = {
        "target": target,
        "output": str(result.output),
        "mode": result.mode,
        "endpoint": result.endpoint,
        "deployment": result.deployment,
        "files": list(result.files),
        "warnings": list(result.warnings),
    }
    console.result(
        data,
        text=lambda: (
            f"wrote {result.output} ({result.mode} environment; endpoint {result.endpoint}, "
            f"deployment {result.deployment})\n"
            f"next: cd {result.output} && ./create_service.sh --resource-group GROUP --workspace "
            "WORKSPACE"
        ),
    )


def _with_model_config(env: tuple[str, ...], model_config: str | None) -> tuple[str, ...]:
    """``--model-config`` -> one more ``--env SERVING_MODEL_CONFIG=<compact JSON>`` (the variable
    deployer's score.py and server read at load); given twice is an error."""
    if model_config is None:
        return env
    from deployer.errors import UsageError
    from deployer.serving.model_config import ENV, model_config_json, parse_model_config

    if any(item.partition("=")[0] == ENV for item in env):
        raise UsageError(
            f"the model config is given twice: --model-config and --env {ENV}",
            where="--model-config",
            fix=f"drop --env {ENV}=...",
        )
    config = parse_model_config(model_config, where="--model-config")
    return (*env, f"{ENV}={model_config_json(config)}")


#: The options each export target reads (the rest belong to another target).
_OWN = {
    "azureml": {
        "deployment",
        "instance_type",
        "instance_count",
        "image_port",
        "scoring_route",
        "health_route",
        "base_image",
        "auth_mode",
        "traffic",
    },
    "kubernetes": {
        "namespace",
        "replicas",
        "cpu",
        "cpu_limit",
        "memory",
        "memory_limit",
        "autoscale",
        "pdb_min_available",
        "image_pull_secret",
        "service_account",
        "model_name",
    },
    "kserve": {
        "namespace",
        "cpu",
        "cpu_limit",
        "memory",
        "memory_limit",
        "image_pull_secret",
        "service_account",
        "model_name",
        "canary",
        "min_replicas",
        "max_replicas",
    },
}


def _refuse_foreign_options(target: str) -> None:
    """An option of another export target, given on the command line, is a usage error."""
    from click.core import ParameterSource

    from deployer.errors import UsageError

    ctx = click.get_current_context()
    foreign = sorted(set().union(*_OWN.values()) - _OWN[target])
    given = [n for n in foreign if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE]
    if given:
        flags = ", ".join("--" + n.replace("_", "-") for n in given)
        owners = sorted(t for t in _OWN if t != target and set(given) & _OWN[t])
        raise UsageError(
            f"{flags} {'is' if len(given) == 1 else 'are'} not an option of --target {target}",
            where=flags,
            fix=f"drop {flags} (for --target {' / '.join(owners)})",
        )


def _export_kubernetes(
    target: str,
    model_uri: str,
    output_dir: str,
    force: bool,
    name: str | None,
    image: str | None,
    env: tuple[str, ...],
    kube: dict[str, Any],
) -> None:
    from deployer.errors import UsageError
    from deployer.targets.kubernetes.export import export_manifests

    if not image:
        raise UsageError(
            f"--target {target} exports manifests for a pushed image of the model",
            where="--image",
            fix="pass --image REGISTRY/REPO@sha256:... (deployer build-and-push -m MODEL "
            "--registry R prints it)",
        )
    options = {k: v for k, v in kube.items() if k != "namespace" and v is not None}
    options["env"] = env
    result = export_manifests(
        target,
        model_uri,
        image,
        output_dir,
        options,
        name=name,
        namespace=kube.get("namespace"),
        force=force,
    )
    data = {
        "target": target,
        "output": str(result.output),
        "name": result.name,
        "namespace": result.namespace,
        "image": result.image,
        "files": list(result.files),
    }
    get_console().result(
        data,
        text=lambda: (
            f"wrote {result.output} ({', '.join(result.files)}; {result.namespace}/{result.name}, "
            f"{result.image})\nnext: kubectl apply -k {result.output}"
        ),
    )
