"""``deployer prune``: remove what deployer cached and nobody uses any more; nothing else.

What deployer keeps between runs, on purpose, as caches:

* ``deployer-env:<hash>`` images: part 1 of a split build (base + Python environment). Model
  images are built FROM them, so while any image still holds an environment image's layers,
  removing its tag frees no disk and only makes the next model-only rebuild slow: those are
  always kept. Unused ones go when older than the age limit.
* the build cache (``$DEPLOYER_BUILD_CACHE``): ``wheels/<sha256>/`` (touched on every use, so
  their age is the time since a build last needed them), ``locks/`` (resolutions, reused for a
  day only: expired ones are dead), and ``tmp-*`` work directories that a killed build left.
* the model download cache (``$DEPLOYER_CACHE_DIR``): ``<key>/`` entries, touched on every hit.
* model environments built on this host (``<build cache>/envs/<key>/``: the venv of
  ``--env-manager virtualenv``/``prepare-env`` and Spark's packed archive of it, touched on every
  reuse) and deployer's runtime zips: judged by age like wheels.

And one kind of debris: ``deployer-unverified:*`` tags, the staging tags an image has while
its verification runs (building/verify.py); one older than an hour was left by a build that
was killed during verification.

Pure planning, thin execution: :func:`plan_prune` decides from an :class:`Inventory` gathered
up front (what exists, how old, which layers are shared) and says why for each item;
:func:`execute_prune` removes exactly the plan. ``--dry-run`` prints the plan. Nothing outside
the ``deployer-env`` and ``deployer-unverified`` repositories and the two cache roots is ever
touched; model images (the user's tags) are never removed.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.building.wheelhouse import LOCK_TTL

ENV_REPOSITORY = "deployer-env"
STAGING_REPOSITORY = "deployer-unverified"  # == building.verify.STAGING_REPO (a test checks)
STAGING_DEBRIS_AGE = 3600.0  # a verification takes minutes: an older staging tag is debris
DAY = 86400.0
#: A build's work directory older than this is debris (builds take minutes).
TMP_DEBRIS_AGE = DAY


@dataclass(frozen=True)
class EnvImage:
    tag: str
    image_id: str
    created: float  # epoch seconds
    size: int
    layers: tuple[str, ...]


@dataclass(frozen=True)
class CachedPath:
    kind: str  # "wheel" | "lock" | "tmp" | "model" | "host-env"
    path: Path
    last_used: float  # epoch seconds
    size: int


@dataclass(frozen=True)
class Inventory:
    env_images: tuple[EnvImage, ...] = ()
    #: Layer chains of every other image in the engine (model images, the user's own).
    other_layers: tuple[tuple[str, ...], ...] = ()
    cached: tuple[CachedPath, ...] = ()
    now: float = field(default_factory=time.time)


@dataclass(frozen=True)
class PruneItem:
    kind: str  # "env-image" | "staging-image" | "wheel" | "lock" | "tmp" | "model" | "host-env"
    what: str
    size: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "what": self.what, "bytes": self.size, "reason": self.reason}


@dataclass(frozen=True)
class PrunePlan:
    remove: tuple[PruneItem, ...]
    keep: tuple[PruneItem, ...]

    @property
    def bytes(self) -> int:
        return sum(i.size for i in self.remove)

    def to_dict(self) -> dict[str, Any]:
        return {
            "remove": [i.to_dict() for i in self.remove],
            "keep": [i.to_dict() for i in self.keep],
            "bytes": self.bytes,
        }


def _days(seconds: float) -> str:
    return f"{seconds / DAY:.1f} days"


def plan_prune(inv: Inventory, *, older_than_days: float) -> PrunePlan:
    limit = older_than_days * DAY
    remove: list[PruneItem] = []
    keep: list[PruneItem] = []
    for img in inv.env_images:
        if img.tag.split(":", 1)[0] == STAGING_REPOSITORY:
            age = inv.now - img.created
            if age > STAGING_DEBRIS_AGE:
                remove.append(
                    PruneItem(
                        "staging-image",
                        img.tag,
                        img.size,
                        "staging tag left by a build killed during its verification",
                    )
                )
            else:
                keep.append(
                    PruneItem("staging-image", img.tag, img.size, "a build may be verifying it")
                )
            continue
        used = any(chain[: len(img.layers)] == img.layers for chain in inv.other_layers if chain)
        age = inv.now - img.created
        if used:
            keep.append(
                PruneItem(
                    "env-image",
                    img.tag,
                    img.size,
                    "an image is built on it (removing it would free nothing)",
                )
            )
        elif age < limit:
            keep.append(
                PruneItem("env-image", img.tag, img.size, f"unused, but only {_days(age)} old")
            )
        else:
            remove.append(
                PruneItem("env-image", img.tag, img.size, f"no image uses it; {_days(age)} old")
            )
    for item in inv.cached:
        age = inv.now - item.last_used
        if item.kind == "lock":
            expired = age > LOCK_TTL
            reason = "expired resolution (never reused)" if expired else "resolution still reusable"
        elif item.kind == "tmp":
            expired = age > TMP_DEBRIS_AGE
            reason = "left by a build that did not finish" if expired else "a build may be using it"
        else:
            expired = age >= limit
            reason = f"last used {_days(age)} ago"
        (remove if expired else keep).append(
            PruneItem(item.kind, str(item.path), item.size, reason)
        )
    return PrunePlan(tuple(remove), tuple(keep))


# ---------------------------------------------------------------------------- gathering
def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _last_used(path: Path) -> float:
    """Newest mtime of the path and its direct children (lookups touch the entry)."""
    times = [path.stat().st_mtime]
    if path.is_dir():
        times += [p.stat().st_mtime for p in path.iterdir()]
    return max(times)


def cached_paths(build_cache: Path, model_cache: Path) -> list[CachedPath]:
    out: list[CachedPath] = []

    def add(kind: str, paths: Iterable[Path]) -> None:
        for p in paths:
            try:
                out.append(CachedPath(kind, p, _last_used(p), _tree_size(p)))
            except OSError:  # removed under us by a concurrent build: not ours to judge
                continue

    if build_cache.is_dir():
        add("wheel", sorted((build_cache / "wheels").glob("*")))  # a missing folder globs nothing
        add("lock", sorted((build_cache / "locks").glob("*.lock")))
        add("tmp", sorted(build_cache.glob("tmp-*")))
        # model environments (deployer.building.host_env): a venv (and Spark's archive of it)
        # per lock, ~0.5 GB each; half-built ones (.build-*) are a killed build's debris;
        # inputs/ holds small records pointing at them (a dangling one is simply not used)
        envs = build_cache / "envs"
        add(
            "host-env",
            sorted(p for p in envs.glob("*") if not p.name.startswith(".") and p.name != "inputs"),
        )
        add("tmp", sorted(envs.glob(".build-*")))
        add("host-env", sorted((build_cache / "runtime").glob("*.zip")))
    if model_cache.is_dir():
        add(
            "model",
            sorted(
                p
                for p in model_cache.iterdir()
                if p.is_dir() and not p.name.startswith(".") and (p / "model").is_dir()
            ),
        )
    return out


def _epoch(created: str) -> float:
    """Docker's ``Created`` (RFC 3339, nanoseconds, ``Z``) as epoch seconds."""
    from datetime import datetime, timezone

    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?", created or "")
    if not m:
        return 0.0  # unknown age: treated as old, but only unused images are ever removed
    stamp = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return stamp.timestamp() + float("0." + (m.group(2) or "0"))


