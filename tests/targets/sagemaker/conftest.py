"""SageMaker on moto's server, extended with what moto lacks, plus failure injection.

moto 5.2.5 has no ``UpdateEndpoint`` or ``StopTransformJob``, and its endpoints are
InService the moment they are created. MLflow's tests replace moto's SageMaker backend for
the same reason; here the *real* moto backend is extended in place instead (the threaded
server runs in this process, so patching its classes changes what the HTTP server answers).
deployer's code is not touched: it talks HTTP to the server like it would to AWS.

``sm`` (function fixture) -> :class:`SageMakerSim`, which controls the simulation:

* ``latency``: how many ``DescribeEndpoint``/``DescribeTransformJob`` calls see the transient
  status (Creating/Updating/InProgress/Stopping) before the change settles;
* ``create_outcome`` (``InService``/``Failed``), ``update_outcome`` (``ok``/``rollback``/
  ``rollback_failed``), ``transform_outcome`` (``Completed``/``Failed``);
* ``fail(action, nth=1, code=...)``: the nth call of a SageMaker action (``CreateModel``...)
  answers an AWS error; ``fail_s3_put(nth)`` does the same for S3 object uploads;
* ``actions``: every SageMaker action the server received, in order;
* ``snapshot()``: models, configs, endpoints, S3 objects now in moto, for leftovers checks.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sagemaker-exec"
ECR_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/deployer/serving:1"

READ_ACTIONS = {
    "DescribeEndpoint", "DescribeEndpointConfig", "DescribeModel", "ListTags", "ListEndpoints",
    "ListModels", "ListEndpointConfigs", "DescribeTransformJob", "ListTransformJobs",
}


@dataclass
class _Injection:
    action: str
    nth: int
    code: str
    message: str
    seen: int = 0


@dataclass
class SageMakerSim:
    endpoint_url: str
    latency: int = 0
    create_outcome: str = "InService"
    update_outcome: str = "ok"
    transform_outcome: str = "Completed"
    failure_reason: str = "the container did not pass the /ping health check"
    actions: list[str] = field(default_factory=list)
    s3_puts: int = 0
    _injections: list[_Injection] = field(default_factory=list)
    _s3_fail_at: int | None = None
    _pending: dict[tuple[str, str], list[Any]] = field(default_factory=dict)

    # -- control -------------------------------------------------------------------------
    def fail(self, action: str, nth: int = 1, code: str = "ResourceLimitExceeded",
             message: str = "injected failure") -> None:
        self._injections.append(_Injection(action, nth, code, message))

    def fail_s3_put(self, nth: int = 1) -> None:
        self._s3_fail_at = self.s3_puts + nth

    def mutating_actions(self) -> list[str]:
        return [a for a in self.actions if a not in READ_ACTIONS]

    # -- inspection ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, list[str]]:
        import boto3

        sm = boto3.client("sagemaker")
        s3 = boto3.client("s3")
        objects = []
        for bucket in s3.list_buckets().get("Buckets", []):
            for obj in s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []) or []:
                objects.append(f"s3://{bucket['Name']}/{obj['Key']}")
        return {
            "models": sorted(m["ModelName"] for m in sm.list_models()["Models"]),
            "configs": sorted(c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]),
            "endpoints": sorted(e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]),
            "objects": sorted(objects),
            "buckets": sorted(b["Name"] for b in s3.list_buckets().get("Buckets", [])),
        }

    def set_results(self, results: list[dict[str, str]]) -> None:
        """Queue canned invoke_endpoint results (moto's static-results API)."""
        body = json.dumps({"account_id": ACCOUNT, "region": REGION, "results": results}).encode()
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/static/sagemaker/endpoint-results",
                                     data=body, method="POST", headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=10) as resp:
            assert resp.status == 201 or resp.status == 200

    # -- hooks used by the patches -------------------------------------------------------
    def _injected(self, action: str) -> _Injection | None:
        for inj in self._injections:
            if inj.action == action:
                inj.seen += 1
                if inj.seen == inj.nth:
                    return inj
        return None

    def _settle_later(self, key: tuple[str, str], obj: Any, attr: str, transient: str,
                      final: Callable[[], None]) -> None:
        if self.latency <= 0:
            final()
            return
        setattr(obj, attr, transient)
        self._pending[key] = [self.latency, final]

    def _tick(self, key: tuple[str, str]) -> None:
        entry = self._pending.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] <= 0:
            del self._pending[key]
            entry[1]()


