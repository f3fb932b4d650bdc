"""The ``kubernetes`` and ``kserve`` targets (see :mod:`.target`)."""

from deployer.targets.kubernetes.target import KServeTarget, KubernetesTarget

__all__ = ["KServeTarget", "KubernetesTarget"]
