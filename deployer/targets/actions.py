"""The target commands as plain functions, free of any front end.

``deployer deploy / status / list / delete / predict / run-local`` (click, :mod:`deployer.cli`)
and the MLflow deployments plugin (:mod:`deployer.integrations.mlflow_deployments`) both call
these, so a deployment made from ``mlflow deployments create`` runs exactly the code a
``deployer deploy`` runs. Each front end only turns its own input (flags, ``-C key=value``)
into option values by name, and renders the results its own way.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from deployer.targets.base import (
    DeployPlan,
    DeployRequest,
    DeployResult,
    EndpointStatus,
    OptionSpec,
    Target,
)

log = logging.getLogger("deployer")


def own_options(target: str, command: str) -> dict[str, OptionSpec]:
    """The options ``target`` declares for ``command``, by name."""
    from deployer.targets.registry import declared_options

    return {s.name: s for s in declared_options(target) if command in s.commands}


def resolve_options(
    target: str, command: str, values: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``values`` (option name -> value; ``None`` or ``()`` = not set) of ``target``.

    Returns (factory kwargs, command options): the factory gets only the connection options
    that were set; the command options hold every option ``target`` declares for ``command``,
    with its default when unset. Names ``target`` does not declare are ignored here (front
    ends refuse them first, each with its own wording).
    """
    connection: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for name, spec in own_options(target, command).items():
        value = values.get(name)
        is_set = value is not None and value != ()
        if spec.connection:
            if is_set:
                connection[name] = value
            continue
        if is_set:
            options[name] = value
        else:
            options[name] = () if spec.multiple and spec.default is None else spec.default
    return connection, options


def deploy_request(
    target: str, name: str, model_uri: str | None, values: dict[str, Any]
) -> tuple[dict[str, Any], DeployRequest]:
    """(factory kwargs, the deploy request) from ``values``, parsed option values by name (the
    target's deploy options, the build-option group's keys, ``image_uri`` / ``wait`` /
    ``timeout``); what the MLflow plugin and ``deployer sync`` take in. ``values`` is consumed.
    Build options where nothing is built are refused (:func:`refuse_unused`)."""
    from deployer.targets.build_options import pop_config_build_options, refuse_unused

    build, given = pop_config_build_options(values)
    generic = {k: values.pop(k) for k in ("image_uri", "wait", "timeout") if k in values}
    image_uri = generic.get("image_uri")
    refuse_unused(given, target=target, model_uri=model_uri, image_uri=image_uri, options=values)
    connection, options = resolve_options(target, "deploy", values)
    return connection, DeployRequest(
        name=name,
        model_uri=model_uri,
        image_uri=image_uri,
        options=options,
        wait=bool(generic.get("wait", True)),
        timeout=generic.get("timeout"),
        build=build,
    )


def connect(target: str, connection: Mapping[str, Any]) -> Target:
    """The target plugin ``target``, instantiated with its connection options."""
    from deployer.targets.registry import get_target

    return get_target(target, **connection)


def plan_deploy(
    target: str, request: DeployRequest, connection: Mapping[str, Any]
) -> tuple[Target, DeployPlan]:
    """Plan a deployment (reads the target, changes nothing); ``apply`` the plan to run it."""
    plugin = connect(target, connection)
    return plugin, plugin.plan(request)


def endpoint_status(
    target: str, name: str, connection: Mapping[str, Any], options: Mapping[str, Any]
) -> EndpointStatus:
    return connect(target, connection).status(name, **options)


def list_endpoints(
    target: str, connection: Mapping[str, Any], options: Mapping[str, Any]
) -> list[EndpointStatus]:
    return list(connect(target, connection).list(**options))


def delete_endpoint(
    target: str,
    name: str,
    connection: Mapping[str, Any],
    options: Mapping[str, Any],
    *,
    dry_run: bool = False,
) -> DeployPlan | DeployResult:
    """Delete ``name``; with ``dry_run`` return the target's delete plan instead."""
    from deployer.errors import UsageError

    plugin = connect(target, connection)
    if not dry_run:
        return plugin.delete(name, **options)
    planner = getattr(plugin, "plan_delete", None)
    if planner is None:
        raise UsageError(
            f"target {target!r} cannot plan a delete",
            where="--dry-run",
            fix="run without --dry-run",
        )
    plan: DeployPlan = planner(name, **options)
    return plan


def predict_endpoint(
    target: str,
    name: str,
    body: bytes,
    content_type: str,
    connection: Mapping[str, Any],
    options: Mapping[str, Any],
) -> bytes:
    """One request to a deployed endpoint; its response body as received."""
    return connect(target, connection).predict(name, body, content_type, **options)


def predict_endpoint_stream(
    target: str, name: str, body: bytes, content_type: str, connection: Mapping[str, Any]
) -> Iterable[bytes]:
    """One streaming request to a deployed endpoint: its response bytes as they arrive."""
    from deployer.errors import UsageError

    plugin = connect(target, connection)
    predict_stream = getattr(plugin, "predict_stream", None)
    if predict_stream is None:
        raise UsageError(
            f"target {target!r} cannot stream predictions",
            where="--stream",
            fix="drop --stream, or use --target sagemaker (response streaming)",
        )
    return predict_stream(name, body, content_type)  # type: ignore[no-any-return]


