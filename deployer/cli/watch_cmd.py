"""``deployer watch``: keep the endpoints of a deployments file on what their aliases name."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from deployer.cli.common import command
from deployer.cli.sync_cmd import deployments_file_option


@command("watch")
@deployments_file_option("The deployments file (TOML, [[endpoints]] tables; see `deployer sync`).")
@click.option(
    "--interval",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="Poll the registry this often (default: 60, or only webhooks with --webhook-port).",
)
@click.option(
    "--webhook-port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Receive MLflow webhooks (model_version_alias.created/.deleted) on this port.",
)
@click.option(
    "--webhook-host",
    default="127.0.0.1",
    show_default=True,
    metavar="HOST",
    help="Address the webhook receiver listens on (0.0.0.0: every interface).",
)
@click.option(
    "--webhook-secret-env",
    metavar="VAR",
    help="Environment variable holding the webhook's secret (deliveries must be signed with it).",
)
@click.option("--only", metavar="NAME", help="Watch only the entry with this name.")
def command(
    file: Path,
    interval: float | None,
    webhook_port: int | None,
    webhook_host: str,
    webhook_secret_env: str | None,
    only: str | None,
) -> None:
    """Follow the registry: sync an entry when its alias moves (polling and/or webhooks).

    \b
      deployer watch -f deployments.toml --interval 30
      deployer watch -f deployments.toml --webhook-port 8787 --webhook-secret-env HOOK_SECRET

    One JSON line per decision on stdout. A version that failed to deploy (the endpoint keeps
    what it served) is tried again only when the alias moves. SIGTERM/Ctrl-C: the deploy in
    flight is rolled back, then the command exits 0.
    """
    from deployer.errors import ConfigError, UsageError
    from deployer.targets.executor import interrupt
    from deployer.targets.sync import EntryPlan, load_deployments
    from deployer.targets.watch import Watch, WebhookVerifier

    verifier = None
    if webhook_port is not None or webhook_secret_env:
        if webhook_port is None or not webhook_secret_env:
            raise UsageError(
                "webhooks need both --webhook-port and --webhook-secret-env",
                where="--webhook-port / --webhook-secret-env",
                fix="pass both (unsigned deliveries are never accepted)",
            )
        secret = os.environ.get(webhook_secret_env, "")
        if not secret:
            raise UsageError(
                f"the environment variable {webhook_secret_env} is not set or empty",
                where="--webhook-secret-env",
                fix=f"export {webhook_secret_env}=<the secret of MlflowClient.create_webhook>",
            )
        verifier = WebhookVerifier(secret)
    if interval is None and verifier is None:
        interval = 60.0
    entries = load_deployments(file, only=only)
    bad = [e for e in entries if isinstance(e, EntryPlan)]
    if bad:
        error = bad[0].error or {}
        raise ConfigError(
            f"entry {bad[0].name!r}: {error.get('message')}",
            where=str(error.get("where") or file),
            fix=str(error.get("fix") or "fix the deployments file"),
        )

    def log_line(line: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(line, default=str) + "\n")
        sys.stdout.flush()

    watch = Watch(
        [e for e in entries if not isinstance(e, EntryPlan)], interval=interval, log_line=log_line
    )

    def on_signal(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        watch.stop()  # no deploy starts after this; the one in flight (if any) is rolled
        interrupt(name)  # back by the executor before its next call

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if verifier is not None:
        assert webhook_port is not None
        server = watch.serve_webhooks(verifier, webhook_host, webhook_port)
        watch.emit("listening", host=webhook_host, port=server.server_address[1])
    watch.run()
