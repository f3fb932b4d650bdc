"""``deployer requirements -m DIR add|remove REQ...``: edit a model's requirement files.

MLflow's ``mlflow models update-pip-requirements`` (``mlflow.models.update_model_requirements``)
semantics, applied to every file that lists the model's pip requirements, so they stay
consistent: ``requirements.txt``, the ``pip:`` list of ``conda.yaml`` and the inline
``dependencies`` of ``python_env.yaml`` (MLflow leaves that file alone; its usual
``-r requirements.txt`` follows requirements.txt by itself).

* ``add``: a requirement naming a package a file already lists replaces that line in place; the
  others are appended, in the order given.
* ``remove``: every line naming one of the packages goes (version specifiers in the request are
  ignored); a package no file lists is a warning, as in MLflow.

Differences from MLflow, each deliberate: package names match by their PEP 503 normalized form
(``Scikit_Learn`` is ``scikit-learn``; MLflow matches the spelling and would list both); lines
that are not requirements (``-r``/``--extra-index-url`` options, comments) are kept where they
are (MLflow fails on them); requirement text keeps its case (MLflow lower-cases it); one
package given twice in one call is refused (MLflow merges the two).

Every requested requirement is validated as deployer validates a model's own lines
(:func:`~deployer.environment.requirements.parse_requirement_line`: PEP 508, no control
characters, no shell syntax) and must name a package; anything else is a :class:`UsageError`
before a file is touched. Planning (:func:`plan_requirements_edit`) is pure and gives each file's
before/after text (``--dry-run`` prints the diff); :func:`apply_requirements_edit` writes every
changed file beside itself first and renames them into place only when all are written, putting
back the earlier ones if a rename fails.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from deployer.environment.requirements import parse_requirement_line, strip_comment
from deployer.errors import DeployerError, ModelError, UsageError

OPERATIONS = ("add", "remove")
REQUIREMENTS_TXT = "requirements.txt"
CONDA_YAML = "conda.yaml"
PYTHON_ENV_YAML = "python_env.yaml"
_URI_PREFIXES = ("runs:/", "models:/", "mlflow-artifacts:/")


@dataclass(frozen=True)
class FileEdit:
    """One requirement file, before and after."""

    path: Path
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                [line + "\n" for line in self.before.splitlines()],
                [line + "\n" for line in self.after.splitlines()],
                fromfile=f"a/{self.path.name}",
                tofile=f"b/{self.path.name}",
            )
        )


@dataclass(frozen=True)
class RequirementsEdit:
    """What ``requirements add|remove`` changes in one model directory."""

    model_dir: Path
    operation: str
    requirements: tuple[str, ...]  # validated, normalized
    files: tuple[FileEdit, ...]  # every requirement file the model has
    warnings: tuple[str, ...]

    @property
    def changed(self) -> tuple[FileEdit, ...]:
        return tuple(f for f in self.files if f.changed)

    def diff(self) -> str:
        return "".join(f.diff() for f in self.changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model_dir),
            "operation": self.operation,
            "requirements": list(self.requirements),
            "changed": [f.path.name for f in self.changed],
            "unchanged": [f.path.name for f in self.files if not f.changed],
            "diff": self.diff(),
            "warnings": list(self.warnings),
        }


# ---------------------------------------------------------------------------- planning
def plan_requirements_edit(
    model_uri: str | os.PathLike[str], operation: str, requirements: list[str] | tuple[str, ...]
) -> RequirementsEdit:
    """Validate the request and compute each file's new text (nothing is written)."""
    model_dir = _local_model_dir(model_uri)
    if operation not in OPERATIONS:
        raise UsageError(
            f"unknown operation {operation!r}", where="OPERATION", fix="use add or remove"
        )
    if not requirements:
        raise UsageError(
            f"nothing to {operation}",
            where="REQ...",
            fix=f"name at least one requirement: deployer requirements -m DIR {operation} 'pkg>=1'",
        )
    wanted = _validated(requirements)
    files: list[FileEdit] = []
    listed: set[str] = set()
    txt = model_dir / REQUIREMENTS_TXT
    if txt.is_file():
        before = _read(txt)
        lines, names = _edit_lines(before.splitlines(), operation, wanted)
        listed |= names
        end = "\n" if before.endswith("\n") or not before else ""  # keep the file's own ending
        files.append(FileEdit(txt, before, "\n".join(lines) + end if lines else ""))
    conda = model_dir / CONDA_YAML
    if conda.is_file():
        before = _read(conda)
        after, names = _edit_conda(before, conda, operation, wanted)
        listed |= names
        files.append(FileEdit(conda, before, after))
    python_env = model_dir / PYTHON_ENV_YAML
    if python_env.is_file():
        before = _read(python_env)
        after, names = _edit_python_env(before, python_env, operation, wanted)
        listed |= names
        files.append(FileEdit(python_env, before, after))
    if not files:
        raise UsageError(
            "the model has no requirement file (requirements.txt, conda.yaml or python_env.yaml)",
            where=str(model_dir),
            fix="save the model with MLflow, which writes them",
        )
    warnings = []
    if operation == "remove":
        missing = [str(r) for key, r in wanted.items() if key not in listed]
        if missing:
            warnings.append(f"{', '.join(missing)} not found in the model's requirements, ignored")
    return RequirementsEdit(
        model_dir=model_dir,
        operation=operation,
        requirements=tuple(str(r) for r in wanted.values()),
        files=tuple(files),
        warnings=tuple(warnings),
    )


