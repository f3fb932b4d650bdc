"""Pure parts of the registry layer: explicit credentials, references, error classification."""

from __future__ import annotations

import pytest

from deployer.errors import RegistryAuthError, RegistryError, UsageError
from deployer.registries import credentials as creds
from deployer.registries.push import classify, split_reference


def test_explicit_credentials_rules():
    assert creds.from_stdin(None, None, "h") is None
    with pytest.raises(UsageError) as err:
        creds.from_stdin("me", None, "h")
    assert "--password-stdin" in str(err.value)
    with pytest.raises(UsageError):
        creds.from_stdin(None, "pw", "h")
    assert creds.from_stdin("me", "pw\n", "h").password == "pw"
    assert creds.registry_host("127.0.0.1:5000/a/b:1") == "127.0.0.1:5000"
    assert creds.registry_host("library/python:3") == "docker.io"
    assert split_reference("127.0.0.1:5000/a/b") == ("127.0.0.1:5000/a/b", "latest")
    assert split_reference("h:1/a:t") == ("h:1/a", "t")


@pytest.mark.parametrize(("message", "kind"), [
    ("unauthorized: authentication required", RegistryAuthError),
    ("denied: requested access to the resource is denied", RegistryAuthError),
    ("Put http://h/v2/x/blobs/uploads/: dial tcp 127.0.0.1:5: connect: connection refused", "transient"),
    ("received unexpected HTTP status: 503 Service Unavailable", "transient"),
    ("write tcp: broken pipe", "transient"),
    ("manifest invalid: manifest invalid", RegistryError),
])
def test_error_classification(message, kind):
    err = classify(message, "h", None)
    if kind == "transient":
        assert type(err).__name__ == "_Transient"
    else:
        assert type(err) is kind
