"""Provenance on Kubernetes / KServe: a deploy from ``-m`` annotates the workload with the model's
:class:`~deployer.model.provenance.Provenance`; ``provenance()`` and ``status`` read it back from
the API server (the fake one, over HTTP)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from deployer.cli import cli
from deployer.model.files import model_digest
from deployer.model.provenance import Provenance
from deployer.targets.base import DeployRequest
from deployer.targets.kubernetes import KubernetesTarget
from deployer.targets.kubernetes.plan import FROM_PUSH
from tests.targets.kubernetes.fake_apiserver import FakeApiServer

REGISTRY = "registry.example.com/ml"


def test_a_deploy_from_a_model_annotates_the_workload_and_status_reads_it(
        apiserver: FakeApiServer, kubeconfig_file: Path, sklearn_model: Path) -> None:
    target = KubernetesTarget(kubeconfig=str(kubeconfig_file))
    plan = target.plan(DeployRequest("iris", model_uri=str(sklearn_model), options={"registry": REGISTRY}))
    (obj,) = [c.params["object"] for c in plan.calls
              if c.operation == "apply" and c.params["object"]["kind"] == "Deployment"]
    annotations = obj["metadata"]["annotations"]
    assert annotations["deployer.io/model-digest"] == model_digest(sklearn_model)
    assert "deployer.io/model-name" not in annotations  # a directory: the digest only
    assert apiserver.changes() == []  # planning changed nothing

    # what the apply writes is what provenance() and status read back
    live = json.loads(json.dumps(obj).replace(FROM_PUSH, f"{REGISTRY}/iris@sha256:{'0' * 64}"))
    target.kube.apply(live)
    assert target.provenance("iris") == Provenance(digest=model_digest(sklearn_model))
    assert target.provenance("absent") is None
    status = CliRunner().invoke(cli, ["status", "--target", "kubernetes", "--name", "iris",
                                      "--kubeconfig", str(kubeconfig_file), "--output", "json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["details"]["provenance"] == {
        "digest": model_digest(sklearn_model), "registered_model": None, "version": None,
        "alias": None, "run_id": None}
