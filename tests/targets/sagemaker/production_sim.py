"""moto extensions for SageMaker in production: guardrails, autoscaling rules, request bodies.

Installed per test (``install(sm, monkeypatch)``) on top of the extensions in ``conftest.py``;
the threaded moto server runs in this process, so patching its backend classes changes what
the HTTP server answers. deployer's code is not touched: it talks HTTP like it would to AWS.

What is extended, and how faithfully:

* **UpdateEndpoint with DeploymentConfig** (moto has no UpdateEndpoint at all): validated as
  SageMaker does (the new config must keep the variant names of a blue/green update; every
  alarm of ``AutoRollbackConfiguration`` must exist in CloudWatch), then simulated in steps
  that each last ``sm.latency`` (at least 1) DescribeEndpoint calls: provision the new fleet,
  shift the canary / each linear step / everything, bake. From the first traffic shift on,
  every step reads the alarms' state from moto's CloudWatch backend (set with the real
  ``SetAlarmState`` API); one in ``ALARM`` makes the endpoint ``RollingBack`` and then
  ``InService`` on the *old* config with a FailureReason naming the alarm - what SageMaker's
  auto-rollback does. ``events`` records the steps.
* **UpdateEndpoint and autoscaling**: SageMaker refuses an update that removes a variant
  registered with Application Auto Scaling, or changes its instance type (its docs: "Update
  endpoints that use auto scaling"); the extension refuses the same with a ValidationException.
* **RegisterScalableTarget** for a SageMaker variant checks that the endpoint has the variant
  (moto accepts any ResourceId).
* **UpdateEndpointWeightsAndCapacities**: moto sets an instance count it was not given to
  null; SageMaker keeps it. Fixed to change only what the request names.
* **InvokeEndpointAsync** ``pending`` mode: the call answers with output/failure locations
  but writes nothing there (a request still queued), to test the bounded wait.
* Request bodies of SageMaker and Application Auto Scaling calls are recorded in ``bodies``
  as ``(action, params)``; Application Auto Scaling and CloudWatch actions join
  ``sm.actions`` so ``mutating()`` sees every change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.targets.sagemaker.conftest import ACCOUNT, READ_ACTIONS, REGION, SageMakerSim

READS = READ_ACTIONS | {"DescribeScalableTargets", "DescribeScalingPolicies", "DescribeAlarms"}


@dataclass
class ProductionSim:
    sm: SageMakerSim
    bodies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    async_pending: bool = False
    failing: set[str] = field(default_factory=set)
    """Application Auto Scaling actions that answer an AWS error (once each)."""

    def mutating(self) -> list[str]:
        return [a for a in self.sm.actions if a not in READS]

    def body(self, action: str, nth: int = -1) -> dict[str, Any]:
        found = [b for a, b in self.bodies if a == action]
        assert found, f"no {action} request; got {[a for a, _ in self.bodies]}"
        return found[nth]

    def sent(self, action: str) -> list[dict[str, Any]]:
        return [b for a, b in self.bodies if a == action]


def _alarm_states(names: list[str]) -> dict[str, str]:
    from moto.cloudwatch.models import cloudwatch_backends

    alarms = cloudwatch_backends[ACCOUNT][REGION].alarms
    return {n: alarms[n].state_value for n in names if n in alarms}


def _scaled_variants(endpoint: str) -> dict[str, Any]:
    from moto.applicationautoscaling.models import applicationautoscaling_backends

    backend = applicationautoscaling_backends[ACCOUNT][REGION]
    targets = backend.targets.get("sagemaker:variant:DesiredInstanceCount", {})
    prefix = f"endpoint/{endpoint}/variant/"
    return {rid[len(prefix):]: t for rid, t in targets.items() if rid.startswith(prefix)}


def install(sm: SageMakerSim, mp: pytest.MonkeyPatch) -> ProductionSim:
    from moto.applicationautoscaling.exceptions import AWSValidationException
    from moto.applicationautoscaling.models import ApplicationAutoscalingBackend
    from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse
    from moto.cloudwatch.responses import CloudWatchResponse
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend, sagemaker_backends
    from moto.sagemaker.responses import SageMakerResponse
    from moto.sagemakerruntime.models import SageMakerRuntimeBackend

    prod = ProductionSim(sm)

    # ---- request bodies (SageMaker, Application Auto Scaling) and actions (+ CloudWatch)
    def recorder(cls: Any, service: str, log_action: bool) -> None:
        orig = cls.call_action

        def call_action(self: Any) -> Any:
            action = self._get_action()
            if log_action:
                sm.actions.append(action)
            if service == "json":
                try:
                    prod.bodies.append((action, json.loads(self.body or "{}")))
                except (TypeError, ValueError):
                    prod.bodies.append((action, {}))
            if action in prod.failing and cls is ApplicationAutoScalingResponse:
                prod.failing.discard(action)
                body = json.dumps({"__type": "ValidationException", "message": "injected failure"})
                return 400, {"Content-Type": "application/x-amz-json-1.1", "status": "400"}, body
            return orig(self)

        mp.setattr(cls, "call_action", call_action)

    recorder(SageMakerResponse, "json", False)  # conftest already logs SageMaker actions
    recorder(ApplicationAutoScalingResponse, "json", True)
    recorder(CloudWatchResponse, "query", True)

    # ---- UpdateEndpoint: autoscaling rule + blue/green guardrails
    plain_update = SageMakerModelBackend.update_endpoint

    def update_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str,
                        deployment_config: dict[str, Any] | None = None) -> str:
        ep = self.endpoints.get(endpoint_name)
        config = self.endpoint_configs.get(endpoint_config_name)
        if ep is not None and config is not None:
            new = {v["VariantName"]: v for v in config.production_variants}
            old_config = self.endpoint_configs.get(ep.endpoint_config_name)
            old = {v["VariantName"]: v for v in (old_config.production_variants if old_config else [])}
            for variant in _scaled_variants(endpoint_name):
                gone = variant not in new
                if gone or new[variant].get("InstanceType") != old.get(variant, {}).get("InstanceType"):
                    raise ValidationError(
                        message=f"The variant {variant} of endpoint {endpoint_name} is registered with Application "
                        "Auto Scaling; deregister it before you remove it or change its instance type.")
        if not deployment_config:
            return str(plain_update(self, endpoint_name, endpoint_config_name))
        if ep is None or config is None or ep.endpoint_status != "InService":
            return str(plain_update(self, endpoint_name, endpoint_config_name))  # its errors
        policy = deployment_config.get("BlueGreenUpdatePolicy") or {}
        routing = policy.get("TrafficRoutingConfiguration") or {}
        alarms = [a["AlarmName"] for a in (deployment_config.get("AutoRollbackConfiguration") or {}).get("Alarms", [])]
        old_names = {v["VariantName"] for v in ep.production_variants}
        if routing.get("Type") in ("CANARY", "LINEAR") and {v["VariantName"] for v in config.production_variants} != old_names:
            raise ValidationError(message="For a blue/green deployment the new endpoint configuration must have the "
                                  "same variant names as the current one.")
        missing = [a for a in alarms if a not in _alarm_states(alarms)]
        if missing:
            raise ValidationError(message=f"Alarm(s) {missing} do not exist.")
        kind = routing.get("Type", "ALL_AT_ONCE")
        size = routing.get("CanarySize") or routing.get("LinearStepSize") or {}
        steps = ["provision new fleet"]
        if kind == "CANARY":
            steps += [f"canary {size.get('Value')} {size.get('Type')}", "shift the rest"]
        elif kind == "LINEAR":
            percent = size.get("Value", 100) if size.get("Type") == "CAPACITY_PERCENT" else 50
            shifted = 0
            while shifted < 100:
                shifted = min(100, shifted + percent)
                steps.append(f"linear step to {shifted}%")
        else:
            steps.append("shift all traffic")
        steps.append(f"bake {policy.get('TerminationWaitInSeconds', 0)}s")
        ticks = max(sm.latency, 1)
        key = ("endpoint", endpoint_name)
        old_config_name = ep.endpoint_config_name

        def done() -> None:
            ep.endpoint_config_name = endpoint_config_name
            ep.production_variants = ep._process_production_variants(config.production_variants)
            ep.data_capture_config = config.data_capture_config
            ep.endpoint_status, ep.failure_reason = "InService", None
            ep.last_modified_time = utcnow()
            prod.events.append("update complete")

        def rolled_back(reason: str) -> Any:
            def run() -> None:
                ep.endpoint_config_name = old_config_name
                ep.endpoint_status, ep.failure_reason = "InService", reason
                ep.last_modified_time = utcnow()
                prod.events.append("rolled back to " + old_config_name)
            return run

        def step(i: int) -> Any:
            def run() -> None:
                if i > 1:  # traffic reached the new fleet: the alarms are watched
                    firing = sorted(n for n, state in _alarm_states(alarms).items() if state == "ALARM")
                    prod.events.append(f"checked alarms {alarms}: {firing or 'none firing'}")
                    if firing:
                        reason = f"Auto-rollback: alarm(s) {', '.join(firing)} in ALARM during the deployment"
                        ep.endpoint_status, ep.failure_reason = "RollingBack", reason
                        sm._pending[key] = [ticks, rolled_back(reason)]
                        return
                if i == len(steps):
                    done()
                    return
                prod.events.append(steps[i])
                sm._pending[key] = [ticks, step(i + 1)]
            return run

        ep.endpoint_status = "Updating"
        sm._pending[key] = [ticks, step(0)]
        return str(ep.arn)

    mp.setattr(SageMakerModelBackend, "update_endpoint", update_endpoint, raising=False)

    def update_endpoint_response(self: Any) -> Any:
        arn = self.sagemaker_backend.update_endpoint(
            endpoint_name=self._get_param("EndpointName"),
            endpoint_config_name=self._get_param("EndpointConfigName"),
            deployment_config=self._get_param("DeploymentConfig"),
        )
        return ActionResult({"EndpointArn": arn})

    mp.setattr(SageMakerResponse, "update_endpoint", update_endpoint_response, raising=False)

    # ---- UpdateEndpointWeightsAndCapacities: change only what is asked
    def update_weights(self: Any, endpoint_name: str, desired_weights_and_capacities: list[dict[str, Any]]) -> str:
        ep = self.endpoints.get(endpoint_name)
        if ep is None:
            raise ValidationError(message=f"Could not find endpoint '{endpoint_name}'.")
        names = [v.get("VariantName") for v in desired_weights_and_capacities]
        for name in names:
            if not any(v["VariantName"] == name for v in ep.production_variants):
                raise ValidationError(message=f'The variant name "{name}" is not present within endpoint '
                                      f'configuration "{ep.endpoint_config_name}".')
        for wanted in desired_weights_and_capacities:
            variant = next(v for v in ep.production_variants if v["VariantName"] == wanted["VariantName"])
            if wanted.get("DesiredWeight") is not None:
                variant["DesiredWeight"] = variant["CurrentWeight"] = wanted["DesiredWeight"]
            if wanted.get("DesiredInstanceCount") is not None:
                variant["DesiredInstanceCount"] = variant["CurrentInstanceCount"] = wanted["DesiredInstanceCount"]
        ep.last_modified_time = utcnow()
        return str(ep.arn)

    mp.setattr(SageMakerModelBackend, "update_endpoint_weights_and_capacities", update_weights)

    # ---- RegisterScalableTarget: the variant must exist
    orig_register = ApplicationAutoscalingBackend.register_scalable_target

    def register_scalable_target(self: Any, namespace: str, r_id: str, *args: Any, **kwargs: Any) -> Any:
        if namespace == "sagemaker":
            parts = r_id.split("/")
            endpoints = sagemaker_backends[ACCOUNT][REGION].endpoints
            ep = endpoints.get(parts[1]) if len(parts) == 4 else None
            if ep is None or not any(v["VariantName"] == parts[3] for v in ep.production_variants):
                raise AWSValidationException(f"Unsupported resource: {r_id} does not exist")
        return orig_register(self, namespace, r_id, *args, **kwargs)

    mp.setattr(ApplicationAutoscalingBackend, "register_scalable_target", register_scalable_target)

    # ---- InvokeEndpointAsync: a request that stays queued
    orig_async = SageMakerRuntimeBackend.invoke_endpoint_async

    def invoke_endpoint_async(self: Any, endpoint_name: str, input_location: str) -> tuple[str, str]:
        if prod.async_pending:
            return "s3://async-out/pending/response.json", "s3://async-out/pending/failure.json"
        return orig_async(self, endpoint_name, input_location)

    mp.setattr(SageMakerRuntimeBackend, "invoke_endpoint_async", invoke_endpoint_async)
    return prod