def env_images(client: Any) -> tuple[list[EnvImage], list[tuple[str, ...]]]:
    """deployer-env images (only tagged there) and deployer-unverified staging tags, and the
    layer chains of every other image."""
    ours: list[EnvImage] = []
    others: list[tuple[str, ...]] = []
    for image in client.images.list():
        layers = tuple(image.attrs.get("RootFS", {}).get("Layers") or ())
        staging = [t for t in image.tags if t.split(":", 1)[0] == STAGING_REPOSITORY]
        ours.extend(
            EnvImage(
                tag,
                image.id,
                _epoch(image.attrs.get("Created", "")),
                int(image.attrs.get("Size") or 0),
                layers,
            )
            for tag in staging
        )
        tags = [t for t in image.tags if t.split(":", 1)[0] == ENV_REPOSITORY]
        if tags and len(tags) == len(image.tags):
            created = _epoch(image.attrs.get("Created", ""))
            ours.extend(
                EnvImage(tag, image.id, created, int(image.attrs.get("Size") or 0), layers)
                for tag in tags
            )
        else:
            others.append(layers)
    return ours, others


def execute_prune(plan: PrunePlan, client: Any) -> list[str]:
    """Remove what the plan says; returns the items that could not be removed (with why)."""
    failed: list[str] = []
    for item in plan.remove:
        try:
            if item.kind in ("env-image", "staging-image"):
                client.images.remove(item.what, noprune=False)
            else:
                path = Path(item.what)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        except Exception as exc:  # noqa: BLE001 - an image a container still uses, a permission
            failed.append(f"{item.what}: {exc}")
    return failed
