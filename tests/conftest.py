"""Shared pytest setup. Fixtures live in tests/fixtures/ (one module per kind of resource):

* infra.py    - Docker engine, local registry (htpasswd), Debian-built Python base image
* services.py - moto's AWS server over HTTP, a real MLflow tracking server (sqlite)
* models.py   - models saved by real MLflow (session-scoped, generated, never committed)
* streaming_models.py - a ChatModel and a PythonModel with predict_stream (real MLflow)
* packaging.py - deployer's own wheel, built from this checkout
* build_option_cases.py - one value per option of the build-option group, and its files
* uv_projects.py - a uv project locked offline from a local index, and a model saved from it
"""

pytest_plugins = [
    "tests.fixtures.infra",
    "tests.fixtures.services",
    "tests.fixtures.models",
    "tests.fixtures.streaming_models",
    "tests.fixtures.packaging",
    "tests.fixtures.build_option_cases",
    "tests.fixtures.uv_projects",
]
