"""Pushing images to registries.

* :mod:`deployer.registries.push` - ``push_image``: tag, push through the Docker engine with
  retries on transient failures, verify the tag's digest afterwards; ``remote_digest``.
* :mod:`deployer.registries.credentials` - ``Credentials`` and where they come from
  (``--password-stdin``, Docker config / credential helpers).
* :mod:`deployer.registries.ecr` / :mod:`deployer.registries.acr` - cloud registry logins.
"""
