"""pip requirement lines and requirement files, validated before anything renders them.

Requirement lines come from untrusted files (requirements.txt, constraints.txt, the
``dependencies`` of python_env.yaml, the ``pip:`` list of conda.yaml) and end up in
Dockerfiles, lock files and shell commands. So each line is *parsed*, not pattern-matched:
a requirement must be a valid PEP 508 requirement (``packaging.requirements.Requirement``),
a direct URL (``https://``/``git+https://``) or a relative archive path inside the model
directory (what ``mlflow.models.add_libraries_to_model`` writes: ``wheels/x.whl``). The
normalized text returned never contains control characters, single quotes, backticks,
backslashes or ``$``, so it is safe inside a single-quoted shell word even before the
renderer's own quoting. (Double quotes and ``<``/``>``/``;`` do occur, in markers and
specifiers: renderers must still quote.)

Supported option lines (pip's requirement-file syntax): ``-r/--requirement``,
``-c/--constraint`` (followed inside the model directory, relative to the file that names
them), ``-i/--index-url``, ``--extra-index-url``, ``-f/--find-links``; per-requirement
``--hash=algo:hex``. Options that only tune pip (``--trusted-host``, ``--pre``,
``--prefer-binary``, ``--only-binary``, ``--no-binary``, ``--no-index``) are ignored with a
warning; anything else (``-e``, ``--global-option``...) is an error naming the file and line.
Messages pass through :func:`redact_text`, so ``user:token@`` never reaches the user.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from packaging.requirements import InvalidRequirement, Requirement

from deployer.errors import EnvironmentSpecError
from deployer.model.paths import check_relative_path, safe_model_path
from deployer.redact import redact_text

MAX_INCLUDE_DEPTH = 10

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE = re.compile(r"['`$\\]")
_UNSAFE_INPUT = re.compile(
    r"[`$\\]"
)  # single quotes are fine in input markers: packaging rewrites them
_COMMENT = re.compile(r"(^|\s+)#.*$")
_OPTION_START = re.compile(r"\s+(?=--?[A-Za-z])")
_HASH = re.compile(r"^--hash[=:]?(?P<algo>sha256|sha384|sha512):(?P<hex>[0-9a-fA-F]+)$")
_URL_SCHEMES = (
    "https://",
    "http://",
    "git+https://",
    "git+http://",
    "git+ssh://",
    "hg+https://",
    "svn+https://",
    "bzr+https://",
)
_ARCHIVE = re.compile(r"\.(whl|tar\.gz|tgz|tar\.bz2|zip)$", re.IGNORECASE)
_URL_CHARS = re.compile(r"^[A-Za-z0-9+.\-]+://[A-Za-z0-9\-._~:/?#\[\]@!&()*+,;=%]+$")
_ENV_REF = re.compile(r"\$\{[A-Z0-9_]+\}")

_REQ_OPTS = {
    "-r": "requirement",
    "--requirement": "requirement",
    "-c": "constraint",
    "--constraint": "constraint",
}
_INDEX_OPTS = {
    "-i": "index_url",
    "--index-url": "index_url",
    "--extra-index-url": "extra_index_url",
    "-f": "find_links",
    "--find-links": "find_links",
}
_IGNORED_WITH_VALUE = {"--trusted-host", "--only-binary", "--no-binary", "--use-feature"}
_IGNORED_FLAGS = {"--pre", "--prefer-binary", "--no-index"}


def _error(what: str, where: str, fix: str) -> EnvironmentSpecError:
    return EnvironmentSpecError(redact_text(what), where=redact_text(where), fix=fix)


def strip_comment(line: str) -> str:
    """pip's rule: ``#`` starts a comment at the line start or after whitespace (not in URLs)."""
    return _COMMENT.sub("", line).strip()


