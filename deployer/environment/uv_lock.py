"""The model's ``uv.lock``: the lock a uv project trained with, used as the image's lock.

MLflow (3.x) copies a uv project's ``uv.lock``, ``pyproject.toml`` and ``.python-version``
next to MLmodel when it saves a model from that project
(``mlflow.utils.uv_utils.copy_uv_project_files``; nothing in MLmodel names them) and restores
the environment with ``uv sync --frozen --no-dev``. deployer does the same selection here,
without running uv: starting from the project's own entry (source ``virtual``/``editable``
``.``), it follows the locked dependency edges (no dev groups, no extras of the project), with
each edge's marker evaluated for the *image* (Linux, its CPython), and yields one
``name==version --hash=sha256:...`` line per package, every hash uv.lock records for it (one
per wheel and the sdist). The resolver then downloads the wheel for the image's platform and
checks its sha256 against those hashes, so the image gets exactly the files training had.

Why read the TOML rather than run ``uv export``: the lock format is versioned (``version =
1``) and the fields needed (packages, dependency edges with markers, sources, hashes) are few;
reading them keeps uv, a ~35 MB binary, out of deployer's runtime dependencies, and the result
does not depend on which uv the deploying host has. An unknown lock version is refused.

Only index (``registry``) sources can be installed offline from a wheelhouse; a package locked
from git, a URL, or a local path is refused with the fix.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from deployer.environment.lock import marker_environment
from deployer.errors import EnvironmentSpecError
from deployer.model.paths import safe_model_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

UV_LOCK_FILE = "uv.lock"
PYPROJECT_FILE = "pyproject.toml"
SUPPORTED_VERSIONS = (1,)
_ROOT_SOURCES = ("virtual", "editable")
_SHA256 = re.compile(r"^sha256:(?P<hex>[0-9a-f]{64})$")
_PYPI = re.compile(r"^https?://(pypi\.org|pypi\.python\.org)/simple/?$")
#: Requirements MLflow adds to every model's requirements.txt whatever the project locks; when
#: uv.lock has no entry for them the image gets them as for any model (mlflow-skinny).
MLFLOW_NAMES = frozenset({"mlflow", "mlflow-skinny"})
_FIX = (
    "re-run `uv lock` in the training project and log the model again, or remove uv.lock from "
    "the model directory to resolve the environment from its requirements"
)


@dataclass(frozen=True, order=True)
class UvLockedPackage:
    """One package the image installs from uv.lock: exact version, every recorded hash."""

    name: str  # canonical
    version: str
    hashes: tuple[str, ...] = ()  # sha256 hex digests (wheels and sdist)

    @property
    def requirement(self) -> str:
        """``name==version --hash=sha256:...`` (pip's hash-checking form)."""
        return " ".join(
            [f"{self.name}=={self.version}", *(f"--hash=sha256:{h}" for h in self.hashes)]
        )


@dataclass(frozen=True)
class UvLock:
    """A model's uv.lock, parsed and validated (the selection for a platform is :meth:`select`)."""

    path: Path  # absolute, inside the model directory
    project: str  # the locked project whose dependencies are installed
    version: int
    entries: tuple[dict[str, Any], ...] = field(default=(), compare=False, repr=False)

    @property
    def relpath(self) -> str:
        return UV_LOCK_FILE

    def select(self, python_version: str, machine: str = "x86_64") -> UvSelection:
        """What ``uv sync --frozen --no-dev`` installs on Linux CPython ``python_version``."""
        return _select(self, python_version, machine)

    def to_dict(self, python_version: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": UV_LOCK_FILE,
            "project": self.project,
            "version": self.version,
        }
        if python_version:
            sel = self.select(python_version)
            out["python_version"] = sel.python_version
            out["packages"] = [
                {"name": p.name, "version": p.version, "hashes": len(p.hashes)}
                for p in sel.packages
            ]
            out["index_urls"] = list(sel.index_urls)
        return out


@dataclass(frozen=True)
class UvSelection:
    """uv.lock's packages for one image: pinned, hashed requirement lines and their indexes."""

    python_version: str
    packages: tuple[UvLockedPackage, ...]
    index_urls: tuple[str, ...] = ()  # non-PyPI registries the lock names (as MLflow adds them)
    notes: tuple[str, ...] = ()

    @property
    def requirements(self) -> tuple[str, ...]:
        return tuple(p.requirement for p in self.packages)

    def find(self, name: str) -> UvLockedPackage | None:
        key = canonicalize_name(name)
        return next((p for p in self.packages if p.name == key), None)

    def unlocked_mlflow(self, requirements: tuple[str, ...]) -> tuple[str, ...]:
        """The model's mlflow / mlflow-skinny requirement lines when this lock has no entry
        for them (MLflow writes its own pin into every model's requirements.txt)."""
        out = []
        for line in requirements:
            try:
                name = canonicalize_name(Requirement(line.split(" --hash", 1)[0]).name)
            except InvalidRequirement:
                continue
            if name in MLFLOW_NAMES and self.find(name) is None:
                out.append(line)
        return tuple(out)


def find_uv_lock(model_dir: Path, where: str) -> UvLock | None:
    """The model's uv.lock (next to MLmodel, where MLflow puts it), or None."""
    path = safe_model_path(model_dir, UV_LOCK_FILE, field=UV_LOCK_FILE, where=where)
    if not path.is_file():
        return None
    pyproject = safe_model_path(model_dir, PYPROJECT_FILE, field=PYPROJECT_FILE, where=where)
    return parse_uv_lock(path, pyproject if pyproject.is_file() else None)


def parse_uv_lock(path: Path, pyproject: Path | None = None) -> UvLock:
    where = str(path)
    data = _load_toml(path)
    version = data.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise EnvironmentSpecError(
            f"uv.lock format version {version!r} is not supported (deployer reads version "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))})",
            where=where,
            fix=_FIX,
        )
    packages = data.get("package")
    if not isinstance(packages, list) or not all(
        isinstance(p, dict) and isinstance(p.get("name"), str) for p in packages
    ):
        raise EnvironmentSpecError(
            "uv.lock has no valid [[package]] entries", where=where, fix=_FIX
        )
    roots = [
        p for p in packages if _source_kind(p)[0] in _ROOT_SOURCES and _source_kind(p)[1] == "."
    ]
    wanted = _project_name(pyproject)
    if wanted is not None:
        roots = [p for p in roots if canonicalize_name(p["name"]) == canonicalize_name(wanted)]
    if len(roots) != 1:
        raise EnvironmentSpecError(
            "cannot tell which project of uv.lock the model was trained with "
            f"({len(roots)} candidates for the project at '.'"
            + (f" named {wanted!r} by pyproject.toml" if wanted else "")
            + ")",
            where=where,
            fix=_FIX,
        )
    return UvLock(
        path=path,
        project=canonicalize_name(roots[0]["name"]),
        version=int(version),
        entries=tuple(packages),
    )


