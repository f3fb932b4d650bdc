"""``deployer export --target kubernetes|kserve``: manifests and a kustomization.yaml for GitOps,
no cluster needed; written whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from deployer.cli import cli

IMAGE = "registry.example.com/ml/iris@sha256:" + "3" * 64


def export(*args: str) -> Result:
    return CliRunner().invoke(cli, ["export", *args], catch_exceptions=False)


def load(folder: Path, name: str) -> dict:  # type: ignore[type-arg]
    return dict(yaml.safe_load((folder / name).read_text()))


def test_kubernetes_manifests_and_kustomization(sklearn_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = export("--target", "kubernetes", "-m", str(sklearn_model), "--image", IMAGE, "-o", str(out),
                    "--namespace", "prod", "--cpu", "2", "--memory", "2Gi", "--autoscale", "2:6:65",
                    "--pdb-min-available", "1", "--env", "LOG_LEVEL=debug", "--output", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    files = ["deployment.yaml", "service.yaml", "horizontalpodautoscaler.yaml", "poddisruptionbudget.yaml",
             "kustomization.yaml"]
    assert data["files"] == files and sorted(p.name for p in out.iterdir()) == sorted(files)
    assert data["name"] == "sklearn-skops"  # from the model folder's name, made a valid Kubernetes name
    kustomization = load(out, "kustomization.yaml")
    assert kustomization["namespace"] == "prod" and kustomization["resources"] == files[:-1]
    dep = load(out, "deployment.yaml")
    assert dep["metadata"]["namespace"] == "prod"
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert {"name": "LOG_LEVEL", "value": "debug"} in container["env"]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
    assert (out / "deployment.yaml").read_text().startswith("# Written by deployer")


def test_kserve_manifests(sklearn_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "kserve"
    result = export("--target", "kserve", "-m", str(sklearn_model), "--image", IMAGE, "-o", str(out),
                    "--name", "iris", "--canary", "10", "--min-replicas", "0", "--max-replicas", "4")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["inferenceservice.yaml", "kustomization.yaml",
                                                      "servingruntime.yaml"]
    predictor = load(out, "inferenceservice.yaml")["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10 and predictor["minReplicas"] == 0
    assert predictor["model"]["runtime"] == "deployer-iris" and predictor["model"]["image"] == IMAGE
    assert load(out, "servingruntime.yaml")["metadata"]["name"] == "deployer-iris"


@pytest.mark.parametrize(("args", "words", "code"), [
    (("--target", "kubernetes"), ("--image",), 2),
    (("--target", "kubernetes", "--image", IMAGE, "--name", "Bad_Name"), ("not a valid Kubernetes name",), 2),
    (("--target", "kubernetes", "--image", IMAGE, "--canary", "5"), ("--canary is not an option of --target kubernetes",), 2),
    (("--target", "kserve", "--image", IMAGE, "--replicas", "2"), ("--replicas is not an option of --target kserve",), 2),
    (("--target", "kubernetes", "--image", IMAGE, "--instance-type", "Standard_F4s_v2"),
     ("--instance-type is not an option", "azureml"), 2),
    (("--target", "azureml", "--cpu", "1"), ("--cpu is not an option of --target azureml",), 2),
    (("--target", "kubernetes", "--image", IMAGE, "--cpu", "lots"), ("not a Kubernetes quantity",), 2),
])
def test_bad_export_input_writes_nothing(sklearn_model: Path, tmp_path: Path, args: tuple[str, ...],
                                         words: tuple[str, ...], code: int) -> None:
    out = tmp_path / "out"
    result = export("-m", str(sklearn_model), "-o", str(out), *args)
    assert result.exit_code == code, result.output
    for word in words:
        assert word in result.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary folder left either


def test_a_non_empty_folder_is_replaced_only_with_force(sklearn_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    args = ("--target", "kubernetes", "-m", str(sklearn_model), "--image", IMAGE, "-o", str(out))
    refused = export(*args)
    assert refused.exit_code == 2 and "not empty" in refused.stderr
    assert (out / "mine.txt").read_text() == "keep"
    assert export(*args, "--force").exit_code == 0
    assert not (out / "mine.txt").exists() and (out / "deployment.yaml").exists()


def test_a_tag_that_cannot_be_resolved_to_a_digest_is_refused(sklearn_model: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # no engine to ask the registry
    out = tmp_path / "k8s"
    result = export("--target", "kubernetes", "-m", str(sklearn_model), "--image", "registry.example.com/ml/iris:1",
                    "-o", str(out))
    assert result.exit_code == 2
    assert "cannot resolve the tag" in result.stderr and "@sha256:" in result.stderr
    assert not out.exists()
