"""Requirements the model never uses, and what they cost: the image's dead weight, with a size.

MLflow infers a model's requirements from every package imported while the model loaded in
the saving process, optional imports included: with torch installed, ``skops`` imports it, and
a 12 KB scikit-learn model then requires ``torch==...+cpu`` (800 MiB in the image). Such a
requirement is not *wrong* (pip installs it), just unused, so deployer keeps it and says so.

A model requirement is **used** when something that runs needs it:

* what the flavor's loader imports (:mod:`deployer.environment.loader_deps`),
* what the model's own files reference (:mod:`deployer.model.references`),
* deployer's serving runtime and the mlflow package,

or when one of those depends on it, transitively, through the ``Requires-Dist`` metadata of
the exact wheels (markers evaluated for the image: Linux, the model's Python, requested extras).
Everything else is **unused**; :func:`unused_requirements` reports each with the installed size
it alone brings (its own files plus dependencies nothing used needs).

Facts come from the locked wheels (:func:`facts_from_wheels`, at build time: exact) or, for
``deployer inspect`` before any resolution, from this host's installed distributions
(:func:`facts_from_installed`). With incomplete facts (a used package whose metadata is
unknown) nothing is reported: a missing edge could make a needed package look unused.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from deployer.environment.lock import marker_environment

#: Unused requirements smaller than this are not worth a warning.
WARN_BYTES = 25 << 20


@dataclass(frozen=True)
class PackageFacts:
    """One distribution: what it requires (raw Requires-Dist lines), provides, and weighs."""

    name: str  # canonical
    version: str
    requires: tuple[str, ...]
    modules: frozenset[str]  # top-level importable names
    size: int  # installed bytes


@dataclass(frozen=True)
class UnusedRequirement:
    """A model requirement nothing that runs needs, and the bytes it alone adds."""

    requirement: str  # the model's line
    name: str
    size: int
    brings: tuple[str, ...]  # the dependencies that come only with it

    def describe(self) -> str:
        extra = (
            f" with {', '.join(self.brings[:5])}{'...' if len(self.brings) > 5 else ''}"
            if self.brings
            else ""
        )
        return f"{self.requirement!r} ({_mib(self.size)}{extra})"

    def to_dict(self) -> dict[str, object]:
        return {
            "requirement": self.requirement,
            "name": self.name,
            "size": self.size,
            "brings": list(self.brings),
        }


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.0f} MiB" if size >= 1 << 20 else f"{size / 1024:,.0f} KiB"


def _modules_of(paths: Iterable[str]) -> frozenset[str]:
    out = set()
    for path in paths:
        top = path.split("/", 1)[0]
        if not top or top.endswith((".dist-info", ".data", ".egg-info")) or top.startswith(".."):
            continue
        out.add(top.split(".", 1)[0] if "/" not in path else top)
    return frozenset(out)


def facts_from_wheels(paths: Iterable[Path]) -> dict[str, PackageFacts]:
    """Facts from wheel files (the lock's): METADATA, file list, uncompressed sizes."""
    out: dict[str, PackageFacts] = {}
    for path in paths:
        try:
            name, version, _build, _tags = parse_wheel_filename(path.name)
            with zipfile.ZipFile(path) as wheel:
                infos = wheel.infolist()
                meta_name = next(
                    i.filename
                    for i in infos
                    if i.filename.endswith(".dist-info/METADATA") and i.filename.count("/") == 1
                )
                meta = email.parser.Parser().parsestr(
                    wheel.read(meta_name).decode("utf-8", "replace"), headersonly=True
                )
        except (OSError, ValueError, StopIteration, zipfile.BadZipFile):
            continue
        out[str(name)] = PackageFacts(
            name=str(name),
            version=str(version),
            requires=tuple(meta.get_all("Requires-Dist") or ()),
            modules=_modules_of(i.filename for i in infos),
            size=sum(i.file_size for i in infos),
        )
    return out


def facts_from_installed(names: Iterable[str] | None = None) -> dict[str, PackageFacts]:
    """Facts from this Python's installed distributions (all, or those named)."""
    wanted = None if names is None else {canonicalize_name(n) for n in names}
    out: dict[str, PackageFacts] = {}
    for dist in importlib.metadata.distributions():
        raw = dist.metadata["Name"]
        if not raw:
            continue
        name = canonicalize_name(raw)
        if (wanted is not None and name not in wanted) or name in out:
            continue
        files = list(dist.files or ())
        size = 0
        for f in files:
            if f.size:
                size += int(f.size)
        top = (dist.read_text("top_level.txt") or "").split()
        modules = frozenset(top) if top else _modules_of(str(f).replace("\\", "/") for f in files)
        out[name] = PackageFacts(
            name=name,
            version=dist.version,
            requires=tuple(dist.requires or ()),
            modules=modules,
            size=size,
        )
    return out


def _closure(
    roots: Iterable[tuple[str, frozenset[str]]],
    facts: Mapping[str, PackageFacts],
    env: Mapping[str, str],
) -> tuple[set[str], set[str]]:
    """Every distribution reachable from ``roots`` ((name, extras) pairs); and the reached names
    whose facts are unknown."""
    seen: dict[str, set[str]] = {}
    unknown: set[str] = set()
    todo = [(canonicalize_name(n), set(extras)) for n, extras in roots]
    while todo:
        name, extras = todo.pop()
        have = seen.get(name)
        if have is not None and extras <= have:
            continue
        seen.setdefault(name, set()).update(extras)
        pkg = facts.get(name)
        if pkg is None:
            unknown.add(name)
            continue
        for line in pkg.requires:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": e}) for e in (*sorted(seen[name]), "")
            ):
                continue
            todo.append((canonicalize_name(req.name), set(req.extras)))
    return set(seen), unknown


