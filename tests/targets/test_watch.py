"""``deployer watch`` (deployer/targets/watch.py).

The verifier is checked against deliveries signed by MLflow's own signing function; the
command runs as a real process on the real Docker engine (local target), fed by webhooks the
real ``mlflow server`` sends when an alias moves (``MlflowClient.create_webhook``)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from deployer.targets.watch import WebhookRejected, WebhookVerifier, alias_event
from tests.fixtures.services import free_port
from tests.model.test_uri import log_model_dir, register
from tests.targets.test_sync import broken_copy, predict

SECRET = "whsec-" + uuid.uuid4().hex


def mlflow_delivery(payload: dict[str, Any], *, secret: str = SECRET, timestamp: int | None = None,
                    delivery_id: str | None = None) -> tuple[dict[str, str], bytes]:
    """Headers and body exactly as MLflow's webhook delivery builds them."""
    from mlflow.webhooks.constants import (
        WEBHOOK_DELIVERY_ID_HEADER,
        WEBHOOK_SIGNATURE_HEADER,
        WEBHOOK_TIMESTAMP_HEADER,
    )
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = json.dumps(payload)
    delivery_id = delivery_id or str(uuid.uuid4())
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        WEBHOOK_DELIVERY_ID_HEADER: delivery_id,
        WEBHOOK_TIMESTAMP_HEADER: ts,
        WEBHOOK_SIGNATURE_HEADER: _generate_hmac_signature(secret, delivery_id, ts, body),
    }, body.encode()


ALIAS_MOVED = {"entity": "model_version_alias", "action": "created",
               "timestamp": "2026-01-01T00:00:00+00:00",
               "data": {"name": "iris", "alias": "champion", "version": "2"}}


def test_verifier_accepts_mlflow_signatures_and_refuses_the_rest() -> None:
    verifier = WebhookVerifier(SECRET, tolerance=300)
    headers, body = mlflow_delivery(ALIAS_MOVED)
    payload = verifier.verify(headers, body)
    assert payload == ALIAS_MOVED
    event = alias_event(headers["X-MLflow-Delivery-Id"], payload)
    assert event is not None and (event.name, event.alias, event.version) == ("iris", "champion", "2")
    assert verifier.verify(headers, body) is None  # the same delivery again: a replay, ignored

    for bad_headers, bad_body, reason in [
        (mlflow_delivery(ALIAS_MOVED, secret="other")[0], body, "bad signature"),
        (headers, body.replace(b'"2"', b'"3"'), "bad signature"),  # body changed in transit
        (mlflow_delivery(ALIAS_MOVED, timestamp=int(time.time()) - 3600)[0], body, "stale"),
        ({"Content-Type": "application/json"}, body, "unsigned"),
    ]:
        with pytest.raises(WebhookRejected) as caught:
            verifier.verify(bad_headers, bad_body)
        assert caught.value.status == 401 and reason in caught.value.reason
    other = {**ALIAS_MOVED, "entity": "model_version", "action": "created"}
    assert alias_event("d", other) is None


