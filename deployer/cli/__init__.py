"""The ``deployer`` command line: a thin layer that parses, calls the library, reports.

Subcommands live one per module (``deployer/cli/<name>_cmd.py``, attribute ``command``) and
are imported lazily, so ``deployer --help`` stays fast and cloud SDKs load only when used.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import click

from deployer import __version__
from deployer.cli.common import CommandState, ReportedError
from deployer.errors import DeployerError

# name -> module; a command appears once its module exists.
COMMANDS: dict[str, str] = {
    "inspect": "deployer.cli.inspect_cmd",
    "serve": "deployer.cli.serve_cmd",
    "predict": "deployer.cli.predict_cmd",
    "generate": "deployer.cli.generate_cmd",
    "lock": "deployer.cli.lock_cmd",
    "build": "deployer.cli.build_cmd",
    "run-local": "deployer.cli.run_local_cmd",
    "build-and-push": "deployer.cli.build_and_push_cmd",
    "deploy": "deployer.cli.deploy_cmd",
    "export": "deployer.cli.export_cmd",
    "status": "deployer.cli.status_cmd",
    "sync": "deployer.cli.sync_cmd",
    "watch": "deployer.cli.watch_cmd",
    "list": "deployer.cli.list_cmd",
    "delete": "deployer.cli.delete_cmd",
    "batch": "deployer.cli.batch_cmd",
    "prune": "deployer.cli.prune_cmd",
    "prepare-env": "deployer.cli.prepare_env_cmd",
    "requirements": "deployer.cli.requirements_cmd",
    "models": "deployer.cli.models_cmd",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for n, mod in COMMANDS.items() if importlib.util.find_spec(mod) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None or importlib.util.find_spec(module) is None:
            return None
        return importlib.import_module(module).command  # type: ignore[no-any-return]

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise click.UsageError(f"No such command '{name}'.{hint}", ctx)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except DeployerError as exc:
            raise ReportedError(exc, CommandState.console) from exc
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - last-resort report, never a bare traceback
            raise ReportedError(exc, CommandState.console) from exc


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="deployer")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    envvar="DEPLOYER_CONFIG",
    help="Config file (default: ./deployer.toml, or [tool.deployer] in ./pyproject.toml).",
)
@click.option(
    "--output",
    type=click.Choice(["text", "json"]),
    default=None,
    envvar="DEPLOYER_OUTPUT",
    help="Result format for every command: text or json.",
)
@click.option("-v", "--verbose", count=True, help="More logs; tracebacks on error.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(config: str | None, output: str | None, verbose: int, quiet: bool) -> None:
    """deployer: turn an MLflow model directory into a running endpoint.

    \b
      deployer inspect -m ./model          what is this model, what does it need
      deployer serve -m ./model            score on this host
      deployer run-local -m ./model        build the image, run it on localhost
    """


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="deployer")