def _root(line: str) -> tuple[str, frozenset[str]] | None:
    try:
        req = Requirement(line.split(" --hash", 1)[0].split(" #", 1)[0])
    except InvalidRequirement:
        return None
    return canonicalize_name(req.name), frozenset(req.extras)


def unused_requirements(
    model_requirements: Iterable[str],
    used: Iterable[str],
    referenced_modules: Iterable[str],
    facts: Mapping[str, PackageFacts],
    *,
    python_version: str,
    alternatives: Mapping[str, frozenset[str]] | None = None,
    min_bytes: int = WARN_BYTES,
    complete: bool = True,
) -> tuple[UnusedRequirement, ...]:
    """The model's requirements nothing that runs needs, weighing at least ``min_bytes``
    (see module docstring). ``used``: requirement lines or names that run (the loader's
    packages, the serving runtime; never reported); ``alternatives``: name -> other
    distributions that provide it (``xgboost`` -> ``xgboost-cpu``).

    ``complete``: the facts cover everything the image installs (a lock's wheels), so a name
    without facts is simply not installed. Otherwise (this host's distributions) a model
    requirement without facts could be what needs another one: nothing is reported then."""
    env = marker_environment(python_version)
    alternatives = alternatives or {}
    used = list(used)
    used_names = {r[0] for line in used if (r := _root(line)) is not None}
    model = [
        (line, r)
        for line in model_requirements
        if (r := _root(line)) is not None and r[0] not in used_names
    ]
    referenced = set(referenced_modules)
    roots: list[tuple[str, frozenset[str]]] = []
    for line in used:
        r = _root(line)
        if r is None:
            continue
        name, extras = r
        present = (
            [name] if name in facts else sorted(alternatives.get(name, frozenset()) & set(facts))
        )
        roots += [(n, extras) for n in present] or [r]
    roots += [(name, frozenset()) for name, pkg in facts.items() if pkg.modules & referenced]
    needed, _unknown = _closure(roots, facts, env)
    if not complete and {name for _, (name, _) in model} - set(facts):
        return ()
    out = []
    for line, (name, extras) in model:
        if name in needed or name not in facts:
            continue
        own, _ = _closure([(name, extras)], facts, env)
        alone = sorted(own - needed)
        size = sum(facts[n].size for n in alone if n in facts)
        if size >= min_bytes:
            out.append(UnusedRequirement(line, name, size, tuple(n for n in alone if n != name)))
    return tuple(sorted(out, key=lambda u: -u.size))
