"""``--local``: azure-ai-ml's local endpoints run a bring-your-own-container image in the real
Docker engine (no Azure account, no image pull: the image is built here from the
Debian-made base image).

The test image's server is Python's standard library only (the base image has no pip
packages, and installing mlflow inside a test build would take minutes); it proves what this
test is about: the SDK started deployer's image with the inference_config routes, the staged
model mounted at AZUREML_MODEL_DIR/model, the --env variables, and the smoke test, status,
predict and delete all went through the SDK's local endpoint code.
"""

from __future__ import annotations

import json
import uuid

import pytest

from deployer.targets.base import DeployRequest
from tests.targets.azureml.conftest import StaticToken

SERVER = r'''
import http.server, json, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self._send(200, {"status": "Healthy"} if self.path == "/healthz" else {"path": self.path})

    def do_POST(self):
        if self.path != "/predict":
            return self._send(404, {"message": "no route " + self.path})
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        root = os.environ.get("AZUREML_MODEL_DIR", "")
        found = sorted(os.path.relpath(os.path.join(d, "MLmodel"), root)
                       for d, _, files in os.walk(root) if "MLmodel" in files)
        self._send(200, {"mlmodel": found, "rows": len(body["input_data"]["data"]),
                         "greeting": os.environ.get("GREETING")})

    def _send(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
'''


@pytest.fixture(scope="module")
def byoc_image(docker_client, base_image, tmp_path_factory):  # type: ignore[no-untyped-def]
    ctx = tmp_path_factory.mktemp("byoc")
    (ctx / "server.py").write_text(SERVER)
    (ctx / "Dockerfile").write_text(f"FROM {base_image}\nCOPY server.py /server.py\nEXPOSE 8080\n"
                                    'CMD ["python3", "/server.py"]\n')
    tag = f"deployer-test/azureml-byoc:{uuid.uuid4().hex[:8]}"
    docker_client.images.build(path=str(ctx), tag=tag, pull=False, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


@pytest.mark.docker
@pytest.mark.slow
def test_local_endpoint_runs_the_image_in_docker(byoc_image, docker_client, sklearn_model, tmp_path, monkeypatch):
    from deployer.targets.azureml import AzureMLTarget

    monkeypatch.setenv("DEPLOYER_AZUREML_LOCAL_DIR", str(tmp_path / "local"))
    name = f"loc-{uuid.uuid4().hex[:8]}"
    target = AzureMLTarget(local=True, credential=StaticToken())
    opts = {"instance_type": "Standard_DS3_v2", "instance_count": 1, "env": ("GREETING=hello world",),
            "image_port": 8080, "scoring_route": "/predict", "health_route": "/healthz", "smoke_test": True}
    plan = target.plan(DeployRequest(name, model_uri=str(sklearn_model), image_uri=byoc_image, options=opts))
    assert [c.operation for c in plan.calls] == [
        "online_endpoints.begin_create_or_update", "online_deployments.begin_create_or_update", "smoke_test"]
    try:
        result = target.apply(plan)
        smoke = json.loads(result.details["smoke_test"]["response"])
        assert smoke == {"mlmodel": ["model/MLmodel"], "rows": 3, "greeting": "hello world"}
        assert result.endpoint_url and result.endpoint_url.startswith("http://localhost:")
        assert result.endpoint_url.endswith("/predict")  # the image's scoring route, not the SDK's /score

        containers = docker_client.containers.list(filters={"name": name})
        assert [c.image.tags[0] for c in containers] == [byoc_image]

        status = target.status(name)
        assert [d["name"] for d in status.details["deployments"]] == ["blue"]
        assert name in [e.name for e in target.list()]
        body = {"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}}
        answer = json.loads(target.predict(name, json.dumps(body).encode(), "application/json"))
        assert answer["rows"] == 2
    finally:
        deleted = target.delete(name)
    assert deleted.status == "Deleted"
    assert docker_client.containers.list(all=True, filters={"name": name}) == []
    assert not (tmp_path / "local" / name).exists()
