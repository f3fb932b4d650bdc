"""Models that share one environment: one image, one host venv, one lock for several models.

:func:`shared_environment` is the one answer to "can these models run in one Python
environment?", used by every place that puts several models together (multi-model images,
``deployer serve -m A=... -m B=...`` in a model environment). It compares the models'
:class:`~deployer.environment.spec.EnvironmentSpec` and returns one merged spec, or raises
:class:`~deployer.errors.EnvironmentConflictError` listing every conflict, per package, with
each model's own requirement line:

* **kind**: conda models and pip-only (virtualenv) models do not mix; conda models share only
  the same conda packages and channels;
* **Python**: every model that declares one must declare the same X.Y;
* **packages** (requirements and constraints; ``mlflow`` and ``mlflow-skinny`` count as one,
  as the image swaps one for the other): equal lines agree; two different ``==`` pins
  conflict; a pin conflicts with another model's range that excludes it; ranges without a pin
  are intersected (the resolver then picks one version for all); the same package with
  different environment markers conflicts (which line applies would depend on the platform);
* **uv.lock**: a model saved from a uv project pins its packages with hashes: it shares only
  with models whose uv.lock is byte-identical;
* **index options**: two different primary ``--index-url`` conflict; extra indexes and find-links
  are pooled.

Pure: reads nothing but the specs (and the bytes of uv.lock files), resolves nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from deployer.environment.spec import EnvironmentSpec, IndexOptions
from deployer.errors import EnvironmentConflictError, UsageError
from deployer.redact import redact_text

#: Package names compared as one (the image installs mlflow-skinny for mlflow).
_SAME_PACKAGE = {"mlflow-skinny": "mlflow"}


@dataclass(frozen=True)
class Conflict:
    """One thing the models disagree on: ``subject`` (a package, ``python``, ``environment
    kind``...) and what each model involved says about it."""

    kind: str  # package | constraint | python | environment | conda | uv.lock | index
    subject: str
    by_model: tuple[tuple[str, str], ...]  # (model name, its requirement line / value)

    def describe(self) -> str:
        says = "; ".join(f"{model}: {redact_text(value)}" for model, value in self.by_model)
        return f"{self.kind} {self.subject}: {says}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "models": {model: redact_text(value) for model, value in self.by_model},
        }


@dataclass(frozen=True)
class SharedEnvironment:
    """The one environment of ``models``: ``spec`` is what a single model with all their
    requirements would declare (what the image build and the host venv consume)."""

    models: tuple[str, ...]
    spec: EnvironmentSpec
    identical: bool  # every model declared exactly the same requirements
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "identical": self.identical,
            "environment": self.spec.to_dict(),
            "notes": list(self.notes),
        }


def shared_environment(
    models: Mapping[str, EnvironmentSpec], overrides: Sequence[str] = ()
) -> SharedEnvironment:
    """One environment for every model of ``models`` (name -> spec), or
    :class:`EnvironmentConflictError` with every conflict (see the module docstring).
    ``overrides``: requirement lines that replace every model's line for their package
    (``--pip``, MLflow's semantics), so the models' lines for those packages never conflict."""
    if not models:
        raise UsageError("no models to put in one environment", fix="give at least one model")
    names = tuple(models)
    specs = list(models.values())
    if len(specs) == 1:
        return SharedEnvironment(names, specs[0], identical=True)
    conflicts: list[Conflict] = []
    notes: list[str] = []
    kinds = {name: spec.kind for name, spec in models.items()}
    if len(set(kinds.values())) > 1:
        conflicts.append(Conflict("environment", "kind", tuple(kinds.items())))
    conda = {name: spec for name, spec in models.items() if spec.kind == "conda"}
    if len({(s.conda_packages, s.conda_channels) for s in conda.values()}) > 1:
        conflicts.append(
            Conflict(
                "conda",
                "packages",
                tuple(
                    (n, " ".join((*s.conda_channels, *s.conda_packages))) for n, s in conda.items()
                ),
            )
        )
    python = _python(models, conflicts)
    uv_locks = {name: spec.uv_lock for name, spec in models.items()}
    if any(uv_locks.values()):
        contents = {
            name: (lock.path.read_bytes() if lock is not None else b"")
            for name, lock in uv_locks.items()
        }
        if len(set(contents.values())) > 1:
            conflicts.append(
                Conflict(
                    "uv.lock",
                    "(the model's own lock)",
                    tuple(
                        (n, "its uv.lock" if uv_locks[n] is not None else "no uv.lock")
                        for n in names
                    ),
                )
            )
    replaced = {key for key, req in map(_key, overrides) if req is not None}
    requirements = _merge_lines(
        {n: s.pip_requirements for n, s in models.items()}, "package", conflicts, notes, replaced
    )
    constraints = _merge_lines(
        {n: s.constraints for n, s in models.items()}, "constraint", conflicts, notes
    )
    index = _index_options(models, conflicts)
    if conflicts:
        listed = "\n".join(f"  - {c.describe()}" for c in conflicts)
        raise EnvironmentConflictError(
            f"models {', '.join(names)} cannot share one environment:\n{listed}",
            conflicts=tuple(conflicts),
            where=", ".join(f"{n} ({models[n].source})" for n in names),
            fix="align the requirements (save the models with the same pins, or pass --pip "
            "PACKAGE==VERSION to pin one version for all), or put models with different "
            "environments in different images / servers",
        )
    first = specs[0]
    spec = replace(
        first,
        python_version=python,
        pip_requirements=requirements,
        constraints=constraints,
        build_dependencies=tuple(
            dict.fromkeys(line for s in specs for line in s.build_dependencies)
        ),
        index_options=index,
        source="; ".join(f"{n}: {models[n].source}" for n in names),
        warnings=tuple(dict.fromkeys(w for s in specs for w in s.warnings)),
    )
    identical = len({(s.pip_requirements, s.constraints, s.python_version) for s in specs}) == 1
    return SharedEnvironment(names, spec, identical=identical, notes=tuple(notes))


def _python(models: Mapping[str, EnvironmentSpec], conflicts: list[Conflict]) -> str | None:
    declared = {n: s.python_version for n, s in models.items() if s.python_version}
    minor = {".".join(v.split(".")[:2]) for v in declared.values()}
    if len(minor) > 1:
        conflicts.append(Conflict("python", "version", tuple(declared.items())))
    return next(iter(declared.values()), None)


def _key(line: str) -> tuple[str, Requirement | None]:
    """(what the line is compared by, its parsed requirement or None for a URL/path line)."""
    try:
        req = Requirement(line.split(" --hash", 1)[0])
    except InvalidRequirement:
        return line, None
    if req.url:
        return line, None
    name = canonicalize_name(req.name)
    return _SAME_PACKAGE.get(name, name), req


def _merge_lines(
    lines_by_model: Mapping[str, tuple[str, ...]],
    what: str,
    conflicts: list[Conflict],
    notes: list[str],
    replaced: set[str] | frozenset[str] = frozenset(),
) -> tuple[str, ...]:
    """Every model's lines merged per package (order: first appearance); packages in
    ``replaced`` keep the first line (an override replaces it)."""
    per_package: dict[str, list[tuple[str, str, Requirement | None]]] = {}
    for model, lines in lines_by_model.items():
        for line in lines:
            key, req = _key(line)
            per_package.setdefault(key, []).append((model, line, req))
    out: list[str] = []
    for key, entries in per_package.items():
        distinct = list(dict.fromkeys(line for _m, line, _r in entries))
        if len(distinct) == 1 or key in replaced:
            out.append(distinct[0])
            if len(distinct) > 1:
                notes.append(f"{what} {key}: the models' lines differ; --pip replaces them all")
            continue
        merged = _merge_package([(m, r) for m, _l, r in entries])
        if merged is None:
            conflicts.append(Conflict(what, key, tuple((m, line) for m, line, _r in entries)))
            continue
        out.append(merged)
        notes.append(
            f"{what} {key}: "
            + ", ".join(f"{m} {line!r}" for m, line, _r in entries)
            + f" -> {merged!r}"
        )
    return tuple(out)


def _merge_package(entries: list[tuple[str, Requirement | None]]) -> str | None:
    """One line satisfying every model's requirement for one package, or None (a conflict)."""
    reqs = [r for _m, r in entries]
    if any(r is None for r in reqs):
        return None  # different URL / path lines for one package
    parsed = [r for r in reqs if r is not None]
    if len({str(r.marker) if r.marker else "" for r in parsed}) > 1:
        return None
    pins = {
        s.version
        for r in parsed
        for s in r.specifier
        if s.operator in ("==", "===") and "*" not in s.version
    }
    if len(pins) > 1:
        return None
    combined = SpecifierSet(",".join(str(r.specifier) for r in parsed if str(r.specifier)))
    if pins:
        pin = next(iter(pins))
        if not all(r.specifier.contains(pin, prereleases=True) for r in parsed):
            return None
        combined = SpecifierSet(f"=={pin}")
    # the name as the first model spells it (mlflow before mlflow-skinny: the image swaps it)
    names = [r.name for r in parsed]
    name = next((n for n in names if canonicalize_name(n) == "mlflow"), names[0])
    extras = sorted({e for r in parsed for e in r.extras})
    line = name + (f"[{','.join(extras)}]" if extras else "") + str(combined)
    marker = parsed[0].marker
    return f"{line}; {marker}" if marker else line


def _index_options(
    models: Mapping[str, EnvironmentSpec], conflicts: list[Conflict]
) -> IndexOptions:
    primary = {n: s.index_options.index_url for n, s in models.items() if s.index_options.index_url}
    if len(set(primary.values())) > 1:
        conflicts.append(
            Conflict("index", "--index-url", tuple((n, str(u)) for n, u in primary.items()))
        )
    specs = list(models.values())
    return IndexOptions(
        index_url=next(iter(primary.values()), None),
        extra_index_urls=tuple(
            dict.fromkeys(u for s in specs for u in s.index_options.extra_index_urls)
        ),
        find_links=tuple(dict.fromkeys(u for s in specs for u in s.index_options.find_links)),
    )
