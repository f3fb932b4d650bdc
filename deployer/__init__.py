"""deployer: turn an MLflow model directory into a running endpoint.

The public API is deliberately small; everything else is internal and may change.
"""

__version__ = "0.1.0"

from deployer.errors import DeployerError  # noqa: E402

__all__ = ["DeployerError", "__version__"]