def check_covers(
    lock: UvLock, requirements: tuple[str, ...], python_version: str, *, source: str
) -> None:
    """Refuse a uv.lock whose packages do not satisfy the model's requirements (names and
    versions, markers evaluated for the image). An mlflow / mlflow-skinny requirement the lock
    has no entry for is not refused (see :data:`MLFLOW_NAMES`)."""
    selection = lock.select(python_version)
    env = _environment(python_version, "x86_64")
    missing: list[str] = []
    conflicting: list[str] = []
    for line in requirements:
        text = line.split(" --hash", 1)[0].strip()
        try:
            req = Requirement(text)
        except InvalidRequirement:
            missing.append(f"{text} (a direct reference uv.lock cannot pin)")
            continue
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        locked = selection.find(req.name)
        if locked is None:
            if canonicalize_name(req.name) not in MLFLOW_NAMES:
                missing.append(text)
            continue
        if req.specifier and not req.specifier.contains(locked.version, prereleases=True):
            conflicting.append(f"{text} (uv.lock has {locked.version})")
    if missing or conflicting:
        parts = []
        if missing:
            parts.append("not in uv.lock: " + ", ".join(missing))
        if conflicting:
            parts.append("other version in uv.lock: " + ", ".join(conflicting))
        raise EnvironmentSpecError(
            f"the model's uv.lock does not cover its requirements ({source}) for Python "
            f"{selection.python_version} on Linux; " + "; ".join(parts),
            where=str(lock.path),
            fix=_FIX,
        )


# ----------------------------------------------------------------------------- internals


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise EnvironmentSpecError(
            f"cannot read {path.name}: {exc}", where=str(path), fix=_FIX
        ) from exc


def _project_name(pyproject: Path | None) -> str | None:
    if pyproject is None:
        return None
    project = _load_toml(pyproject).get("project")
    name = project.get("name") if isinstance(project, dict) else None
    return name if isinstance(name, str) else None


def _source_kind(package: dict[str, Any]) -> tuple[str, str]:
    source = package.get("source")
    if isinstance(source, dict) and len(source) >= 1:
        kind, value = next(iter(source.items()))
        return str(kind), str(value)
    return "", ""


def _environment(python_version: str, machine: str) -> dict[str, str]:
    parts = python_version.split(".")
    minor = ".".join(parts[:2])
    env = marker_environment(minor)
    env["python_full_version"] = python_version if len(parts) >= 3 else f"{minor}.0"
    env["platform_machine"] = machine
    return env


