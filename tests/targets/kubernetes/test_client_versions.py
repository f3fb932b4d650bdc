"""deployer's API server boundary on the other generation of the official client.

The test venv resolves ``kubernetes`` 36 (azureml-inference-server-http pins pydantic 2.12; the
37 line was regenerated on pydantic >= 2.14). Users get 37 wherever nothing pins pydantic, so
:class:`deployer.targets.kubernetes.client.Kube` is driven here from a venv of its own holding
``kubernetes`` 37, against the fake API server: kubeconfig contexts and their namespaces, a
wrong context, get / server-side apply / list / logs / delete, and the service proxy.
"""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest
import yaml

from tests.fixtures.infra import REPO_ROOT
from tests.targets.kubernetes.fake_apiserver import FakeApiServer, kubeconfig

pytestmark = pytest.mark.slow

SCRIPT = r'''
import json, sys
from deployer.targets.kubernetes.client import Kube
from deployer.errors import UsageError
import kubernetes
config, = sys.argv[1:]
out = {"version": kubernetes.__version__}
kube = Kube.connect(kubeconfig=config)
out["namespace"], out["context"] = kube.namespace, kube.context
out["absent"] = kube.get("Deployment", "ml", "iris")
svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "iris", "namespace": "ml"},
       "spec": {"ports": [{"port": 80}]}}
out["generation"] = kube.apply(svc)["metadata"]["generation"]
out["listed"] = [s["metadata"]["name"] for s in kube.list("Service", "ml", selector=None)]
answer = kube.proxy("ml", "iris", 80, "invocations", b'{"inputs": [1]}', "application/json")
out["proxy"] = [answer.status, answer.json()["reason"]]
out["deleted"] = [kube.delete("Service", "ml", "iris"), kube.delete("Service", "ml", "iris")]
out["other_namespace"] = Kube.connect(kubeconfig=config, context="other").namespace
try:
    Kube.connect(kubeconfig=config, context="nope")
except UsageError as exc:
    out["bad_context"] = exc.where
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def client37(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("kubernetes37")
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    for args in (["--upgrade", "pip"], ["kubernetes==37.*", "pyyaml"]):
        proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return python


def test_the_client_boundary_works_on_kubernetes_37(client37: Path, apiserver: FakeApiServer,
                                                    tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump(kubeconfig(apiserver.url)))  # type: ignore[attr-defined]
    proc = subprocess.run([str(client37), "-c", SCRIPT, str(config)], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["version"].startswith("37.")
    assert (out["namespace"], out["context"]) == ("ml", "fake")
    assert out["absent"] is None and out["generation"] == 1 and out["listed"] == ["iris"]
    assert out["proxy"] == [503, "ServiceUnavailable"]
    assert out["deleted"] == [True, False]
    assert out["other_namespace"] is None
    assert "--context nope" in out["bad_context"]
