"""``deployer serve``: the scoring server on this host, in this Python environment.

The same server the images run (``python -m deployer.serving serve``), after resolving the
model URI (local path, s3://, runs:/, models:/) to a local directory. Its flags, environment
variables (``DEPLOYER_SERVE_*``) and ``[serve]`` config keys are derived from
:class:`deployer.serving.options.ServeOptions`, so the two entry points cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from deployer.cli.common import command as deployer_command
from deployer.cli.common import get_console, models_option
from deployer.cli.model_env import env_manager_option
from deployer.serving import options as serve_options


def click_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """One click option per ServeOptions field: ``--name``, env DEPLOYER_SERVE_NAME (then the
    platform variables), config key ``[serve] name``; defaults are ``deployer serve``'s."""
    for spec in reversed(list(serve_options.option_fields())):
        name = spec.name
        kind = serve_options.value_type(name)
        flag = f"--{serve_options.flag_name(name)}"
        default = serve_options.default_of(name, cli=True)
        if name == "log_level":
            default = None  # unset: follows -v/-q
        envvar = list(serve_options.env_names(name))
        help_text = spec.metadata["help"][:1].upper() + spec.metadata["help"][1:] + "."
        if kind is bool:
            f = click.option(
                f"{flag}/--no-{serve_options.flag_name(name)}",
                name,
                default=default,
                show_default=True,
                envvar=envvar,
                help=help_text,
            )(f)
            continue
        choices = spec.metadata["choices"]
        click_type: Any = (
            click.Choice(choices)
            if choices
            else {int: click.INT, float: click.FLOAT}.get(kind, click.STRING)
        )
        f = click.option(
            flag,
            name,
            type=click_type,
            default=default,
            show_default=default is not None,
            envvar=envvar,
            metavar=spec.metadata["metavar"],
            help=help_text,
        )(f)
    return f