_SIM: SageMakerSim | None = None


def _sim() -> SageMakerSim | None:
    return _SIM


def _install(mp: pytest.MonkeyPatch) -> None:
    from moto.core.responses import ActionResult, EmptyResult
    from moto.core.utils import utcnow
    from moto.s3.exceptions import S3ClientError
    from moto.s3.models import S3Backend
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    # ---- request log + failure injection at the HTTP action level
    orig_call_action = SageMakerResponse.call_action

    def call_action(self: Any) -> Any:
        sim = _sim()
        action = self._get_action()
        if sim is not None:
            sim.actions.append(action)
            inj = sim._injected(action)
            if inj is not None:
                body = json.dumps({"__type": inj.code, "message": inj.message})
                return 400, {"Content-Type": "application/x-amz-json-1.1", "status": "400"}, body
        return orig_call_action(self)

    mp.setattr(SageMakerResponse, "call_action", call_action)

    # ---- endpoints: transient states and outcomes
    orig_create_endpoint = SageMakerModelBackend.create_endpoint

    def create_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str, tags: Any) -> Any:
        ep = orig_create_endpoint(self, endpoint_name, endpoint_config_name, tags)
        sim = _sim()
        if sim is not None:
            def final() -> None:
                ep.endpoint_status = sim.create_outcome
                ep.failure_reason = sim.failure_reason if sim.create_outcome == "Failed" else None

            sim._settle_later(("endpoint", endpoint_name), ep, "endpoint_status", "Creating", final)
        return ep

    mp.setattr(SageMakerModelBackend, "create_endpoint", create_endpoint)

    orig_describe_endpoint = SageMakerModelBackend.describe_endpoint

    def describe_endpoint(self: Any, endpoint_name: str) -> Any:
        sim = _sim()
        if sim is not None:
            sim._tick(("endpoint", endpoint_name))
        return orig_describe_endpoint(self, endpoint_name)

    mp.setattr(SageMakerModelBackend, "describe_endpoint", describe_endpoint)

    def update_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str) -> str:
        ep = self.endpoints.get(endpoint_name)
        if ep is None:
            raise ValidationError(message=f"Could not find endpoint '{endpoint_name}'.")
        if ep.endpoint_status != "InService":
            raise ValidationError(message=f"Cannot update in-progress endpoint '{endpoint_name}'.")
        config = self.endpoint_configs.get(endpoint_config_name)
        if config is None:
            raise ValidationError(message=f"Could not find endpoint configuration '{endpoint_config_name}'.")
        sim = _sim()
        outcome = sim.update_outcome if sim else "ok"
        reason = sim.failure_reason if sim else ""

        def final() -> None:
            if outcome == "ok":
                ep.endpoint_config_name = endpoint_config_name
                ep.production_variants = ep._process_production_variants(config.production_variants)
                ep.data_capture_config = config.data_capture_config
                ep.endpoint_status, ep.failure_reason = "InService", None
            elif outcome == "rollback":
                ep.endpoint_status, ep.failure_reason = "InService", reason
            else:
                ep.endpoint_status, ep.failure_reason = "UpdateRollbackFailed", reason
            ep.last_modified_time = utcnow()

        if sim is not None:
            sim._settle_later(("endpoint", endpoint_name), ep, "endpoint_status", "Updating", final)
        else:
            final()
        return str(ep.arn)

    mp.setattr(SageMakerModelBackend, "update_endpoint", update_endpoint, raising=False)

    def update_endpoint_response(self: Any) -> Any:
        arn = self.sagemaker_backend.update_endpoint(
            endpoint_name=self._get_param("EndpointName"),
            endpoint_config_name=self._get_param("EndpointConfigName"),
        )
        return ActionResult({"EndpointArn": arn})

    mp.setattr(SageMakerResponse, "update_endpoint", update_endpoint_response, raising=False)

    # ---- transform jobs: transient states, outcomes, stop
    orig_create_job = SageMakerModelBackend.create_transform_job

    def create_transform_job(self: Any, *args: Any, **kwargs: Any) -> Any:
        job = orig_create_job(self, *args, **kwargs)
        sim = _sim()
        if sim is not None:
            def final() -> None:
                job.transform_job_status = sim.transform_outcome
                job.failure_reason = sim.failure_reason if sim.transform_outcome == "Failed" else ""

            sim._settle_later(("job", job.transform_job_name), job, "transform_job_status", "InProgress", final)
        return job

    mp.setattr(SageMakerModelBackend, "create_transform_job", create_transform_job)

    orig_describe_job = SageMakerModelBackend.describe_transform_job

    def describe_transform_job(self: Any, transform_job_name: str) -> Any:
        sim = _sim()
        if sim is not None:
            sim._tick(("job", transform_job_name))
        return orig_describe_job(self, transform_job_name)

    mp.setattr(SageMakerModelBackend, "describe_transform_job", describe_transform_job)

    def stop_transform_job(self: Any, transform_job_name: str) -> None:
        job = self.transform_jobs.get(transform_job_name)
        if job is None:
            raise ValidationError(message=f"Could not find transform job '{transform_job_name}'.")
        if job.transform_job_status not in ("InProgress",):
            raise ValidationError(
                message=f"Transform job '{transform_job_name}' is {job.transform_job_status}; only InProgress jobs can be stopped.")
        sim = _sim()
        sim._pending.pop(("job", transform_job_name), None) if sim else None

        def final() -> None:
            job.transform_job_status = "Stopped"

        if sim is not None:
            sim._settle_later(("job", transform_job_name), job, "transform_job_status", "Stopping", final)
        else:
            final()

    mp.setattr(SageMakerModelBackend, "stop_transform_job", stop_transform_job, raising=False)

    def stop_transform_job_response(self: Any) -> Any:
        self.sagemaker_backend.stop_transform_job(self._get_param("TransformJobName"))
        return EmptyResult()

    mp.setattr(SageMakerResponse, "stop_transform_job", stop_transform_job_response, raising=False)

    # ---- S3 upload failures
    orig_put_object = S3Backend.put_object

    def put_object(self: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        sim = _sim()
        if sim is not None:
            sim.s3_puts += 1
            if sim._s3_fail_at is not None and sim.s3_puts == sim._s3_fail_at:
                raise S3ClientError("AccessDenied", "injected upload failure")
        return orig_put_object(self, bucket_name, key_name, *args, **kwargs)

    mp.setattr(S3Backend, "put_object", put_object)


_INSTALLED = False


@pytest.fixture(scope="session")
def _sagemaker_extensions(moto_server: str) -> Iterator[None]:
    # tests/integrations re-exports this fixture, which makes it a second session fixture: the
    # patches must still be installed once per process (twice, every action is logged twice)
    global _INSTALLED
    if _INSTALLED:
        yield
        return
    mp = pytest.MonkeyPatch()
    _install(mp)
    _INSTALLED = True
    try:
        yield
    finally:
        mp.undo()
        _INSTALLED = False


@pytest.fixture
def sm(aws: Any, _sagemaker_extensions: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[SageMakerSim]:
    """A clean moto account with the SageMaker simulation active for this test."""
    global _SIM
    monkeypatch.setenv("DEPLOYER_SAGEMAKER_POLL_INTERVAL", "0.01")
    _SIM = SageMakerSim(endpoint_url=aws.endpoint_url)
    try:
        yield _SIM
    finally:
        _SIM = None


@pytest.fixture
def target(sm: SageMakerSim) -> Any:
    from deployer.targets.sagemaker import SageMakerTarget

    return SageMakerTarget(region=REGION)


@pytest.fixture
def vpc_file(tmp_path: Any) -> str:
    path = tmp_path / "vpc.json"
    path.write_text(json.dumps({"SecurityGroupIds": ["sg-0123"], "Subnets": ["subnet-a", "subnet-b"]}))
    return str(path)


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(*args: str, input: str | None = None) -> CliResult:
    """``deployer ARGS`` in-process (click's CliRunner); stdout and stderr kept apart."""
    from click.testing import CliRunner

    from deployer.cli import cli

    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def bucket(sm: SageMakerSim) -> str:
    import boto3

    boto3.client("s3").create_bucket(Bucket="models")
    return "models"


def deploy_args(name: str, model: Any, *extra: str, image: str = ECR_IMAGE) -> list[str]:
    args = ["deploy", "--target", "sagemaker", "--name", name, "--image-uri", image,
            "--execution-role-arn", ROLE]
    if model is not None:
        args += ["-m", str(model)]
    return args + list(extra)