def _applies(marker: object, env: dict[str, str], where: str) -> bool:
    if marker is None:
        return True
    try:
        return Marker(str(marker)).evaluate(env)
    except InvalidMarker as exc:
        raise EnvironmentSpecError(
            f"uv.lock has an invalid marker {marker!r}: {exc}", where=where, fix=_FIX
        ) from exc


def _target(
    by_name: dict[str, list[dict[str, Any]]], edge: dict[str, Any], where: str
) -> dict[str, Any]:
    name = canonicalize_name(str(edge.get("name")))
    candidates = by_name.get(name, [])
    if "version" in edge:
        candidates = [c for c in candidates if c.get("version") == edge["version"]]
    if "source" in edge:
        candidates = [c for c in candidates if c.get("source") == edge["source"]]
    if len(candidates) != 1:
        raise EnvironmentSpecError(
            f"uv.lock has {len(candidates)} entries for the dependency {edge.get('name')!r}"
            + (f" {edge['version']}" if "version" in edge else ""),
            where=where,
            fix=_FIX,
        )
    return candidates[0]


def _hashes(package: dict[str, Any]) -> tuple[str, ...]:
    files = list(package.get("wheels") or [])
    if isinstance(package.get("sdist"), dict):
        files.append(package["sdist"])
    out = []
    for f in files:
        m = _SHA256.match(str(f.get("hash", ""))) if isinstance(f, dict) else None
        if m and m["hex"] not in out:
            out.append(m["hex"])
    return tuple(out)


def _select(lock: UvLock, python_version: str, machine: str) -> UvSelection:
    where = str(lock.path)
    env = _environment(python_version, machine)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for p in lock.entries:
        by_name.setdefault(canonicalize_name(p["name"]), []).append(p)
    (root,) = [
        p
        for p in by_name[lock.project]
        if _source_kind(p)[0] in _ROOT_SOURCES and _source_kind(p)[1] == "."
    ]
    chosen: dict[tuple[str, str], UvLockedPackage] = {}
    index_urls: list[str] = []
    notes: list[str] = []
    seen: set[tuple[int, frozenset[str]]] = set()
    queue: list[tuple[dict[str, Any], frozenset[str]]] = [(root, frozenset())]
    while queue:
        package, extras = queue.pop()
        key = (id(package), extras)
        if key in seen:
            continue
        seen.add(key)
        edges = list(package.get("dependencies") or [])
        optional = package.get("optional-dependencies") or {}
        for extra in sorted(extras):
            edges += list(optional.get(extra) or [])
        for edge in edges:
            if not isinstance(edge, dict) or not _applies(edge.get("marker"), env, where):
                continue
            dep = _target(by_name, edge, where)
            kind, value = _source_kind(dep)
            name = canonicalize_name(dep["name"])
            if kind != "registry":
                raise EnvironmentSpecError(
                    f"uv.lock installs {name} from a {kind or 'unknown'} source ({value}); an "
                    "image installs locked wheels from a package index only",
                    where=where,
                    fix="publish the package to your index and lock it from there (uv add), "
                    "or remove uv.lock from the model directory to resolve from requirements",
                )
            pkg = UvLockedPackage(name, str(dep.get("version")), _hashes(dep))
            chosen[(pkg.name, pkg.version)] = pkg
            _add_index(value, index_urls, notes, where)
            queue.append((dep, frozenset(str(e) for e in edge.get("extra") or [])))
    packages = tuple(sorted(chosen.values()))
    names = [p.name for p in packages]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise EnvironmentSpecError(
            f"uv.lock selects two versions of {', '.join(twice)} for Python {python_version} on "
            "Linux",
            where=where,
            fix=_FIX,
        )
    for p in packages:
        try:
            Version(p.version)
        except InvalidVersion as exc:
            raise EnvironmentSpecError(
                f"uv.lock pins {p.name} to an invalid version {p.version!r}", where=where, fix=_FIX
            ) from exc
    unhashed = [p.name for p in packages if not p.hashes]
    if unhashed:
        notes.append(
            f"uv.lock records no hash for {', '.join(unhashed)} (locked from a local directory): "
            "their versions are pinned, their files are not"
        )
    return UvSelection(
        python_version=python_version,
        packages=packages,
        index_urls=tuple(index_urls),
        notes=tuple(notes),
    )


def _add_index(value: str, urls: list[str], notes: list[str], where: str) -> None:
    """A registry uv.lock names, as an extra index for the host's pip (MLflow does the same
    when it writes requirements.txt from a uv project). Credentials are never in uv.lock."""
    if _PYPI.match(value):
        return
    if value.startswith(("http://", "https://")):
        url = value
    elif value.startswith("/") and Path(value).is_dir():
        url = Path(value).as_uri()
    else:
        note = f"uv.lock names the index {value!r}, which is not reachable from this host"
        if note not in notes:
            notes.append(note)
        return
    if url not in urls:
        urls.append(url)