# ------------------------------------------------------------------------ the process
class WatchProcess:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("deployer")), *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.log: list[str] = []  # stderr: the deploy's progress
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def wait_for_log(self, text: str, since: int, timeout: float = 120) -> None:
        """Wait for ``text`` in a log line after the first ``since`` lines."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.log[since:]):
            assert time.monotonic() < deadline, f"no {text!r} in the log: {self.log}"
            time.sleep(0.05)

    def wait_for(self, timeout: float = 600, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(f"watch exited: {''.join(self.log)}") from None
                continue
            self.seen.append(line)
            if all(line.get(k) == v for k, v in match.items()):
                return line
        raise AssertionError(f"no line {match} within {timeout}s; saw {self.seen}")


def post(url: str, headers: dict[str, str], body: bytes) -> int:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def predict_when_up(url: str, timeout: float = 120) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return predict(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def serving_version(docker_client: Any, endpoint: str) -> str | None:
    from deployer.targets.local import LocalTarget

    found = LocalTarget(client=docker_client).provenance(endpoint)
    return found.version if found else None


@pytest.mark.docker
@pytest.mark.slow
def test_watch_follows_webhooks_from_mlflow_and_sigterm_rolls_back(
    docker_client: Any, docker_env: Any, base_image: str, mlflow_env: str, sklearn_model: Path,
    no_signature_model: Path, tmp_path: Path,
) -> None:
    from mlflow import MlflowClient

    from deployer.targets.local import LocalTarget

    name, endpoint = "watch-local-iris", "watch-iris"
    runs = [log_model_dir(m) for m in
            (sklearn_model, no_signature_model, broken_copy(sklearn_model, tmp_path / "broken"))]
    v1, v2, v3 = (register(r, name) for r in runs)
    client = MlflowClient()
    client.set_registered_model_alias(name, "champion", v1)
    port = free_port()
    hook = client.create_webhook(
        name=f"deployer-watch-{uuid.uuid4().hex[:8]}", url=f"http://127.0.0.1:{port}/hook",
        events=["model_version_alias.created", "model_version_alias.deleted"], secret=SECRET)
    file = tmp_path / "deployments.toml"
    file.write_text(f'[[endpoints]]\nname = "{endpoint}"\ntarget = "local"\n'
                    f'model = "models:/{name}@champion"\nport = 0\nbase_image = "{base_image}"\n')
    env = {**os.environ, "HOOK_SECRET": SECRET, "DEPLOYER_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    watch = WatchProcess(["watch", "-f", str(file), "--webhook-port", str(port),
                          "--webhook-secret-env", "HOOK_SECRET"], env)
    try:
        watch.wait_for(event="listening", port=port, timeout=60)
        first = watch.wait_for(event="result", entry=endpoint)  # the first round syncs v1
        assert (first["result"], first["version"]) == ("deployed", v1), watch.seen
        assert serving_version(docker_client, endpoint) == v1

        # a delivery signed with another secret: 401, logged, nothing deployed
        headers, body = mlflow_delivery({**ALIAS_MOVED, "data": {
            "name": name, "alias": "champion", "version": v2}}, secret="not-the-secret")
        assert post(f"http://127.0.0.1:{port}/hook", headers, body) == 401
        refused = watch.wait_for(event="webhook", accepted=False)
        assert refused["reason"] == "bad signature"

        # the real server's delivery when the alias moves: v2 serves within seconds
        moved_at = time.monotonic()
        client.set_registered_model_alias(name, "champion", v2)
        hooked = watch.wait_for(event="webhook", accepted=True, timeout=60)
        assert hooked["entries"] == [endpoint] and hooked["action"] == "created"
        done = watch.wait_for(event="result", entry=endpoint)
        assert (done["result"], done["version"]) == ("deployed", v2), watch.seen
        url = LocalTarget(client=docker_client).status(endpoint).details["url"]
        assert len(predict(str(url))) == 1
        print(f"alias move -> v2 serving through the webhook: {time.monotonic() - moved_at:.1f}s")

        # the same delivery replayed is ignored
        signed, body = mlflow_delivery(ALIAS_MOVED)
        assert post(f"http://127.0.0.1:{port}/hook", signed, body) == 200
        assert post(f"http://127.0.0.1:{port}/hook", signed, body) == 200
        assert watch.wait_for(event="webhook", accepted=False)["reason"] == "replayed"

        # v3 fails verification: never deployed, v2 serves; the same alias event again (the
        # alias did not move) does not retry it
        client.set_registered_model_alias(name, "champion", v3)
        failed = watch.wait_for(event="result", entry=endpoint)
        assert (failed["result"], failed["version"]) == ("failed", v3), watch.seen
        assert "verif" in failed["error"]["message"].lower(), failed
        assert serving_version(docker_client, endpoint) == v2
        assert len(predict_when_up(str(url))) == 1
        again, body = mlflow_delivery({**ALIAS_MOVED, "data": {
            "name": name, "alias": "champion", "version": v3}})
        assert post(f"http://127.0.0.1:{port}/hook", again, body) == 200
        skipped = watch.wait_for(event="decision", entry=endpoint, timeout=60)
        assert skipped["decision"] == "skip" and skipped["version"] == v3, skipped
        assert "failed before" in skipped["reason"]

        # SIGTERM while v1 goes back out: rolled back, v2 keeps serving, exit 0
        mark = len(watch.log)
        client.set_registered_model_alias(name, "champion", v1)
        watch.wait_for(event="decision", entry=endpoint, decision="deploy", timeout=60)
        # inside the deploy (v1's image is built already): while v1's container starts, after
        # v2's was set aside; the next step (the readiness wait) is not run, the rest undone
        watch.wait_for_log("as local on 127.0.0.1", since=mark)
        watch.proc.send_signal(signal.SIGTERM)
        assert watch.proc.wait(timeout=120) == 0
        while not watch.lines.empty():
            watch.seen.append(watch.lines.get())
        results = [line for line in watch.seen if line.get("event") == "result"]
        assert results[-1]["result"] == "failed" and "SIGTERM" in results[-1]["error"]["message"]
        assert any("rolling back" in line for line in watch.log[mark:]), watch.log[mark:]
        assert watch.seen[-1]["event"] == "stopped"
        assert serving_version(docker_client, endpoint) == v2
        url = LocalTarget(client=docker_client).status(endpoint).details["url"]
        assert len(predict_when_up(str(url))) == 1  # the restored container loads its model again
        names = [c.name for c in docker_client.containers.list(all=True)]
        assert not [n for n in names if n.startswith(f"deployer-{endpoint}") and n != f"deployer-{endpoint}"]
    finally:
        if watch.proc.poll() is None:
            watch.proc.kill()
        client.delete_webhook(hook.webhook_id)
        LocalTarget(client=docker_client).delete(endpoint)
