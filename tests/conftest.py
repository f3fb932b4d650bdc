"""Shared pytest setup. Fixtures live in tests/fixtures/ (one module per kind of resource):

* infra.py    - Docker engine, local registry (htpasswd), Debian-built Python base image
* services.py - moto's AWS server over HTTP, a real MLflow tracking server (sqlite)
* models.py   - models saved by real MLflow (session-scoped, generated, never committed)
"""

pytest_plugins = [
    "tests.fixtures.infra",
    "tests.fixtures.services",
    "tests.fixtures.models",
]
