"""How an image is started and probed on each platform: one record per serving contract.

The image's entry point, health check, verification and the local rehearsal all need the same
few facts about the platform that will run the image; they live here, in the building room,
and the deployment targets use them (the local target starts a container "as SageMaker would"
with the ``sagemaker`` contract). Nothing in the building room asks for a target by name:
it reads these fields.

* ``local`` and ``sagemaker``: ``docker run IMAGE serve`` starts deployer's server (MLflow's
  ``/invocations`` protocol and SageMaker's container contract), ready on ``GET /ping``;
* ``azureml``: Azure's inference server (azmlinfsrv) runs the generated ``score.py`` entry
  script, ready on ``GET /``, scoring on ``POST /score``; the image also needs the server's
  package, and ``deployer generate`` adds Azure's ``create_service.sh``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from deployer.errors import UsageError


@dataclass(frozen=True)
class ServingContract:
    """One platform's way of starting and probing a model image."""

    name: str
    health_route: str
    score_route: str
    server: str  # "deployer" (python -m deployer.serving) | "azmlinfsrv" (score.py)
    server_requirements: tuple[str, ...] = ()  # what the image needs on top of deployer[serve]
    entry_script: bool = False  # score.py in the runtime layer
    service_script: bool = False  # create_service.sh next to the Dockerfile (deployer generate)


AZURE_SERVER_REQUIREMENT = "azureml-inference-server-http>=1.3"

CONTRACTS: dict[str, ServingContract] = {
    c.name: c
    for c in (
        ServingContract("local", "/ping", "/invocations", "deployer"),
        ServingContract("sagemaker", "/ping", "/invocations", "deployer"),
        ServingContract(
            "azureml",
            "/",
            "/score",
            "azmlinfsrv",
            (AZURE_SERVER_REQUIREMENT,),
            entry_script=True,
            service_script=True,
        ),
    )
}


def contract(name: str) -> ServingContract:
    """The contract called ``name``; a usage error suggesting the closest one otherwise."""
    found = CONTRACTS.get(name)
    if found is None:
        close = difflib.get_close_matches(name, CONTRACTS, n=1)
        raise UsageError(
            f"unknown target {name!r}",
            fix=f"did you mean '{close[0]}'?" if close else f"use one of: {', '.join(CONTRACTS)}",
        )
    return found