def models_target(target: str, connection: Mapping[str, Any]) -> Any:
    """The target plugin for ``deployer models`` (multi-model endpoints): one that offers
    ``plan_models_add`` / ``plan_models_remove`` / ``list_models`` / ``apply_models``."""
    from deployer.errors import UsageError

    plugin = connect(target, connection)
    if not all(
        hasattr(plugin, m)
        for m in ("plan_models_add", "plan_models_remove", "list_models", "apply_models")
    ):
        raise UsageError(
            f"target {target!r} has no multi-model endpoints",
            where="--target",
            fix="use --target sagemaker (deploy --multi-model --model-prefix s3://...)",
        )
    return plugin


# ------------------------------------------------------------------------------ run-local
@dataclass(frozen=True)
class LocalRun:
    """A model container started on this machine's engine, ready to serve."""

    target: Any  # LocalTarget
    name: str
    model_uri: str
    model_path: Any  # pathlib.Path of the resolved model
    result: DeployResult
    serve_as: str
    url: str
    predict_route: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "container": self.result.details.get("container"),
            "image": self.result.details.get("image"),
            "serve_as": self.serve_as,
            "predict_route": self.predict_route,
            **({"grpc": self.result.details["grpc"]} if self.result.details.get("grpc") else {}),
        }


def start_local(
    model_uri: Any,
    build_options: Any,
    *,
    name: str | None = None,
    port: int = 8080,
    ready_timeout: float = 300.0,
    step: Callable[[str], None] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> LocalRun:
    """Build the model's image if needed and run it the way ``build_options.target`` runs it.

    Returns once the server answers its readiness route. ``name`` defaults to the model's name.
    ``model_uri``: one model's URI, or a :class:`~deployer.building.sources.ModelSource` (a
    multi-model image: built first if needed, then run like a prebuilt image).
    """
    from deployer.building.contracts import CONTRACTS
    from deployer.building.sources import as_source
    from deployer.targets.local import LocalTarget

    target = LocalTarget(ready_timeout=ready_timeout)
    source = as_source(model_uri)
    if source.multi:
        from deployer.building.execute import build_model_image

        plan, built = build_model_image(
            source, build_options, if_needed=True, step=step, on_line=on_line
        )
        endpoint = name or plan.model_name
        request = DeployRequest(
            name=endpoint,
            image_uri=built.image,
            timeout=ready_timeout,
            options={"port": port, "serve_as": build_options.target},
        )
        result = target.apply(target.plan(request), step=step, on_line=on_line)
        return LocalRun(
            target=target,
            name=endpoint,
            model_uri=source.describe(),
            model_path=None,
            result=result,
            serve_as=str(result.details.get("serve_as", build_options.target)),
            url=str(result.endpoint_url),
            predict_route=CONTRACTS[build_options.target].score_route,
        )
    from deployer.building.plan import plan_build
    from deployer.intake import load_model

    loaded = load_model(str(source.uri))
    endpoint = name or plan_build(loaded, build_options).model_name
    request = DeployRequest(
        name=endpoint,
        model_uri=str(source.uri),
        timeout=ready_timeout,
        options={"port": port, "serve_as": build_options.target},
        build=build_options,
    )
    plan = target.plan(request)
    result = target.apply(plan, step=step, on_line=on_line)
    serve_as = str(result.details.get("serve_as", build_options.target))
    return LocalRun(
        target=target,
        name=endpoint,
        model_uri=loaded.uri,
        model_path=loaded.path,
        result=result,
        serve_as=serve_as,
        url=str(result.endpoint_url),
        predict_route=CONTRACTS[serve_as].score_route,
    )


def follow_local(
    run: LocalRun, on_chunk: Callable[[bytes], None], on_stop: Callable[[str], None]
) -> None:
    """Stream the container's logs until Ctrl-C (or the container ends), then remove it.

    The logs are read by a daemon thread while the main thread waits in short steps: a blocking
    read in the main thread would not see Ctrl-C when the kernel hands the signal to another
    thread of the process (then nothing happens until the container logs its next line).
    A second Ctrl-C while removing must not leave a stopped-but-not-removed container behind.
    """
    import threading

    ended = threading.Event()
    failure: list[BaseException] = []

    def stream() -> None:
        try:
            container = run.target.client.containers.get(run.result.details["container"])
            for chunk in container.logs(stream=True, follow=True):
                on_chunk(chunk)
        except Exception as exc:  # noqa: BLE001 - handed to the main thread, raised there
            failure.append(exc)
        finally:
            ended.set()

    interrupted = False
    try:
        threading.Thread(target=stream, name="deployer-local-logs", daemon=True).start()
        while not ended.wait(0.25):
            pass
    except KeyboardInterrupt:
        interrupted = True
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            on_stop(f"stopping and removing {run.result.details['container']}")
            run.target.delete(run.name)
        finally:
            signal.signal(signal.SIGINT, previous)
    if failure and not interrupted:  # the stream broke on its own (after Ctrl-C it may, too)
        raise failure[0]