@deployer_command("serve")
@models_option("to serve several models (DEPLOYER_SERVE_MODELS=NAME=PATH,...)")
@env_manager_option
@click_options
@click.option(
    "--dry-run",
    is_flag=True,
    default=False,
    help="Print the resolved server options (flags, environment, config file) "
    "and exit, without loading the model.",
)
def command(model_uris: tuple[str, ...], env_manager: str, dry_run: bool, **values: Any) -> None:
    """Serve a model over HTTP on this host (no container), like `mlflow models serve`.

    \b
    Routes: POST /invocations (MLflow protocol; "stream": true streams server-sent events
    for models with predict_stream), GET /ping /health /version, GET /openapi.json,
    GET /metrics, and the Open Inference Protocol under /v2.
    Several models: -m NAME=URI repeated, or --model-repository DIR (one model per
    subdirectory); /v2/models/NAME/... per model, /invocations the default model or the
    one named by the X-Deployer-Target-Model header. --sagemaker-multi-model adds
    SageMaker's multi-model endpoint routes (POST/GET/DELETE /models).
    Every option is also DEPLOYER_SERVE_<OPTION> and a key of [serve] in deployer.toml
    (flag > environment > config file > default). DEPLOYER_API_KEY turns on auth too.

    \b
    --env-manager virtualenv (or uv) runs the server in the model's own locked
    environment, built on this host once (deployer prepare-env builds it ahead of time).

    \b
    Example:
      deployer serve -m ./model --port 8080
      deployer serve -m models:/churn/3 --env-manager virtualenv
      deployer serve -m churn=models:/churn/3 -m fraud=./fraud --default-model churn
      curl -H 'Content-Type: application/json' localhost:8080/invocations \\
           -d '{"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}'
    """
    import logging
    import os

    from deployer.building.host_env import check_env_manager
    from deployer.errors import UsageError
    from deployer.model.uri import resolve_model_uri
    from deployer.serving.model_set import parse_pairs, split_model_arg
    from deployer.serving.options import ServeOptions, split_list

    check_env_manager(env_manager)
    if not model_uris:
        model_uris = split_list(os.environ.get("DEPLOYER_SERVE_MODELS", ""))
    single = len(model_uris) == 1 and split_model_arg(model_uris[0])[0] is None
    pairs = [] if single else parse_pairs(model_uris, "-m NAME=URI")
    if not model_uris and not values.get("model_repository"):
        if not values.get("sagemaker_multi_model"):
            raise UsageError(
                "no model to serve",
                where="-m/--model",
                fix="pass -m URI (or -m NAME=URI repeated, or --model-repository DIR)",
            )
    if (pairs or values.get("model_repository")) and env_manager != "local":
        raise UsageError(
            "--env-manager builds one model's environment; several models share this one",
            where="--env-manager",
            fix="serve several models with --env-manager local (in an environment that has "
            "every model's requirements), or build an image",
        )
    if not single:
        values["models"] = tuple(f"{p.name}={p.path}" for p in pairs)
    console = get_console()
    if values.get("log_level") is None:
        values["log_level"] = (
            "debug" if console.verbosity > 0 else "warning" if console.verbosity < 0 else "info"
        )
    ServeOptions(model_dir="", **values).validate()  # bad options fail before any download
    if dry_run:
        from dataclasses import asdict

        from deployer.serving.options import read_api_key

        data = {
            k: v
            for k, v in asdict(ServeOptions(model_dir="", **values)).items()
            if k not in ("model_dir", "extra")
        }
        data["model"] = model_uris[0] if single else None
        data["env_manager"] = env_manager
        # the option as given (a file or JSON) and the mapping load_model will get
        data["model_config_mapping"] = ServeOptions(model_dir="", **values).parsed_model_config()
        data["auth"] = bool(read_api_key(ServeOptions(model_dir="", **values)))
        console.result(data, text="\n".join(f"{k} = {v}" for k, v in data.items()))
        return
    if not single:
        values["models"] = tuple(f"{p.name}={resolve_model_uri(p.path)}" for p in pairs)
        if values.get("load_mode", "auto") == "auto" and values["models"]:
            _decide_load_mode(values)
        options = ServeOptions(model_dir="", **values).validate()
        from deployer.serving.server import serve

        logging.getLogger("deployer.serving").setLevel(options.log_level.upper())
        serve(options)
        console.result({"models": list(options.models), "stopped": True}, text="server stopped")
        return
    model_dir = resolve_model_uri(model_uris[0])
    if values.get("load_mode", "auto") == "auto":
        # what the model's own files import counts too (the server alone reads only MLmodel
        # and requirements.txt); an undecided model stays "auto" so the server re-checks it
        from deployer.model.references import referenced_modules
        from deployer.serving.loading import decide_for_model_dir

        decision = decide_for_model_dir(model_dir, referenced_modules=referenced_modules(model_dir))
        if decision.certain:
            values["load_mode"] = decision.mode
        logging.getLogger("deployer").info("load mode %s", decision.describe())
    options = ServeOptions(model_dir=str(model_dir), **values).validate()
    if env_manager != "local":
        from deployer.cli.model_env import prepare_model_env, run_in_env
        from deployer.serving.options import to_argv

        menv = prepare_model_env(model_dir, env_manager, grpc=options.grpc_port is not None)
        code = run_in_env(menv, ["serve", *to_argv(options)])
        if code not in (0, -2, -15, 130):  # stopped by Ctrl-C / SIGTERM: a normal end
            raise click.exceptions.Exit(code if code > 0 else 1)
        console.result(
            {"model": str(model_dir), "stopped": True, "environment": menv.to_dict()},
            text="server stopped",
        )
        return
    from deployer.serving.server import serve

    # the CLI already configured the "deployer" logger: the server logs through it
    logging.getLogger("deployer.serving").setLevel(options.log_level.upper())
    serve(options)
    console.result({"model": str(model_dir), "stopped": True}, text="server stopped")


def _decide_load_mode(values: dict[str, Any]) -> None:
    """Several models: per-worker when any one certainly needs it (its files scanned, as for one
    model), preload when every one certainly survives fork; else the server decides."""
    import logging

    from deployer.model.references import referenced_modules
    from deployer.serving.loading import PER_WORKER, PRELOAD, decide_for_model_dir

    decisions = []
    for item in values["models"]:
        name, _, path = item.partition("=")
        decision = decide_for_model_dir(path, referenced_modules=referenced_modules(path))
        logging.getLogger("deployer").info("model %r: load mode %s", name, decision.describe())
        decisions.append(decision)
    if any(d.certain and d.mode == PER_WORKER for d in decisions):
        values["load_mode"] = PER_WORKER
    elif all(d.certain and d.mode == PRELOAD for d in decisions):
        values["load_mode"] = PRELOAD
