"""Who pushes: the one login rule for every push deployer makes.

``build-and-push``, SageMaker's image step and Azure ML's ``--registry`` step all push through
:func:`deployer.registries.push.push_image` with the credentials :func:`login_for` picks for the
destination:

1. Amazon ECR (an :class:`~deployer.registries.ecr.Ecr` is given): ``ecr:GetAuthorizationToken``
   always runs (it proves the caller may push to ECR); when the destination is another host (a
   registry override: a mirror, the tests' registry) the bytes go there with that host's own
   credentials (rule 2);
2. explicit ``--username`` + ``--password-stdin``, else Docker's config and credential helpers;
3. an Azure Container Registry with neither logs in through azure-identity
   (:func:`deployer.registries.acr.push_credentials`);
4. otherwise anonymous.
"""

from __future__ import annotations

import logging
from typing import Any

from deployer.registries.acr import push_credentials
from deployer.registries.credentials import Credentials, registry_host

log = logging.getLogger("deployer")


def login_for(
    dest: str,
    *,
    ecr: Any = None,
    username: str | None = None,
    password: str | None = None,
    credential: Any = None,
) -> Credentials | None:
    """The credentials to push ``dest`` with (see the module docstring)."""
    host = registry_host(dest)
    if ecr is not None:
        token = ecr.login()
        if host == token.registry:
            return token
        log.info(
            "registry override: pushing the image bytes to %s (ECR login done for %s)",
            host,
            token.registry,
        )
    return push_credentials(host, username=username, password=password, credential=credential)
