"""The environment a model needs: python_env.yaml, requirements.txt, constraints.txt and
conda.yaml resolved into one :class:`EnvironmentSpec` (see :mod:`deployer.environment.resolve`).
"""

from deployer.environment.requirements import parse_requirement_line
from deployer.environment.resolve import resolve_environment
from deployer.environment.spec import EnvironmentSpec, IndexOptions

__all__ = [
    "EnvironmentSpec",
    "IndexOptions",
    "parse_requirement_line",
    "resolve_environment",
]
