"""Amazon SageMaker target: endpoints (real-time, serverless, async) and batch transform.

Layout: ``spec`` parses options (pure), ``names`` makes valid unique names, ``state`` reads
what exists, ``plan`` computes the calls (pure), ``apply`` runs them with undo/cleanup,
``client`` is the AWS boundary, ``images`` builds/pushes to ECR, ``batch`` does transform jobs,
``invoke_async`` runs predictions through asynchronous endpoints (S3 in, S3 out),
``target`` ties them into the :class:`deployer.targets.base.Target` interface.
"""

from deployer.targets.sagemaker.target import SageMakerTarget

__all__ = ["SageMakerTarget"]