def parse_requirement_line(line: str, *, where: str) -> str | None:
    """Validate ONE requirement line; returns its normalized text, or None for blank/comment.

    Accepted: a PEP 508 requirement (``pkg[extra]>=1; python_version < "3.12"``, ``pkg @ URL``),
    a bare direct URL, or a relative archive path (``wheels/pkg-1.0-py3-none-any.whl``), each
    optionally followed by ``--hash=sha256:...`` options. Option lines (``-r``, ``--index-url``)
    are not requirements and are rejected here; :func:`read_requirement_lines` handles them.
    """
    if not isinstance(line, str):
        raise _error(
            f"a requirement must be a string, got {type(line).__name__} {line!r}",
            where,
            "write each requirement as text, e.g. 'scikit-learn==1.5.0'",
        )
    if _CONTROL.search(line.rstrip("\r\n")) or "\n" in line.rstrip("\r\n"):
        raise _error(
            f"requirement {line!r} contains a newline or control character",
            where,
            "put one requirement per line, as plain text",
        )
    text = strip_comment(line)
    if not text:
        return None
    if text.startswith("-"):
        raise _error(
            f"{text!r} is a pip option, not a requirement",
            where,
            "give a requirement such as 'pandas>=2'",
        )
    parts = _OPTION_START.split(text, maxsplit=1)
    req_text, opts = parts[0].strip(), (parts[1].split() if len(parts) > 1 else [])
    hashes = []
    for opt in opts:
        m = _HASH.match(opt)
        if not m:
            raise _error(
                f"unsupported per-requirement option {opt!r} in {text!r}",
                where,
                "only --hash=sha256:<hex> may follow a requirement; remove the option",
            )
        hashes.append(f"--hash={m.group('algo')}:{m.group('hex').lower()}")
    normalized = _normalize(req_text, where)
    return " ".join([normalized, *hashes])


def _normalize(text: str, where: str) -> str:
    bad = _UNSAFE_INPUT.search(text)
    if bad:
        raise _error(
            f"requirement {text!r} contains {bad.group()!r}, which is not allowed in a requirement",
            where,
            "remove the character; environment variables and shell syntax are not supported in "
            "requirements",
        )
    lowered = text.lower()
    if lowered.startswith(_URL_SCHEMES):
        if "'" in text or not _URL_CHARS.match(text):
            raise _error(
                f"direct URL requirement {text!r} has characters a URL cannot contain",
                where,
                "percent-encode the URL, or use 'name @ URL'",
            )
        return text
    if lowered.startswith("file:"):
        raise _error(
            f"requirement {text!r} points at a file on the machine that saved the model",
            where,
            "copy the package into the model directory (mlflow.models.add_libraries_to_model) "
            "and refer to it with a relative path",
        )
    if "@" not in text and ("/" in text or _ARCHIVE.search(text)):
        if "'" in text:
            raise _error(
                f'requirement {text!r} contains "\'", which is not allowed in a path',
                where,
                "rename the archive to plain characters",
            )
        if not _ARCHIVE.search(text):
            raise _error(
                f"local requirement {text!r} is not a package archive (.whl, .tar.gz, .zip)",
                where,
                "refer to a wheel or sdist inside the model directory; source directories are not "
                "supported",
            )
        check_relative_path(text.removeprefix("./"), field="requirement", where=where)
        return text.removeprefix("./")
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "not PEP 508"
        raise _error(
            f"invalid requirement {text!r}: {detail}",
            where,
            "write a PEP 508 requirement such as 'scikit-learn==1.5.0' or 'pandas>=2,<3'",
        ) from exc
    if req.url:
        if not req.url.lower().startswith(_URL_SCHEMES) or not _URL_CHARS.match(req.url):
            raise _error(
                f"requirement {text!r} has an unsupported URL {req.url!r}",
                where,
                "use an https:// or git+https:// URL, or a wheel inside the model directory",
            )
    normalized = str(req)
    bad = _UNSAFE.search(normalized) or _CONTROL.search(normalized)
    if bad:
        raise _error(
            f"requirement {text!r} contains {bad.group()!r}, which is not allowed in a requirement",
            where,
            "remove the character from the requirement",
        )
    return normalized


