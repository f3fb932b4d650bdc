"""A third-party target plugin, as an outside package would write it (used by test_discovery).

It only depends on ``deployer.targets.base``; "deploying" writes a JSON file under
``$ECHO_STATE``, so status/list/delete have something real to read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from deployer.errors import TargetError
from deployer.targets.base import (
    DeployPlan,
    DeployRequest,
    DeployResult,
    EndpointStatus,
    OptionSpec,
    PlannedCall,
)

ALL = ("deploy", "status", "list", "delete", "predict", "batch")


class EchoTarget:
    name = "echo"
    options = (
        OptionSpec("color", "Color of the echo.", type="choice", choices=("red", "blue"), default="red"),
        OptionSpec("echo_region", "Where echoes live.", commands=ALL, connection=True),
        OptionSpec("purge", "Also forget the history.", type="bool", default=False, commands=("delete",)),
        OptionSpec("env", "Shared with sagemaker's --env (same type: allowed).", multiple=True),
    )

    def __init__(self, echo_region: str = "local") -> None:
        self.region = echo_region
        self.root = Path(os.environ["ECHO_STATE"])

    def _file(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def plan(self, request: DeployRequest) -> DeployPlan:
        params = {"name": request.name, "region": self.region, **dict(request.options),
                  "model": request.model_uri, "wait": request.wait}
        return DeployPlan("echo", request.name, "create", (PlannedCall("echo", "write", params),),
                          summary=f"echo {request.name}")

    def apply(self, plan: DeployPlan) -> DeployResult:
        params = dict(plan.calls[0].params)
        self._file(plan.name).write_text(json.dumps(params))
        return DeployResult("echo", plan.name, plan.action, "Echoing", details=params)

    def status(self, name: str) -> EndpointStatus:
        if not self._file(name).exists():
            raise TargetError(f"no echo named {name!r}", fix="deploy it first")
        return EndpointStatus("echo", name, "Echoing", json.loads(self._file(name).read_text()))

    def list(self) -> list[EndpointStatus]:
        return [self.status(p.stem) for p in sorted(self.root.glob("*.json"))]

    def delete(self, name: str, purge: bool = False) -> DeployResult:
        self.status(name)
        self._file(name).unlink()
        return DeployResult("echo", name, "delete", "deleted", details={"purge": purge})

    def predict(self, name: str, body: bytes, content_type: str) -> bytes:
        return body


class BadOptionsTarget(EchoTarget):
    name = "badopts"
    options = (OptionSpec("shade", "A type that does not exist.", type="colour"),)


class ClashTarget(EchoTarget):
    name = "xclash"
    options = (OptionSpec("color", "Same name as echo's --color, another type.", type="int"),)
