"""Provenance of a model: what the registry says it is, next to its content digest.

Real ``mlflow server`` (tests/fixtures/services.py): versions registered from real saved
models, an alias set and moved; the record must describe the bytes that were downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import ModelURIError
from deployer.intake import load_model
from deployer.model.files import model_digest
from deployer.model.provenance import Provenance, model_provenance
from deployer.model.uri import registered_version, uri_alias
from tests.model.test_uri import log_model_dir, register


def test_tags_round_trip_under_each_prefix() -> None:
    record = Provenance(
        digest="sha256:ab", registered_model="iris", version="3", alias="champion", run_id="r1"
    )
    for prefix in ("io.deployer.", "deployer:", "deployer-", "deployer.io/"):
        tags = record.to_tags(prefix)
        assert tags[prefix + "model-version"] == "3"
        assert Provenance.from_tags({**tags, "other": "x"}, prefix) == record
    digest_only = Provenance(digest="sha256:cd")
    assert digest_only.to_tags("p:") == {"p:model-digest": "sha256:cd"}
    assert digest_only.registry_version() is None
    assert Provenance.from_tags({"p:model-name": "iris"}, "p:") is None  # no digest: no record
    assert record.describe() == "iris v3, @champion, run r1, sha256:ab"


def test_alias_uri_records_the_version_it_resolved_to(
    mlflow_env: str, sklearn_model: Path, params_model: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("DEPLOYER_CACHE_DIR", str(tmp_path / "cache"))
    name = "provenance-iris"
    run1 = log_model_dir(sklearn_model)
    v1 = register(run1, name)
    run2 = log_model_dir(params_model)  # another flavor of model as the next version
    v2 = register(run2, name)
    client = MlflowClient()
    client.set_registered_model_alias(name, "champion", v1)

    uri = f"models:/{name}@champion"
    assert uri_alias(uri) == "champion" and uri_alias(f"models:/{name}/1") is None
    assert registered_version(uri).version == v1
    loaded = load_model(uri)
    record = model_provenance(uri, loaded.path)
    assert record == Provenance(
        digest=model_digest(loaded.path), registered_model=name, version=v1,
        alias="champion", run_id=run1,
    )

    client.set_registered_model_alias(name, "champion", v2)
    wanted = registered_version(uri)
    assert (wanted.name, wanted.version, wanted.run_id, wanted.alias) == (name, v2, run2, "champion")
    moved = load_model(uri)
    assert model_provenance(uri, moved.path) == Provenance(
        digest=model_digest(moved.path), registered_model=name, version=v2,
        alias="champion", run_id=run2,
    )
    # a version URI has no alias; runs:/ only a run id; a directory only its digest
    assert model_provenance(f"models:/{name}/{v1}", loaded.path).alias is None
    by_run = load_model(f"runs:/{run1}/model")
    assert model_provenance(f"runs:/{run1}/model", by_run.path) == Provenance(
        digest=model_digest(by_run.path), run_id=run1
    )
    assert model_digest(moved.path) != model_digest(loaded.path)
    assert model_provenance(str(sklearn_model), sklearn_model) == Provenance(
        digest=model_digest(sklearn_model)
    )


def test_registered_version_refuses_what_is_not_a_registered_model(mlflow_env: str) -> None:
    with pytest.raises(ModelURIError, match="not a registered model version URI"):
        registered_version("runs:/abc/model")
    with pytest.raises(ModelURIError, match="not found"):
        registered_version("models:/no-such-model-xyz@champion")