@dataclass
class RequirementSet:
    """What a tree of requirement lines declares (mutable while reading, then frozen by resolve)."""

    requirements: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    local_archives: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, line: str, *, constraint: bool) -> None:
        target = self.constraints if constraint else self.requirements
        if line not in target:
            target.append(line)


def read_requirement_lines(
    lines: Sequence[object],
    *,
    model_dir: Path,
    base_dir: Path,
    where: Callable[[int], str],
    constraint: bool = False,
    into: RequirementSet | None = None,
    _stack: tuple[Path, ...] = (),
) -> RequirementSet:
    """Read requirement-file lines (already split), following -r/-c inside ``model_dir``.

    ``base_dir`` is where relative ``-r``/``-c`` paths start (the directory of the file that
    names them; the model directory for python_env.yaml and conda.yaml lists). ``where(n)``
    labels the 1-based line ``n`` in messages (e.g. ``lambda n: f"{path}:{n}"``).
    """
    out = into if into is not None else RequirementSet()
    for n, raw in enumerate(lines, start=1):
        here = where(n)
        if not isinstance(raw, str):
            raise _error(
                f"expected a requirement string, got {type(raw).__name__} {raw!r}",
                here,
                "write each dependency as a string such as 'numpy==2.0.0'",
            )
        if "\n" in raw.strip("\n") or _CONTROL.search(raw.strip("\r\n")):
            raise _error(
                f"entry {raw!r} contains a newline or control character",
                here,
                "put one requirement per entry, as plain text",
            )
        text = strip_comment(raw)
        if not text:
            continue
        if text.startswith("-"):
            _option_line(
                text,
                out,
                model_dir=model_dir,
                base_dir=base_dir,
                where=here,
                constraint=constraint,
                stack=_stack,
            )
            continue
        normalized = parse_requirement_line(text, where=here)
        assert normalized is not None
        first = normalized.split(" ", 1)[0]
        if "://" not in first and ("/" in first or _ARCHIVE.search(first)):
            archive = safe_model_path(model_dir, first, field="requirement", where=here)
            if not archive.is_file():
                raise _error(
                    f"requirement names the archive {first!r}, which is not in the model directory",
                    here,
                    "add the file to the model directory or remove the requirement",
                )
            if first not in out.local_archives:
                out.local_archives.append(first)
        out.add(normalized, constraint=constraint)
    return out


def split_file_lines(text: str) -> list[str]:
    """Physical lines -> logical lines (pip joins lines ending in a backslash)."""
    logical: list[str] = []
    buf = ""
    for physical in text.splitlines():
        if physical.endswith("\\") and not _COMMENT.search(physical):
            buf += physical[:-1] + " "
            continue
        logical.append(buf + physical)
        buf = ""
    if buf:
        logical.append(buf)
    return logical


