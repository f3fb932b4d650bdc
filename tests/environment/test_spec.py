"""EnvironmentSpec / IndexOptions records and credential redaction."""

from __future__ import annotations

import dataclasses

import pytest

from deployer.environment import EnvironmentSpec, IndexOptions
from deployer.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pass@host.example/simple", "https://***@host.example/simple"),
        ("https://token@host.example/simple", "https://***@host.example/simple"),
        ("https://host.example/simple", "https://host.example/simple"),
        ("https://host.example/simple?x=a@b", "https://host.example/simple?x=a@b"),
        ("https://conda.example.org/t/abc-123/private", "https://conda.example.org/t/***/private"),
        ("git+https://u:p@github.com/o/r.git@v1", "git+https://***@github.com/o/r.git@v1"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_handles_several_urls() -> None:
    text = "--index-url https://a:b@x.example/s and --extra-index-url http://c:d@y.example/s"
    assert redact_text(text) == "--index-url https://***@x.example/s and --extra-index-url http://***@y.example/s"


def test_index_options_repr_and_dict_are_redacted() -> None:
    opts = IndexOptions(
        index_url="https://u:secret1@a.example/simple",
        extra_index_urls=("https://secret2@b.example/simple", "https://c.example/simple"),
        find_links=("https://u:secret3@d.example/links",),
    )
    assert opts.has_credentials and bool(opts)
    for text in (repr(opts), str(opts.to_dict())):
        assert "secret" not in text
    assert opts.to_dict(redact=False)["index_url"] == "https://u:secret1@a.example/simple"
    assert not IndexOptions() and not IndexOptions().has_credentials


def test_spec_to_dict_keys_and_redaction() -> None:
    spec = EnvironmentSpec(
        kind="virtualenv",
        python_version="3.11",
        pip_requirements=("numpy",),
        index_options=IndexOptions(index_url="https://u:pw@h.example/simple"),
        source="requirements.txt",
    )
    d = spec.to_dict()
    assert list(d) == ["kind", "source", "python_version", "pip_requirements", "constraints",
                       "build_dependencies", "conda_packages", "conda_channels", "index_options", "uv_lock", "warnings"]
    assert d["index_options"]["index_url"] == "https://***@h.example/simple"
    assert d["uv_lock"] is None  # no uv.lock: the environment is resolved from the requirements
    assert "pw@" not in repr(spec)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.index_options.index_url = "x"  # type: ignore[misc]