def _local_model_dir(model_uri: str | os.PathLike[str]) -> Path:
    text = os.fspath(model_uri)
    if "://" in text or text.startswith(_URI_PREFIXES):
        raise UsageError(
            f"{text!r} is not a local model directory: requirements edits only local folders "
            "(a registered or logged model is read-only, and a copy in deployer's cache would "
            "be edited for nothing)",
            where="-m/--model",
            fix="download the model (mlflow artifacts download -u URI -d DIR), edit DIR, then "
            "log or deploy DIR",
        )
    path = Path(text.removeprefix("file:")).expanduser()
    if not (path / "MLmodel").is_file():
        raise UsageError(
            f"no MLmodel file in {str(path)!r}",
            where="-m/--model",
            fix="point -m at the directory mlflow.<flavor>.save_model wrote",
        )
    return path.resolve()


def _validated(requirements: list[str] | tuple[str, ...]) -> dict[str, Requirement]:
    """Each REQ -> a PEP 508 requirement naming a package, keyed by its normalized name."""
    out: dict[str, Requirement] = {}
    for raw in requirements:
        where = f"REQ {raw!r}"
        if not isinstance(raw, str) or strip_comment(raw) != raw.strip():
            raise UsageError(
                f"requirement {raw!r} holds a comment",
                where=where,
                fix="give the requirement alone, e.g. 'pandas>=2'",
            )
        try:
            normalized = parse_requirement_line(raw, where=where)
        except DeployerError as exc:
            raise UsageError(exc.what, where=where, fix=exc.fix) from None
        try:
            req = Requirement(normalized or "")
        except InvalidRequirement:
            raise UsageError(
                f"requirement {raw!r} names no package",
                where=where,
                fix="write a PEP 508 requirement with a name, e.g. 'pkg==1.0' or "
                "'pkg @ https://host/pkg-1.0-py3-none-any.whl'",
            ) from None
        if " --hash" in (normalized or ""):
            raise UsageError(
                f"requirement {raw!r} carries a hash option",
                where=where,
                fix="give the requirement without --hash (deployer lock pins hashes)",
            )
        key = canonicalize_name(req.name)
        if key in out:
            raise UsageError(
                f"{req.name} is given twice ({out[key]} and {req})",
                where=where,
                fix="name each package once",
            )
        out[key] = req
    return out


def _key(line: object) -> str | None:
    """The normalized package name a requirement line names (None: an option, comment, URL,
    archive or anything else that is not a named requirement: kept as it is)."""
    if not isinstance(line, str):
        return None
    text = strip_comment(line)
    if not text or text.startswith("-"):
        return None
    try:
        return canonicalize_name(Requirement(text.split(" --", 1)[0].strip()).name)
    except InvalidRequirement:
        return None


