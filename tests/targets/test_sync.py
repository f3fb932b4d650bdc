"""``deployer sync`` (deployer/targets/sync.py): the deployments file, and the local target on the
real Docker engine following an alias of a real ``mlflow server``.

v1 is deployed (labels record it, ``status`` shows it), a second sync changes nothing, moving the
alias to v2 replaces the container, and a v3 whose image fails verification is reported failed
while v2 keeps serving (its container untouched, the failing entry not stopping the next)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from deployer.cli import cli
from tests.model.test_uri import log_model_dir, register


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# ------------------------------------------------------------------------ the file
@pytest.mark.parametrize(
    ("body", "exit_code", "needles"),
    [
        (  # a key deploy does not take for that target: file, entry and key named
            '[[endpoints]]\nname = "a"\ntarget = "local"\nmodel = "models:/m@c"\ninstance_type = "x"\n',
            1, ["unknown key 'instance_type' for target 'local'", "endpoints[0] (a): instance_type"],
        ),
        (  # a misspelt key gets a suggestion
            '[[endpoints]]\nname = "a"\ntarget = "local"\nmodel = "models:/m@c"\nprot = 1\n',
            1, ["did you mean 'port'?"],
        ),
        (  # a value parsed like the command line's
            '[[endpoints]]\nname = "a"\ntarget = "local"\nmodel = "models:/m@c"\nport = "x"\n',
            1, ["invalid value 'x'", "endpoints[0] (a): port"],
        ),
        (  # sync follows aliases
            '[[endpoints]]\nname = "a"\ntarget = "local"\nmodel = "models:/m/3"\n',
            1, ["does not name a registry alias", 'models:/NAME@ALIAS']
        ),
        ('[[endpoints]]\nname = "a"\nmodel = "models:/m@c"\n', 1, ["needs 'target'"]),
        ('[[endpoints]]\nname = "a"\ntarget = "nope"\nmodel = "models:/m@c"\n', 1, ["nope"]),
        ('[endpoint]\nname = "a"\n', 2, ["[[endpoints]] tables", "unknown top-level key(s): endpoint"]),
        ('[[endpoints]]\nname = "a"\n[[endpoints]]\nname = "a"\n', 2, ["listed twice: a"]),
        ("[[endpoints]\n", 2, ["not valid TOML"]),
    ],
)
def test_bad_files_are_refused_with_what_where_fix(
    tmp_path: Path, body: str, exit_code: int, needles: list[str]
) -> None:
    file = tmp_path / "deployments.toml"
    file.write_text(body)
    result = run("sync", "-f", str(file), "--dry-run", "--output", "json")
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    text = result.output
    for needle in needles:
        assert needle in text, text
    assert str(file) in text


def test_only_must_name_an_entry(tmp_path: Path) -> None:
    file = tmp_path / "deployments.toml"
    file.write_text('[[endpoints]]\nname = "a"\ntarget = "local"\nmodel = "models:/m@c"\n')
    result = run("sync", "-f", str(file), "--only", "b")
    assert result.exit_code == 2 and "no entry named 'b'" in result.output
    assert "pass one of: a" in result.output


# ------------------------------------------------------------------------ local target
def predict(url: str) -> list[Any]:
    body = json.dumps({"dataframe_records": [
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}).encode()
    req = urllib.request.Request(f"{url}/invocations", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=30) as resp:
        return list(json.loads(resp.read())["predictions"])


def broken_copy(model: Path, dest: Path) -> Path:
    """The sklearn model with its pickle replaced by junk: it cannot load, so its image fails
    verification."""
    shutil.copytree(model, dest)
    (pickle,) = [p for p in dest.iterdir() if p.suffix in (".pkl", ".skops")]
    pickle.write_bytes(b"not a model")
    return dest


def status(name: str) -> dict[str, Any]:
    result = run("status", "--target", "local", "--name", name, "--output", "json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout)["details"])


@pytest.mark.docker
@pytest.mark.slow
def test_sync_local_follows_the_alias_and_a_broken_version_never_replaces_a_serving_one(
    docker_client: Any, base_image: str, mlflow_env: str, sklearn_model: Path,
    no_signature_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient

    from deployer.targets.local import LocalTarget

    monkeypatch.setenv("DEPLOYER_CACHE_DIR", str(tmp_path / "cache"))
    name = "sync-local-iris"
    runs = [log_model_dir(m) for m in
            (sklearn_model, no_signature_model, broken_copy(sklearn_model, tmp_path / "broken"))]
    v1, v2, v3 = (register(r, name) for r in runs)
    client = MlflowClient()
    client.set_registered_model_alias(name, "champion", v1)
    endpoint, other = "sync-iris", "sync-other"
    file = tmp_path / "deployments.toml"
    entry = (f'target = "local"\nmodel = "models:/{name}@champion"\nport = 0\n'
             f'base_image = "{base_image}"\n')
    file.write_text(f'[[endpoints]]\nname = "{endpoint}"\n{entry}'
                    f'[[endpoints]]\nname = "{other}"\n{entry}')
    target = LocalTarget(client=docker_client)
    try:
        first = run("sync", "-f", str(file), "--output", "json")
        assert first.exit_code == 0, first.output
        assert [(e["name"], e["result"], e["version"]) for e in json.loads(first.stdout)["entries"]] == [
            (endpoint, "deployed", v1), (other, "deployed", v1)]
        details = status(endpoint)
        assert details["provenance"] | {"digest": None} == {
            "registered_model": name, "version": v1, "alias": "champion", "run_id": runs[0],
            "digest": None}
        container = docker_client.containers.get(details["container"])
        assert container.labels["io.deployer.model-version"] == v1
        assert len(predict(details["url"])) == 1

        again = run("sync", "-f", str(file), "--only", endpoint, "--output", "json")
        assert again.exit_code == 0, again.output
        assert json.loads(again.stdout)["entries"][0]["result"] == "unchanged"
        assert docker_client.containers.get(details["container"]).id == container.id

        moved_at = time.monotonic()
        client.set_registered_model_alias(name, "champion", v2)
        moved = run("sync", "-f", str(file), "--only", endpoint, "--output", "json")
        assert moved.exit_code == 0, moved.output
        assert json.loads(moved.stdout)["entries"][0]["result"] == "deployed"
        print(f"alias move -> v2 serving (sync, new image): {time.monotonic() - moved_at:.1f}s")
        v2_details = status(endpoint)
        assert v2_details["provenance"]["version"] == v2
        v2_id = docker_client.containers.get(v2_details["container"]).id
        assert len(predict(v2_details["url"])) == 1

        client.set_registered_model_alias(name, "champion", v3)
        broken = run("sync", "-f", str(file), "--output", "json")
        assert broken.exit_code == 1, broken.output
        results = json.loads(broken.stdout)["entries"]
        assert [(e["name"], e["result"], e["version"]) for e in results] == [
            (endpoint, "failed", v3), (other, "failed", v3)]  # each tried, each failed alone
        assert "verif" in results[0]["error"]["message"].lower(), results[0]["error"]
        after = status(endpoint)
        assert after["provenance"]["version"] == v2
        assert docker_client.containers.get(after["container"]).id == v2_id
        assert len(predict(after["url"])) == 1
        assert status(other)["provenance"]["version"] == v1
    finally:
        target.delete(endpoint)
        target.delete(other)
