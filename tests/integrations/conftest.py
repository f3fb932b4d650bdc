"""The MLflow plugin runs on the same real components as deployer's own target tests: their
fixtures are reused here, not copied (moto's SageMaker server with the suite's extensions,
the fake-ARM azure-core transport with its front door and azmlinfsrv, the session build cache)."""

from tests.building.conftest import build_cache  # noqa: F401
from tests.targets.azureml.conftest import arm, front_door, sklearn_score_server  # noqa: F401
from tests.targets.sagemaker.conftest import _sagemaker_extensions, bucket, sm  # noqa: F401
