"""Provenance on Azure ML (the real azure-ai-ml SDK against the fake ARM transport): a rollout
from ``-m`` tags the new deployment (and the endpoint it creates) with the model's
:class:`~deployer.model.provenance.Provenance`; ``provenance()`` and ``status`` read the one of
the deployment taking the traffic."""

from __future__ import annotations

from deployer.model.files import model_digest
from deployer.model.provenance import Provenance
from tests.targets.azureml.test_deploy import EP, request


def test_rollout_from_a_model_tags_the_deployment_and_status_reads_it(  # type: ignore[no-untyped-def]
    make_target, arm, front_door, blob_storage, sklearn_score_server, sklearn_model
):
    front_door.backends[(EP, "blue")] = sklearn_score_server.url
    target = make_target()
    assert target.provenance(EP) is None  # no endpoint yet
    target.apply(target.plan(request(sklearn_model, image=None, model_name="iris")))

    digest = model_digest(sklearn_model)
    dep = arm.get(f"onlineEndpoints/{EP}/deployments/blue")
    assert dep["tags"]["deployer-model-digest"] == digest
    assert "deployer-model-name" not in dep["tags"]  # a directory: the digest only
    assert arm.get(f"onlineEndpoints/{EP}")["tags"]["deployer-model-digest"] == digest
    assert make_target().provenance(EP) == Provenance(digest=digest)
    status = make_target().status(EP)
    assert status.details["provenance"] == Provenance(digest=digest).to_dict()
