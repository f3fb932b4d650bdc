"""Builds of one package published under several names: only one may be installed.

``xgboost`` and ``xgboost-cpu`` both install the ``xgboost`` package; so do ``tensorflow`` and
``tensorflow-cpu``, and the four OpenCV wheels install ``cv2``. MLflow writes *both* names of a
pair into a model's requirements when the CPU build is installed (it maps the imported module
back to every distribution that provides it), and pip then installs both into one
site-packages: the files of whichever comes last win, and the image carries the other build
for nothing (the GPU ``xgboost`` wheel brings 469 MiB of NVIDIA NCCL, ``tensorflow`` 574 MiB).

:func:`resolve` keeps one line per group: the CPU build, or with ``--gpu`` the GPU one (when
the model lists it); for OpenCV the headless build (a server has no display) with the contrib
modules if any listed line has them. Every dropped line is reported, and
:func:`conflicts` finds groups that still have two members in a resolved lock (a dependency
asking for the other name).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


@dataclass(frozen=True)
class VariantGroup:
    """Distributions installing the same package, in order of preference per mode."""

    package: str  # what they install (for messages)
    cpu: tuple[str, ...]  # preference without --gpu
    gpu: tuple[str, ...]  # preference with --gpu

    @property
    def members(self) -> frozenset[str]:
        return frozenset((*self.cpu, *self.gpu))


GROUPS: tuple[VariantGroup, ...] = (
    VariantGroup("xgboost", cpu=("xgboost-cpu", "xgboost"), gpu=("xgboost", "xgboost-cpu")),
    VariantGroup(
        "tensorflow",
        cpu=("tensorflow-cpu", "tensorflow", "tensorflow-intel", "tensorflow-gpu"),
        gpu=("tensorflow", "tensorflow-gpu", "tensorflow-cpu", "tensorflow-intel"),
    ),
    VariantGroup(
        "tf-nightly", cpu=("tf-nightly-cpu", "tf-nightly"), gpu=("tf-nightly", "tf-nightly-cpu")
    ),
    VariantGroup(
        "onnxruntime",
        cpu=("onnxruntime", "onnxruntime-gpu"),
        gpu=("onnxruntime-gpu", "onnxruntime"),
    ),
    VariantGroup("faiss", cpu=("faiss-cpu", "faiss-gpu"), gpu=("faiss-gpu", "faiss-cpu")),
    VariantGroup(
        "paddlepaddle",
        cpu=("paddlepaddle", "paddlepaddle-gpu"),
        gpu=("paddlepaddle-gpu", "paddlepaddle"),
    ),
    VariantGroup(
        "cv2 (OpenCV)",
        cpu=(
            "opencv-contrib-python-headless",
            "opencv-contrib-python",
            "opencv-python-headless",
            "opencv-python",
        ),
        gpu=(
            "opencv-contrib-python-headless",
            "opencv-contrib-python",
            "opencv-python-headless",
            "opencv-python",
        ),
    ),
    VariantGroup(
        "psycopg2", cpu=("psycopg2-binary", "psycopg2"), gpu=("psycopg2-binary", "psycopg2")
    ),
)
_GROUP_OF = {name: group for group in GROUPS for name in group.members}


@dataclass(frozen=True)
class Dropped:
    """A requirement line left out because another build of the same package was kept."""

    line: str
    kept: str
    package: str
    gpu: bool

    def describe(self) -> str:
        why = (
            "--gpu keeps the GPU build"
            if self.gpu
            else "the CPU build is kept (--gpu keeps the GPU one)"
        )
        if self.package.startswith("cv2"):
            why = "the headless build is kept (no display in an image)"
        elif self.package == "psycopg2":
            why = "the binary wheel is kept (psycopg2 is an sdist that needs a compiler)"
        return (
            f"the model's requirements list both {self.kept!r} and {self.line!r}, two builds of "
            f"{self.package} that would overwrite each other in one site-packages: dropped "
            f"{self.line!r}; {why}"
        )


def _name(line: str) -> str | None:
    try:
        return canonicalize_name(Requirement(line.split(" --hash", 1)[0]).name)
    except InvalidRequirement:
        return None


def resolve(
    lines: Iterable[str], *, gpu: bool = False, prefer: Iterable[str] = ()
) -> tuple[tuple[str, ...], tuple[Dropped, ...]]:
    """Keep one line per group (see module docstring); other lines pass unchanged, in order.
    ``prefer``: names asked for explicitly (``--pip``), kept over the usual preference."""
    preferred = {canonicalize_name(n) for n in prefer}
    lines = list(lines)
    listed: dict[VariantGroup, dict[str, str]] = {}
    for line in lines:
        name = _name(line)
        group = _GROUP_OF.get(name or "")
        if group is not None and name is not None:
            listed.setdefault(group, {}).setdefault(name, line)
    keep: dict[VariantGroup, str] = {}
    for group, names in listed.items():
        if len(names) > 1:
            order = group.gpu if gpu else group.cpu
            keep[group] = next(
                (n for n in order if n in names and n in preferred),
                next(n for n in order if n in names),
            )
    out: list[str] = []
    dropped: list[Dropped] = []
    for line in lines:
        name = _name(line)
        group = _GROUP_OF.get(name or "")
        if group is None or group not in keep or name == keep[group]:
            out.append(line)
            continue
        dropped.append(Dropped(line, listed[group][keep[group]], group.package, gpu))
    return tuple(out), tuple(dropped)


def conflicts(names: Iterable[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Groups with two or more members among ``names`` (e.g. a resolved lock's packages)."""
    present: dict[str, list[str]] = {}
    for name in sorted({canonicalize_name(n) for n in names}):
        group = _GROUP_OF.get(name)
        if group is not None:
            present.setdefault(group.package, []).append(name)
    return tuple((package, tuple(found)) for package, found in present.items() if len(found) > 1)