def _edit_lines(
    lines: list[Any], operation: str, wanted: dict[str, Requirement]
) -> tuple[list[Any], set[str]]:
    """The edited list and the requested names it listed."""
    out: list[Any] = []
    seen: set[str] = set()
    for line in lines:
        key = _key(line)
        if key is None or key not in wanted:
            out.append(line)
            continue
        if operation == "add" and key not in seen:
            out.append(str(wanted[key]))
        seen.add(key)
    if operation == "add":
        out.extend(str(req) for key, req in wanted.items() if key not in seen)
    return out, seen


def _edit_conda(
    text: str, path: Path, operation: str, wanted: dict[str, Requirement]
) -> tuple[str, set[str]]:
    data = _load_mapping(text, path)
    deps = data.get("dependencies")
    if deps is None:
        deps = []
    if not isinstance(deps, list):
        raise UsageError(
            "conda.yaml's 'dependencies' is not a list",
            where=str(path),
            fix="fix the file (dependencies: [python=3.11, pip, {pip: [...]}])",
        )
    names: set[str] = set()
    new_deps: list[Any] = []
    found = False
    for dep in deps:
        if isinstance(dep, dict) and "pip" in dep:
            if not isinstance(dep["pip"], list):
                raise UsageError(
                    "conda.yaml's pip entry is not a list",
                    where=str(path),
                    fix="write - pip: [pkg==1.0, ...]",
                )
            pip, seen = _edit_lines(list(dep["pip"]), operation, wanted)
            names |= seen
            new_deps.append({**dep, "pip": pip})
            found = True
        else:
            new_deps.append(dep)
    if not found and operation == "add":
        new_deps.append({"pip": [str(r) for r in wanted.values()]})  # as MLflow does
    if new_deps == deps:
        return text, names
    return _dump({**data, "dependencies": new_deps}), names


def _edit_python_env(
    text: str, path: Path, operation: str, wanted: dict[str, Requirement]
) -> tuple[str, set[str]]:
    """Inline ``dependencies`` only; ``-r requirements.txt`` already follows that file."""
    data = _load_mapping(text, path)
    deps = data.get("dependencies") or []
    if not isinstance(deps, list):
        raise UsageError(
            "python_env.yaml's 'dependencies' is not a list",
            where=str(path),
            fix="write dependencies: [-r requirements.txt]",
        )
    refers = any(isinstance(d, str) and d.strip().startswith(("-r", "--requirement")) for d in deps)
    if refers and not any(_key(d) for d in deps):
        return text, set()
    edited, names = _edit_lines(list(deps), operation, wanted)
    if operation == "add" and refers:
        # the appended ones are in requirements.txt, which -r brings in
        edited = [d for d in edited if _key(d) is None or _key(d) in names or d in deps]
    if edited == deps:
        return text, names
    return _dump({**data, "dependencies": edited}), names


def _load_mapping(text: str, path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(
            f"{path.name} is not valid YAML: {exc}",
            where=str(path),
            fix="fix the file's syntax",
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path.name} is not a mapping", where=str(path), fix="fix the file")
    return data


def _dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"cannot read {path.name}: {exc}", where=str(path), fix="check the file"
        ) from None


# ---------------------------------------------------------------------------- writing
def apply_requirements_edit(edit: RequirementsEdit) -> tuple[Path, ...]:
    """Write the changed files: all written beside their targets first, then renamed into place;
    a failing rename puts back the files already replaced. Returns the paths written."""
    changed = edit.changed
    staged: list[tuple[FileEdit, Path]] = []
    try:
        for f in changed:
            tmp = f.path.with_name(f".partial-{secrets.token_hex(8)}-{f.path.name}")
            tmp.write_text(f.after, encoding="utf-8")
            with contextlib.suppress(OSError):
                os.chmod(tmp, f.path.stat().st_mode & 0o777)
            staged.append((f, tmp))
        done: list[FileEdit] = []
        try:
            for f, tmp in staged:
                os.replace(tmp, f.path)
                done.append(f)
        except OSError:
            for f in reversed(done):
                f.path.write_text(f.before, encoding="utf-8")
            raise
    except OSError as exc:
        raise ModelError(
            f"could not write the requirement files: {exc.strerror or exc}; none was changed",
            where=str(edit.model_dir),
            fix="make the model directory writable and run the command again",
        ) from None
    finally:
        for _, tmp in staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return tuple(f.path for f in changed)