def read_requirements_file(
    ref: str,
    *,
    model_dir: Path,
    base_dir: Path,
    where: str,
    constraint: bool = False,
    into: RequirementSet | None = None,
    _stack: tuple[Path, ...] = (),
) -> RequirementSet:
    """Read the requirements file ``ref`` (relative to ``base_dir``, inside ``model_dir``)."""
    out = into if into is not None else RequirementSet()
    if "://" in ref:
        raise _error(
            f"requirement file {ref!r} is a URL; only files inside the model directory are read",
            where,
            "copy the file into the model directory and refer to it by a relative path",
        )
    root = model_dir.resolve()
    ref = ref.removeprefix("./")
    check_relative_path(ref, field="-r/-c file", where=where)
    rel = PurePosixPath(base_dir.resolve().relative_to(root).as_posix()) / ref
    path = safe_model_path(model_dir, rel.as_posix(), field="-r/-c file", where=where)
    if path in _stack:
        raise _error(
            f"requirement files include each other in a loop ({ref!r})",
            where,
            "remove the circular -r/-c reference",
        )
    if len(_stack) >= MAX_INCLUDE_DEPTH:
        raise _error(
            f"requirement files nest deeper than {MAX_INCLUDE_DEPTH} levels",
            where,
            "flatten the -r/-c references",
        )
    if not path.is_file():
        raise _error(
            f"requirement file {ref!r} does not exist in the model directory",
            where,
            f"add {ref} to the model directory or remove the reference",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(
            f"cannot read requirement file {ref!r}: {exc}", where, "check the file"
        ) from exc
    label = path.relative_to(root).as_posix()
    if label not in out.files:
        out.files.append(label)
    return read_requirement_lines(
        split_file_lines(text),
        model_dir=model_dir,
        base_dir=path.parent,
        where=lambda n: f"{path}:{n}",
        constraint=constraint,
        into=out,
        _stack=(*_stack, path),
    )


def _option_line(
    text: str,
    out: RequirementSet,
    *,
    model_dir: Path,
    base_dir: Path,
    where: str,
    constraint: bool,
    stack: tuple[Path, ...],
) -> None:
    tokens = text.split()
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        name, value = tok, None
        if tok.startswith("--") and "=" in tok:
            name, value = tok.split("=", 1)
        elif not tok.startswith("--") and len(tok) > 2:  # -rfile, -ihttps://...
            name, value = tok[:2], tok[2:]
        takes_value = name in _REQ_OPTS or name in _INDEX_OPTS or name in _IGNORED_WITH_VALUE
        if takes_value and value is None:
            if i + 1 >= len(tokens):
                raise _error(f"option {name} needs a value", where, f"write '{name} <value>'")
            value = tokens[i + 1]
            i += 1
        i += 1
        if name in _REQ_OPTS:
            assert value is not None
            read_requirements_file(
                value,
                model_dir=model_dir,
                base_dir=base_dir,
                where=where,
                constraint=constraint or _REQ_OPTS[name] == "constraint",
                into=out,
                _stack=stack,
            )
        elif name in _INDEX_OPTS:
            assert value is not None
            _index_option(_INDEX_OPTS[name], value, out, model_dir=model_dir, where=where)
        elif name in _IGNORED_WITH_VALUE or name in _IGNORED_FLAGS:
            msg = f"{redact_text(where)}: pip option {name} is ignored by deployer"
            if msg not in out.warnings:
                out.warnings.append(msg)
        elif name in ("-e", "--editable"):
            raise _error(
                f"editable requirement {redact_text(text)!r} cannot be installed into an image",
                where,
                "build a wheel, put it in the model directory and list its relative path",
            )
        else:
            raise _error(
                f"unsupported pip option {name!r} in {text!r}",
                where,
                "supported: -r, -c, --index-url, --extra-index-url, --find-links, --hash",
            )


def _index_option(
    kind: str, value: str, out: RequirementSet, *, model_dir: Path, where: str
) -> None:
    without_refs = _ENV_REF.sub("", value)
    if _CONTROL.search(value) or re.search(r"[\s'\"`\\<>|;]", value) or "$" in without_refs:
        raise _error(
            f"{kind.replace('_', '-')} value {value!r} has characters a URL cannot contain",
            where,
            "percent-encode the URL (environment references must look like ${NAME})",
        )
    is_url = value.lower().startswith(("https://", "http://"))
    if not is_url:
        if kind != "find_links" or "://" in value:
            raise _error(
                f"--{kind.replace('_', '-')} {value!r} must be an http(s) URL",
                where,
                "use https://host/simple (file:// and other schemes point at the saving machine)",
            )
        safe_model_path(
            model_dir,
            value.removeprefix("./").rstrip("/") or ".",
            field="--find-links",
            where=where,
        )
        value = value.removeprefix("./")
    elif not _URL_CHARS.match(without_refs):
        raise _error(
            f"--{kind.replace('_', '-')} URL {value!r} is malformed",
            where,
            "percent-encode the URL",
        )
    if kind == "index_url":
        if out.index_url and out.index_url != value:
            out.warnings.append(
                f"{redact_text(where)}: a second --index-url {redact_text(value)} replaces "
                f"{redact_text(out.index_url)}"
            )
        out.index_url = value
    elif kind == "extra_index_url":
        if value not in out.extra_index_urls:
            out.extra_index_urls.append(value)
    elif value not in out.find_links:
        out.find_links.append(value)
